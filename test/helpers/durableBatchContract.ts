/**
 * `runBatch`'s cases of the DurableQueue contract (test/helpers/durableContract.ts calls `batchCases` inside its
 * describe, so every store runs them): grouping and `size`, acknowledgement, failures retried and dead-lettered by
 * each job's own attempts, partial failure (`BatchFailure`), handlers that throw or return garbage, cancel of a job
 * inside a running batch, leases refreshed while a batch runs, a runner that died, shutdown, bad options. Each case
 * is a few hundred ms at most on a real store.
 */
import { expect } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as DurableQueue from "../../src/DurableQueue.js"
import { queueSettings } from "../../src/internal/durableQueue/options.js"
import { OptionError } from "../../src/OptionError.js"
import { type Env, leaseAndDie, numberQueue } from "./durableStores.js"
import { expectRunsThroughLeases, watchStalls } from "./stalls.js"
import { eventually } from "./storePort.js"

type Test = (name: string, body: (env: Env) => Effect.Effect<void, unknown, Scope.Scope>, timeout?: number) => void

/** What each handler call saw: the jobs' ids, values and attempts, in batch order. */
interface Seen {
  readonly ids: ReadonlyArray<string>
  readonly values: ReadonlyArray<number>
  readonly attempts: ReadonlyArray<number>
}

const record = (calls: Array<Seen>, values: ReadonlyArray<number>, jobs: ReadonlyArray<DurableQueue.Job>) =>
  calls.push({ ids: jobs.map((job) => job.id), values: [...values], attempts: jobs.map((job) => job.attempt) })

const stateOf = (queue: DurableQueue.DurableQueue<number>, id: string) =>
  Effect.map(queue.status(id), (status) => Option.getOrThrow(status))

const offerNumbers = (queue: DurableQueue.DurableQueue<number>, count: number, prefix = "j") =>
  queue.offerAll(Array.from({ length: count }, (_, i) => ({ value: i, id: `${prefix}${i}` })))

export const batchCases = (test: Test) => {
  test("runBatch groups waiting jobs (more than one a call, never more than size), values aligned with jobs, all acknowledged once", (env) =>
    Effect.gen(function*() {
      const queue = yield* numberQueue(env, "batch", 3)
      yield* offerNumbers(queue, 250)
      const calls: Array<Seen> = []
      yield* Effect.forkScoped(queue.runBatch((values, jobs) => Effect.sync(() => record(calls, values, jobs)), {
        size: 100,
        concurrency: 2
      }))
      yield* eventually(
        Effect.map(queue.size, (size) => ({ size, ran: calls.reduce((sum, c) => sum + c.ids.length, 0) })),
        (seen) => seen.size === 0 && seen.ran >= 250
      )
      const seen = calls.flatMap((call) => call.ids)
      expect(new Set(seen).size).toBe(250)
      expect(seen.length).toBe(250)
      expect(Math.max(...calls.map((call) => call.ids.length))).toBeLessThanOrEqual(100)
      // 250 jobs waiting before the run: leased ahead in batches, so calls hold many (one job a call would be 250).
      expect(calls.length).toBeLessThan(50)
      for (const call of calls) expect(call.ids).toEqual(call.values.map((n) => `j${n}`))
      expect(yield* stateOf(queue, "j0")).toMatchObject({ state: "done", attempts: 1 })
      expect(yield* stateOf(queue, "j249")).toMatchObject({ state: "done", attempts: 1 })
    }))

  test("runBatch maxWait: a taker holding fewer than size waits for more; size reached, it runs them at once; one cancelled meanwhile is left out", (env) =>
    Effect.gen(function*() {
      const queue = yield* numberQueue(env, "batch", 3)
      yield* offerNumbers(queue, 2, "a")
      const calls: Array<Seen> = []
      yield* Effect.forkScoped(queue.runBatch((values, jobs) => Effect.sync(() => record(calls, values, jobs)), {
        size: 4,
        maxWait: "1 hour"
      }))
      yield* eventually(queue.counts, (counts) => counts.running === 2)
      expect(calls).toEqual([])
      yield* offerNumbers(queue, 2, "b")
      yield* eventually(Effect.sync(() => calls.length), (n) => n === 1)
      expect([...calls[0]!.ids].sort()).toEqual(["a0", "a1", "b0", "b1"])
      yield* eventually(queue.size, (n) => n === 0)
      // A job cancelled while the taker holds it waiting for more is settled cancelled, not handed to the handler.
      yield* offerNumbers(queue, 2, "c")
      yield* eventually(queue.counts, (counts) => counts.running === 2)
      expect(yield* queue.cancel("c1")).toBe(true)
      yield* offerNumbers(queue, 3, "d")
      yield* eventually(Effect.sync(() => calls.length), (n) => n === 2)
      expect(calls[1]!.ids).not.toContain("c1")
      expect(calls[1]!.ids).toEqual(expect.arrayContaining(["c0", "d0", "d1"]))
      yield* eventually(queue.status("c1"), (s) => Option.getOrThrow(s).state === "cancelled")
    }))

  test("runBatch failure: every job of the batch fails, retried by its own attempts, dead-lettered alone; a throw or a non-Effect is a failure", (env) =>
    Effect.gen(function*() {
      const queue = yield* numberQueue(env, "batch", 2)
      yield* queue.offer(1, { id: "veteran" })
      // One attempt spent already: its second, in the batch, is its last.
      yield* queue.take(() => Effect.fail("first try"))
      yield* queue.offer(2, { id: "fresh" })
      const calls: Array<Seen> = []
      let call = 0
      const runner = yield* Effect.forkScoped(queue.runBatch((values, jobs) => {
        record(calls, values, jobs)
        call++
        if (call === 1) return Effect.fail(`batch failed at call ${call}`)
        if (call === 2) throw new Error("thrown by the handler")
        return 42 as unknown as Effect.Effect<void>
      }))
      yield* eventually(queue.deadLetters, (dead) => dead.length === 2)
      expect(calls[0]).toEqual({ ids: ["veteran", "fresh"], values: [1, 2], attempts: [2, 1] })
      const seen = calls.flatMap((c) => c.ids.map((id, i) => `${id}@${c.attempts[i]}`))
      expect(seen.sort()).toEqual(["fresh@1", "fresh@2", "veteran@2"])
      const dead = yield* queue.deadLetters
      const veteran = dead.find((letter) => letter.id === "veteran")!
      const fresh = dead.find((letter) => letter.id === "fresh")!
      expect([veteran.attempts, fresh.attempts]).toEqual([2, 2])
      expect(veteran.lastError).toContain("batch failed at call 1")
      expect(fresh.lastError).toContain("thrown by the handler")
      // The runner goes on after garbage: a job offered now is handed to it (and fails: 42 is not an Effect).
      yield* queue.offer(3, { id: "garbage" })
      yield* eventually(queue.status("garbage"), (s) => Option.getOrThrow(s).lastError !== undefined)
      expect((yield* stateOf(queue, "garbage")).lastError).toContain("not an Effect")
      expect(runner.unsafePoll()).toBeNull()
    }))

  test("runBatch partial failure: a BatchFailure fails the jobs it names (each retried alone), acknowledges the others; a bad one fails all", (env) =>
    Effect.gen(function*() {
      const queue = yield* numberQueue(env, "batch", 3)
      yield* offerNumbers(queue, 4)
      const calls: Array<Seen> = []
      yield* Effect.forkScoped(queue.runBatch((values, jobs) => {
        record(calls, values, jobs)
        if (jobs.some((job) => job.attempt === 2)) {
          // Index 99 is not in the batch: the core cannot tell which jobs failed, so it fails every one.
          return Effect.fail(new DurableQueue.BatchFailure({ failures: [{ index: 99, error: "which?" }] }))
        }
        const failures = values.flatMap((n, index) =>
          n % 2 === 1 && jobs[index]!.attempt === 1 ? [{ index, error: `odd ${n}` }] : []
        )
        return failures.length === 0 ? Effect.void : Effect.fail(new DurableQueue.BatchFailure({ failures }))
      }, { size: 10 }))
      yield* eventually(queue.size, (n) => n === 0)
      expect(calls[0]).toMatchObject({ ids: ["j0", "j1", "j2", "j3"] })
      expect(yield* stateOf(queue, "j0")).toMatchObject({ state: "done", attempts: 1 })
      expect(yield* stateOf(queue, "j2")).toMatchObject({ state: "done", attempts: 1 })
      expect(yield* stateOf(queue, "j1")).toMatchObject({ state: "done", attempts: 3 })
      const j3 = yield* stateOf(queue, "j3")
      expect(j3).toMatchObject({ state: "done", attempts: 3 })
      expect(j3.lastError).toContain("index 99")
      expect(yield* queue.deadLetters).toEqual([])
    }))

  test("runBatch timeout: the batch is bounded by its jobs' shortest timeout (the offer's, else the queue's); every job fails TimedOut", (env) =>
    Effect.gen(function*() {
      const queue = yield* env.make({
        name: "batch",
        schema: Schema.Number,
        maxAttempts: 1,
        pollInterval: "10 millis",
        timeout: "5 seconds"
      })
      yield* queue.offer(1, { id: "patient" })
      yield* queue.offer(2, { id: "hurried", timeout: "60 millis" })
      const calls: Array<Seen> = []
      yield* Effect.forkScoped(
        queue.runBatch((values, jobs) => Effect.zipRight(Effect.sync(() => record(calls, values, jobs)), Effect.never))
      )
      yield* eventually(queue.deadLetters, (dead) => dead.length === 2)
      expect(calls.map((call) => call.ids)).toEqual([["patient", "hurried"]])
      for (const letter of yield* queue.deadLetters) {
        expect(letter.lastError).toContain("job \"hurried\" attempt 1 timed out after 60 ms")
      }
    }))

  test("runBatch cancel: a job cancelled inside a running batch does not interrupt it and is settled cancelled when it ends; one cancelled before is never handed out", (env) =>
    Effect.gen(function*() {
      const queue = yield* numberQueue(env, "batch", 3)
      yield* offerNumbers(queue, 3, "c")
      const release = yield* Deferred.make<void>()
      const calls: Array<Seen> = []
      let finished = 0
      yield* Effect.forkScoped(queue.runBatch((values, jobs) =>
        Effect.zipRight(
          Effect.zipRight(
            Effect.sync(() => record(calls, values, jobs)),
            // Each job's own progress, as in `run`.
            Effect.forEach(jobs, (job, i) => job.progress({ value: values[i] }), { discard: true })
          ),
          Effect.zipRight(Deferred.await(release), Effect.sync(() => finished++))
        ), { size: 3 }))
      yield* eventually(Effect.sync(() => calls.length), (n) => n === 1)
      yield* offerNumbers(queue, 1, "later")
      expect(yield* queue.cancel("c1")).toBe(true)
      expect(yield* queue.cancel("later0")).toBe(true)
      expect(yield* Deferred.succeed(release, undefined)).toBe(true)
      yield* eventually(queue.status("c1"), (s) => Option.getOrThrow(s).state === "cancelled")
      yield* eventually(queue.size, (n) => n === 0)
      expect(finished).toBe(1)
      expect(yield* stateOf(queue, "c0")).toMatchObject({ state: "done" })
      expect(yield* stateOf(queue, "c2")).toMatchObject({ state: "done", progress: { value: 2 } })
      expect(yield* stateOf(queue, "later0")).toMatchObject({ state: "cancelled" })
      expect(calls.flatMap((c) => c.ids)).toEqual(["c0", "c1", "c2"])
    }))

  test("runBatch: a batch running through several leases is not handed out again (its jobs' leases are refreshed); a dead runner's job past maxAttempts is a dead letter", (env) =>
    Effect.gen(function*() {
      const options = {
        name: "batch",
        schema: Schema.Number,
        maxAttempts: 1,
        pollInterval: "10 millis",
        // 600 ms, refreshed every 200 ms: a 300 ms lease (refreshed every 100 ms) was lost to a 200 ms stall of the
        // event loop, which a loaded 2-core machine has, and the other instance ran the batch again.
        leaseDuration: "600 millis"
      } as const
      const a = yield* env.make(options)
      const b = yield* env.make(options)
      yield* a.offer(0, { id: "orphan" })
      yield* leaseAndDie(env, yield* queueSettings(options), "orphan")
      yield* offerNumbers(a, 3)
      const runs: Array<string> = []
      // 1.4 s: more than two leases of 600 ms.
      const handler = (_: ReadonlyArray<number>, jobs: ReadonlyArray<DurableQueue.Job>) =>
        Effect.zipRight(Effect.sync(() => runs.push(...jobs.map((job) => job.id))), Effect.sleep("1400 millis"))
      const stalls = yield* watchStalls
      yield* Effect.forkScoped(a.runBatch(handler))
      yield* Effect.forkScoped(b.runBatch(handler))
      // As in the single-job case: 300 ms of stall (400 lapse a lease, less 100 for the refresh's round trip).
      yield* expectRunsThroughLeases(a.size, runs, ["j0", "j1", "j2"], stalls, 300)
      const dead = yield* a.deadLetters
      expect(dead.map((letter) => letter.id)).toEqual(["orphan"])
      expect(dead[0]!.lastError).toBe(
        // Leased once more when a lease lapsed under load before the orphan's dead-lettering was written.
        `leased ${dead[0]!.attempts === 1 ? "1 time" : `${dead[0]!.attempts} times`}, maxAttempts 1: ` +
          "the last lease (600 ms) lapsed without a settlement " +
          "(its runner died, hung past the lease, or lost the store)"
      )
    }))

  test("runBatch shutdown: a running batch finishes and is acknowledged; a taker waiting out maxWait runs what it holds at once", (env) =>
    Effect.gen(function*() {
      const queue = yield* numberQueue(env, "batch", 3)
      yield* offerNumbers(queue, 2)
      const release = yield* Deferred.make<void>()
      const started = yield* Deferred.make<void>()
      const runner = yield* Effect.forkScoped(
        queue.runBatch(() => Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(release)), {
          concurrency: 2,
          shutdownTimeout: "10 seconds"
        })
      )
      yield* Deferred.await(started)
      const stopping = yield* Effect.fork(Fiber.interrupt(runner))
      expect(stopping.unsafePoll()).toBeNull()
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(stopping).pipe(Effect.timeout("5 seconds"))
      yield* eventually(queue.size, (n) => n === 0)
      expect(yield* stateOf(queue, "j0")).toMatchObject({ state: "done", attempts: 1 })
      // A taker holding 2 of at most 100, waiting an hour for more: stopped, it runs the 2 now.
      yield* offerNumbers(queue, 2, "w")
      const calls: Array<Seen> = []
      const waiting = yield* Effect.forkScoped(
        queue.runBatch((values, jobs) => Effect.sync(() => record(calls, values, jobs)), { maxWait: "1 hour" })
      )
      yield* eventually(queue.counts, (counts) => counts.running === 2)
      yield* Fiber.interrupt(waiting).pipe(Effect.timeout("5 seconds"))
      expect(calls.map((call) => [...call.ids].sort())).toEqual([["w0", "w1"]])
      yield* eventually(queue.size, (n) => n === 0)
    }))

  test("runBatch stopped mid-batch: once the interrupt returns, its jobs are done and those leased ahead wait", (env) =>
    Effect.gen(function*() {
      const queue = yield* numberQueue(env, "batch", 3)
      yield* offerNumbers(queue, 40)
      const started = yield* Deferred.make<ReadonlyArray<string>>()
      const release = yield* Deferred.make<void>()
      const runner = yield* Effect.forkScoped(
        queue.runBatch(
          (_values, jobs) =>
            Effect.zipRight(Deferred.succeed(started, jobs.map((job) => job.id)), Deferred.await(release)),
          { size: 4 }
        )
      )
      const ids = yield* Deferred.await(started)
      const stopping = yield* Effect.fork(Fiber.interrupt(runner))
      yield* Effect.yieldNow()
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(stopping)
      // Read once, no wait: the run's end is after its writes.
      const counts = yield* queue.counts
      const states = yield* Effect.forEach(ids, (id) => Effect.map(stateOf(queue, id), (status) => status.state))
      expect({ states, running: counts.running }).toEqual({ states: ids.map(() => "done"), running: 0 })
      expect(counts.waiting + counts.done).toBe(40)
    }))

  test("runBatch with result: each job keeps its own result (aligned with values) for result(id); one that does not encode is not kept (that job alone, logged naming it); a cancelled job keeps none", (env) =>
    Effect.gen(function*() {
      const queue = yield* numberQueue(env, "batch", 3)
      yield* offerNumbers(queue, 5, "r")
      const release = yield* Deferred.make<void>()
      const calls: Array<Seen> = []
      const warnings: Array<string> = []
      const causes: Array<string> = []
      const logger = Logger.make(({ cause, logLevel, message }) => {
        if (logLevel._tag !== "Warning") return
        warnings.push(String(message))
        causes.push(Cause.pretty(cause))
      })
      yield* Effect.forkScoped(
        queue.runBatch((values, jobs) =>
          Effect.zipRight(
            Effect.zipRight(Effect.sync(() => record(calls, values, jobs)), Deferred.await(release)),
            // Value 3's result is a string where the schema is Schema.Number.
            Effect.succeed(values.map((n) => n === 3 ? "not a number" as unknown as number : n * 10))
          ), { size: 10, result: Schema.Number }).pipe(
            Effect.provide(Logger.replace(Logger.defaultLogger, logger))
          )
      )
      yield* eventually(Effect.sync(() => calls.length), (n) => n === 1)
      expect(calls[0]!.ids).toEqual(["r0", "r1", "r2", "r3", "r4"])
      expect(yield* queue.cancel("r4")).toBe(true)
      yield* Deferred.succeed(release, undefined)
      yield* eventually(queue.size, (n) => n === 0)
      for (const i of [0, 1, 2]) {
        expect(yield* queue.result(`r${i}`, Schema.Number), `r${i}`).toEqual(Option.some(i * 10))
      }
      expect(yield* stateOf(queue, "r3")).toMatchObject({ state: "done", attempts: 1 })
      expect(Option.isNone(yield* queue.result("r3", Schema.Number))).toBe(true)
      expect(warnings.join("\n")).toContain("the result of job \"r3\" cannot be encoded")
      // The reason is the log line's cause (an Error among the messages, the default logger printed "{}").
      expect(causes.join("\n")).toContain("Expected number, actual \"not a number\"")
      expect(yield* stateOf(queue, "r4")).toMatchObject({ state: "cancelled" })
      expect(Option.isNone(yield* queue.result("r4", Schema.Number))).toBe(true)
      expect(calls.length).toBe(1)
    }))

  test("runBatch with result: too few, too many or no array fails EVERY job of the batch with ResultsMismatch naming the sizes, retried by its own attempts; none is acknowledged", (env) =>
    Effect.gen(function*() {
      const queue = yield* numberQueue(env, "batch", 4)
      yield* offerNumbers(queue, 3, "m")
      const calls: Array<Seen> = []
      yield* Effect.forkScoped(queue.runBatch((values, jobs) => {
        record(calls, values, jobs)
        const attempt = jobs[0].attempt
        // Attempt 1: one short; 2: one too many; 3: not an array; 4: right.
        const results: unknown = attempt === 1
          ? values.slice(1)
          : attempt === 2
          ? [...values, 99]
          : attempt === 3
          ? { 0: 1, 1: 2, 2: 3, length: 3 }
          : values.map((n) => n + 100)
        return Effect.succeed(results as ReadonlyArray<number>)
      }, { size: 10, result: Schema.Number }))
      yield* eventually(queue.size, (n) => n === 0)
      expect(calls[0]).toMatchObject({ ids: ["m0", "m1", "m2"], attempts: [1, 1, 1] })
      // Each job ran 4 attempts, none acknowledged before its 4th (retries may come back in smaller batches).
      const runs = calls.flatMap((call) => call.ids.map((id, i) => `${id}@${call.attempts[i]}`))
      expect(runs.sort()).toEqual(["m0", "m1", "m2"].flatMap((id) => [1, 2, 3, 4].map((a) => `${id}@${a}`)))
      for (const i of [0, 1, 2]) {
        const status = yield* stateOf(queue, `m${i}`)
        expect(status).toMatchObject({ state: "done", attempts: 4 })
        // The last failure (attempt 3) named what came and the batch's size.
        expect(status.lastError).toContain("the batch's results are not one per job")
        expect(status.lastError).toMatch(
          /succeeded with an object \(\[object Object\]\) \(not an array\) for a batch of \d job\(s\)/
        )
        expect(yield* queue.result(`m${i}`, Schema.Number)).toEqual(Option.some(i + 100))
      }
      expect(yield* queue.deadLetters).toEqual([])
    }))

  test("runBatch with result: a mismatched batch is dead-lettered by each job's own attempts, its errors naming both sizes", (env) =>
    Effect.gen(function*() {
      const queue = yield* numberQueue(env, "batch", 1)
      yield* offerNumbers(queue, 2, "s")
      const short = yield* Effect.forkScoped(
        queue.runBatch((values) => Effect.succeed(values.slice(1)), { size: 10, result: Schema.Number })
      )
      yield* eventually(queue.deadLetters, (dead) => dead.length === 2)
      for (const letter of yield* queue.deadLetters) {
        expect(letter.lastError).toContain("succeeded with 1 result(s) for a batch of 2 job(s)")
      }
      yield* Fiber.interrupt(short)
      yield* offerNumbers(queue, 2, "t")
      yield* Effect.forkScoped(
        queue.runBatch((values) => Effect.succeed([...values, 0, 0]), { size: 10, result: Schema.Number })
      )
      yield* eventually(queue.deadLetters, (dead) => dead.length === 4)
      const t0 = (yield* queue.deadLetters).find((letter) => letter.id === "t0")!
      expect(t0.lastError).toContain("succeeded with 4 result(s) for a batch of 2 job(s)")
    }))

  test("runBatch with result and a BatchFailure: failed indexes fail, the others keep their entry of results; without results they keep none; results of another length fail all", (env) =>
    Effect.gen(function*() {
      const queue = yield* numberQueue(env, "batch", 3)
      yield* offerNumbers(queue, 4, "p")
      const calls: Array<Seen> = []
      yield* Effect.forkScoped(queue.runBatch((values, jobs) => {
        record(calls, values, jobs)
        const attempt = jobs[0].attempt
        if (attempt === 1) {
          // p1 and p3 fail; the entries at their indexes are ignored.
          return Effect.fail(
            new DurableQueue.BatchFailure({
              failures: [{ index: 1, error: "one" }, { index: 3, error: "three" }],
              results: values.map((n) => n * 10)
            })
          )
        }
        if (attempt === 2) {
          // One result too many: which is whose cannot be told, so p1 and p3 fail again.
          return Effect.fail(new DurableQueue.BatchFailure({ failures: [], results: [...values, 7] }))
        }
        // No results: p1 and p3 are acknowledged and keep none.
        return Effect.fail(new DurableQueue.BatchFailure({ failures: [] }))
      }, { size: 10, result: Schema.Number }))
      yield* eventually(queue.size, (n) => n === 0)
      expect(calls[0]!.ids).toEqual(["p0", "p1", "p2", "p3"])
      const runs = calls.flatMap((call) => call.ids.map((id, i) => `${id}@${call.attempts[i]}`))
      expect(runs.sort()).toEqual(["p0@1", "p1@1", "p1@2", "p1@3", "p2@1", "p3@1", "p3@2", "p3@3"])
      expect(yield* queue.result("p0", Schema.Number)).toEqual(Option.some(0))
      expect(yield* queue.result("p2", Schema.Number)).toEqual(Option.some(20))
      for (const id of ["p1", "p3"]) {
        const status = yield* stateOf(queue, id)
        expect(status).toMatchObject({ state: "done", attempts: 3 })
        expect(status.lastError).toMatch(
          /failed with a BatchFailure whose results hold (\d) result\(s\) for a batch of \d job\(s\)/
        )
        expect(Option.isNone(yield* queue.result(id, Schema.Number))).toBe(true)
      }
    }))

  test("runBatch with size, maxWait, concurrency or shutdownTimeout NaN, 0, 1e12, \"10\", negative, fails at once with OptionError naming it", (env) =>
    Effect.gen(function*() {
      const queue = yield* numberQueue(env, "batch", 3)
      const bad: ReadonlyArray<readonly [Record<string, unknown>, string]> = [
        [{ size: Number.NaN }, "size"],
        [{ size: 0 }, "size"],
        [{ size: 1e12 }, "size"],
        [{ size: "10" }, "size"],
        [{ size: 2.5 }, "size"],
        [{ maxWait: -1 }, "maxWait"],
        [{ maxWait: "-1 second" }, "maxWait"],
        [{ maxWait: Number.NaN }, "maxWait"],
        [{ maxWait: 1e12 }, "maxWait"],
        [{ maxWait: "soon" }, "maxWait"],
        [{ concurrency: 0 }, "concurrency"],
        [{ concurrency: "2" }, "concurrency"],
        [{ shutdownTimeout: {} }, "shutdownTimeout"],
        [{ batchSize: 10 }, "runBatch options.batchSize"],
        [{ result: 5 }, "result"],
        [{ result: {} }, "result"],
        [{ result: Schema.Number.ast }, "result"]
      ]
      for (const [options, field] of bad) {
        const error = yield* Effect.flip(queue.runBatch(() => Effect.void, options as DurableQueue.RunBatchOptions))
          .pipe(Effect.timeout("5 seconds"))
        expect(error, field).toBeInstanceOf(OptionError)
        expect(error.field, JSON.stringify(options)).toBe(field)
        if (field !== "runBatch options.batchSize") expect(error.value, field).toEqual(Object.values(options)[0])
      }
    }))
}
