/**
 * Rate limiters shared by every process on one Redis, with the in-process `RateLimiter` interface, so a
 * `TaskEngine` takes them as they are. `slidingWindow` is exact across processes: one atomic Lua script keeps the
 * start times (Redis `TIME`, one clock for everyone) in a sorted set, and no span of `interval` ever holds more
 * than `limit` starts. `tokenBucket` reuses `@effect/experimental`'s Redis store; `fixedWindow` is a counter expiring with its window.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as internal from "../internal/redis/rateLimiter.js"
import type { OptionError } from "../OptionError.js"
import type { RateLimiter } from "../RateLimiter.js"
import type { RedisClient } from "./RedisClient.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The Redis key of the limit: every limiter with the same key shares it, in any process. */
  readonly key: string
  /** At most this many starts (an integer from 1 and up)… */
  readonly limit: number
  /** …per this interval (1 millisecond or more). */
  readonly interval: Duration.DurationInput
}

/**
 * A `RateLimiter` that also tells when each start was granted.
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisRateLimiter extends RateLimiter {
  /** As `take`, returning the Redis time of the granted start, in microseconds since the epoch. */
  readonly takeTimed: (ticket?: RateLimiter.Ticket) => Effect.Effect<number>
}

/**
 * Exact sliding window across processes. Waiters of one process are served in order; a waiter sleeps for the
 * time the script says the oldest start needs to leave the window, then asks again. While Redis is unreachable,
 * `take` logs and retries with backoff (it never lets a start through unrecorded).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RateLimiter, RedisClient } from "effect-workers/redis"
 *
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RateLimiter.slidingWindow({ key: "api:github", limit: 10, interval: "1 second" })
 *   yield* limiter.take() // at most 10 per second over every process using "api:github"
 * }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const slidingWindow: (
  options: Options
) => Effect.Effect<RedisRateLimiter, OptionError, RedisClient | Scope.Scope> = internal.slidingWindow

/**
 * Token bucket over `@effect/experimental`'s Redis store: `limit` tokens, refilled evenly over `interval`.
 * The store reads the time of the calling process, so keep the machines' clocks in sync.
 *
 * @since 0.1.0
 * @category constructors
 */
export const tokenBucket: (
  options: Options
) => Effect.Effect<RateLimiter, OptionError, RedisClient | Scope.Scope> = internal.tokenBucket

/**
 * Fixed window: at most `limit` starts per window of `interval`, the window starting with its first take (one
 * atomic `INCR` + `PEXPIRE` script; the window ends by Redis's clock).
 *
 * @since 0.1.0
 * @category constructors
 */
export const fixedWindow: (
  options: Options
) => Effect.Effect<RateLimiter, OptionError, RedisClient | Scope.Scope> = internal.fixedWindow
