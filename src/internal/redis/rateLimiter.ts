/**
 * Rate limiters shared by every process on one Redis. The sliding window is one Lua script over a sorted set of
 * start times read from Redis `TIME` (so every process uses the same clock): it drops starts older than the
 * interval and admits a new one only while fewer than `limit` remain, else answers how long until the oldest
 * leaves. Token bucket and fixed window reuse `@effect/experimental`'s Redis rate-limiter store.
 */
import * as ExperimentalRateLimiter from "@effect/experimental/RateLimiter"
import * as ExperimentalRedis from "@effect/experimental/RateLimiter/Redis"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { randomUUID } from "node:crypto"
import type { OptionError } from "../../OptionError.js"
import type * as RateLimiter from "../../RateLimiter.js"
import type * as RedisRateLimiter from "../../redis/RateLimiter.js"
import { checker } from "../options.js"
import { command, defineScript, RedisClient } from "./client.js"

const check = checker("RedisRateLimiter")

// KEYS[1]: the sorted set; ARGV: limit, interval (µs), a unique member.
// Returns {1, now} when admitted (now in µs, Redis time), {0, µs to wait} otherwise.
const slidingWindowScript = `
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - interval)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, ARGV[3])
  redis.call('PEXPIRE', key, math.ceil(interval / 1000) + 1000)
  return {1, now}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + interval - now}
`

const validate = (options: RedisRateLimiter.Options) =>
  Effect.all({
    key: check.require(
      "key",
      options?.key,
      typeof options?.key === "string" && options.key.length > 0,
      "a non-empty string"
    ),
    limit: Effect.flatMap(
      check.require("limit", options?.limit, typeof options?.limit === "number", "an integer from 1 and up"),
      (limit) => check.integer("limit", limit, 1, 1)
    ),
    interval: Effect.flatMap(
      check.duration("interval", options?.interval, Duration.zero),
      (interval) =>
        check.require(
          "interval",
          options.interval,
          Duration.toMillis(interval) >= 1,
          "a duration of 1 millisecond or more"
        )
          .pipe(Effect.as(interval))
    )
  })

// A failing Redis (down, restarting) is logged and retried with backoff: `take` has no error channel, and a
// limiter that let work through while Redis is away would break the limit.
const retryForever = Schedule.exponential("50 millis").pipe(
  Schedule.union(Schedule.spaced("2 seconds")),
  Schedule.tapInput((error: unknown) => Effect.logWarning("RedisRateLimiter: Redis failed; retrying", error))
)

/** @internal */
export const slidingWindow = (
  options: RedisRateLimiter.Options
): Effect.Effect<RedisRateLimiter.RedisRateLimiter, OptionError, RedisClient | Scope.Scope> =>
  Effect.gen(function*() {
    const { interval, key, limit } = yield* validate(options)
    const intervalMicros = Math.round(Duration.toMillis(interval) * 1000)
    const { client } = yield* RedisClient
    const script = defineScript(client, "ewSlidingWindow", slidingWindowScript, 1)
    const owner = randomUUID()
    let counter = 0
    // One fiber of this process talks to Redis at a time: waiters of one process are served in order, and a full
    // window costs one script call per retry, not one per waiter.
    const line = yield* Effect.makeSemaphore(1)
    const attempt = (member: string) =>
      command("EVAL", () => script(key, limit, intervalMicros, member) as Promise<[number, number]>).pipe(
        Effect.retry(retryForever),
        Effect.orDie
      )

    const takeTimed = (_ticket?: RateLimiter.RateLimiter.Ticket): Effect.Effect<number> =>
      line.withPermits(1)(Effect.suspend(() => {
        const member = `${owner}:${counter++}`
        const loop: Effect.Effect<number> = Effect.flatMap(attempt(member), ([granted, value]) =>
          granted === 1
            ? Effect.succeed(value)
            // Sleep until the oldest start leaves the window (as Redis measured it), then ask again.
            : Effect.zipRight(Effect.sleep(Duration.micros(BigInt(Math.max(1000, value)))), loop))
        return loop
      }))

    return {
      take: (ticket) => Effect.asVoid(takeTimed(ticket)),
      takeTimed
    } satisfies RedisRateLimiter.RedisRateLimiter
  })

/**
 * Token bucket over `@effect/experimental`'s Redis store, in its "delay" mode: each take reserves a token and
 * sleeps for the delay the store answers.
 *
 * @internal
 */
export const tokenBucket = (
  options: RedisRateLimiter.Options
): Effect.Effect<RateLimiter.RateLimiter, OptionError, RedisClient | Scope.Scope> =>
  Effect.gen(function*() {
    const { interval, key, limit } = yield* validate(options)
    const { client } = yield* RedisClient
    // The experimental store opens its own connection, with the settings of ours.
    const store = yield* ExperimentalRedis.make(
      { ...client.options, lazyConnect: false, prefix: "" } as Parameters<typeof ExperimentalRedis.make>[0]
    )
    const limiter = yield* Effect.provideService(
      ExperimentalRateLimiter.make,
      ExperimentalRateLimiter.RateLimiterStore,
      ExperimentalRateLimiter.RateLimiterStore.of(store)
    )
    const sleep = yield* Effect.provideService(
      ExperimentalRateLimiter.makeSleep,
      ExperimentalRateLimiter.RateLimiter,
      limiter
    )
    const take = (_ticket?: RateLimiter.RateLimiter.Ticket): Effect.Effect<void> =>
      sleep({ key, limit, window: interval, algorithm: "token-bucket" }).pipe(
        Effect.retry(retryForever),
        Effect.orDie,
        Effect.asVoid
      )
    return { take } satisfies RateLimiter.RateLimiter
  })

// KEYS[1]: the window's counter; ARGV: limit, interval (ms). {1, 0} when admitted, {0, ms until the window ends}.
const fixedWindowScript = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n <= tonumber(ARGV[1]) then return {1, 0} end
return {0, redis.call('PTTL', KEYS[1])}
`

/**
 * Fixed window: a counter that expires with the window. (`@effect/experimental`'s Redis store is not used here:
 * in its delay mode it writes `PX` with a fractional number of milliseconds whenever `interval / limit` is not a
 * whole number, which Redis rejects.)
 *
 * @internal
 */
export const fixedWindow = (
  options: RedisRateLimiter.Options
): Effect.Effect<RateLimiter.RateLimiter, OptionError, RedisClient | Scope.Scope> =>
  Effect.gen(function*() {
    const { interval, key, limit } = yield* validate(options)
    const intervalMillis = Math.max(1, Math.round(Duration.toMillis(interval)))
    const { client } = yield* RedisClient
    const script = defineScript(client, "ewFixedWindow", fixedWindowScript, 1)
    const attempt = command("EVAL", () => script(key, limit, intervalMillis) as Promise<[number, number]>).pipe(
      Effect.retry(retryForever),
      Effect.orDie
    )
    const loop: Effect.Effect<void> = Effect.flatMap(attempt, ([granted, wait]) =>
      granted === 1 ? Effect.void : Effect.zipRight(Effect.sleep(Duration.millis(Math.max(1, wait))), loop))
    return {
      take: () =>
        loop
    } satisfies RateLimiter.RateLimiter
  })
