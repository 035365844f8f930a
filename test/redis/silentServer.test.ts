/**
 * A Redis address whose server accepts the connection and never answers. ioredis then waits for its ready check
 * forever; before the fix that wait was the acquire of an `acquireRelease` (uninterruptible), so no timeout around
 * `RedisClient.layer` could end it, and a queue's wake-up subscription made inside the core's uninterruptible lease
 * held that lease for as long. Both tests failed by the vitest timeout (15 s) without the fix; the second now also
 * fails if a lease waits for the subscription at all.
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
    "a wake-up subscription holds no uninterruptible lease (arm returns at once), and the queue's scope still closes",
    () =>
      Effect.gen(function*() {
        const server = yield* silentServer
        const before = Date.now()
        yield* Effect.scoped(Effect.gen(function*() {
          const wake = yield* RedisWake.make({ url: server.url }, "silent:wake")
          // As the core's fetcher calls it: inside an uninterruptible region. It waited for the subscription (until
          // its 10 s timeout, SUBSCRIBE_TIMEOUT in redisWake.ts, against this server) before issue #16's change; now
          // the attempt goes on in the background. Timed alone (not with the connection's set-up, as 1 s was) and
          // bounded at half that timeout: a wait for the subscription takes all 10 s at any load, a loaded machine's
          // stall does not take 5.
          const arming = Date.now()
          yield* Effect.uninterruptible(wake.arm)
          expect(Date.now() - arming).toBeLessThan(5_000)
          // A second lease does not start a second attempt while the first is in progress.
          yield* Effect.uninterruptible(wake.arm)
          while (server.accepted() === 0) yield* Effect.sleep("10 millis")
          yield* Effect.sleep("100 millis")
          expect(server.accepted()).toBe(1)
        }))
        // The attempt in progress is interrupted as the scope closes: well under its 10 s timeout.
        expect(Date.now() - before).toBeLessThan(9_000)
      }).pipe(Effect.scoped),
    15_000
  )
})
