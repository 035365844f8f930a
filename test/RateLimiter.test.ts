import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { OptionError } from "../src/OptionError.js"
import * as RateLimiter from "../src/RateLimiter.js"

// Forks a caller that takes a permit and reports the (test) time it started.
const startAt = (limiter: RateLimiter.RateLimiter) =>
  Effect.fork(Effect.zipRight(limiter.take(), Clock.currentTimeMillis))

const fail = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.flip(Effect.scoped(effect))

describe("RateLimiter", () => {
  describe("options", () => {
    it.effect("slidingWindow rejects a bad limit or interval with an OptionError naming the field", () =>
      Effect.gen(function*() {
        for (const limit of [0, -1, 1.5, Number.NaN]) {
          const error = yield* fail(RateLimiter.slidingWindow({ limit, interval: "1 second" }))
          assert.instanceOf(error, OptionError)
          assert.strictEqual(error.field, "limit")
        }
        const intervals: Array<Duration.DurationInput> = [0, -5, "-1 second", Number.POSITIVE_INFINITY]
        for (const interval of intervals) {
          const error = yield* fail(RateLimiter.slidingWindow({ limit: 1, interval }))
          assert.strictEqual(error.field, "interval")
        }
        const error = yield* fail(RateLimiter.tokenBucket({ limit: 0, interval: "1 second" }))
        assert.strictEqual(error.field, "limit")
        assert.include(error.message, "RateLimiter: expected `limit`")
      }))

    it.effect("huge limits, a string limit, unknown keys and a missing options object are OptionErrors", () =>
      Effect.gen(function*() {
        const cases: Array<[string, unknown, unknown]> = [
          ["limit", 1e12, { limit: 1e12, interval: "1 second" }],
          ["limit", 2 ** 53, { limit: 2 ** 53, interval: "1 second" }],
          ["limit", "10", { limit: "10", interval: "1 second" }],
          ["limt", 10, { limt: 10, interval: "1 second" }],
          ["options", undefined, undefined]
        ]
        for (const [field, value, options] of cases) {
          for (const make of [RateLimiter.slidingWindow, RateLimiter.tokenBucket, RateLimiter.fixedWindow]) {
            const error = yield* fail(make(options as RateLimiter.RateLimiter.WindowOptions))
            assert.instanceOf(error, OptionError)
            assert.strictEqual(error.field, field)
            assert.strictEqual(error.value, value)
          }
        }
        const typo = yield* fail(RateLimiter.slidingWindow({ limt: 10, interval: "1 second" } as never))
        assert.include(typo.message, "did you mean `limit`")
      }))
  })

  describe("slidingWindow", () => {
    it.scoped("lets `limit` start at once, then the next exactly one interval after the first", () =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.slidingWindow({ limit: 3, interval: "1 second" })
        for (let i = 0; i < 3; i++) yield* limiter.take()
        const fourth = yield* startAt(limiter)
        yield* TestClock.adjust("999 millis")
        assert.isTrue(Option.isNone(yield* Fiber.poll(fourth)))
        yield* TestClock.adjust("1 millis")
        assert.strictEqual(yield* Fiber.join(fourth), 1000)
      }))

    it.scoped("is exact where a fixed window is not: no span of `interval` holds more than `limit` starts", () =>
      Effect.gen(function*() {
        // 2 starts at t=900 ms; a fixed window renewed at t=1000 would allow 2 more at once.
        const limiter = yield* RateLimiter.slidingWindow({ limit: 2, interval: "1 second" })
        yield* TestClock.adjust("900 millis")
        yield* limiter.take()
        yield* limiter.take()
        const fibers = [yield* startAt(limiter), yield* startAt(limiter)]
        yield* TestClock.adjust("5 seconds")
        const starts = yield* Fiber.join(Fiber.all(fibers))
        assert.deepStrictEqual(starts, [1900, 1900])
      }))

    it.scoped("serves waiters first come, first served", () =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.slidingWindow({ limit: 1, interval: "100 millis" })
        const order: Array<number> = []
        yield* limiter.take()
        const fibers: Array<Fiber.RuntimeFiber<void>> = []
        for (let i = 0; i < 5; i++) {
          fibers.push(yield* Effect.fork(Effect.zipRight(limiter.take(), Effect.sync(() => void order.push(i)))))
          yield* Effect.yieldNow()
        }
        yield* TestClock.adjust("1 second")
        yield* Fiber.joinAll(fibers)
        assert.deepStrictEqual(order, [0, 1, 2, 3, 4])
      }))

    it.scoped("an interrupted waiter frees its place for the next one", () =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.slidingWindow({ limit: 1, interval: "100 millis" })
        yield* limiter.take()
        const first = yield* startAt(limiter)
        yield* Effect.yieldNow()
        const second = yield* startAt(limiter)
        yield* Effect.yieldNow()
        yield* TestClock.adjust("50 millis")
        yield* Fiber.interrupt(first)
        yield* TestClock.adjust("50 millis")
        // The second waiter takes the slot the first gave up, at the earliest moment, not one interval later.
        assert.strictEqual(yield* Fiber.join(second), 100)
        // And a newcomer is not held back by the departed waiter either.
        yield* TestClock.adjust("100 millis")
        assert.strictEqual(yield* Effect.zipRight(limiter.take(), Clock.currentTimeMillis), 200)
      }))

    it.effect("closing the scope interrupts everyone still waiting", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const limiter = yield* Scope.extend(RateLimiter.slidingWindow({ limit: 1, interval: "1 hour" }), scope)
        yield* limiter.take()
        const waiter = yield* Effect.fork(limiter.take())
        yield* Effect.yieldNow()
        yield* Scope.close(scope, Exit.void)
        const exit = yield* Fiber.await(waiter)
        assert.isTrue(Exit.isInterrupted(exit))
      }))

    // The reference model: waiters in arrival order; each starts at the earliest time that keeps FIFO order and
    // leaves at most `limit - 1` earlier starts within the last `interval`, or leaves if its deadline comes first.
    const model = (
      limit: number,
      interval: number,
      arrivals: ReadonlyArray<{ readonly at: number; readonly deadline: number }>
    ) => {
      const granted: Array<number> = []
      let last = Number.NEGATIVE_INFINITY
      return arrivals.map(({ at, deadline }) => {
        const oldest = granted.length >= limit ? granted[granted.length - limit]! : Number.NEGATIVE_INFINITY
        const start = Math.max(at, last, oldest + interval)
        if (start > deadline) return undefined
        granted.push(start)
        last = start
        return start
      })
    }

    const arrivalGroup = FastCheck.record({
      gap: FastCheck.integer({ min: 0, max: 40 }),
      callers: FastCheck.array(FastCheck.option(FastCheck.integer({ min: 0, max: 60 }), { freq: 4 }), {
        minLength: 1,
        maxLength: 4
      })
    })

    it.scoped.prop(
      "property: exact window, FIFO, no permit withheld, interrupted waiters give up their place",
      {
        limit: FastCheck.integer({ min: 1, max: 5 }),
        interval: FastCheck.integer({ min: 1, max: 50 }),
        groups: FastCheck.array(arrivalGroup, { minLength: 1, maxLength: 8 })
      },
      ({ groups, interval, limit }) =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter.slidingWindow({ limit, interval })
          const arrivals: Array<{ at: number; deadline: number }> = []
          const fibers: Array<Fiber.RuntimeFiber<Option.Option<number>>> = []
          for (const { callers, gap } of groups) {
            yield* TestClock.adjust(gap)
            const now = yield* Clock.currentTimeMillis
            for (const patience of callers) {
              // Half-millisecond deadlines never tie with a start, which always falls on a whole millisecond.
              const deadline = patience === null ? Number.POSITIVE_INFINITY : now + patience + 0.5
              arrivals.push({ at: now, deadline })
              const started = Effect.zipRight(limiter.take(), Clock.currentTimeMillis)
              fibers.push(
                yield* Effect.fork(
                  patience === null ? Effect.asSome(started) : Effect.timeoutOption(started, patience + 0.5)
                )
              )
              yield* Effect.yieldNow()
            }
          }
          yield* TestClock.adjust(10 * interval * arrivals.length + 100)
          const starts = (yield* Fiber.join(Fiber.all(fibers))).map(Option.getOrUndefined)
          assert.deepStrictEqual(starts, model(limit, interval, arrivals))
          const sorted = starts.filter((s): s is number => s !== undefined).sort((a, b) => a - b)
          for (let i = limit; i < sorted.length; i++) {
            assert.isAtLeast(sorted[i]! - sorted[i - limit]!, interval, "a window holds more than `limit` starts")
          }
        }),
      // 60 runs of pure computation under TestClock: a few seconds idle, 32 s at load 20 (past the 30 s default).
      { timeout: 120_000, fastCheck: { numRuns: 60 } }
    )
  })

  describe("tokenBucket and fixedWindow", () => {
    it.scoped("tokenBucket (effect/RateLimiter) allows a burst of `limit`, then one per interval/limit", () =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.tokenBucket({ limit: 2, interval: "1 second" })
        yield* limiter.take()
        yield* limiter.take()
        const third = yield* startAt(limiter)
        yield* TestClock.adjust("499 millis")
        assert.isTrue(Option.isNone(yield* Fiber.poll(third)))
        yield* TestClock.adjust("1 millis")
        assert.strictEqual(yield* Fiber.join(third), 500)
      }))

    it.scoped("fixedWindow (effect/RateLimiter) renews all permits when the window ends", () =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.fixedWindow({ limit: 2, interval: "1 second" })
        yield* limiter.take()
        yield* limiter.take()
        const fibers = [yield* startAt(limiter), yield* startAt(limiter)]
        yield* TestClock.adjust("1 second")
        assert.deepStrictEqual(yield* Fiber.join(Fiber.all(fibers)), [1000, 1000])
      }))
  })

  describe("make and unlimited", () => {
    it.scoped("make hands the ticket (worker id, task id) to the user's algorithm", () =>
      Effect.gen(function*() {
        const seen: Array<RateLimiter.RateLimiter.Ticket> = []
        const limiter = yield* RateLimiter.make((ticket) => Effect.sync(() => seen.push(ticket)))
        yield* limiter.take({ workerId: 3, taskId: "a" })
        yield* limiter.take()
        assert.deepStrictEqual(seen, [{ workerId: 3, taskId: "a" }, {}])
      }))

    it.effect("unlimited never waits", () =>
      Effect.gen(function*() {
        for (let i = 0; i < 1000; i++) yield* RateLimiter.unlimited.take()
        assert.strictEqual(yield* Clock.currentTimeMillis, 0)
      }))
  })
})
