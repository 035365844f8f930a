/**
 * The rate limiters behind `RateLimiter`: an exact sliding window with a first-come-first-served line of waiters,
 * wrappers over `effect/RateLimiter` (token bucket, fixed window), a user-supplied algorithm and no limit at all.
 */
import type * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as EffectRateLimiter from "effect/RateLimiter"
import type * as Scope from "effect/Scope"
import type { OptionError } from "../OptionError.js"
import type * as RateLimiter from "../RateLimiter.js"
import { RateLimiterMetrics as Metrics } from "./metrics.js"
import { checker } from "./options.js"
import { fromUserResult } from "./promise.js"
import { bump, countingWaits, labels } from "./telemetry.js"

const check = checker("RateLimiter")

const noTicket: RateLimiter.RateLimiter.Ticket = {}

/** @internal */
export const unlimited: RateLimiter.RateLimiter = {
  take: () => Effect.void
}

/** @internal */
export const isRateLimiter = (u: unknown): u is RateLimiter.RateLimiter<unknown> =>
  typeof u === "object" && u !== null && typeof (u as { take?: unknown }).take === "function"

/** @internal */
export const make: {
  <E = never>(
    acquire: (ticket: RateLimiter.RateLimiter.Ticket) => Effect.Effect<void, E>
  ): Effect.Effect<RateLimiter.RateLimiter<E>, OptionError, Scope.Scope>
  (
    acquire: (ticket: RateLimiter.RateLimiter.Ticket) => PromiseLike<unknown> | void
  ): Effect.Effect<RateLimiter.RateLimiter<Cause.UnknownException>, OptionError, Scope.Scope>
} = (
  acquire: (ticket: RateLimiter.RateLimiter.Ticket) => unknown
): Effect.Effect<RateLimiter.RateLimiter<never>, OptionError, Scope.Scope> => {
  const tags = labels("limiter", "custom")
  return Effect.as(
    check.require("acquire", acquire, typeof acquire === "function", "a function"),
    {
      // An Effect as returned, a Promise (an `async` acquire) with its rejection as an `UnknownException`, a plain
      // return (a synchronous acquire) as "go": the same rule as TaskEngine handlers.
      take: (ticket) =>
        countingWaits(
          Effect.suspend(() => fromUserResult(acquire(ticket ?? noTicket)) as Effect.Effect<void, never>),
          Metrics.waits,
          tags
        )
    }
  )
}

const validate = (options: RateLimiter.RateLimiter.WindowOptions) =>
  Effect.gen(function*() {
    yield* check.require("options", options, typeof options === "object" && options !== null, "an object")
    // A typo (`limt`) would otherwise be silently a missing field.
    yield* check.knownKeys(options, ["limit", "interval"])
    const limit = yield* check.require(
      "limit",
      options.limit,
      typeof options.limit === "number",
      "an integer from 1 and up"
    )
      .pipe(Effect.flatMap((limit) => check.integer("limit", limit, 1, 1)))
    const interval = yield* check.duration("interval", options.interval, Duration.zero)
    yield* check.require("interval", options.interval, Duration.toMillis(interval) > 0, "a positive duration")
    return { limit, interval }
  })

// Milliseconds with a fraction, from the clock's nanoseconds: the live clock's high-resolution (monotonic) time,
// so that two readings never straddle a millisecond tick the way `Date.now()` readings do. A start recorded at
// 530.9 and observed at 531.0 would otherwise shift a window by a whole millisecond.
const nowMillis = (clock: Clock.Clock) => Number(clock.unsafeCurrentTimeNanos()) / 1_000_000

// The state of one waiter: waiting in line, granted a start, or gone (interrupted before its turn).
const WAITING = 0
const GRANTED = 1
const GONE = 2

interface Waiter {
  state: number
  readonly deferred: Deferred.Deferred<void>
  // Where its start was recorded, and that entry's generation (to see whether it has been reused since).
  index: number
  generation: number
}

/**
 * Exact sliding window. The start times of the last `limit` permits sit in a ring buffer; a new start at `now` is
 * allowed only when the oldest of them is at least `interval` old, so any span of length `interval` holds at most
 * `limit` starts. Callers that find the window full (or others already waiting) join a queue that one dispatcher
 * fiber serves in order, sleeping through `Clock` until the oldest start leaves the window.
 *
 * @internal
 */
export const slidingWindow = (
  options: RateLimiter.RateLimiter.WindowOptions
): Effect.Effect<RateLimiter.RateLimiter, OptionError, Scope.Scope> =>
  Effect.gen(function*() {
    const { interval, limit } = yield* validate(options)
    const intervalMillis = Duration.toMillis(interval)
    const starts = new Float64Array(limit).fill(Number.NEGATIVE_INFINITY)
    let oldest = 0
    // Waiters in line (including the one the dispatcher is serving) that are neither granted nor gone.
    const waiting = new Set<Waiter>()
    let closed = false
    const line = yield* Queue.unbounded<Waiter>()
    const tags = labels("limiter", "sliding_window")

    // Milliseconds until a start is allowed at `now` (0: allowed now).
    const waitMillis = (now: number) => starts[oldest]! + intervalMillis - now
    // Bumped on every write of an entry of `starts`.
    const generations = new Float64Array(limit)
    const record = (now: number) => {
      const index = oldest
      starts[index] = now
      generations[index]++
      oldest = oldest + 1 === limit ? 0 : oldest + 1
      return index
    }

    const grant = (clock: Clock.Clock, waiter: Waiter): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (waiter.state !== WAITING) return Effect.void
        const wait = waitMillis(nowMillis(clock))
        if (wait > 0) {
          // Timers may fire a little early against the clock: check again after waking.
          return Effect.zipRight(Effect.sleep(wait), grant(clock, waiter))
        }
        waiter.state = GRANTED
        waiting.delete(waiter)
        waiter.index = record(nowMillis(clock))
        waiter.generation = generations[waiter.index]!
        Deferred.unsafeDone(waiter.deferred, Effect.void)
        return Effect.void
      })

    yield* Effect.clockWith((clock) => {
      const serve: Effect.Effect<never> = Effect.flatMap(
        Queue.take(line),
        (waiter) => Effect.flatMap(grant(clock, waiter), () => serve)
      )
      return serve
    }).pipe(Effect.interruptible, Effect.forkScoped)

    // Settle everyone still in line when the scope closes: nobody waits on a limiter that is gone.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        for (const waiter of waiting) {
          waiter.state = GONE
          Deferred.unsafeDone(waiter.deferred, Effect.interrupt)
        }
        waiting.clear()
        return Queue.shutdown(line)
      })
    )

    // Only the wait is interruptible: the check, the place in line and the count of waiters change together.
    const take = Effect.uninterruptibleMask((restore) =>
      Effect.clockWith((clock) =>
        Effect.withFiberRuntime<void>((fiber) => {
          if (closed) return Effect.interrupt
          if (waiting.size === 0) {
            const now = nowMillis(clock)
            if (waitMillis(now) <= 0) {
              record(now)
              return Effect.void
            }
          }
          const waiter: Waiter = {
            state: WAITING,
            deferred: Deferred.unsafeMake<void>(fiber.id()),
            index: 0,
            generation: 0
          }
          waiting.add(waiter)
          line.unsafeOffer(waiter)
          bump(Metrics.waits, tags)
          return Effect.onInterrupt(restore(Deferred.await(waiter.deferred)), () =>
            Effect.sync(() => {
              // Interrupted before its turn: give up the place in line; a permit already granted stays spent.
              if (waiter.state === WAITING) {
                waiter.state = GONE
                waiting.delete(waiter)
              }
            })).pipe(Effect.zipRight(Effect.sync(() => {
              // The caller starts when it resumes, which under a busy event loop can be a little after the grant:
              // count the window from then, so the starts callers observe keep to the limit too.
              if (generations[waiter.index] === waiter.generation) {
                starts[waiter.index] = Math.max(starts[waiter.index]!, nowMillis(clock))
              }
            })))
        })
      )
    )
    return { take: () => take }
  })

const wrap = (
  options: RateLimiter.RateLimiter.WindowOptions,
  algorithm: "token-bucket" | "fixed-window"
): Effect.Effect<RateLimiter.RateLimiter, OptionError, Scope.Scope> =>
  Effect.gen(function*() {
    const { interval, limit } = yield* validate(options)
    const limiter = yield* EffectRateLimiter.make({ limit, interval, algorithm })
    const take = countingWaits(limiter(Effect.void), Metrics.waits, labels("limiter", algorithm.replace("-", "_")))
    return { take: () => take }
  })

/** @internal */
export const tokenBucket = (options: RateLimiter.RateLimiter.WindowOptions) => wrap(options, "token-bucket")

/** @internal */
export const fixedWindow = (options: RateLimiter.RateLimiter.WindowOptions) => wrap(options, "fixed-window")
