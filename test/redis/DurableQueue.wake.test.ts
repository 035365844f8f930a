/**
 * Redis wake-ups (src/internal/durableQueue/redisWake.ts): an offer made through another connection (as another
 * process would) wakes an idle taker at once, not at its next poll. The poll interval is 10 s and the wait for the
 * job 5 s, so without the wake-up the job would arrive at the poll, after the wait: the test fails.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as DurableQueue from "../../src/redis/DurableQueue.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import { withRedisPrefix } from "../helpers/redis.js"
import { redis, requireService } from "../helpers/services.js"

const up = await requireService(redis)

const queueOf = (prefix: string) => DurableQueue.make({ name: "jobs", prefix, schema: Schema.Number, pollInterval: "10 seconds" })

describe.skipIf(!up)("redis DurableQueue wake-ups", () => {
  it.live("an offer from another connection wakes an idle taker well before its 10 s poll", () =>
    withRedisPrefix("dqwake", (prefix, raw) =>
      Effect.gen(function*() {
        const taker = yield* queueOf(prefix)
        const offerer = yield* queueOf(prefix)
        // A first job, offered and taken here: the taker has leased (and so subscribed) before it goes idle.
        yield* taker.offer(1)
        expect(yield* taker.take((n) => Effect.succeed(n))).toEqual(Exit.succeed(1))
        const waiting = yield* Effect.fork(taker.take((n) => Effect.succeed(n)))
        // The taker's instance subscribed: its wake channel has a subscriber (the offerer's has not taken, so none).
        const [, subscribers] = (yield* Effect.promise(() => raw.pubsub("NUMSUB", `${prefix}{jobs}:wake`))) as [string, number]
        expect(Number(subscribers)).toBe(1)
        yield* offerer.offer(2)
        const got = yield* Fiber.join(waiting).pipe(Effect.timeout("5 seconds"), Effect.option)
        expect(got).toEqual(Option.some(Exit.succeed(2)))
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))), 30_000)
})
