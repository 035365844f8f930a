/**
 * Three "processes" (here three separate Redis connections and queues in one program, to stay self-contained)
 * require the same 20 items at once through `effect-workers/redis`: each item's worker runs once in total, the
 * results land in Redis, and a rate limiter shared through Redis spaces the runs. Needs Redis on 127.0.0.1:6379.
 *
 *   npx tsx examples/redis-single-flight.ts
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { randomUUID } from "node:crypto"
import { RateLimiter, RedisClient, ResultCache, WorkerQueue } from "../src/redis.js"

const prefix = `example:${randomUUID()}:`
let runs = 0

// What one process would do: its own connection, cache, limiter and queue, all sharing Redis state.
const onePeer = Effect.gen(function*() {
  const cache = yield* ResultCache.make<number, number, number>({
    schema: Schema.Number,
    prefix,
    timeToLive: "1 minute"
  })
  const limiter = yield* RateLimiter.slidingWindow({ key: `${prefix}limit`, limit: 10, interval: "1 second" })
  const squares = yield* WorkerQueue.make({
    cache,
    concurrency: 8,
    lockPrefix: `${prefix}lock:`,
    worker: (n: number) => limiter.take().pipe(Effect.zipRight(Effect.sync(() => (runs++, n * n))))
  })
  return yield* squares.requireAll(Array.from({ length: 20 }, (_, i) => i))
}).pipe(Effect.scoped, Effect.provide(Layer.fresh(RedisClient.layer({ url: "redis://127.0.0.1:6379" }))))

const program = Effect.gen(function*() {
  const started = Date.now()
  const results = yield* Effect.all([onePeer, onePeer, onePeer], { concurrency: "unbounded" })
  console.log(`3 processes x 20 requires: ${runs} worker runs in ${Date.now() - started} ms (10 runs/s allowed)`)
  console.log(`every process got the same squares: ${results.every((r) => r.join() === results[0]!.join())}`)
  // Clean up the example's keys.
  const { client } = yield* RedisClient.RedisClient
  const keys = yield* Effect.promise(() => client.keys(`${prefix}*`))
  if (keys.length > 0) yield* Effect.promise(() => client.del(...keys))
}).pipe(Effect.provide(RedisClient.layer()))

Effect.runPromise(program).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
