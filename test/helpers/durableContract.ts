/**
 * The `DurableQueue` contract, one suite run on every store: memory, Redis, PostgreSQL and SQLite (as
 * `@effect/experimental`'s PersistedQueue tests loop over their stores), each from a file of its own,
 * test/DurableQueue.contract.<store>.test.ts, so the four run in separate forks: in one file they took 67 s, the
 * longest file of the suite, which ended the run alone. Each case runs in a fresh namespace (see
 * test/helpers/durableStores.ts); a case that cannot apply to a store says why in its name. Store-specific cases
 * (PostgreSQL notifications, Redis keys and scripts, SQL ids and tables) stay in test/redis and test/sql; the
 * memory store's TestClock-driven lease is in test/DurableQueue.memory.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as DurableQueue from "../../src/DurableQueue.js"
import { Backoff } from "../../src/DurableQueue.js"
import { queueSettings } from "../../src/internal/durableQueue/options.js"
import { OptionError } from "../../src/OptionError.js"
import { batchCases } from "./durableBatchContract.js"
import { type Env, leaseAndDie, numberQueue, type StoreKind, withStore } from "./durableStores.js"
import { spawnFixture } from "./processes.js"
import { expectRunsThroughLeases, watchStalls } from "./stalls.js"
import { eventually } from "./storePort.js"

/** No backoff: these cases are about attempts and order (backoff has its own cases, where jitter cannot reorder). */
const numbers = (env: Env, maxAttempts = 3, name = "jobs") => numberQueue(env, name, maxAttempts)

/** Each queue made with one of `cases`' options fails with OptionError naming its field. */
const rejectsQueueOptions = (env: Env, cases: ReadonlyArray<readonly [Record<string, unknown>, string]>) =>
  Effect.forEach(cases, ([options, field]) =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.scoped(
          env.make({ name: "q", schema: Schema.Number, ...options } as DurableQueue.Options<number, number>)
        )
      )
      expect(error, field).toBeInstanceOf(OptionError)
      expect((error as OptionError).field).toBe(field)
    }), { discard: true })

/** The contract's cases on `kind`, skipped when its server is not `up`. */
export const contract = (kind: StoreKind, up: boolean) =>
  describe.skipIf(!up)(`DurableQueue contract on ${kind}`, () => {
    const test = (name: string, body: (env: Env) => Effect.Effect<void, unknown, Scope.Scope>, timeout = 30_000) =>
      it.live(name, () => withStore(kind, body), timeout)

    test("offer by id: an id offered twice is queued once, also after it is done; generated ids are UUIDv7s", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env)
        expect(yield* queue.offer(1, { id: "job-1" })).toBe("job-1")
        expect(yield* queue.offer(1, { id: "job-1" })).toBe("job-1")
        const other = yield* queue.offer(2)
        expect(other).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
        expect(yield* queue.size).toBe(2)
        const seen: Array<string> = []
        yield* queue.take((n, job) => Effect.sync(() => seen.push(`${job.id}=${n}`)))
        yield* queue.take((n, job) => Effect.sync(() => seen.push(`${job.id}=${n}`)))
        expect(seen).toEqual(["job-1=1", `${other}=2`])
        expect(yield* queue.size).toBe(0)
        yield* queue.offer(1, { id: "job-1" })
        expect(yield* queue.size).toBe(0)
      }))

    test("at-least-once: a failed attempt puts the job back, counted; success acknowledges it", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env)
        yield* queue.offer(7)
        const handler = (n: number, job: DurableQueue.Job) =>
          job.attempt === 1 ? Effect.fail(`attempt ${job.attempt} failed`) : Effect.succeed(n * 2)
        expect(yield* queue.take(handler)).toEqual(Exit.fail("attempt 1 failed"))
        expect(yield* queue.size).toBe(1)
        expect(yield* queue.take(handler)).toEqual(Exit.succeed(14))
        expect(yield* queue.size).toBe(0)
        expect(yield* queue.deadLetters).toEqual([])
      }))

    test("after maxAttempts failures a job is a dead letter with its last error, oldest first; a sync throw is a failure", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env, 2)
        const a = yield* queue.offer(5)
        const b = yield* queue.offer(6)
        const handler = (n: number, job: DurableQueue.Job) =>
          n === 6
            ? (() => {
              throw new Error(`thrown-${job.attempt}`)
            })()
            : Effect.fail(`boom-${n}-${job.attempt}`)
        for (let i = 0; i < 4; i++) yield* queue.take(handler)
        const dead = yield* queue.deadLetters
        expect(dead.map(({ attempts, id, value }) => ({ id, value, attempts }))).toEqual([
          { id: a, value: 5, attempts: 2 },
          { id: b, value: 6, attempts: 2 }
        ])
        expect(dead[0]!.lastError).toContain("boom-5-2")
        expect(dead[1]!.lastError).toContain("thrown-2")
        expect(yield* queue.size).toBe(0)
      }))

    test("an interrupted handler puts its job back without counting an attempt", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env, 1)
        yield* queue.offer(3)
        let started = false
        const fiber = yield* Effect.fork(
          queue.take(() => Effect.zipRight(Effect.sync(() => (started = true)), Effect.never))
        )
        yield* eventually(Effect.sync(() => started), (yes) => yes, { message: "the handler started" })
        expect(yield* queue.size).toBe(1)
        yield* Fiber.interrupt(fiber)
        expect(yield* queue.take((n, job) => Effect.succeed([n, job.attempt])).pipe(Effect.timeout("10 seconds")))
          .toEqual(Exit.succeed([3, 1]))
      }))

    // On PostgreSQL this case hung about one run in five after issue #16 (the test and its scope close timed out)
    // when the 200 jobs were done before one instance's LISTEN was confirmed: that instance's first lease waited for
    // the confirmation past its 2 s timeout, and forever once the closing scope stopped the LISTEN's supervisor (see
    // test/sql/DurableQueue.test.ts, "a LISTEN never confirmed holds the first lease 2 s at most, ...").
    test("run: 200 jobs over two queue instances of 4 takers each, each done once, all acknowledged", (env) =>
      Effect.gen(function*() {
        const a = yield* numbers(env)
        const b = yield* numbers(env)
        yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) => a.offer(i, { id: `j${i}` }), {
          discard: true,
          concurrency: 16
        })
        const done = new Map<number, number>()
        const handler = (n: number) => Effect.sync(() => done.set(n, (done.get(n) ?? 0) + 1))
        yield* Effect.forkScoped(a.run(handler, { concurrency: 4 }))
        yield* Effect.forkScoped(b.run(handler, { concurrency: 4 }))
        yield* eventually(
          Effect.map(a.size, (size) => ({ size, done: done.size })),
          (seen) => seen.size === 0 && seen.done === 200
        )
        expect([...done.values()].every((n) => n === 1)).toBe(true)
      }))

    // The end of an interrupted run came before the settlements of the jobs it ran were written: a status read at
    // once said "running" (50 of 50 times on SQLite), and the jobs leased ahead were still leased.
    test("run stopped mid-job: once the interrupt returns, the job it ran is done, the one failed is back, those leased ahead wait", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env)
        yield* queue.offerAll(Array.from({ length: 20 }, (_, i) => ({ value: i, id: `s${i}` })))
        const started = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        const runner = yield* Effect.forkScoped(queue.run((n) =>
          n === 0
            ? Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(release))
            : n === 1
            ? Effect.fail("boom")
            : Effect.void, { concurrency: 1 }))
        yield* Deferred.await(started)
        const stopping = yield* Effect.fork(Fiber.interrupt(runner))
        yield* Effect.yieldNow()
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(stopping)
        // Read once, no wait: the run's end is after its writes.
        const counts = yield* queue.counts
        const s0 = Option.getOrThrow(yield* queue.status("s0"))
        expect({ s0: s0.state, running: counts.running }).toEqual({ s0: "done", running: 0 })
        expect(counts.waiting + counts.delayed + counts.done).toBe(20)
        expect(counts.done).toBeGreaterThanOrEqual(1)
      }))

    test("a job running through several leases is neither handed out again nor lost (its lease is refreshed)", (env) =>
      Effect.gen(function*() {
        // A 600 ms lease refreshed every 200 ms: it lapses only if this process stalls 400 ms (a load of 18 on this
        // 2-core machine stalled a 150 ms one), and a 900 ms job outlives it by half. A run leases ahead of its
        // takers, so one instance may take all three: the third then waits 900 ms in its buffer, its lease refreshed
        // there too. (2 s jobs made this case 4 s on every store, 16 s of the suite; 1.2 s jobs 2.4-3 s.)
        const make = env.make({
          name: "jobs",
          schema: Schema.Number,
          pollInterval: "10 millis",
          leaseDuration: "600 millis"
        })
        const a = yield* make
        const b = yield* make
        yield* Effect.forEach([1, 2, 3], (n) => a.offer(n, { id: `j${n}` }), { discard: true })
        const runs: Array<number> = []
        const handler = (n: number) => Effect.zipRight(Effect.sync(() => runs.push(n)), Effect.sleep("900 millis"))
        const stalls = yield* watchStalls
        yield* Effect.forkScoped(a.run(handler, { concurrency: 2 }))
        yield* Effect.forkScoped(b.run(handler, { concurrency: 2 }))
        // A stall of 400 ms (the lease less a refresh interval) lapses a lease; 300 leaves 100 ms for the refresh's
        // own round trip.
        yield* expectRunsThroughLeases(a.size, runs, [1, 2, 3], stalls, 300)
      }))

    test("bad options fail with OptionError naming the field and value (NaN, strings, objects, 1e12, short leases)", (env) =>
      Effect.gen(function*() {
        const cases: ReadonlyArray<readonly [Record<string, unknown>, string]> = [
          [{ maxAttempts: 0 }, "maxAttempts"],
          [{ maxAttempts: Number.NaN }, "maxAttempts"],
          [{ maxAttempts: "3" }, "maxAttempts"],
          [{ leaseDuration: -1 }, "leaseDuration"],
          [{ leaseDuration: "50 millis" }, "leaseDuration"],
          [{ leaseDuration: Number.NaN }, "leaseDuration"],
          [{ pollInterval: {} }, "pollInterval"],
          [{ name: "" }, "name"],
          [{ name: 42 }, "name"]
        ]
        yield* rejectsQueueOptions(env, cases)
      }))

    test("run with concurrency NaN, \"abc\", {}, 0 or 1e12, or a bad shutdownTimeout, fails at once with OptionError", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env)
        const bad: ReadonlyArray<readonly [Record<string, unknown>, string]> = [
          [{ concurrency: Number.NaN }, "concurrency"],
          [{ concurrency: "abc" }, "concurrency"],
          [{ concurrency: {} }, "concurrency"],
          [{ concurrency: 0 }, "concurrency"],
          [{ concurrency: 1e12 }, "concurrency"],
          [{ shutdownTimeout: "soon" }, "shutdownTimeout"],
          [{ concurency: 8 }, "run options.concurency"]
        ]
        for (const [options, field] of bad) {
          const error = yield* Effect.flip(queue.run(() => Effect.void, options as { concurrency: number })).pipe(
            Effect.timeout("5 seconds")
          )
          expect(error).toBeInstanceOf(OptionError)
          expect(error.field).toBe(field)
        }
      }))

    test("ids that are not non-empty strings (numbers, objects, \"\", NUL, lone surrogates) fail with OptionError; later offers work", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env)
        for (const id of [42, { id: 1 }, "", "a\u0000b", "x\ud83d"]) {
          const error = yield* Effect.flip(queue.offer(1, { id } as unknown as { id: string }))
          expect(error).toBeInstanceOf(OptionError)
          expect((error as OptionError).field).toBe("id")
        }
        expect(yield* queue.offer(1, { id: "fine" }).pipe(Effect.timeout("5 seconds"))).toBe("fine")
        expect(yield* queue.offer(2, { id: "\ud83d\ude00 emoji" })).toBe("\ud83d\ude00 emoji")
        expect(yield* queue.size).toBe(2)
      }))

    test("values JSON cannot hold are refused at offer with EncodeFailed naming the id; innocent neighbours go through", (env) =>
      Effect.gen(function*() {
        const queue = yield* env.make({ name: "jobs", schema: Schema.Unknown, pollInterval: "10 millis" })
        const cyclic: Record<string, unknown> = {}
        cyclic.self = cyclic
        let deep: unknown = 1
        for (let i = 0; i < 1_001; i++) deep = [deep]
        const bad: ReadonlyArray<unknown> = [
          () => 1,
          { f: () => 1 },
          1n,
          cyclic,
          Number.NaN,
          new Date(0),
          [undefined],
          deep,
          Symbol("s")
        ]
        const good: ReadonlyArray<unknown> = [
          "lone \ud83d surrogate",
          { nested: [1, "two", null, true] },
          "\u0000 nul",
          1.5
        ]
        const offers = [
          ...bad.map((value, i) => [`bad-${i}`, value] as const),
          ...good.map((value, i) => [`good-${i}`, value] as const)
        ]
        const exits = yield* Effect.forEach(offers, ([id, value]) => Effect.exit(queue.offer(value, { id })), {
          concurrency: "unbounded"
        })
        exits.forEach((exit, i) => {
          const [id] = offers[i]!
          if (id.startsWith("good")) return expect(exit).toEqual(Exit.succeed(id))
          expect(Exit.isFailure(exit) && Cause.squash(exit.cause)).toMatchObject({ reason: "EncodeFailed", id })
        })
        expect(yield* queue.size).toBe(good.length)
        const back: Array<unknown> = []
        for (let i = 0; i < good.length; i++) yield* queue.take((value) => Effect.sync(() => back.push(value)))
        expect(back).toEqual(good)
      }))

    test("a batch holding a job that no longer decodes: the others run; it dead-letters after maxAttempts, reported not fatal", (env) =>
      Effect.gen(function*() {
        const old = yield* env.make({
          name: "jobs",
          schema: Schema.Struct({ v: Schema.Number }),
          pollInterval: "10 millis"
        })
        yield* old.offer({ v: 1 }, { id: "old" })
        const queue = yield* numbers(env, 2)
        yield* Effect.forEach([1, 2, 3], (n) => queue.offer(n, { id: `n${n}` }), { discard: true })
        const done: Array<number> = []
        yield* Effect.forkScoped(queue.run((n) => Effect.sync(() => done.push(n)), { concurrency: 4 }))
        yield* eventually(
          Effect.map(queue.size, (size) => ({ size, done: [...done] })),
          (seen) => seen.size === 0 && seen.done.length === 3
        )
        expect(done.sort()).toEqual([1, 2, 3])
        expect(yield* queue.deadLetters).toEqual([])
        const undecodable = yield* queue.undecodableDeadLetters
        expect(undecodable.map(({ attempts, id, payload }) => ({ id, payload, attempts }))).toEqual([{
          id: "old",
          payload: "{\"v\":1}",
          attempts: 2
        }])
        expect(undecodable[0]!.error).toContain("Expected number")
        // The old schema still reads it, and can requeue it.
        expect((yield* old.deadLetters).map((letter) => letter.value)).toEqual([{ v: 1 }])
      }))

    test("dead letters: requeue(id) queues one again with no attempts counted, purge deletes them and forgets their ids", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env, 1)
        yield* queue.offer(1, { id: "a" })
        yield* queue.offer(2, { id: "b" })
        yield* queue.take(() => Effect.fail("no"))
        yield* queue.take(() => Effect.fail("no"))
        expect((yield* queue.deadLetters).map((letter) => letter.id)).toEqual(["a", "b"])
        expect(yield* queue.requeue("a")).toBe(true)
        expect(yield* queue.requeue("a")).toBe(false)
        expect(yield* queue.requeue("nope")).toBe(false)
        expect(yield* Effect.flip(queue.requeue(7 as unknown as string))).toBeInstanceOf(OptionError)
        expect(yield* queue.take((n, job) => Effect.succeed([n, job.id, job.attempt]))).toEqual(
          Exit.succeed([1, "a", 1])
        )
        expect(yield* queue.purge).toBe(1)
        expect(yield* queue.deadLetters).toEqual([])
        expect(yield* queue.purge).toBe(0)
        yield* queue.offer(3, { id: "b" })
        expect(yield* queue.take((n, job) => Effect.succeed([n, job.id]))).toEqual(Exit.succeed([3, "b"]))
      }))

    test("queue names never collide: \"x\" and \"x:dead\", \"x:ids\", \"x}:waiting\", \"{x}\" keep their own jobs and dead letters", (env) =>
      Effect.gen(function*() {
        const names = ["x", "x:dead", "x:ids", "x:pending", "x}:waiting", "{x}", "x:lock:", "%0078"]
        const queues = yield* Effect.forEach(names, (name) => numbers(env, 1, name))
        yield* queues[0]!.offer(0, { id: "same" })
        yield* queues[0]!.take(() => Effect.fail("dead in x"))
        yield* Effect.forEach(queues, (queue, i) => queue.offer(i, { id: "same" }), { discard: true })
        expect((yield* queues[0]!.deadLetters).map((letter) => letter.value)).toEqual([0])
        for (const [i, queue] of queues.entries()) {
          expect(yield* queue.size).toBe(i === 0 ? 0 : 1)
          if (i > 0) {
            expect(yield* queue.take((n) => Effect.succeed(n))).toEqual(Exit.succeed(i))
            expect(yield* queue.deadLetters).toEqual([])
          }
        }
      }))

    test("a job whose runner died (leased, never settled) counts that attempt; after maxAttempts it is a dead letter saying so", (env) =>
      Effect.gen(function*() {
        const options = {
          name: "jobs",
          schema: Schema.Number,
          maxAttempts: 2,
          leaseDuration: "150 millis",
          pollInterval: "10 millis"
        } as const
        const settings = yield* queueSettings(options)
        const queue = yield* env.make(options)
        yield* queue.offer(9, { id: "poison" })
        // Two runners lease it in turn and die: no settlement, the lease expires.
        expect((yield* leaseAndDie(env, settings, "poison")).attempts).toBe(1)
        expect((yield* leaseAndDie(env, settings, "poison")).attempts).toBe(2)
        yield* queue.offer(1, { id: "innocent" })
        // A live runner leases it once more: its last attempt's runner died, so it is dead-lettered, not run.
        const ran: Array<string> = []
        yield* Effect.forkScoped(queue.run((_n, job) => Effect.sync(() => ran.push(job.id))))
        yield* eventually(
          Effect.map(queue.deadLetters, (dead) => ({ dead: dead.map((letter) => letter.id), ran: [...ran] })),
          (seen) => seen.dead.length === 1 && seen.ran.length === 1
        )
        expect(ran).toEqual(["innocent"])
        const [dead] = yield* queue.deadLetters
        expect({ id: dead!.id, attempts: dead!.attempts }).toEqual({ id: "poison", attempts: 2 })
        expect(dead!.lastError).toBe(
          "leased 2 times, maxAttempts 2: the last lease (150 ms) lapsed without a settlement " +
            "(its runner died, hung past the lease, or lost the store)"
        )
        expect(yield* queue.size).toBe(0)
      }))

    // ---- issue #11: the features of a complete job queue. Real stores get short real delays (hundreds of ms);
    // bounds are checked from below against this process's clock (the store's may differ by a few ms: 50 ms slack).

    test("backoff: a failed attempt waits out its backoff as a delayed job holding no lease; an offer's backoff overrides the queue's", (env) =>
      Effect.gen(function*() {
        // The queue's backoff is an hour, so "slow" is still delayed however long the steps below take. With 400 ms
        // a stall of this process made it due before "fast" was retried (2 runs in 40 on memory beside 16 busy
        // processes on 2 cores). Waiting a backoff out is checked on "timed", from below only.
        const queue = yield* env.make({
          name: "jobs",
          schema: Schema.Number,
          pollInterval: "10 millis",
          backoff: Backoff.fixed("1 hour")
        })
        const slow = yield* queue.offer(1, { id: "slow" })
        const failFirst = (n: number, job: DurableQueue.Job) =>
          job.attempt === 1 ? Effect.fail(`no ${n}`) : Effect.succeed(n)
        const succeed = (n: number, job: DurableQueue.Job) => Effect.succeed([n, job.attempt])
        expect(yield* queue.take(failFirst)).toEqual(Exit.fail("no 1"))
        expect(Option.getOrThrow(yield* queue.status(slow))).toMatchObject({ state: "delayed", attempts: 1 })
        expect(yield* queue.counts).toMatchObject({ waiting: 0, delayed: 1, running: 0, dead: 0, paused: false })
        // Offered after it, retried at once (its own backoff): taken while the other still waits.
        yield* queue.offer(2, { id: "fast", backoff: Backoff.none })
        expect(yield* queue.take(failFirst)).toEqual(Exit.fail("no 2"))
        expect(yield* queue.take(succeed)).toEqual(Exit.succeed([2, 2]))
        // Its own 400 ms: the retry waits it out. Read before the take: the backoff runs from its settlement, which a
        // loaded machine may return from 50 ms and more later (328 ms measured from after the take, at load 15).
        yield* queue.offer(3, { id: "timed", backoff: Backoff.fixed("400 millis") })
        const failedAt = yield* Clock.currentTimeMillis
        expect(yield* queue.take(failFirst)).toEqual(Exit.fail("no 3"))
        expect(yield* queue.take(succeed)).toEqual(Exit.succeed([3, 2]))
        expect((yield* Clock.currentTimeMillis) - failedAt).toBeGreaterThanOrEqual(350)
        expect(Option.getOrThrow(yield* queue.status(slow))).toMatchObject({ state: "delayed", attempts: 1 })
      }))

    test("backoff: exponential data grows per attempt and dead-letters after maxAttempts", (env) =>
      Effect.gen(function*() {
        const backoff = Backoff.exponential({ base: "100 millis", factor: 3, jitter: false })
        const queue = yield* env.make({
          name: "jobs",
          schema: Schema.Number,
          pollInterval: "10 millis",
          maxAttempts: 3,
          backoff
        })
        yield* queue.offer(1, { id: "x" })
        const times: Array<number> = []
        for (let i = 0; i < 3; i++) {
          yield* queue.take(() =>
            Effect.zipRight(
              Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => times.push(t))),
              Effect.fail("boom")
            )
          )
        }
        // 100 ms, then 300 ms.
        expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(50)
        expect(times[2]! - times[1]!).toBeGreaterThanOrEqual(250)
        expect((yield* queue.deadLetters).map((letter) => [letter.id, letter.attempts])).toEqual([["x", 3]])
        expect(Option.getOrThrow(yield* queue.status("x"))).toMatchObject({ state: "dead", attempts: 3 })
        expect(Option.getOrThrow(yield* queue.status("x")).lastError).toContain("boom")
      }))

    test("delayed jobs (delay, runAt) are not leased before their time; a runAt in the past is ready now", (env) =>
      Effect.gen(function*() {
        // "at" is due at 2 units, "later" at 3: the four offers, two statuses and the counts must end before "at" is
        // due, and "at" must be taken before "later" is due. Idle they take a few ms, but with 4 forks at load 5
        // they once took over 300 ms on PostgreSQL, hence the fixed 1 and 1.5 s this case waited on every store
        // (1.5-1.7 s a store). Now a unit is 200 ms; an attempt whose steps overran their time proves nothing and
        // runs again on a fresh queue with the unit doubled, and the last one (6.4 s units, never reached idle) counts
        // whatever happens.
        for (let unit = 200;; unit *= 2) {
          const last = unit >= 6_400
          const queue = yield* numbers(env, 3, `jobs${unit}`)
          const start = yield* Clock.currentTimeMillis
          yield* queue.offer(1, { id: "later", delay: 3 * unit })
          yield* queue.offer(2, { id: "at", runAt: new Date(start + 2 * unit) })
          yield* queue.offer(3, { id: "past", runAt: start - 60_000 })
          yield* queue.offer(4, { id: "now" })
          const later = Option.getOrThrow(yield* queue.status("later")).state
          const past = Option.getOrThrow(yield* queue.status("past")).state
          const counts = yield* queue.counts
          if (!last && (yield* Clock.currentTimeMillis) - start >= 2 * unit) continue
          expect(later).toBe("delayed")
          expect(past).toBe("waiting")
          expect(counts).toMatchObject({ waiting: 2, delayed: 2 })
          const order: Array<readonly [number, number]> = []
          for (let i = 0; i < 4; i++) {
            yield* queue.take((n) =>
              Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => order.push([n, t - start])))
            )
          }
          // "now" must be leased before "at" comes due (2 units): after that both are ready and "at", offered first,
          // comes first (PostgreSQL at load 17: [3, 2, 4, 1] at the last unit this loop had, 1.6 s). And "at" before
          // "later" is due.
          if (!last && (order[1]![1] >= 2 * unit - 50 || order[2]![1] >= 3 * unit)) continue
          expect(order.map(([n]) => n)).toEqual([3, 4, 2, 1])
          expect(order[2]![1]).toBeGreaterThanOrEqual(2 * unit - 50)
          expect(order[3]![1]).toBeGreaterThanOrEqual(3 * unit - 50)
          return
        }
      }))

    // With a 5 s poll, a job due in 300 ms can only start on time if the taker wakes at its due time (issue #11).
    const onTime = (env: Env) =>
      env.make({
        name: "jobs",
        schema: Schema.Number,
        pollInterval: "5 seconds",
        maxAttempts: 2,
        backoff: Backoff.fixed("300 millis")
      })

    /**
     * Runs `offer` (which makes a job due 300 ms after it returns), then waits for `taker`'s handler; returns
     * [start - (time before offer + 300), start - (time after offer + 300), allowed lateness]: 150 ms plus the
     * machine's load measured beside it (twice the offer's own time, as waking costs a lease and a read where the
     * offer cost a write, and how late a plain 300 ms sleep started then woke), at most 2 s.
     */
    const lateness = <E, R>(
      taker: (started: (t: number) => void) => Effect.Effect<unknown, E, R>,
      offer: Effect.Effect<unknown, E, R>
    ) =>
      Effect.gen(function*() {
        const started = yield* Deferred.make<number>()
        const fiber = yield* Effect.fork(taker((t) => Deferred.unsafeDone(started, Exit.succeed(t))))
        const before = yield* Clock.currentTimeMillis
        yield* offer
        const after = yield* Clock.currentTimeMillis
        const timer = yield* Effect.fork(
          Effect.zipRight(Effect.sleep("300 millis"), Effect.map(Clock.currentTimeMillis, (t) => t - after - 300))
        )
        const at = yield* Deferred.await(started)
        const timerLate = yield* Fiber.join(timer)
        yield* Fiber.join(fiber)
        const allowed = Math.min(2_000, 150 + 2 * (after - before) + timerLate)
        return [at - (before + 300), at - (after + 300), allowed] as const
      })

    /**
     * `measure`d up to 3 times (each round its own job): an early start fails at once; a late one must be within
     * its allowance in one round. A burst of load the allowance did not see (PostgreSQL at load 17: 626 ms late,
     * 420 allowed) fails one round; a job that waits for the 5 s poll instead of waking on time fails all three.
     */
    const onTimeInOneOf3 = <E, R>(measure: (round: number) => Effect.Effect<readonly [number, number, number], E, R>) =>
      Effect.gen(function*() {
        const rounds: Array<readonly [number, number]> = []
        for (let round = 0; round < 3; round++) {
          const [early, late, allowed] = yield* measure(round)
          // Bounds from below against this process's clock (the store's may differ by a few ms: 50 ms slack).
          expect(early).toBeGreaterThanOrEqual(-50)
          rounds.push([late, allowed])
          if (late <= allowed) return
        }
        expect(rounds.map(([late, allowed]) => `${late} ms late, ${allowed} allowed`)).toEqual(["within"])
      })

    test("on time: a delayed job and a retry waiting out its backoff start within 150 ms of their time, polling every 5 s", (env) =>
      Effect.gen(function*() {
        const queue = yield* onTime(env)
        const started = (mark: (t: number) => void) => () =>
          Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => mark(t)))
        yield* onTimeInOneOf3((round) =>
          lateness(
            (mark) => queue.take(started(mark)),
            queue.offer(1, { id: `delayed${round}`, delay: "300 millis" })
          )
        )
        // The retry: due 300 ms after its failed attempt is settled (`take` returns once it is written).
        let flaky = ""
        yield* onTimeInOneOf3((round) =>
          Effect.gen(function*() {
            flaky = `flaky${round}`
            yield* queue.offer(2, { id: flaky })
            return yield* lateness(
              (mark) => queue.take(started(mark)),
              queue.take(() => Effect.fail("flaky"))
            )
          })
        )
        expect(Option.getOrThrow(yield* queue.status(flaky))).toMatchObject({ state: "done", attempts: 2 })
      }))

    const crossInstance = kind === "redis" || kind === "pg" ?
      test :
      (name: string, _body: unknown) =>
        it.skip(`${name}: does not apply to ${kind} (no notifications between instances; a delayed job offered elsewhere is found at the next poll)`, () => {})
    crossInstance(
      "on time across instances: a delayed job offered by another instance starts within 150 ms of its time, polling every 5 s",
      (env) =>
        Effect.gen(function*() {
          const taker = yield* onTime(env)
          const offerer = yield* onTime(env)
          // A first job taken, so the taker listens (it subscribes at its first lease).
          yield* offerer.offer(0)
          expect(yield* taker.take((n) => Effect.succeed(n))).toEqual(Exit.succeed(0))
          yield* onTimeInOneOf3(() =>
            lateness(
              (mark) => taker.take(() => Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => mark(t)))),
              offerer.offer(1, { delay: "300 millis" })
            )
          )
        })
    )

    test("priorities: higher first, equal ones in offer order", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env)
        const offers: ReadonlyArray<readonly [number, number | undefined]> = [
          [1, 0],
          [2, 5],
          [3, 5],
          [4, -1],
          [5, undefined],
          [6, 1_000_000],
          [7, -1_000_000]
        ]
        for (const [n, priority] of offers) yield* queue.offer(n, { id: `p${n}`, priority })
        const order: Array<number> = []
        for (let i = 0; i < offers.length; i++) yield* queue.take((n) => Effect.sync(() => order.push(n)))
        expect(order).toEqual([6, 2, 3, 1, 5, 4, 7])
      }))

    test("timeout: past it the handler is interrupted and the attempt fails naming job, attempt and timeout; an offer's overrides the queue's", (env) =>
      Effect.gen(function*() {
        const queue = yield* env.make({
          name: "jobs",
          schema: Schema.Number,
          pollInterval: "10 millis",
          maxAttempts: 2,
          timeout: "10 seconds",
          backoff: Backoff.none
        })
        yield* queue.offer(1, { id: "hangs", timeout: "200 millis" })
        let interrupted = 0
        const hang = () => Effect.onInterrupt(Effect.never, () => Effect.sync(() => interrupted++))
        const exit = yield* queue.take(hang)
        const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
        expect(error).toMatchObject({ reason: "TimedOut", id: "hangs", attempt: 1, timeoutMillis: 200 })
        expect(String((error as Error).message)).toContain("job \"hangs\" attempt 1 timed out after 200 ms")
        expect(interrupted).toBe(1)
        // Under run (whose shutdown never interrupts handlers) the timeout still does; the last attempt dead-letters.
        yield* Effect.forkScoped(queue.run(hang))
        yield* eventually(queue.deadLetters, (dead) => dead.length === 1)
        expect(interrupted).toBe(2)
        expect((yield* queue.deadLetters)[0]!.lastError).toContain("attempt 2 timed out after 200 ms")
      }))

    test("cancel: a waiting or delayed job is removed for good; unknown, done or cancelled ids give false", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env)
        yield* queue.offer(1, { id: "a" })
        yield* queue.offer(2, { id: "b", delay: "1 hour" })
        yield* queue.offer(3, { id: "c" })
        expect(yield* queue.cancel("a")).toBe(true)
        expect(yield* queue.cancel("b")).toBe(true)
        expect(yield* queue.cancel("a")).toBe(false)
        expect(yield* queue.cancel("nope")).toBe(false)
        expect(Option.getOrThrow(yield* queue.status("a")).state).toBe("cancelled")
        expect(Option.getOrThrow(yield* queue.status("b")).state).toBe("cancelled")
        expect(yield* queue.size).toBe(1)
        // Its id stays known: offered again, it is not queued.
        yield* queue.offer(1, { id: "a" })
        expect(yield* queue.take((n) => Effect.succeed(n))).toEqual(Exit.succeed(3))
        expect(yield* queue.cancel("c")).toBe(false)
        expect(yield* queue.size).toBe(0)
      }))

    test("cancel: a running job's handler is interrupted (take's Exit is interrupted, run's handler too), not retried", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env)
        yield* queue.offer(1, { id: "t" })
        let started = 0
        const hang = () => Effect.zipRight(Effect.sync(() => started++), Effect.never)
        const taker = yield* Effect.fork(queue.take(hang))
        yield* eventually(Effect.sync(() => started), (n) => n === 1)
        expect(Option.getOrThrow(yield* queue.status("t")).state).toBe("running")
        expect(yield* queue.cancel("t")).toBe(true)
        const exit = yield* Fiber.join(taker).pipe(Effect.timeout("5 seconds"))
        expect(Exit.isInterrupted(exit)).toBe(true)
        expect(Option.getOrThrow(yield* queue.status("t"))).toMatchObject({ state: "cancelled", attempts: 1 })
        // Under run's graceful mode, from another queue instance (the runner learns at its lease refresh).
        const runner = yield* env.make({
          name: "jobs",
          schema: Schema.Number,
          pollInterval: "10 millis",
          leaseDuration: "600 millis"
        })
        yield* queue.offer(2, { id: "r" })
        yield* Effect.forkScoped(runner.run(hang))
        yield* eventually(Effect.sync(() => started), (n) => n === 2)
        expect(yield* queue.cancel("r")).toBe(true)
        yield* eventually(queue.status("r"), (status) => Option.getOrThrow(status).state === "cancelled")
        expect(yield* queue.size).toBe(0)
        expect(started).toBe(2)
      }))

    test("cancel: a job whose runner died is settled cancelled when its lease ends, never run again", (env) =>
      Effect.gen(function*() {
        const options = {
          name: "jobs",
          schema: Schema.Number,
          leaseDuration: "150 millis",
          pollInterval: "10 millis"
        } as const
        const queue = yield* env.make(options)
        yield* queue.offer(1, { id: "orphan" })
        yield* leaseAndDie(env, yield* queueSettings(options), "orphan")
        expect(yield* queue.cancel("orphan")).toBe(true)
        yield* queue.offer(2, { id: "next" })
        const ran: Array<string> = []
        yield* Effect.forkScoped(queue.run((_n, job) => Effect.sync(() => ran.push(job.id))))
        yield* eventually(queue.status("orphan"), (status) => Option.getOrThrow(status).state === "cancelled")
        yield* eventually(Effect.sync(() => [...ran]), (ids) => ids.length === 1)
        expect(ran).toEqual(["next"])
        yield* eventually(queue.size, (n) => n === 0)
      }))

    test("progress and status: readable by id from another instance while running, kept once done; unknown ids are none", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env)
        const reader = yield* numbers(env)
        yield* queue.offer(1, { id: "p" })
        expect(Option.getOrThrow(yield* reader.status("p"))).toEqual({
          id: "p",
          state: "waiting",
          attempts: 0,
          progress: undefined,
          lastError: undefined
        })
        const release = yield* Deferred.make<void>()
        const taker = yield* Effect.fork(
          queue.take((_n, job) =>
            Effect.zipRight(job.progress({ done: 1, of: 2, note: "half \u00e9" }), Deferred.await(release))
          )
        )
        yield* eventually(reader.status("p"), (status) => Option.getOrThrow(status).progress !== undefined)
        expect(Option.getOrThrow(yield* reader.status("p"))).toEqual({
          id: "p",
          state: "running",
          attempts: 1,
          progress: { done: 1, of: 2, note: "half \u00e9" },
          lastError: undefined
        })
        yield* Deferred.succeed(release, undefined)
        expect(Exit.isSuccess(yield* Fiber.join(taker))).toBe(true)
        expect(Option.getOrThrow(yield* reader.status("p"))).toMatchObject({ state: "done", attempts: 1 })
        expect(Option.isNone(yield* reader.status("never-offered"))).toBe(true)
      }))

    test("results by id: stored with { result: schema } (take and run), none without, gone after resultTimeToLive", (env) =>
      Effect.gen(function*() {
        // The reads up to "by-run"'s must end inside the time to live, then the case waits it out: a fixed 1 s made
        // this case 1.1-1.5 s a store. Start at 400 ms; an attempt whose reads overran it proves nothing and runs
        // again on a fresh queue with the time to live doubled; the last one counts.
        // Each step that waits on the store is bounded and named: this case timed out at 30 s on pg at load 20 with
        // nothing to tell a slow step from a hung one (3.9 s in a full run at load 15).
        const step = <A, E, R>(label: string, effect: Effect.Effect<A, E, R>) =>
          Effect.timeoutFail(effect, {
            duration: "8 seconds",
            onTimeout: () => new Error(`results by id: ${label} did not end within 8 s`)
          })
        for (let ttl = 400;; ttl *= 2) {
          const queue = yield* env.make({
            name: `jobs${ttl}`,
            schema: Schema.Number,
            pollInterval: "10 millis",
            resultTimeToLive: ttl
          })
          const Doubled = Schema.Struct({ doubled: Schema.NumberFromString })
          yield* queue.offer(21, { id: "kept" })
          yield* queue.offer(5, { id: "plain" })
          expect(Option.isNone(yield* queue.result("kept", Doubled))).toBe(true)
          yield* step("take with result", queue.take((n) => Effect.succeed({ doubled: n * 2 }), { result: Doubled }))
          yield* step("take", queue.take((n) => Effect.succeed({ doubled: n * 2 })))
          const doneAt = yield* Clock.currentTimeMillis
          const kept = yield* queue.result("kept", Doubled)
          const plain = yield* queue.result("plain", Doubled)
          const unknown = yield* queue.result("unknown", Doubled)
          // Stored encoded ({"doubled":"42"}): another schema that does not fit fails naming the job.
          const error = yield* Effect.flip(queue.result("kept", Schema.Number))
          yield* queue.offer(4, { id: "by-run" })
          const runner = yield* Effect.forkScoped(
            queue.run((n) => Effect.succeed({ doubled: n * 2 }), { result: Doubled })
          )
          yield* step("the run's result", eventually(queue.result("by-run", Doubled), Option.isSome))
          const byRun = yield* queue.result("by-run", Doubled)
          yield* step("interrupting the run", Fiber.interrupt(runner))
          if ((yield* Clock.currentTimeMillis) - doneAt >= ttl && ttl < 3_200) continue
          expect(kept).toEqual(Option.some({ doubled: 42 }))
          expect(Option.isNone(plain)).toBe(true)
          expect(Option.isNone(unknown)).toBe(true)
          expect(error).toMatchObject({ reason: "DecodeFailed", id: "kept" })
          expect(byRun).toEqual(Option.some({ doubled: 8 }))
          yield* eventually(Clock.currentTimeMillis, (now) => now - doneAt > ttl + 100, {
            message: "the ttl passed (+100 ms)"
          })
          expect(Option.isNone(yield* queue.result("kept", Doubled))).toBe(true)
          // Its done record may go with it (Redis) or stay (SQL, memory): either way it is not offered again.
          yield* queue.offer(1, { id: "kept" })
          expect(yield* queue.size).toBe(0)
          return
        }
      }))

    test("pause and resume hold every instance; running jobs finish; counts say paused", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env)
        const other = yield* numbers(env)
        yield* queue.offer(1, { id: "a" })
        yield* queue.pause
        expect(yield* other.isPaused).toBe(true)
        expect(yield* other.counts).toMatchObject({ waiting: 1, delayed: 0, running: 0, dead: 0, paused: true })
        const taker = yield* Effect.fork(other.take((n) => Effect.succeed(n)))
        yield* Effect.sleep("300 millis")
        expect(Option.isNone(yield* Fiber.poll(taker))).toBe(true)
        yield* other.resume
        expect(yield* Fiber.join(taker).pipe(Effect.timeout("5 seconds"))).toEqual(Exit.succeed(1))
        expect(yield* queue.isPaused).toBe(false)
      }))

    test("drain waits until nothing waits, is delayed or runs; counts and requeueAll", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env, 1)
        yield* queue.offer(1, { id: "d1" })
        yield* queue.offer(2, { id: "d2" })
        yield* queue.take(() => Effect.fail("no"))
        yield* queue.take(() => Effect.fail("no"))
        yield* queue.offer(3, { id: "w", delay: "300 millis" })
        expect(yield* queue.counts).toMatchObject({ waiting: 0, delayed: 1, running: 0, dead: 2, paused: false })
        expect(yield* queue.requeueAll).toBe(2)
        expect(yield* queue.requeueAll).toBe(0)
        // The two dead letters wait again; "w" may have come due meanwhile (waiting 3, delayed 0: PostgreSQL at
        // load 20 took over 300 ms from its offer to here).
        const requeued = yield* queue.counts
        expect(requeued).toMatchObject({ dead: 0 })
        expect([requeued.waiting + requeued.delayed, requeued.waiting >= 2]).toEqual([3, true])
        const done: Array<readonly [number, number]> = []
        yield* Effect.forkScoped(queue.run((n, job) =>
          Effect.zipRight(Effect.sleep("20 millis"), Effect.sync(() => done.push([n, job.attempt]))), {
          concurrency: 2
        }))
        yield* queue.drain.pipe(Effect.timeout("10 seconds"))
        expect(done.sort()).toEqual([[1, 1], [2, 1], [3, 1]])
        expect(yield* queue.counts).toEqual({
          waiting: 0,
          delayed: 0,
          running: 0,
          dead: 0,
          paused: false,
          done: 3,
          oldestWaitingMillis: undefined
        })
      }))

    test("jobs lists each state (id, attempts, progress, last error, age, value); counts say done and the oldest wait", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env, 1)
        yield* queue.offer(1, { id: "a" })
        yield* queue.offer(2, { id: "b", priority: 5 })
        yield* queue.offer(3, { id: "later", delay: "1 hour" })
        const ids = (jobs: ReadonlyArray<DurableQueue.JobSummary<number>>) => jobs.map((job) => job.id)
        // Waiting in the order they will run; each with its value and age.
        const waiting = yield* queue.jobs("waiting")
        expect(ids(waiting)).toEqual(["b", "a"])
        expect(waiting[1]).toMatchObject({
          id: "a",
          state: "waiting",
          attempts: 0,
          value: Option.some(1),
          payload: "1"
        })
        expect(waiting[1]!.ageMillis).toBeGreaterThanOrEqual(0)
        expect(ids(yield* queue.jobs("waiting", { limit: 1, offset: 1 }))).toEqual(["a"])
        expect(ids(yield* queue.jobs("waiting", { offset: 2 }))).toEqual([])
        const delayed = yield* queue.jobs("delayed")
        expect(delayed).toMatchObject([{ id: "later", state: "delayed", value: Option.some(3) }])
        expect(delayed[0]!.ageMillis).toBeLessThan(60_000)
        // The oldest waiting job's age grows by the store's clock.
        const before = yield* queue.counts
        expect(before).toMatchObject({ waiting: 2, delayed: 1, done: 0 })
        yield* Effect.sleep("120 millis")
        const after = yield* queue.counts
        expect(after.oldestWaitingMillis! - before.oldestWaitingMillis!).toBeGreaterThanOrEqual(100)
        // Running, with its progress; then done (no value kept), and a dead letter with its error.
        const started = yield* Deferred.make<void>()
        const finish = yield* Deferred.make<void>()
        // Should an assertion fail while the handler waits, the scope's close still ends it.
        yield* Effect.addFinalizer(() => Deferred.succeed(finish, undefined))
        const taker = yield* Effect.fork(queue.take((_, job) =>
          Effect.zipRight(
            Effect.zipRight(job.progress({ pct: 50 }), Deferred.succeed(started, undefined)),
            Deferred.await(finish)
          )
        ))
        yield* Deferred.await(started)
        // "a" may be listed too: the core leases ahead of its takers, and a leased job is running to the store.
        const running = (yield* queue.jobs("running")).find((job) => job.id === "b")
        expect(running).toMatchObject({ id: "b", attempts: 1, progress: { pct: 50 }, value: Option.some(2) })
        yield* Deferred.succeed(finish, undefined)
        yield* Fiber.join(taker)
        expect(yield* queue.jobs("done")).toMatchObject([{ id: "b", attempts: 1, value: Option.none() }])
        yield* queue.take(() => Effect.fail("boom"))
        const dead = yield* queue.jobs("dead")
        expect(dead).toMatchObject([{ id: "a", attempts: 1, value: Option.some(1) }])
        expect(dead[0]!.lastError).toContain("boom")
        expect(dead[0]!.ageMillis).toBeGreaterThanOrEqual(0)
        expect(yield* queue.cancel("later")).toBe(true)
        expect(ids(yield* queue.jobs("cancelled"))).toEqual(["later"])
        expect(yield* queue.counts).toMatchObject({ waiting: 0, delayed: 0, done: 1, dead: 1 })
        expect((yield* queue.counts).oldestWaitingMillis).toBeUndefined()
        // Hostile input: typed errors naming the field.
        const bad: ReadonlyArray<readonly [unknown, unknown, string]> = [
          ["nope", undefined, "state"],
          [42, undefined, "state"],
          ["waiting", { limit: Number.NaN }, "limit"],
          ["waiting", { limit: -1 }, "limit"],
          ["waiting", { limit: 0 }, "limit"],
          ["waiting", { limit: 1e12 }, "limit"],
          ["waiting", { limit: "10" }, "limit"],
          ["waiting", { offset: -1 }, "offset"],
          ["waiting", { offset: 1.5 }, "offset"],
          ["waiting", { offset: 1e12 }, "offset"],
          ["waiting", { limt: 5 }, "jobs options.limt"],
          ["waiting", "all", "jobs options"]
        ]
        for (const [state, options, field] of bad) {
          const error = yield* Effect.flip(
            queue.jobs(state as DurableQueue.JobState, options as DurableQueue.JobsOptions)
          )
          expect(error, field).toBeInstanceOf(OptionError)
          expect((error as OptionError).field, field).toBe(field)
        }
      }))

    test("hostile options of offer, take, run and the queue are OptionErrors naming the field and value", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env)
        const offers: ReadonlyArray<readonly [Record<string, unknown>, string]> = [
          [{ delay: Number.NaN }, "delay"],
          [{ delay: "5" }, "delay"],
          [{ delay: {} }, "delay"],
          [{ delay: -1 }, "delay"],
          [{ delay: 1e12 }, "delay"],
          [{ delay: 10, runAt: Date.now() }, "runAt"],
          [{ runAt: new Date(Number.NaN) }, "runAt"],
          [{ runAt: "tomorrow" }, "runAt"],
          [{ runAt: 1_700_000_000 }, "runAt"],
          [{ runAt: Date.now() + 1e12 }, "runAt"],
          [{ priority: 1.5 }, "priority"],
          [{ priority: "5" }, "priority"],
          [{ priority: 1e12 }, "priority"],
          [{ priority: Number.NaN }, "priority"],
          [{ priorty: 5 }, "offer options.priorty"],
          [{ timeout: 0 }, "timeout"],
          [{ timeout: 1e12 }, "timeout"],
          [{ timeout: "soon" }, "timeout"],
          [{ backoff: {} }, "backoff"],
          [{ backoff: Backoff.fixed(Number.NaN) }, "backoff.millis"],
          [{ backoff: Backoff.fixed("-5 seconds") }, "backoff.millis"],
          [{ backoff: Backoff.exponential({ base: "1 second", factor: 0.5 }) }, "backoff.factor"],
          [{ backoff: { _tag: "Fixed", millis: 5, extra: 1 } }, "backoff.extra"],
          [{ backoff: Schedule.spaced("1 second") }, "backoff"]
        ]
        for (const [options, field] of offers) {
          const error = yield* Effect.flip(queue.offer(1, options as DurableQueue.OfferOptions))
          expect(error, field).toBeInstanceOf(OptionError)
          expect((error as OptionError).field).toBe(field)
        }
        const priorityError = yield* Effect.flip(queue.offer(1, { priorty: 5 } as DurableQueue.OfferOptions))
        expect(priorityError.message).toContain("did you mean `priority`")
        expect(yield* queue.size).toBe(0)
        for (const id of [42, "", "a\u0000b"]) {
          const ops: ReadonlyArray<
            (i: string) => Effect.Effect<unknown, DurableQueue.DurableQueueError | OptionError>
          > = [
            queue.cancel,
            queue.status,
            (i) => queue.result(i, Schema.Number)
          ]
          for (const op of ops) {
            const error = yield* Effect.flip(op(id as unknown as string))
            expect(error).toBeInstanceOf(OptionError)
            expect((error as OptionError).field).toBe("id")
          }
        }
        expect(yield* Effect.flip(queue.take(() => Effect.void, { result: {} as Schema.Schema<void> }))).toMatchObject({
          _tag: "OptionError",
          field: "result"
        })
        expect(
          (yield* Effect.flip(queue.run(() => Effect.void, { result: 5 as unknown as Schema.Schema<void> }))).field
        ).toBe("result")
        const queueCases: ReadonlyArray<readonly [Record<string, unknown>, string]> = [
          [{ backoff: { _tag: "Sometimes" } }, "backoff"],
          [{ backoff: Backoff.exponential({ base: "1 second", max: Number.NaN }) }, "backoff.maxMillis"],
          [{ timeout: Number.NaN }, "timeout"],
          [{ timeout: 2 ** 31 }, "timeout"],
          [{ resultTimeToLive: "5" }, "resultTimeToLive"],
          [{ resultTimeToLive: -1 }, "resultTimeToLive"]
        ]
        yield* rejectsQueueOptions(env, queueCases)
      }))

    test("progress JSON cannot hold (BigInt, cycles, functions, over 64 KiB) fails with ProgressRejected naming the job", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env)
        yield* queue.offer(1, { id: "prog" })
        const cyclic: Record<string, unknown> = {}
        cyclic.self = cyclic
        const bad: ReadonlyArray<unknown> = [
          1n,
          cyclic,
          () => 1,
          { f: () => 1 },
          Number.NaN,
          undefined,
          new Date(0),
          "x".repeat(64 * 1024),
          // Values that throw as they are read: a getter, a revoked Proxy (was a defect of the handler's attempt).
          {
            get boom(): never {
              throw new Error("the getter threw")
            }
          },
          revoked()
        ]
        const exit = yield* queue.take((_n, job) =>
          Effect.gen(function*() {
            const errors = yield* Effect.forEach(bad, (value) => Effect.flip(job.progress(value)))
            yield* job.progress({ ok: "é".repeat(30_000) })
            return errors
          })
        )
        const errors = Exit.isSuccess(exit) ? exit.value : []
        expect(errors).toHaveLength(bad.length)
        for (const error of errors) expect(error).toMatchObject({ reason: "ProgressRejected", id: "prog" })
        expect(errors[0]!.message).toContain("bigint")
        expect(errors[7]!.message).toContain("more than 65536")
        expect(errors[8]!.message).toContain("the getter threw")
        expect(Option.getOrThrow(yield* queue.status("prog")).progress).toEqual({ ok: "é".repeat(30_000) })
      }))

    batchCases(test)

    if (kind === "memory") {
      it.skip("a taker killed with SIGKILL: does not apply to memory (no other process can share a memory store)", () => {})
      it.skip("a crash-poison job on real processes: does not apply to memory (no other process can share a memory store)", () => {})
      return
    }

    test(
      "a taker killed with SIGKILL: its job comes back after the lease, its attempt counted, and another taker finishes it",
      (env) =>
        Effect.gen(function*() {
          const queue = yield* env.make({
            name: "jobs",
            schema: Schema.Number,
            pollInterval: "20 millis",
            // 600 ms, as in the several-leases case (a 400 ms stall to lapse): the wait after the kill is the lease,
            // and 1 s cost 0.4 s more on each store.
            leaseDuration: "600 millis"
          })
          const child = spawnFixture("test/fixtures/durable-contract.ts", [
            ...env.fixtureArgs!,
            "hang",
            "jobs",
            "600",
            "3"
          ])
          yield* Effect.addFinalizer(() => Effect.sync(() => child.kill()))
          yield* Effect.promise(() => child.waitFor((l) => l === "ready"))
          const id = yield* queue.offer(9)
          yield* Effect.promise(() => child.waitFor((l) => l === `took ${id}`))
          child.kill("SIGKILL")
          expect(yield* Effect.promise(() => child.exited())).toBe("SIGKILL")
          const exit = yield* queue.take((n, job) => Effect.succeed([n, job.id, job.attempt])).pipe(
            Effect.timeout("15 seconds")
          )
          expect(exit).toEqual(Exit.succeed([9, id, 2]))
        }),
      60_000
    )

    test(
      "a crash-poison job (process.exit in its handler) dead-letters after maxAttempts while every other job is done",
      (env) =>
        Effect.gen(function*() {
          const queue = yield* env.make({
            name: "jobs",
            schema: Schema.Number,
            pollInterval: "20 millis",
            // Each of the two poison runs is followed by a lapsed lease: 600 ms, not 1 s, saves 0.8 s a store.
            leaseDuration: "600 millis",
            maxAttempts: 2
          })
          yield* Effect.forEach(Array.from({ length: 40 }, (_, i) => i), (i) => queue.offer(i, { id: `j${i}` }), {
            discard: true
          })
          yield* queue.offer(-1, { id: "poison" })
          const done = new Set<string>()
          const poisonRuns: Array<number> = []
          let spawned = 0
          // One runner at a time; each one the poison kills is replaced, as a supervisor would.
          while (done.size < 40 || (yield* queue.deadLetters).length === 0) {
            expect(spawned++).toBeLessThan(6)
            const child = spawnFixture("test/fixtures/durable-contract.ts", [
              ...env.fixtureArgs!,
              "poison",
              "jobs",
              "600",
              "2"
            ])
            yield* Effect.addFinalizer(() => Effect.sync(() => child.kill()))
            let exited = false
            child.exited(120_000).then(() => (exited = true), () => {})
            // Until it dies (the poison) or all is done: every other job done and the poison a dead letter.
            for (let i = 0; i < 6_000 && !exited; i++) {
              const finished = done.size + child.lines.filter((l) => l.startsWith("done ")).length >= 40 &&
                (yield* queue.deadLetters).length === 1
              if (finished) child.kill("SIGTERM")
              yield* Effect.sleep("20 millis")
            }
            yield* Effect.promise(() => child.exited())
            for (const line of child.lines) {
              if (line.startsWith("done ")) done.add(line.slice(5))
              if (line.startsWith("poison ")) poisonRuns.push(Number(line.slice(7)))
            }
          }
          expect(done.size).toBe(40)
          // An attempt is counted when the job is leased, not when it runs: a lease that lapses before its runner
          // starts (or dead-letters) the job counts one more. Beside 20 busy processes a freshly started runner
          // stalled past its 600 ms lease (a refresh every 200 ms) and the poison was dead-lettered at attempt 3 of
          // 2 after two runs. So: it ran at most maxAttempts times, never past its last attempt, each attempt once;
          // it is dead after at least maxAttempts; and when no lease lapsed unrun (dead at exactly 2), both ran.
          const dead = yield* queue.deadLetters
          expect(dead.map((letter) => letter.id)).toEqual(["poison"])
          const deadAt = dead[0]!.attempts
          expect(poisonRuns.length).toBeGreaterThanOrEqual(1)
          expect(poisonRuns.every((attempt) => attempt >= 1 && attempt <= 2)).toBe(true)
          expect(new Set(poisonRuns).size).toBe(poisonRuns.length)
          expect(deadAt).toBeGreaterThanOrEqual(Math.max(2, ...poisonRuns))
          if (deadAt === 2) expect([...poisonRuns].sort()).toEqual([1, 2])
          expect(dead[0]!.lastError).toBe(
            `leased ${deadAt} times, maxAttempts 2: the last lease (600 ms) lapsed without a settlement ` +
              "(its runner died, hung past the lease, or lost the store)"
          )
          yield* eventually(queue.size, (n) => n === 0)
        }),
      120_000
    )
  })

/** A Proxy already revoked: any read of it throws a TypeError. */
const revoked = (): object => {
  const { proxy, revoke } = Proxy.revocable({}, {})
  revoke()
  return proxy
}
