/**
 * `DurableQueue.memory` where TestClock is the point: `run`'s graceful shutdown, the lease, a waiting taker at
 * scope close; and its encoding. The contract (offer by id, attempts, dead letters, interruption, …) runs on the
 * memory store with every other store in test/DurableQueue.contract.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import * as DurableQueue from "../src/DurableQueue.js"
import * as core from "../src/internal/durableQueue/core.js"
import { MemoryStore } from "../src/internal/durableQueue/memoryStore.js"
import { queueSettings } from "../src/internal/durableQueue/options.js"
import { OptionError } from "../src/OptionError.js"

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
      const runner = yield* Effect.fork(queue.run((n) =>
        Effect.zipRight(Effect.sync(() => started.push(n)), Effect.zipRight(Effect.sleep("10 seconds"), Effect.sync(() => finished.push(n))))
      ))
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
      const runner = yield* Effect.fork(queue.run(() => Effect.zipRight(Effect.sync(() => (started = true)), Effect.never), {
        shutdownTimeout: "5 seconds"
      }))
      yield* settle(() => started)
      const stopping = yield* Effect.fork(Fiber.interrupt(runner))
      yield* TestClock.adjust("4 seconds")
      expect(Option.isNone(yield* Fiber.poll(stopping))).toBe(true)
      yield* TestClock.adjust("1 second")
      yield* settle(() => Effect.runSync(Fiber.poll(stopping)).pipe(Option.isSome))
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
      for (const [options, field] of [[{ maxAttempts: 0 }, "maxAttempts"], [{ leaseDuration: -1 }, "leaseDuration"], [{ name: "" }, "name"]] as const) {
        const error = yield* Effect.flip(Effect.scoped(DurableQueue.memory({ name: "q", schema: Schema.Number, ...options })))
        expect(error).toBeInstanceOf(OptionError)
        expect(error.message).toContain(field)
      }
    }))

  it.scoped("the lease is read through Clock: a job whose runner died comes back when TestClock passes its lease, that attempt counted", () =>
    Effect.gen(function*() {
      const options = { name: "jobs", schema: Schema.Number, leaseDuration: "10 seconds", pollInterval: "1 second" } as const
      const settings = yield* queueSettings(options)
      const store = new MemoryStore(settings.leaseMillis)
      const queue = yield* core.make(store, settings, options.schema)
      yield* queue.offer(4, { id: "a" })
      // A runner leases it and dies: no refresh, no settlement.
      expect((yield* store.lease(1)).map((job) => [job.id, job.attempts])).toEqual([["a", 1]])
      const taker = yield* Effect.fork(queue.take((n, job) => Effect.succeed([n, job.attempt])))
      yield* TestClock.adjust("9 seconds")
      expect(Option.isNone(yield* Fiber.poll(taker))).toBe(true)
      yield* TestClock.adjust("2 seconds")
      expect(yield* Fiber.join(taker)).toEqual(Exit.succeed([4, 2]))
    }))

  it.scoped("refuses what a real store would: a function inside a Schema.Unknown value is EncodeFailed, not undefined later", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({ name: "jobs", schema: Schema.Unknown })
      const error = yield* Effect.flip(queue.offer({ run: () => 1 }, { id: "f" }))
      expect(error).toMatchObject({ reason: "EncodeFailed", id: "f", backend: "memory" })
      expect(error.message).toContain("is a function")
    }))
})
