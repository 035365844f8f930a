import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { Redis } from "ioredis"
import { OptionError } from "../../src/OptionError.js"
import * as RedisRateLimiter from "../../src/redis/RateLimiter.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import { spawnFixture } from "../helpers/processes.js"
import { withRedisPrefix } from "../helpers/redis.js"
import { redis, requireService } from "../helpers/services.js"
import { maxInWindow } from "../helpers/windows.js"

const up = await requireService(redis)

const withKey = <A, E, R>(f: (key: string, raw: Redis) => Effect.Effect<A, E, R>) => withRedisPrefix("rl", f)

// A second connection stands for a second process: a limiter made on it shares nothing in memory with the first.
const otherProcess = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Layer.build(RedisClient.layer()), (context) => Effect.provide(effect, context))

describe.skipIf(!up)("redis RateLimiter", () => {
  it.live("slidingWindow: starts are spaced so that no interval holds more than limit (Redis time)", () =>
    withKey((key) =>
      Effect.gen(function*() {
        const limiter = yield* RedisRateLimiter.slidingWindow({ key, limit: 3, interval: "150 millis" })
        const times = yield* Effect.all(Array.from({ length: 7 }, () => limiter.takeTimed()), { concurrency: 4 })
        const sorted = [...times].sort((a, b) => a - b)
        expect(maxInWindow(sorted, 150_000)).toBe(3)
        // The 4th start came only once the 1st left the window.
        expect(sorted[3]! - sorted[0]!).toBeGreaterThanOrEqual(150_000)
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))

  it.live("slidingWindow: two limiters on separate connections share one limit", () =>
    withKey((key) =>
      Effect.gen(function*() {
        const a = yield* RedisRateLimiter.slidingWindow({ key, limit: 2, interval: "10 seconds" })
        const b = yield* otherProcess(RedisRateLimiter.slidingWindow({ key, limit: 2, interval: "10 seconds" }))
        yield* a.take()
        yield* b.take()
        expect(yield* Effect.timeout(b.take(), "200 millis").pipe(Effect.option)).toEqual(Option.none())
        expect(yield* Effect.timeout(a.take(), "200 millis").pipe(Effect.option)).toEqual(Option.none())
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))

  it.live("slidingWindow: an interrupted waiter records no start", () =>
    withKey((key, raw) =>
      Effect.gen(function*() {
        const limiter = yield* RedisRateLimiter.slidingWindow({ key, limit: 1, interval: "10 seconds" })
        yield* limiter.take()
        const waiter = yield* Effect.fork(limiter.take())
        yield* Effect.sleep("50 millis")
        yield* Fiber.interrupt(waiter)
        expect(yield* Effect.promise(() => raw.zcard(key))).toBe(1)
        // And the line is free again for the next caller of this process.
        expect(yield* Effect.timeout(limiter.take(), "100 millis").pipe(Effect.option)).toEqual(Option.none())
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))

  it.live("slidingWindow: the key expires once the window is over (no leftover state)", () =>
    withKey((key, raw) =>
      Effect.gen(function*() {
        const limiter = yield* RedisRateLimiter.slidingWindow({ key, limit: 5, interval: "2 seconds" })
        // The window and a second (3 s) less the time from the take to the read, measured around both (+1 ms: PTTL
        // rounds): a fixed "> 2 s" failed whenever a loaded machine took a second between them. Idle this still
        // tells 3 s from the bare window (2 s).
        const before = yield* Clock.currentTimeMillis
        yield* limiter.take()
        const pttl = yield* Effect.promise(() => raw.pttl(key))
        const elapsed = (yield* Clock.currentTimeMillis) - before
        expect(pttl).toBeGreaterThanOrEqual(3_000 - elapsed - 1)
        expect(pttl).toBeLessThanOrEqual(3_000)
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))

  for (
    const [name, make] of [["tokenBucket", RedisRateLimiter.tokenBucket], [
      "fixedWindow",
      RedisRateLimiter.fixedWindow
    ]] as const
  ) {
    it.live(`${name}: two limiters on separate connections share one limit`, () =>
      withKey((key) =>
        Effect.gen(function*() {
          const a = yield* make({ key, limit: 3, interval: "20 seconds" })
          const b = yield* otherProcess(make({ key, limit: 3, interval: "20 seconds" }))
          yield* a.take()
          yield* b.take()
          yield* a.take()
          expect(yield* Effect.timeout(b.take(), "200 millis").pipe(Effect.option)).toEqual(Option.none())
        }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
      ))
  }

  it.live("bad options fail with OptionError naming the field", () =>
    Effect.gen(function*() {
      const limit = yield* Effect.flip(RedisRateLimiter.slidingWindow({ key: "k", limit: 0, interval: "1 second" }))
      expect(limit).toBeInstanceOf(OptionError)
      expect(limit.message).toContain("`limit`")
      const interval = yield* Effect.flip(RedisRateLimiter.tokenBucket({ key: "k", limit: 1, interval: 0 }))
      expect(interval.message).toContain("`interval`")
      const key = yield* Effect.flip(RedisRateLimiter.fixedWindow({ key: "", limit: 1, interval: "1 second" }))
      expect(key.message).toContain("`key`")
    }).pipe(Effect.scoped, Effect.provide(RedisClient.layer())))

  it.live(
    "4 processes at full speed against one sliding window: zero windows over the limit",
    () =>
      withKey((key, raw) =>
        Effect.promise(async () => {
          const limit = 20
          const intervalMs = 1_000
          const logKey = `${key}:log`
          const children = Array.from(
            { length: 4 },
            () =>
              spawnFixture("test/fixtures/redis-rateLimiter.ts", [
                key,
                String(limit),
                String(intervalMs),
                "3000",
                logKey
              ])
          )
          try {
            await Promise.all(children.map((c) => c.waitFor((l) => l === "ready")))
            await raw.set(`${logKey}:go`, "1")
            const codes = await Promise.all(children.map((c) => c.exited(45_000)))
            expect(codes).toEqual([0, 0, 0, 0])
            const counts = children.map((c) => Number(c.lines.find((l) => l.startsWith("done "))!.slice(5)))
            const times = (await raw.lrange(logKey, 0, -1)).map(Number).sort((a, b) => a - b)
            expect(times.length).toBe(counts.reduce((a, b) => a + b, 0))
            // Full speed: over ~3 s the limit was reached in every window (3 full windows and a partial one).
            expect(times.length).toBeGreaterThanOrEqual(3 * limit)
            expect(times.length).toBeLessThanOrEqual(4 * limit)
            // Every process got starts: the limit is shared, not per process.
            expect(counts.every((n) => n > 0)).toBe(true)
            expect(maxInWindow(times, intervalMs * 1000)).toBe(limit)
          } finally {
            for (const c of children) c.kill()
          }
        })
      ),
    90_000
  )
})
