/**
 * `DurableQueue.memory` where TestClock is the point: `run`'s graceful shutdown, the lease, a waiting taker at
 * scope close; and its encoding. The contract (offer by id, attempts, dead letters, interruption, …) runs on the
 * memory store with every other store in test/helpers/durableContract.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import * as DurableQueue from "../src/DurableQueue.js"
import * as core from "../src/internal/durableQueue/core.js"
import { codec, notJson } from "../src/internal/durableQueue/encoding.js"
import { MemoryStore } from "../src/internal/durableQueue/memoryStore.js"
import { queueSettings, randomId } from "../src/internal/durableQueue/options.js"
import type { Store } from "../src/internal/durableQueue/store.js"
import { OptionError } from "../src/OptionError.js"
import { eventually } from "./helpers/storePort.js"

const queueOf = (maxAttempts = 3) => DurableQueue.memory({ name: "jobs", schema: Schema.Number, maxAttempts })

/** Lets forked fibers run until `done` holds (bounded). */
const settle = (done: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1_000 && !done(); i++) yield* Effect.yieldNow()
    expect(done()).toBe(true)
  })

describe("DurableQueue.memory", () => {
  it.scoped("run: interrupted, it takes nothing new and lets the running job finish and be acknowledged (TestClock)", () =>
    Effect.gen(function*() {
      const queue = yield* queueOf()
      yield* queue.offer(1)
      yield* queue.offer(2)
      const started: Array<number> = []
      const finished: Array<number> = []
      const runner = yield* Effect.fork(
        queue.run((n) =>
          Effect.zipRight(
            Effect.sync(() => started.push(n)),
            Effect.zipRight(Effect.sleep("10 seconds"), Effect.sync(() => finished.push(n)))
          )
        )
      )
      yield* settle(() => started.length === 1)
      const stopping = yield* Effect.fork(Fiber.interrupt(runner))
      yield* TestClock.adjust("9 seconds")
      expect(Option.isNone(yield* Fiber.poll(stopping))).toBe(true)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(stopping)
      expect(started).toEqual([1])
      expect(finished).toEqual([1])
      // Job 2 was never taken; job 1 was acknowledged.
      expect(yield* queue.size).toBe(1)
      expect(yield* queue.take((n) => Effect.succeed(n))).toEqual(Exit.succeed(2))
    }))

  it.scoped("run: a job still running after shutdownTimeout is abandoned and the shutdown completes (TestClock)", () =>
    Effect.gen(function*() {
      const queue = yield* queueOf()
      yield* queue.offer(1)
      let started = false
      const runner = yield* Effect.fork(
        queue.run(() => Effect.zipRight(Effect.sync(() => (started = true)), Effect.never), {
          shutdownTimeout: "5 seconds"
        })
      )
      yield* settle(() => started)
      const stopping = yield* Effect.fork(Fiber.interrupt(runner))
      yield* TestClock.adjust("4 seconds")
      expect(Option.isNone(yield* Fiber.poll(stopping))).toBe(true)
      yield* TestClock.adjust("1 second")
      yield* settle(() => Effect.runSync(Fiber.poll(stopping)).pipe(Option.isSome))
    }))

  it.scoped("runBatch maxWait: a taker holding fewer than size runs them when maxWait has passed, not before (TestClock)", () =>
    Effect.gen(function*() {
      const queue = yield* queueOf()
      yield* queue.offer(1)
      const calls: Array<ReadonlyArray<number>> = []
      yield* Effect.fork(queue.runBatch((values) => Effect.sync(() => calls.push(values)), {
        size: 10,
        maxWait: "2 seconds"
      }))
      yield* settle(() => Effect.runSync(Effect.map(queue.counts, (c) => c.running === 1)))
      yield* TestClock.adjust("1 second")
      yield* queue.offer(2)
      yield* TestClock.adjust("999 millis")
      expect(calls).toEqual([])
      yield* TestClock.adjust("1 millis")
      yield* settle(() => calls.length === 1)
      expect(calls).toEqual([[1, 2]])
    }))

  it.scoped("runBatch: a batch still running after shutdownTimeout is abandoned to its leases; the shutdown completes (TestClock)", () =>
    Effect.gen(function*() {
      const queue = yield* queueOf()
      yield* queue.offer(1)
      yield* queue.offer(2)
      let started = 0
      const runner = yield* Effect.fork(
        queue.runBatch(() => Effect.zipRight(Effect.sync(() => started++), Effect.never), {
          shutdownTimeout: "5 seconds"
        })
      )
      yield* settle(() => started === 1)
      const stopping = yield* Effect.fork(Fiber.interrupt(runner))
      yield* TestClock.adjust("4 seconds")
      expect(Option.isNone(yield* Fiber.poll(stopping))).toBe(true)
      yield* TestClock.adjust("1 second")
      yield* settle(() => Effect.runSync(Fiber.poll(stopping)).pipe(Option.isSome))
      expect(started).toBe(1)
      // Both jobs are still leased to the abandoned batch: neither done nor handed out again.
      expect((yield* queue.counts).running).toBe(2)
    }))

  it.scoped("runBatch's types: with `result` the handler must succeed with a ReadonlyArray of the schema's type; without it, with anything (tsc checks the @ts-expect-error lines)", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({ name: "types", schema: Schema.Number })
      // Type-checked only (test/ is in tsconfig.json's include): `checks` is never called.
      const withResult: DurableQueue.RunBatchOptions<string> = { result: Schema.String, size: 10 }
      const checks = () => [
        queue.runBatch((values) => Effect.succeed(values.map(String)), { result: Schema.String }),
        // The schema's Type is what the handler gives; its Encoded (here string) is what is stored.
        queue.runBatch((values) => Effect.succeed(values), { result: Schema.NumberFromString, size: 10 }),
        queue.runBatch((values) => Effect.fail(new DurableQueue.BatchFailure({ failures: [], results: values })), {
          result: Schema.Number
        }),
        queue.runBatch(() => Effect.void),
        queue.runBatch(() => Effect.succeed(42), { size: 5 }),
        // @ts-expect-error with `result`, the handler succeeds with an array of results, not one value
        queue.runBatch(() => Effect.succeed(42), { result: Schema.Number }),
        // @ts-expect-error with `result`, void is no array of results
        queue.runBatch(() => Effect.void, { result: Schema.Number }),
        // @ts-expect-error the results are the schema's Type (numbers here), not strings
        queue.runBatch((values) => Effect.succeed(values.map(String)), { result: Schema.Number }),
        // @ts-expect-error `result` is a Schema
        queue.runBatch((values) => Effect.succeed(values), { result: "number" }),
        // Options built apart, typed with the exported RunBatchOptions<X> (rejected by both overloads before).
        queue.runBatch((values) => Effect.succeed(values.map(String)), withResult),
        // @ts-expect-error unknown results are not the schema's numbers
        queue.runBatch((values) => Effect.succeed(values as ReadonlyArray<unknown>), { result: Schema.Number }),
        // @ts-expect-error with an array schema, one array per job
        queue.runBatch((values) => Effect.succeed(values), { result: Schema.Array(Schema.Number) }),
        // @ts-expect-error a RunBatchOptions<string> asks for strings, not numbers
        queue.runBatch((values) => Effect.succeed(values), withResult)
      ]
      expect(typeof checks).toBe("function")
    }))

  it("DurableQueueError's message names a cause that String() cannot print (a null-prototype object) by its type", () => {
    const error = new DurableQueue.DurableQueueError({
      reason: "StoreFailed",
      backend: "memory",
      queue: "jobs",
      cause: Object.create(null)
    })
    expect(error.message).toContain("a object that cannot be printed")
  })

  /** A schema whose encode or decode THROWS (a transform's bug) for one value, instead of failing. */
  const throwingAt = (bad: number, side: "encode" | "decode") =>
    Schema.transform(Schema.Number, Schema.Number, {
      strict: true,
      decode: (n) => {
        if (side === "decode" && n === bad) throw new Error(`the ${side}r threw`)
        return n
      },
      encode: (n) => {
        if (side === "encode" && n === bad) throw new Error(`the ${side}r threw`)
        return n
      }
    })

  it.scopedLive("runBatch result: a result schema whose encoding throws is a result that cannot be encoded: that job is done without it (as in run); the others of the batch keep theirs", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({
        name: "throwing-result",
        schema: Schema.Number,
        maxAttempts: 2,
        pollInterval: "10 millis",
        backoff: DurableQueue.Backoff.none
      })
      const Hostile = throwingAt(10, "encode")
      yield* queue.offerAll([0, 1, 2, 3].map((n) => ({ value: n, id: `h${n}` })))
      const seen: Array<string> = []
      yield* Effect.forkScoped(queue.runBatch((values, jobs) => {
        seen.push(...jobs.map((job) => `${job.id}@${job.attempt}`))
        return Effect.succeed(values.map((n) => n * 10))
      }, { size: 10, result: Hostile }))
      yield* eventually(queue.size, (n) => n === 0)
      // Before, the throw in `complete` failed h1 and every job after it in the batch; then (a first fix) h1 alone.
      expect(seen.sort()).toEqual(["h0@1", "h1@1", "h2@1", "h3@1"])
      expect(yield* queue.deadLetters).toEqual([])
      expect(yield* queue.result("h1", Hostile)).toEqual(Option.none())
      for (const n of [0, 2, 3]) expect(yield* queue.result(`h${n}`, Hostile)).toEqual(Option.some(n * 10))
    }))

  it.scopedLive("runBatch result: results that throw as they are read (a Proxy's length, a revoked Proxy, a BatchFailure's results getter) fail every job with ResultsMismatch, as results not one per job do; the taker goes on at once", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({
        name: "hostile-results",
        schema: Schema.Number,
        maxAttempts: 4,
        pollInterval: "10 millis",
        backoff: DurableQueue.Backoff.none
      })
      const warnings: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel._tag === "Warning") warnings.push(String(message))
      })
      yield* queue.offerAll([0, 1, 2].map((n) => ({ value: n, id: `x${n}` })))
      const seen: Array<string> = []
      const started = yield* Clock.currentTimeMillis
      yield* Effect.forkScoped(
        queue.runBatch((values, jobs) => {
          seen.push(...jobs.map((job) => `${job.id}@${job.attempt}`))
          const results = values.map((n) => n * 10)
          switch (jobs[0].attempt) {
            case 1:
              return Effect.succeed(
                new Proxy(results, {
                  get: (target, key) => {
                    if (key === "length") throw new Error("a hostile length")
                    return Reflect.get(target, key)
                  }
                })
              )
            case 2: {
              const { proxy, revoke } = Proxy.revocable(results, {})
              revoke()
              return Effect.succeed(proxy)
            }
            case 3: {
              const failure = new DurableQueue.BatchFailure({ failures: [] })
              Object.defineProperty(failure, "results", {
                get: () => {
                  throw new Error("a hostile results getter")
                }
              })
              return Effect.fail(failure)
            }
            default:
              return Effect.succeed(results)
          }
        }, { size: 10, result: Schema.Number }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
      )
      yield* eventually(queue.size, (n) => n === 0)
      // Before, each throw was a defect of the batch code: "taking a job failed; retrying" and a 500 ms pause each.
      expect(warnings.filter((warning) => warning.includes("taking a job failed"))).toEqual([])
      expect((yield* Clock.currentTimeMillis) - started).toBeLessThan(1_000)
      expect(seen.sort()).toEqual(["x0", "x1", "x2"].flatMap((id) => [1, 2, 3, 4].map((a) => `${id}@${a}`)))
      for (const n of [0, 1, 2]) {
        const status = Option.getOrThrow(yield* queue.status(`x${n}`))
        expect(status).toMatchObject({ state: "done", attempts: 4 })
        expect(status.lastError).toContain("the batch's results are not one per job")
        expect(status.lastError).toContain("a hostile results getter")
        expect(yield* queue.result(`x${n}`, Schema.Number)).toEqual(Option.some(n * 10))
      }
    }))

  it.scopedLive("run: a result schema whose encoding throws is a result that cannot be encoded: the job is done, not run again", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({
        name: "throwing-result-run",
        schema: Schema.Number,
        pollInterval: "10 millis",
        backoff: DurableQueue.Backoff.none
      })
      const Hostile = throwingAt(10, "encode")
      yield* queue.offerAll([0, 1, 2].map((n) => ({ value: n, id: `r${n}` })))
      const seen: Array<string> = []
      yield* Effect.forkScoped(queue.run((n, job) => {
        seen.push(`${job.id}@${job.attempt}`)
        return Effect.succeed(n * 10)
      }, { result: Hostile }))
      yield* eventually(queue.size, (n) => n === 0)
      // Before, the throw escaped `complete`: r1 was put back and run again ("taking a job failed; retrying").
      expect(seen.sort()).toEqual(["r0@1", "r1@1", "r2@1"])
      expect(yield* queue.result("r1", Hostile)).toEqual(Option.none())
      expect(yield* queue.result("r2", Hostile)).toEqual(Option.some(20))
    }))

  it.scoped("offer: an item schema whose encoding throws fails that offer with EncodeFailed naming the job, not a defect", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({ name: "throwing-offer", schema: throwingAt(7, "encode") })
      const error = yield* Effect.flip(queue.offer(7, { id: "seven" }))
      expect(error).toMatchObject({ reason: "EncodeFailed", id: "seven" })
      expect(error.message).toContain("the encoder threw")
      const many = yield* Effect.flip(queue.offerAll([{ value: 1, id: "one" }, { value: 7, id: "bad" }]))
      expect(many).toMatchObject({ reason: "EncodeFailed", id: "bad" })
      expect(yield* queue.offer(8, { id: "eight" })).toBe("eight")
      expect(yield* queue.size).toBe(1)
    }))

  it.scopedLive("a schema that throws what String() cannot print (a null-prototype object) is caught as any throw: offer's EncodeFailed, run's result not kept (the job not run again), result(id)'s DecodeFailed", () =>
    Effect.gen(function*() {
      const unprintable = (bad: number, side: "encode" | "decode") =>
        Schema.transform(Schema.Number, Schema.Number, {
          strict: true,
          decode: (n) => {
            if (side === "decode" && n === bad) throw Object.create(null)
            return n
          },
          encode: (n) => {
            if (side === "encode" && n === bad) throw Object.create(null)
            return n
          }
        })
      const offered = yield* DurableQueue.memory({ name: "unprintable-offer", schema: unprintable(7, "encode") })
      // Before, String(thrown) threw a TypeError in the codec's catch: the offer died with it.
      expect(yield* Effect.flip(offered.offer(7, { id: "seven" }))).toMatchObject({
        reason: "EncodeFailed",
        id: "seven"
      })
      const queue = yield* DurableQueue.memory({
        name: "unprintable-run",
        schema: Schema.Number,
        pollInterval: "10 millis",
        backoff: DurableQueue.Backoff.none
      })
      yield* queue.offerAll([0, 1, 2].map((n) => ({ value: n, id: `u${n}` })))
      const seen: Array<string> = []
      yield* Effect.forkScoped(queue.run((n, job) => {
        seen.push(`${job.id}@${job.attempt}`)
        return Effect.succeed(n * 10)
      }, { result: unprintable(10, "encode") }))
      yield* eventually(queue.size, (n) => n === 0)
      expect(seen.sort()).toEqual(["u0@1", "u1@1", "u2@1"])
      expect(yield* queue.result("u1", Schema.Number)).toEqual(Option.none())
      expect(yield* queue.result("u2", Schema.Number)).toEqual(Option.some(20))
      expect(yield* Effect.flip(queue.result("u2", unprintable(20, "decode")))).toMatchObject({
        reason: "DecodeFailed",
        id: "u2"
      })
    }))

  it.scopedLive("a value whose getter throws as the codec checks it is plain JSON (Schema.Unknown passes it through) fails that value alone: offer's EncodeFailed; run's and runBatch's result not kept, the job done, not run again", () =>
    Effect.gen(function*() {
      const hostile = () => ({
        get x(): number {
          throw new Error("a getter that throws")
        }
      })
      const offered = yield* DurableQueue.memory({ name: "getter-offer", schema: Schema.Unknown })
      // Before, `notJson` read the getter outside the codec's guard: offer and offerAll died with its throw.
      expect(yield* Effect.flip(offered.offer(hostile(), { id: "g" }))).toMatchObject({
        reason: "EncodeFailed",
        id: "g"
      })
      expect(yield* Effect.flip(offered.offerAll([{ value: 1, id: "one" }, { value: hostile(), id: "bad" }])))
        .toMatchObject({ reason: "EncodeFailed", id: "bad" })
      const queue = yield* DurableQueue.memory({
        name: "getter-results",
        schema: Schema.Number,
        pollInterval: "10 millis",
        backoff: DurableQueue.Backoff.none
      })
      yield* queue.offerAll([0, 1, 2].map((n) => ({ value: n, id: `r${n}` })))
      const seen: Array<string> = []
      const runner = yield* Effect.forkScoped(queue.run((n, job) => {
        seen.push(`${job.id}@${job.attempt}`)
        return Effect.succeed(n === 1 ? hostile() : n)
      }, { result: Schema.Unknown }))
      yield* eventually(queue.size, (n) => n === 0)
      yield* Fiber.interrupt(runner)
      yield* queue.offerAll([0, 1, 2].map((n) => ({ value: n, id: `b${n}` })))
      yield* Effect.forkScoped(queue.runBatch((values, jobs) => {
        seen.push(...jobs.map((job) => `${job.id}@${job.attempt}`))
        return Effect.succeed(values.map((n) => n === 1 ? hostile() : n))
      }, { size: 10, result: Schema.Unknown }))
      yield* eventually(queue.size, (n) => n === 0)
      // Before: r1 and b1 ran 3 times (dead letters), run's taker logging "taking a job failed; retrying".
      expect(seen.sort()).toEqual(["b0@1", "b1@1", "b2@1", "r0@1", "r1@1", "r2@1"])
      for (const id of ["r1", "b1"]) {
        expect(Option.getOrThrow(yield* queue.status(id))).toMatchObject({ state: "done", attempts: 1 })
        expect(yield* queue.result(id, Schema.Unknown)).toEqual(Option.none())
      }
      expect(yield* queue.result("b2", Schema.Unknown)).toEqual(Option.some(2))
    }))

  it.scopedLive("a schema whose Effect interrupts itself (transformOrFail's Effect.interrupt) is a failure of that value: run's and runBatch's result not kept (the job done once), a payload fails its job alone (counted), offer fails with EncodeFailed", () =>
    Effect.gen(function*() {
      const interruptingAt = (bad: number, side: "encode" | "decode") =>
        Schema.transformOrFail(Schema.Number, Schema.Number, {
          strict: true,
          decode: (n) => side === "decode" && n === bad ? Effect.interrupt : ParseResult.succeed(n),
          encode: (n) => side === "encode" && n === bad ? Effect.interrupt : ParseResult.succeed(n)
        })
      const offered = yield* DurableQueue.memory({ name: "interrupting-offer", schema: interruptingAt(7, "encode") })
      expect(yield* Effect.flip(offered.offer(7, { id: "seven" }))).toMatchObject({
        reason: "EncodeFailed",
        id: "seven"
      })
      const queue = yield* DurableQueue.memory({
        name: "interrupting-results",
        schema: Schema.Number,
        pollInterval: "10 millis",
        backoff: DurableQueue.Backoff.none
      })
      const seen: Array<string> = []
      // Bounded: before, each run of the job went back uncounted (an interruption) and ran again at once, without end.
      const ran = (ids: ReadonlyArray<string>) => {
        seen.push(...ids)
        return seen.length > 20
      }
      yield* queue.offerAll([0, 1, 2].map((n) => ({ value: n, id: `r${n}` })))
      const runner = yield* Effect.forkScoped(
        queue.run((n, job) => ran([`${job.id}@${job.attempt}`]) ? Effect.never : Effect.succeed(n * 10), {
          result: interruptingAt(10, "encode")
        })
      )
      yield* eventually(
        Effect.map(queue.size, (size) => ({ size, seen: [...seen] })),
        (now) => now.size === 0 || now.seen.length > 20
      )
      yield* Fiber.interrupt(runner)
      yield* queue.offerAll([0, 1, 2].map((n) => ({ value: n, id: `b${n}` })))
      yield* Effect.forkScoped(
        queue.runBatch((values, jobs) =>
          ran(jobs.map((job) => `${job.id}@${job.attempt}`))
            ? Effect.never
            : Effect.succeed(values.map((n) => n * 10)), {
          size: 10,
          result: interruptingAt(10, "encode")
        })
      )
      yield* eventually(
        Effect.map(queue.size, (size) => ({ size, seen: [...seen] })),
        (now) => now.size === 0 || now.seen.length > 20
      )
      expect(seen.sort()).toEqual(["b0@1", "b1@1", "b2@1", "r0@1", "r1@1", "r2@1"])
      expect(yield* queue.result("r1", Schema.Number)).toEqual(Option.none())
      expect(yield* queue.result("b2", Schema.Number)).toEqual(Option.some(20))
      const decoding = yield* DurableQueue.memory({
        name: "interrupting-decode",
        schema: interruptingAt(13, "decode"),
        maxAttempts: 2,
        pollInterval: "10 millis",
        backoff: DurableQueue.Backoff.none
      })
      yield* decoding.offerAll([12, 13, 14].map((n) => ({ value: n, id: `d${n}` })))
      const values: Array<number> = []
      yield* Effect.forkScoped(decoding.runBatch((batch) => Effect.sync(() => values.push(...batch)), { size: 10 }))
      yield* eventually(
        Effect.map(decoding.size, (size) => ({ size, values: [...values] })),
        (now) => now.size === 0 || now.values.length > 20
      )
      expect(values.sort()).toEqual([12, 14])
      expect(Option.getOrThrow(yield* decoding.status("d13"))).toMatchObject({ state: "dead", attempts: 2 })
    }))

  it.scopedLive("run: an item schema whose decoding throws fails that job alone, as a payload that does not decode; its neighbours run", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({
        name: "throwing-decode",
        schema: throwingAt(13, "decode"),
        maxAttempts: 1,
        pollInterval: "10 millis"
      })
      yield* queue.offerAll([12, 13, 14].map((n) => ({ value: n, id: `d${n}` })))
      const ran: Array<number> = []
      yield* Effect.forkScoped(queue.run((n) => Effect.sync(() => ran.push(n)), { concurrency: 4 }))
      yield* eventually(queue.size, (n) => n === 0)
      expect(ran.sort()).toEqual([12, 14])
      const letters = yield* queue.undecodableDeadLetters
      expect(letters.map((letter) => letter.id)).toEqual(["d13"])
    }))

  it.effect("runBatch: the queue closing under a taker waiting out maxWait puts its jobs back uncounted, never run", () =>
    Effect.gen(function*() {
      const store = new MemoryStore(30_000)
      const settings = yield* queueSettings({ name: "jobs", schema: Schema.Number })
      let calls = 0
      yield* Effect.scoped(Effect.gen(function*() {
        const queue = yield* core.make(store, settings, Schema.Number)
        yield* queue.offer(1, { id: "held" })
        yield* Effect.fork(queue.runBatch(() => Effect.sync(() => calls++), { maxWait: "1 hour" }))
        yield* settle(() => Effect.runSync(Effect.map(queue.counts, (c) => c.running === 1)))
        // Leased into the buffer; a few more turns and the taker holds it, waiting for more (closed before that,
        // the buffer's put-back would release it: the mutation of `release` into `start` then passed).
        for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
      }))
      // Once the taker has settled it either way (put back, or run and acknowledged):
      yield* settle(() => Effect.runSync(Effect.map(store.counts, (c) => c.running === 0)))
      expect(calls).toBe(0)
      yield* Effect.scoped(Effect.gen(function*() {
        const queue = yield* core.make(store, settings, Schema.Number)
        expect(Option.getOrThrow(yield* queue.status("held"))).toMatchObject({ state: "waiting", attempts: 0 })
      }))
    }))

  it.effect("closing the scope stops a waiting taker instead of leaving it hanging", () =>
    Effect.gen(function*() {
      let waiting: Fiber.RuntimeFiber<Exit.Exit<void, never>, DurableQueue.DurableQueueError> | undefined
      yield* Effect.scoped(Effect.gen(function*() {
        const queue = yield* queueOf()
        waiting = yield* Effect.fork(queue.take(() => Effect.void))
        yield* Effect.yieldNow()
      }))
      const exit = yield* Fiber.await(waiting!)
      expect(Exit.isInterrupted(exit)).toBe(true)
    }))

  it.effect("bad options fail with OptionError naming the field", () =>
    Effect.gen(function*() {
      for (
        const [options, field] of [[{ maxAttempts: 0 }, "maxAttempts"], [{ leaseDuration: -1 }, "leaseDuration"], [{
          name: ""
        }, "name"]] as const
      ) {
        const error = yield* Effect.flip(
          Effect.scoped(DurableQueue.memory({ name: "q", schema: Schema.Number, ...options }))
        )
        expect(error).toBeInstanceOf(OptionError)
        expect(error.message).toContain(field)
      }
    }))

  /** A memory queue leasing for 10 s (polling every 1 s) holding job "a" (value 4), and its store. */
  const jobAWithLease10s = (extra: { readonly maxAttempts?: number } = {}) =>
    Effect.gen(function*() {
      const settings = yield* queueSettings({
        name: "jobs",
        schema: Schema.Number,
        leaseDuration: "10 seconds",
        pollInterval: "1 second",
        ...extra
      })
      const store = new MemoryStore(settings.leaseMillis)
      const queue = yield* core.make(store, settings, Schema.Number)
      yield* queue.offer(4, { id: "a" })
      return { queue, store }
    })

  it.scoped("the lease is read through Clock: a job whose runner died comes back when TestClock passes its lease, that attempt counted", () =>
    Effect.gen(function*() {
      const { queue, store } = yield* jobAWithLease10s()
      // A runner leases it and dies: no refresh, no settlement.
      expect((yield* store.lease(1)).map((job) => [job.id, job.attempts])).toEqual([["a", 1]])
      const taker = yield* Effect.fork(queue.take((n, job) => Effect.succeed([n, job.attempt])))
      yield* TestClock.adjust("9 seconds")
      expect(Option.isNone(yield* Fiber.poll(taker))).toBe(true)
      yield* TestClock.adjust("2 seconds")
      expect(yield* Fiber.join(taker)).toEqual(Exit.succeed([4, 2]))
    }))

  it.scoped("a job whose lease lapses maxAttempts times is a dead letter saying how often it was leased, never 'attempt 3 of 2' (TestClock)", () =>
    Effect.gen(function*() {
      const { queue, store } = yield* jobAWithLease10s({ maxAttempts: 2 })
      // Two runners lease it and die (no refresh, no settlement); TestClock passes each lease.
      for (const attempt of [1, 2]) {
        expect((yield* store.lease(1)).map((job) => [job.id, job.attempts])).toEqual([["a", attempt]])
        yield* TestClock.adjust("11 seconds")
      }
      yield* queue.offer(5, { id: "b" })
      // A live taker leases it a third time: dead-lettered, not run; it runs "b".
      expect(yield* queue.take((n, job) => Effect.succeed([n, job.id]))).toEqual(Exit.succeed([5, "b"]))
      expect(yield* queue.deadLetters).toEqual([{
        id: "a",
        value: 4,
        attempts: 2,
        lastError: "leased 2 times, maxAttempts 2: the last lease (10000 ms) lapsed without a settlement " +
          "(its runner died, hung past the lease, or lost the store)"
      }])
    }))

  it.effect("eventually (test helper): returns the value that held; after `within` of real time, even under TestClock, it fails the test with its message, its tries, the last value and the caller's line", () =>
    Effect.gen(function*() {
      let reads = 0
      const count = Effect.sync(() => ++reads)
      // Tries every 10 ms of real time: this test's TestClock, which nobody moves, would hold it forever.
      expect(yield* eventually(count, (n) => n >= 3)).toBe(3)
      reads = 0
      const started = Date.now()
      const exit = yield* Effect.exit(
        eventually(count, (n) => n < 0, { message: "a negative count", within: "200 millis" })
      )
      expect(Date.now() - started).toBeGreaterThanOrEqual(200)
      expect(reads).toBeGreaterThan(1)
      const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
      expect(error).toBeInstanceOf(Error)
      expect((error as Error).name).toBe("EventuallyTimeout")
      expect((error as Error).message).toBe(
        `eventually: a negative count did not hold within 200 ms (${reads} tries); last observed: ${reads}`
      )
      expect((error as Error).stack).toContain("DurableQueue.memory.test.ts")
      // Without a message it names `until` by its source; the value is shown as util.inspect shows it.
      const unnamed = yield* Effect.exit(
        eventually(Effect.succeed({ state: "running", ids: ["a"] }), (s) => s.state === "done", { within: "20 millis" })
      )
      expect(Exit.isFailure(unnamed) && Cause.squash(unnamed.cause)).toMatchObject({
        message: expect.stringMatching(
          /^eventually: \(s\) => s\.state === "done" did not hold within 20 ms \(\d+ tries\); last observed: \{ state: 'running', ids: \[ 'a' \] \}$/
        )
      })
    }))

  it.scoped("refuses what a real store would: a function inside a Schema.Unknown value is EncodeFailed, not undefined later", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({ name: "jobs", schema: Schema.Unknown })
      const error = yield* Effect.flip(queue.offer({ run: () => 1 }, { id: "f" }))
      expect(error).toMatchObject({ reason: "EncodeFailed", id: "f", backend: "memory" })
      expect(error.message).toContain("is a function")
    }))
  it("notJson: flat values pass at once; the shortcut refuses nothing the full walk refuses (same reasons)", () => {
    for (const ok of [{ n: 1 }, [1, "a", null, true], "s", 0, null, { a: undefined, b: "x" }, Object.create(null)]) {
      expect(notJson(ok)).toBeUndefined()
    }
    const shared = { x: 1 }
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    const cases: ReadonlyArray<readonly [unknown, string]> = [
      [{ n: Number.NaN }, "the value.n is NaN"],
      [[1, undefined], "the value[1] is undefined"],
      [[1, , 2], "the value[1] is undefined"], // eslint-disable-line no-sparse-arrays
      [{ f: () => 1 }, "the value.f is a function"],
      [{ b: 1n }, "the value.b is a bigint"],
      [new Date(0), "the value is a Date"],
      [{ d: new Map() }, "the value.d is a Map"],
      [{ a: shared, b: shared }, "cycle or shared reference"],
      [cyclic, "cycle or shared reference"],
      [Infinity, "the value is Infinity"]
    ]
    for (const [bad, why] of cases) expect(notJson(bad)).toContain(why)
  })

  /** The Unix ms of a UUIDv7: its first 12 hex digits. */
  const millisOf = (id: string) => Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16)
  const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

  it("randomId: RFC 9562 version 7 UUIDs of now, flat strings, distinct over 100,000 (many refills of its bytes)", () => {
    const before = Date.now()
    const ids = Array.from({ length: 100_000 }, () => randomId())
    const after = Date.now()
    expect(new Set(ids).size).toBe(100_000)
    // One expect for all (400,000 took 1.8 s): the ids not v7 or not of [before, after].
    expect(ids.filter((id) => !V7.test(id) || millisOf(id) < before || millisOf(id) > after).slice(0, 3)).toEqual([])
    // Every hex digit appears in every random position (rand_b) and the counter's last two, the variant's 4 in its (a
    // stuck nibble would not).
    for (const at of [16, 17, 20, 21, 24, 30, 35]) expect(new Set(ids.map((id) => id[at])).size).toBe(16)
    expect(new Set(ids.map((id) => id[19])).size).toBe(4)
  })

  it("randomId: ids sort in the order they were made (as text, PostgreSQL's byte order), by ms then by counter", () => {
    // Ids until the clock has moved on 3 times (an id after each move: 3 ms at least among them, however long the
    // process is descheduled; a deadline of start + 3 ms saw 2 once at load 15): ordered by time across ms, by rand_a's
    // counter within one.
    const ids: Array<string> = []
    let last = Date.now()
    for (let moves = 0; moves < 3;) {
      ids.push(randomId())
      const now = Date.now()
      if (now !== last) [moves, last] = [moves + 1, now]
    }
    ids.push(randomId())
    const ms = ids.map(millisOf)
    const counter = (id: string) => Number.parseInt(id.slice(15, 18), 16)
    expect(new Set(ms).size).toBeGreaterThanOrEqual(3)
    const wrong: Array<string> = []
    for (let i = 1; i < ids.length; i++) {
      const [a, b] = [ids[i - 1]!, ids[i]!]
      if (ms[i]! < ms[i - 1]!) wrong.push(`${a} then ${b}: an earlier ms`)
      else if (ms[i]! > ms[i - 1]! && !(b > a)) wrong.push(`${a} then ${b}: a later ms sorts first`)
      // Within one ms the counter goes up by one; past 4,095 it wraps (the only place the order breaks).
      else if (ms[i] === ms[i - 1] && counter(b) !== ((counter(a) + 1) & 0xfff)) wrong.push(`${a} then ${b}: counter`)
      else if (ms[i] === ms[i - 1] && counter(b) !== 0 && !(b > a)) wrong.push(`${a} then ${b}: not after`)
    }
    expect(wrong.slice(0, 3)).toEqual([])
    // A new ms starts the counter below 2,048, so at least 2,048 ids of one ms keep their order.
    for (let i = 1; i < ids.length; i++) if (ms[i]! > ms[i - 1]!) expect(counter(ids[i]!)).toBeLessThan(2048)
  })

  it.scoped("offer and offerAll without an id return UUIDv7s of the offer's time (Date.now, not the TestClock at 0)", () =>
    Effect.gen(function*() {
      const queue = yield* queueOf()
      const before = Date.now()
      const id = yield* queue.offer(1)
      // The usual entries (options.ts `usualJob`) and one through `resolveOffer` (a duration as text).
      const ids = yield* queue.offerAll([{ value: 2 }, { value: 3, priority: 1 }, { value: 4, delay: "10 millis" }])
      const after = Date.now()
      for (const one of [id, ...ids]) {
        expect(one).toMatch(V7)
        expect(millisOf(one)).toBeGreaterThanOrEqual(before)
        expect(millisOf(one)).toBeLessThanOrEqual(after)
      }
      expect(new Set([id, ...ids]).size).toBe(4)
    }))

  // ---- issue #11 where time is the point (TestClock); the same features run on every store in the contract suite.

  /**
   * Forks a taker and returns when (TestClock, in steps of `step` ms) it got a job, at most `limit` ms later: the
   * time from `since` (default: now). A job due between two steps starts at its due time, inside `TestClock.adjust`,
   * and the adjust then moves the clock on to the step's end: a retry's delay must be measured from the time the
   * previous attempt failed (pass it as `since`), not from the step's end, or a 1,600 ms delay reads as 1,598 (CI).
   */
  const takenAfter = <X>(
    queue: DurableQueue.DurableQueue<number>,
    handler: (n: number, job: DurableQueue.Job) => Effect.Effect<X, unknown>,
    limit: number,
    step = 20,
    from = 0,
    since?: number
  ) =>
    Effect.gen(function*() {
      let startedAt: number | undefined
      const start = since ?? (yield* Clock.currentTimeMillis)
      const taker = yield* Effect.fork(queue.take((n, job) =>
        Effect.zipRight(
          Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => (startedAt = t))),
          handler(n, job)
        )
      ))
      // `from` is skipped in one adjustment: a job due before it starts at `from`, below the caller's lower bound
      // (which `from` stays under), so an early start still fails.
      if (from > 0) yield* TestClock.adjust(from)
      for (let elapsed = from; elapsed <= limit && startedAt === undefined; elapsed += step) {
        yield* TestClock.adjust(step)
        for (let i = 0; i < 5; i++) {
          yield* Effect.yieldNow()
        }
      }
      expect(startedAt).toBeDefined()
      yield* Fiber.join(taker)
      return startedAt! - start
    })

  /**
   * A job offered to a queue of the default backoff (4 attempts), failing every time: the delays of attempts 2, 3
   * and 4, each from the previous attempt's failure (its handler fails as it starts), skipping just under each one's
   * shortest jittered delay. The poll is a minute: a retry starts at its due time, not at a poll (the callers'
   * bounds hold it to that), and the TestClock does not wake a 20 ms poll ~150 times per simulated 3 s (1.8 s of
   * this case at load 7; 0.2 s and under with a minute).
   */
  const threeRetries = Effect.gen(function*() {
    const queue = yield* DurableQueue.memory({
      name: "jobs",
      schema: Schema.Number,
      maxAttempts: 4,
      pollInterval: "1 minute"
    })
    yield* queue.offer(1, { id: "flaky" })
    yield* queue.take(() => Effect.fail("first"))
    expect(yield* queue.counts).toMatchObject({ waiting: 0, delayed: 1, running: 0, dead: 0, paused: false })
    let failedAt = yield* Clock.currentTimeMillis
    const second = yield* takenAfter(queue, () => Effect.fail("second"), 3_000, 20, 780, failedAt)
    failedAt += second
    const third = yield* takenAfter(queue, () => Effect.fail("third"), 5_000, 20, 1_580, failedAt)
    failedAt += third
    const fourth = yield* takenAfter(queue, () => Effect.fail("fourth"), 10_000, 50, 3_150, failedAt)
    expect((yield* queue.deadLetters).map((letter) => letter.attempts)).toEqual([4])
    return [second, third, fourth] as const
  })

  it.scoped("default backoff: exponential from 1 s, x2, jittered (0.8-1.2); the waiting retry is a delayed job, no lease (TestClock)", () =>
    Effect.gen(function*() {
      const [second, third, fourth] = yield* threeRetries
      expect(second).toBeGreaterThanOrEqual(800)
      expect(second).toBeLessThanOrEqual(1_240)
      expect(third).toBeGreaterThanOrEqual(1_600)
      expect(third).toBeLessThanOrEqual(2_440)
      expect(fourth).toBeGreaterThanOrEqual(3_200)
      expect(fourth).toBeLessThanOrEqual(4_900)
    }))

  it.scoped("default backoff with a fixed Random: each retry starts exactly its jittered delay after the failure, also when a retry starts between two TestClock steps", () =>
    Effect.gen(function*() {
      // Factors 0.81 then 0.8 (Random.nextRange(0.8, 1.2) of 0.025 and 0): the second attempt is due at 810 ms, between
      // two 20 ms steps, so it starts inside an adjust that ends at 820; the third is due 1,600 ms after it (2,410),
      // which read 1,590 when measured from the step's end (CI failed so at random: 1,598 < 1,600).
      expect(yield* threeRetries).toEqual([810, 1_600, 3_240])
    }).pipe(Effect.withRandom(Random.fixed([0.025, 0]))))

  it.scoped("a retry waiting out its backoff holds no worker: run with concurrency 1 runs the next job meanwhile (TestClock)", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({
        name: "jobs",
        schema: Schema.Number,
        backoff: DurableQueue.Backoff.fixed("1 hour"),
        pollInterval: "1 minute",
        // Each sleep of the core wakes TestClock.adjust: with the default lease (a refresh every third of it) the
        // simulated hour below cost 3.3 s in the suite; with 30 minutes, a handful of wake-ups.
        leaseDuration: "30 minutes"
      })
      yield* queue.offer(1, { id: "flaky" })
      yield* queue.offer(2, { id: "next" })
      const runs: Array<string> = []
      yield* Effect.forkScoped(queue.run((n, job) => {
        runs.push(`${n}@${job.attempt}`)
        return n === 1 && job.attempt === 1 ? Effect.fail("down") : Effect.void
      }))
      yield* settle(() => runs.length === 2)
      expect(runs).toEqual(["1@1", "2@1"])
      // `run` writes its settlements behind the handlers: let the writer catch up.
      for (let i = 0; i < 1_000 && (yield* queue.counts).running > 0; i++) yield* Effect.yieldNow()
      expect(yield* queue.counts).toMatchObject({ waiting: 0, delayed: 1, running: 0, dead: 0, paused: false })
      yield* TestClock.adjust("1 hour")
      yield* settle(() => runs.length === 3)
      expect(runs[2]).toBe("1@2")
    }))

  it.effect("a Backoff built from nothing (plain JavaScript) is an OptionError naming its field, not a TypeError", () =>
    Effect.gen(function*() {
      const bad = DurableQueue.Backoff.exponential(undefined as unknown as { base: "1 second" })
      const error = yield* Effect.flip(
        Effect.scoped(DurableQueue.memory({ name: "q", schema: Schema.Number, backoff: bad }))
      )
      expect(error).toMatchObject({ _tag: "OptionError", field: "backoff.baseMillis" })
    }))

  it.scoped("exponential backoff is capped at its max (TestClock)", () =>
    Effect.gen(function*() {
      const backoff = DurableQueue.Backoff.exponential({
        base: "1 second",
        factor: 10,
        max: "3 seconds",
        jitter: false
      })
      const queue = yield* DurableQueue.memory({
        name: "jobs",
        schema: Schema.Number,
        maxAttempts: 5,
        // A minute, as above: the retry starts at its due time.
        pollInterval: "1 minute",
        backoff
      })
      yield* queue.offer(1)
      yield* queue.take(() => Effect.fail("1"))
      // 1 s, then 10 s capped to 3 s, twice (within a test step of 20 ms).
      for (const [attempt, delay] of [[2, 1_000], [3, 3_000], [4, 3_000]] as const) {
        const after = yield* takenAfter(queue, () => Effect.fail(`${attempt}`), 5_000, 20, delay - 100)
        expect(after).toBeGreaterThanOrEqual(delay)
        expect(after).toBeLessThanOrEqual(delay + 40)
      }
    }))

  it.scoped("a queue's Schedule backoff: stepped once per failed attempt with the failure; when it ends the job is dead at once (TestClock)", () =>
    Effect.gen(function*() {
      const inputs: Array<unknown> = []
      const backoff = Schedule.spaced("5 seconds").pipe(
        Schedule.intersect(Schedule.recurs(1)),
        Schedule.tapInput((input) => Effect.sync(() => inputs.push(input)))
      )
      const queue = yield* DurableQueue.memory({
        name: "jobs",
        schema: Schema.Number,
        maxAttempts: 10,
        pollInterval: "50 millis",
        backoff
      })
      yield* queue.offer(1, { id: "s" })
      yield* queue.take(() => Effect.fail("boom-1"))
      const after = yield* takenAfter(queue, () => Effect.fail("boom-2"), 10_000, 50)
      expect(after).toBeGreaterThanOrEqual(5_000)
      expect(after).toBeLessThanOrEqual(5_100)
      const [dead] = yield* queue.deadLetters
      expect({ id: dead?.id, attempts: dead?.attempts }).toEqual({ id: "s", attempts: 2 })
      expect(dead!.lastError).toContain("backoff schedule ended after 2 attempts")
      expect(inputs).toContain("boom-1")
    }))

  it.scoped("delay and runAt: not leased a moment before their time (TestClock)", () =>
    Effect.gen(function*() {
      // Polling every 10 minutes, leases of an hour: TestClock runs every sleep on its way through 2 hours.
      const queue = yield* DurableQueue.memory({
        name: "jobs",
        schema: Schema.Number,
        pollInterval: "10 minutes",
        leaseDuration: "1 hour"
      })
      const now = yield* Clock.currentTimeMillis
      yield* queue.offer(1, { delay: "1 hour" })
      yield* queue.offer(2, { runAt: new Date(now + 7_200_000) })
      const taker = yield* Effect.fork(queue.take((n) => Effect.succeed(n)))
      yield* TestClock.adjust("59 minutes")
      expect(Option.isNone(yield* Fiber.poll(taker))).toBe(true)
      yield* TestClock.adjust("1 minute")
      expect(yield* Fiber.join(taker)).toEqual(Exit.succeed(1))
      expect(yield* queue.counts).toMatchObject({ waiting: 0, delayed: 1 })
      yield* TestClock.adjust("1 hour")
      expect(yield* queue.counts).toMatchObject({ waiting: 1, delayed: 0 })
    }))

  it.scoped("timeout: an attempt past it is interrupted at that moment and fails, then retried after its backoff (TestClock)", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({
        name: "jobs",
        schema: Schema.Number,
        timeout: "10 seconds",
        backoff: DurableQueue.Backoff.fixed("1 minute")
      })
      yield* queue.offer(1, { id: "slow" })
      const taker = yield* Effect.fork(queue.take(() => Effect.sleep("1 hour")))
      yield* TestClock.adjust("9 seconds")
      expect(Option.isNone(yield* Fiber.poll(taker))).toBe(true)
      yield* TestClock.adjust("1 second")
      const exit = yield* Fiber.join(taker)
      expect(Exit.isFailure(exit) && Cause.squash(exit.cause)).toMatchObject({
        reason: "TimedOut",
        id: "slow",
        attempt: 1,
        timeoutMillis: 10_000
      })
      expect(Option.getOrThrow(yield* queue.status("slow"))).toMatchObject({ state: "delayed", attempts: 1 })
      expect(Option.getOrThrow(yield* queue.status("slow")).lastError).toContain("timed out after 10000 ms")
    }))

  it.scoped("run's graceful shutdown does not interrupt a handler; cancel does, at once in the process running it", () =>
    Effect.gen(function*() {
      const queue = yield* queueOf()
      yield* queue.offer(1, { id: "c" })
      let started = false
      let interrupted = false
      yield* Effect.forkScoped(
        queue.run(() =>
          Effect.onInterrupt(
            Effect.zipRight(Effect.sync(() => (started = true)), Effect.never),
            () => Effect.sync(() => (interrupted = true))
          )
        )
      )
      yield* settle(() => started)
      expect(yield* queue.cancel("c")).toBe(true)
      yield* settle(() => interrupted)
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
      expect(Option.getOrThrow(yield* queue.status("c"))).toMatchObject({ state: "cancelled", attempts: 1 })
      expect(yield* queue.size).toBe(0)
    }))

  it.scoped("results live for resultTimeToLive (default 1 day) and are then gone; the job stays done (TestClock)", () =>
    Effect.gen(function*() {
      // Polling hourly, leases of an hour: TestClock runs every sleep on its way through a day.
      const queue = yield* DurableQueue.memory({
        name: "jobs",
        schema: Schema.Number,
        pollInterval: "1 hour",
        leaseDuration: "1 hour"
      })
      yield* queue.offer(2, { id: "r" })
      yield* queue.take((n) => Effect.succeed(n * 10), { result: Schema.Number })
      yield* TestClock.adjust("23 hours")
      expect(yield* queue.result("r", Schema.Number)).toEqual(Option.some(20))
      yield* TestClock.adjust("1 hour")
      expect(Option.isNone(yield* queue.result("r", Schema.Number))).toBe(true)
      expect(Option.getOrThrow(yield* queue.status("r")).state).toBe("done")
    }))

  /** A memory store whose leases are counted and whose `nextDueMillis` can be replaced (a store that fails it, …). */
  const countingStore = (leaseMillis: number) => {
    const store = new MemoryStore(leaseMillis)
    const probe = { leases: 0, nextDue: undefined as Store["nextDueMillis"] | undefined }
    const counted = new Proxy(store, {
      get: (target, key) => {
        if (key === "lease") {
          return (max: number) => Effect.zipRight(Effect.sync(() => probe.leases++), target.lease(max))
        }
        if (key === "nextDueMillis") return probe.nextDue ?? target.nextDueMillis
        const value: unknown = Reflect.get(target, key, target)
        return typeof value === "function" ? value.bind(target) : value
      }
    })
    return { store: counted as Store, probe }
  }

  /** Lets forked fibers run (bounded); TestClock does not move. */
  const yieldMany = Effect.gen(function*() {
    for (let i = 0; i < 30; i++) yield* Effect.yieldNow()
  })

  it.scoped("a delayed job or a retry starts at its due time, not at the next poll; far-off, paused and failing due times do not spin (TestClock)", () =>
    Effect.gen(function*() {
      const options = {
        name: "jobs",
        schema: Schema.Number,
        pollInterval: "5 seconds",
        leaseDuration: "1 hour"
      } as const
      const settings = yield* queueSettings({ ...options, backoff: DurableQueue.Backoff.fixed("300 millis") })
      const { probe, store } = countingStore(settings.leaseMillis)
      const queue = yield* core.make(store, settings, options.schema)
      const started: Array<readonly [number, number, number]> = []
      const taker = (fail: boolean) =>
        Effect.fork(queue.take((n, job) =>
          Effect.flatMap(Clock.currentTimeMillis, (t) => {
            started.push([n, job.attempt, t])
            return fail && job.attempt === 1 ? Effect.fail("flaky") : Effect.void
          })
        ))
      const t0 = yield* Clock.currentTimeMillis
      yield* queue.offer(1, { delay: "300 millis" })
      yield* taker(false)
      yield* yieldMany
      yield* TestClock.adjust("299 millis")
      yield* yieldMany
      expect(started).toEqual([])
      yield* TestClock.adjust("1 millis")
      yield* settle(() => started.length === 1)
      expect(started).toEqual([[1, 1, t0 + 300]])

      // A retry waiting out its 300 ms backoff (made due by this core's settlement) starts at its time too.
      yield* queue.offer(2)
      const retried = yield* taker(true)
      yield* settle(() => started.length === 2)
      yield* Fiber.join(retried)
      yield* taker(false)
      yield* yieldMany
      yield* TestClock.adjust("300 millis")
      yield* settle(() => started.length === 3)
      expect(started[2]).toEqual([2, 2, started[1]![2] + 300])

      // A job an hour off, a paused queue with a job due meanwhile, a store whose due time fails or keeps saying
      // "now" while it leases nothing: a taker waiting 20 s leases at most about once per 5 s poll.
      const idle = (label: string) =>
        Effect.gen(function*() {
          const before = probe.leases
          yield* TestClock.adjust("20 seconds")
          yield* yieldMany
          expect([label, probe.leases - before <= 6]).toEqual([label, true])
        })
      yield* queue.offer(3, { id: "far", delay: "1 hour" })
      const waiting = yield* taker(false)
      yield* yieldMany
      yield* idle("far off")
      yield* queue.pause
      yield* queue.offer(4, { id: "paused", delay: "100 millis" })
      yield* idle("paused")
      probe.nextDue = Effect.fail("down")
      yield* idle("failing")
      probe.nextDue = Effect.succeed(0)
      yield* idle("always due")
      probe.nextDue = Effect.succeed(Number.NaN)
      yield* idle("NaN")
      expect(started.length).toBe(3)
      // Resumed, with the due time failing: the poll still finds the job.
      probe.nextDue = Effect.fail("down")
      yield* queue.resume
      yield* settle(() => started.length === 4)
      expect(started[3]![0]).toBe(4)
      yield* Fiber.interrupt(waiting)
    }))

  it("a flat struct's values are written as the Schema, notJson and JSON.stringify write them, and refused as they are", () => {
    const schema = Schema.Struct({ n: Schema.Number, s: Schema.String, b: Schema.Boolean })
    const encodeEither = Schema.encodeEither(schema)
    const generic = (value: unknown): string | undefined => {
      const encoded = encodeEither(value as typeof schema.Type)
      return Either.isRight(encoded) && notJson(encoded.right) === undefined ? JSON.stringify(encoded.right) : undefined
    }
    class Point {
      get n() {
        return 2
      }
      s = "p"
      b = true
    }
    const inherited = Object.create({ n: 1, s: "from the prototype" }) as Record<string, unknown>
    inherited.b = false
    const values: ReadonlyArray<unknown> = [
      { n: 1, s: "a", b: true },
      { b: false, s: "order", n: -0, extra: { nested: [1] }, 0: "index" },
      { n: 1e21, s: "\"quotes\\ \u0000 \ud83d lone \u2028", b: false },
      { n: Number.MIN_VALUE, s: "", b: true },
      { n: NaN, s: "a", b: true },
      { n: Infinity, s: "a", b: true },
      { n: "1", s: "a", b: true },
      { s: "a", b: true },
      { n: 1, s: "a", b: 1 },
      { n: 1, s: "a", b: true, s2: undefined },
      new Point(),
      inherited,
      [1, "a", true],
      null,
      "text",
      42,
      undefined
    ]
    const now = codec(schema)
    for (const value of values) expect(now.encodeNow(value as typeof schema.Type)).toBe(generic(value))
    expect(now.encodeNow({ n: 1, s: "a", b: true })).toBe(`{"n":1,"s":"a","b":true}`)
    // A getter that throws: refused at once (encode then fails with it), as before.
    const throwing = Object.defineProperty({ s: "a", b: true }, "n", {
      enumerable: true,
      get: () => {
        throw new Error("no n")
      }
    })
    expect(now.encodeNow(throwing as unknown as typeof schema.Type)).toBeUndefined()
    // Schemas outside the flat path keep the general one: an optional field, an index signature, a refinement.
    const optional = codec(Schema.Struct({ n: Schema.optional(Schema.Number) }))
    expect(optional.encodeNow({})).toBe("{}")
    expect(codec(Schema.Record({ key: Schema.String, value: Schema.Number })).encodeNow({ a: 1 })).toBe(`{"a":1}`)
    expect(codec(Schema.Struct({ n: Schema.Int })).encodeNow({ n: 1.5 })).toBeUndefined()
  })
})
