/**
 * The durable queue across real processes: three runners share one queue; one is killed (SIGKILL) or terminated
 * (SIGTERM) mid-run.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { Redis } from "ioredis"
import * as DurableQueue from "../../src/redis/DurableQueue.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import { spawnFixture } from "../helpers/processes.js"
import { redis, requireService } from "../helpers/services.js"
import { withRedisPrefix } from "../helpers/redis.js"

const up = await requireService(redis)

const withPrefix = <A, E, R>(f: (prefix: string, raw: Redis) => Effect.Effect<A, E, R>) =>
  withRedisPrefix("dq", f)

const queueOf = (prefix: string, maxAttempts = 3) =>
  DurableQueue.make({ name: "jobs", prefix, schema: Schema.Number, maxAttempts, pollInterval: "10 millis", leaseDuration: "2 seconds" })


describe.skipIf(!up)("redis DurableQueue across processes", () => {
  for (const signal of ["SIGKILL", "SIGTERM"] as const) {
    it.live(`3 runner processes share 2,000 jobs, one gets ${signal} mid-run: every job done, none lost${signal === "SIGTERM" ? ", none redone" : ""}`, () =>
      withPrefix((prefix, raw) =>
        Effect.gen(function*() {
          const jobs = 2_000
          const queue = yield* queueOf(prefix)
          yield* Effect.forEach(Array.from({ length: jobs }, (_, i) => i), (i) => queue.offer(i, { id: `j${i}` }), {
            concurrency: 16,
            discard: true
          })
          const runners = Array.from({ length: 3 }, () => spawnFixture("test/fixtures/redis-durableRunner.ts", [prefix]))
          yield* Effect.addFinalizer(() => Effect.sync(() => runners.forEach((r) => r.kill())))
          const doneCount = Effect.promise(() => raw.hlen(`${prefix}done`))
          yield* Effect.promise(() => Promise.all(runners.map((r) => r.waitFor((l) => l === "ready"))))
          while ((yield* doneCount) < 200) yield* Effect.sleep("5 millis")
          runners[0]!.kill(signal)
          expect(yield* Effect.promise(() => runners[0]!.exited())).toBe(signal === "SIGKILL" ? "SIGKILL" : 0)
          for (let i = 0; i < 3_000 && (yield* doneCount) < jobs; i++) yield* Effect.sleep("10 millis")
          const done = yield* Effect.promise(() => raw.hgetall(`${prefix}done`))
          // Every job completed at least once, and the queue is empty with nothing leased.
          expect(Object.keys(done).length).toBe(jobs)
          expect(yield* Effect.promise(() => raw.llen(`${prefix}jobs`))).toBe(0)
          for (let i = 0; i < 200 && (yield* Effect.promise(() => raw.hlen(`${prefix}jobs:pending`))) > 0; i++) {
            yield* Effect.sleep("10 millis")
          }
          expect(yield* Effect.promise(() => raw.hlen(`${prefix}jobs:pending`))).toBe(0)
          const twice = Object.values(done).filter((n) => n !== "1").length
          // A killed runner may have finished a job without acknowledging it (at most its 8 running ones);
          // a terminated one acknowledges what it finished and puts back the rest.
          if (signal === "SIGTERM") expect(twice).toBe(0)
          else expect(twice).toBeLessThanOrEqual(8)
        }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
      ), 90_000)
  }
})
