import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Redis } from "ioredis"
import { OptionError } from "../../src/OptionError.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import * as RedisResultCache from "../../src/redis/ResultCache.js"
import * as WorkerQueue from "../../src/WorkerQueue.js"
import { withRedisPrefix } from "../helpers/redis.js"
import { redis, requireService } from "../helpers/services.js"

const up = await requireService(redis)

const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ message }) => {
    lines.push(Array.isArray(message) ? message.join(" ") : String(message))
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

// Each test works under its own prefix and deletes every key under it afterwards.
const withPrefix = <A, E, R>(f: (prefix: string, raw: Redis) => Effect.Effect<A, E, R>) =>
  withRedisPrefix("rc", f).pipe(Effect.provide(RedisClient.layer()))

describe.skipIf(!up)("redis ResultCache", () => {
  it.live("get after set returns the value; an absent key is a miss", () =>
    withPrefix((prefix) =>
      Effect.gen(function*() {
        const cache = yield* RedisResultCache.make({ schema: Schema.Number, prefix })
        expect(yield* cache.get("a")).toEqual(Option.none())
        yield* cache.set("a", 42)
        expect(yield* cache.get("a")).toEqual(Option.some(42))
      })
    ))

  it.live("a stored null or 0 is a hit, not a miss", () =>
    withPrefix((prefix) =>
      Effect.gen(function*() {
        const cache = yield* RedisResultCache.make({ schema: Schema.NullOr(Schema.Number), prefix })
        yield* cache.set("zero", 0)
        yield* cache.set("null", null)
        expect(yield* cache.get("zero")).toEqual(Option.some(0))
        expect(yield* cache.get("null")).toEqual(Option.some(null))
      })
    ))

  it.live("keys sit under the prefix, values are the schema's JSON encoding", () =>
    withPrefix((prefix, raw) =>
      Effect.gen(function*() {
        const cache = yield* RedisResultCache.make({
          schema: Schema.Struct({ at: Schema.DateFromString }),
          prefix
        })
        yield* cache.set({ id: 1 } as unknown as never, { at: new Date("2020-01-02T00:00:00.000Z") })
        const stored = yield* Effect.promise(() => raw.get(`${prefix}{"id":1}`))
        expect(JSON.parse(stored!)).toEqual({ at: "2020-01-02T00:00:00.000Z" })
        const back = yield* cache.get({ id: 1 } as unknown as never)
        expect(Option.getOrThrow(back).at.getTime()).toBe(Date.UTC(2020, 0, 2))
      })
    ))

  it.live("timeToLive is set on the key by the write (Redis PX)", () =>
    withPrefix((prefix, raw) =>
      Effect.gen(function*() {
        const cache = yield* RedisResultCache.make({ schema: Schema.Number, prefix, timeToLive: "10 seconds" })
        // The TTL left is 10 s less the time from the write to the read (measured around both, +1 ms: PTTL rounds):
        // a fixed "> 9 s" failed whenever a loaded machine took a second between them.
        const before = yield* Clock.currentTimeMillis
        yield* cache.set("a", 1)
        const pttl = yield* Effect.promise(() => raw.pttl(`${prefix}a`))
        const elapsed = (yield* Clock.currentTimeMillis) - before
        expect(pttl).toBeGreaterThanOrEqual(10_000 - elapsed - 1)
        expect(pttl).toBeLessThanOrEqual(10_000)
        const forever = yield* RedisResultCache.make({ schema: Schema.Number, prefix: `${prefix}f:` })
        yield* forever.set("a", 1)
        expect(yield* Effect.promise(() => raw.pttl(`${prefix}f:a`))).toBe(-1)
      })
    ))

  it.live("an entry expires after its timeToLive", () =>
    withPrefix((prefix) =>
      Effect.gen(function*() {
        const cache = yield* RedisResultCache.make({ schema: Schema.Number, prefix, timeToLive: "50 millis" })
        // Each read is judged by when it ended, counted from before the write (Redis's clock, which expires the key,
        // is this machine's): one that ended within the 50 ms must hit. Asserting a
        // hit on the first read whatever its time failed 4 runs in 60 beside 6 busy processes on 2 cores (the write
        // and the read took over 50 ms); with no load, 0 in 60.
        const before = yield* Clock.currentTimeMillis
        yield* cache.set("a", 1)
        let seen = yield* cache.get("a")
        let at = yield* Clock.currentTimeMillis
        const reads: Array<readonly [number, boolean]> = [[at - before, Option.isSome(seen)]]
        for (let i = 0; i < 100 && Option.isSome(seen); i++) {
          yield* Effect.sleep("10 millis")
          seen = yield* cache.get("a")
          at = yield* Clock.currentTimeMillis
          reads.push([at - before, Option.isSome(seen)])
        }
        expect(seen).toEqual(Option.none())
        // 1 ms of slack: Date.now() and Redis's expiry both round to the millisecond. Idle, the first read ends
        // within a few ms, so this asserts a hit; a TTL taken as 1 ms (or a write without PX) fails it.
        expect(reads.filter(([ms, hit]) => ms < 49 && !hit)).toEqual([])
      })
    ))

  it.live("a value the schema cannot decode is a miss and a logged warning", () => {
    const logs = captureLogs()
    return withPrefix((prefix, raw) =>
      Effect.gen(function*() {
        const cache = yield* RedisResultCache.make({ schema: Schema.Number, prefix })
        yield* Effect.promise(() => raw.set(`${prefix}bad`, JSON.stringify("not a number")))
        yield* Effect.promise(() => raw.set(`${prefix}garbage`, "{not json"))
        expect(yield* cache.get("bad")).toEqual(Option.none())
        expect(yield* cache.get("garbage")).toEqual(Option.none())
        expect(logs.lines.filter((l) => l.includes("cannot decode"))).toHaveLength(2)
        // The next write replaces the unreadable entry.
        yield* cache.set("bad", 7)
        expect(yield* cache.get("bad")).toEqual(Option.some(7))
      })
    ).pipe(Effect.provide(logs.layer))
  })

  it.live("a Redis failure is a typed ResultCacheError naming the key", () =>
    withPrefix((prefix, raw) =>
      Effect.gen(function*() {
        const cache = yield* RedisResultCache.make({ schema: Schema.Number, prefix })
        // A list at the key makes GET fail with WRONGTYPE.
        yield* Effect.promise(() => raw.rpush(`${prefix}list`, "x"))
        const error = yield* Effect.flip(cache.get("list"))
        expect(error._tag).toBe("ResultCacheError")
        expect(error.reason).toBe("GetFailed")
        expect(error.key).toBe(`${prefix}list`)
        expect(error.message).toContain("WRONGTYPE")
      })
    ))

  it.live("bad options fail with OptionError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(RedisResultCache.make({ schema: Schema.Number, timeToLive: -1 }))
      expect(error).toBeInstanceOf(OptionError)
      expect(error.message).toContain("timeToLive")
      const typo = yield* Effect.flip(
        RedisResultCache.make({ schema: Schema.Number, timeToLiv: "1 hour" } as RedisResultCache.Options<
          string,
          number,
          number
        >)
      )
      expect([typo.module, typo.field]).toEqual(["RedisResultCache", "timeToLiv"])
      expect(typo.message).toContain("did you mean `timeToLive`?")
    }).pipe(Effect.provide(RedisClient.layer())))

  it.live("an unreachable server fails the layer with RedisError ConnectFailed", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.scoped(
          RedisClient.make({
            url: "redis://127.0.0.1:1",
            options: { maxRetriesPerRequest: 0, retryStrategy: () => null }
          })
        )
      )
      expect(error._tag).toBe("RedisError")
      expect(error.reason).toBe("ConnectFailed")
    }))

  it.live("serves a WorkerQueue: a second queue (another process's view) hits what the first computed", () =>
    withPrefix((prefix) =>
      Effect.gen(function*() {
        let runs = 0
        const worker = (n: number) => Effect.sync(() => (runs++, n * n))
        const first = yield* RedisResultCache.make<number, number, number>({ schema: Schema.Number, prefix })
        const q1 = yield* WorkerQueue.make({ worker, cache: first })
        expect(yield* q1.require(12)).toBe(144)
        const second = yield* RedisResultCache.make<number, number, number>({ schema: Schema.Number, prefix })
        const q2 = yield* WorkerQueue.make({ worker, cache: second })
        expect(yield* q2.require(12)).toBe(144)
        expect(runs).toBe(1)
      }).pipe(Effect.scoped)
    ))
})
