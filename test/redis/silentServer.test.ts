/**
 * A Redis address whose server accepts the connection and never answers. ioredis then waits for its ready check
 * forever; before the fix that wait was the acquire of an `acquireRelease` (uninterruptible), so no timeout around
 * `RedisClient.layer` could end it, and a queue's wake-up subscription made inside the core's uninterruptible lease
 * held that lease for as long. Both tests fail by the vitest timeout (15 s) without the fix.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as RedisWake from "../../src/internal/durableQueue/redisWake.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import { silentServer } from "../helpers/silentServer.js"

describe("a Redis server that never answers", () => {
  it.live("a timeout around RedisClient.make ends the wait and closes the connection", () =>
    Effect.gen(function*() {
      const server = yield* silentServer
      const made = yield* RedisClient.make({ url: server.url }).pipe(
        Effect.scoped,
        Effect.timeout("300 millis"),
        Effect.option
      )
      expect(Option.isNone(made)).toBe(true)
      expect(server.accepted()).toBe(1)
    }).pipe(Effect.scoped), 15_000)

  it.live(
    "a wake-up subscription holds an uninterruptible lease 2 s at most, and the queue's scope still closes",
    () =>
      Effect.gen(function*() {
        const server = yield* silentServer
        const before = Date.now()
        yield* Effect.scoped(Effect.gen(function*() {
          const wake = yield* RedisWake.make({ url: server.url }, "silent:wake")
          // As the core's fetcher calls it: inside an uninterruptible region.
          yield* Effect.uninterruptible(wake.arm)
          const armed = Date.now() - before
          expect(armed).toBeGreaterThanOrEqual(1_900)
          // A second lease does not start a second attempt while the first is in progress.
          yield* Effect.uninterruptible(wake.arm)
          expect(server.accepted()).toBe(1)
        }))
        // 2 s per arm plus the close: well under the 10 s an attempt may take before it counts as failed.
        expect(Date.now() - before).toBeLessThan(9_000)
      }).pipe(Effect.scoped),
    15_000
  )
})
