import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type { Redis } from "ioredis"
import { OptionError } from "../../src/OptionError.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import * as RedisResultCache from "../../src/redis/ResultCache.js"
import * as RedisWorkerQueue from "../../src/redis/WorkerQueue.js"
import { spawnFixture } from "../helpers/processes.js"
import { withRedisPrefix } from "../helpers/redis.js"
import { redis, requireService } from "../helpers/services.js"

const up = await requireService(redis)

const withPrefix = <A, E, R>(f: (prefix: string, raw: Redis) => Effect.Effect<A, E, R>) => withRedisPrefix("wq", f)

// A queue on a connection of its own, as another process would have. Its items are numbers, or any items with a
// `key` that gives a number.
const queueOn = <A, I, E, Item = number>(
  prefix: string,
  worker: (item: Item) => Effect.Effect<A, E>,
  schema: Schema.Schema<A, I>,
  { connectionName, key, lockTimeToLive = "1 second" }: {
    lockTimeToLive?: Duration.DurationInput
    connectionName?: string
    key?: (item: Item) => number
  } = {}
) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      RedisClient.layer(connectionName === undefined ? {} : { options: { connectionName } })
    )
    return yield* Effect.provide(
      Effect.gen(function*() {
        const cache = yield* RedisResultCache.make<number, A, I>({ schema, prefix: `${prefix}r:` })
        return yield* RedisWorkerQueue.make<Item, A, E, never, number>({
          cache,
          worker,
          key,
          lockTimeToLive,
          lockPrefix: `${prefix}lock:`
        })
      }),
      context
    )
  })

describe.skipIf(!up)("redis WorkerQueue (single-flight across processes)", () => {
  it.live("two queues on separate connections: one run, both get its result, the result is in Redis", () =>
    withPrefix((prefix, raw) =>
      Effect.gen(function*() {
        let runs = 0
        const worker = (n: number) =>
          Effect.sync(() => runs++).pipe(Effect.zipRight(Effect.sleep("100 millis")), Effect.as(n * 2))
        const a = yield* queueOn(prefix, worker, Schema.Number)
        const b = yield* queueOn(prefix, worker, Schema.Number)
        const results = yield* Effect.all([a.require(21), b.require(21), a.require(21), b.require(21)], {
          concurrency: "unbounded"
        })
        expect(results).toEqual([42, 42, 42, 42])
        expect(runs).toBe(1)
        expect(yield* Effect.promise(() => raw.get(`${prefix}r:21`))).toBe("42")
        // The lock is gone with the run.
        expect(yield* Effect.promise(() => raw.exists(`${prefix}lock:${prefix}r:21`))).toBe(0)
      }).pipe(Effect.scoped)
    ))

  it.live("a failure is not shared: the holder's waiters fail, a waiting process runs the worker itself", () =>
    withPrefix((prefix) =>
      Effect.gen(function*() {
        let runs = 0
        const worker = (n: number) =>
          Effect.suspend(() => {
            const run = ++runs
            return Effect.sleep("100 millis").pipe(
              Effect.zipRight(run === 1 ? Effect.fail("boom" as const) : Effect.succeed(n * 2))
            )
          })
        const a = yield* queueOn(prefix, worker, Schema.Number)
        const b = yield* queueOn(prefix, worker, Schema.Number)
        const first = yield* Effect.fork(Effect.exit(a.require(1)))
        // b asks once a's run holds the lock.
        while (runs === 0) yield* Effect.sleep("5 millis")
        const second = yield* Effect.exit(b.require(1))
        expect(yield* Fiber.join(first)).toEqual(Exit.fail("boom"))
        expect(second).toEqual(Exit.succeed(2))
        expect(runs).toBe(2)
      }).pipe(Effect.scoped)
    ))

  it.live("a holder stalled longer than lockTimeToLive takes its lapsed lock again: a process asking later waits for its run instead of running it twice", () =>
    withPrefix((prefix, raw) =>
      Effect.gen(function*() {
        let runs = 0
        const running = yield* Deferred.make<void>()
        const finish = yield* Deferred.make<void>()
        const worker = (n: number) =>
          Effect.suspend(() =>
            ++runs > 1 ? Effect.succeed(n * 2) : Deferred.succeed(running, undefined).pipe(
              // The stall: this process's event loop is blocked for 3 times the lock's time to live.
              Effect.zipRight(Effect.sync(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 900))),
              Effect.zipRight(Deferred.await(finish)),
              Effect.as(n * 2)
            )
          )
        const name = `b${Math.random().toString(36).slice(2)}`
        const a = yield* queueOn(prefix, worker, Schema.Number, { lockTimeToLive: "300 millis" })
        const b = yield* queueOn(prefix, worker, Schema.Number, { lockTimeToLive: "300 millis", connectionName: name })
        const lockKey = `${prefix}lock:${prefix}r:7`
        const holder = yield* Effect.fork(a.require(7))
        yield* Deferred.await(running)
        // The lock lapsed during the stall; the holder's next refresh takes it again.
        for (let i = 0; i < 500 && (yield* Effect.promise(() => raw.exists(lockKey))) === 0; i++) {
          yield* Effect.sleep("5 millis")
        }
        expect(yield* Effect.promise(() => raw.exists(lockKey))).toBe(1)
        const waiter = yield* Effect.fork(b.require(7))
        // b has looked once its connection ran the lock script.
        const looked = Effect.promise(() => raw.client("LIST") as Promise<string>).pipe(
          Effect.map((list) =>
            list.split("\n").some((line) => line.includes(` name=${name} `) && / cmd=eval(sha)? /.test(line))
          )
        )
        for (let i = 0; i < 1_000 && !(yield* looked); i++) yield* Effect.sleep("5 millis")
        expect(yield* looked).toBe(true)
        yield* Deferred.succeed(finish, undefined)
        expect(yield* Fiber.join(holder)).toBe(14)
        expect(yield* Fiber.join(waiter)).toBe(14)
        expect(runs).toBe(1)
      }).pipe(Effect.scoped)
    ))

  it.live("key (DataLoader's cacheKeyFn): items with equal keys share one run across processes and its stored result", () =>
    withPrefix((prefix, raw) =>
      Effect.gen(function*() {
        interface Job {
          readonly id: number
          readonly attempt: number
        }
        let runs = 0
        const started = yield* Deferred.make<void>()
        const finish = yield* Deferred.make<void>()
        const worker = (job: Job) =>
          Effect.sync(() => runs++).pipe(
            Effect.zipRight(Deferred.succeed(started, undefined)),
            Effect.zipRight(Deferred.await(finish)),
            Effect.as(job.id * 2)
          )
        const queue = queueOn(prefix, worker, Schema.Number, { key: (job: Job) => job.id })
        const [a, b, c] = [yield* queue, yield* queue, yield* queue]
        const first = yield* Effect.fork(a.require({ id: 7, attempt: 1 }))
        yield* Deferred.await(started)
        // a's run holds the lock of key 7 (or, once done, its result is stored): b's item of key 7 waits for it or
        // reads it, whatever the timing; keyed by the item, it took a lock of its own and ran again.
        const second = yield* Effect.fork(b.require({ id: 7, attempt: 2 }))
        const joined = yield* Effect.fork(a.require({ id: 7, attempt: 3 }))
        yield* Deferred.succeed(finish, undefined)
        expect(yield* Effect.all([Fiber.join(first), Fiber.join(second), Fiber.join(joined)])).toEqual([14, 14, 14])
        expect(runs).toBe(1)
        expect(yield* Effect.promise(() => raw.get(`${prefix}r:7`))).toBe("14")
        expect(yield* Effect.promise(() => raw.keys(`${prefix}r:*`))).toEqual([`${prefix}r:7`])
        // A third process reads the stored result under the key: a hit, no run.
        expect(yield* c.require({ id: 7, attempt: 4 })).toBe(14)
        expect(runs).toBe(1)
        expect((yield* c.stats).hits).toBe(1)
        expect((yield* a.stats).deduplicated).toBe(1)
      }).pipe(Effect.scoped)
    ))

  it.live("an unreadable stored result is recomputed and replaced", () =>
    withPrefix((prefix, raw) =>
      Effect.gen(function*() {
        yield* Effect.promise(() => raw.set(`${prefix}r:3`, "\"three\""))
        let runs = 0
        const queue = yield* queueOn(prefix, (n: number) => Effect.sync(() => (runs++, n * 2)), Schema.Number)
        expect(yield* queue.require(3)).toBe(6)
        expect(runs).toBe(1)
        expect(yield* Effect.promise(() => raw.get(`${prefix}r:3`))).toBe("6")
      }).pipe(Effect.scoped)
    ))

  it.live("bad options fail with OptionError", () =>
    Effect.gen(function*() {
      const cache = yield* RedisResultCache.make<number, number, number>({ schema: Schema.Number })
      const error = yield* Effect.flip(
        RedisWorkerQueue.make({ cache, worker: (n: number) => Effect.succeed(n), lockTimeToLive: "1 milli" })
      )
      expect(error).toBeInstanceOf(OptionError)
      expect(error.message).toContain("lockTimeToLive")
      const key = yield* Effect.flip(
        RedisWorkerQueue.make({ cache, worker: (n: number) => Effect.succeed(n), key: "id" as unknown as () => number })
      )
      expect(key).toBeInstanceOf(OptionError)
      expect(key).toMatchObject({ module: "RedisWorkerQueue", field: "key", value: "id" })
    }).pipe(Effect.scoped, Effect.provide(RedisClient.layer())))

  it.live(
    "4 processes × 1,000 requires over 100 keys: exactly 100 worker runs in the cluster",
    () =>
      withPrefix((prefix, raw) =>
        Effect.promise(async () => {
          const children = Array.from(
            { length: 4 },
            () => spawnFixture("test/fixtures/redis-workerQueue.ts", ["many", prefix, "100", "1000"])
          )
          try {
            await Promise.all(children.map((c) => c.waitFor((l) => l === "ready")))
            await raw.set(`${prefix}go`, "1")
            expect(await Promise.all(children.map((c) => c.exited(45_000)))).toEqual([0, 0, 0, 0])
            // Every require got the right answer…
            expect(children.map((c) => c.lines.find((l) => l.startsWith("done ")))).toEqual(Array(4).fill("done 0"))
            // …and each of the 100 items ran once in the whole cluster.
            expect(Number(await raw.get(`${prefix}runs`))).toBe(100)
          } finally {
            for (const c of children) c.kill()
          }
        })
      ),
    90_000
  )

  it.live(
    "takeover: the lock holder is killed with SIGKILL; a waiting process finishes the item after the lock expires",
    () =>
      withPrefix((prefix, raw) =>
        Effect.promise(async () => {
          const holder = spawnFixture("test/fixtures/redis-workerQueue.ts", ["hold", prefix, "A", "7", "60000"])
          const waiter = spawnFixture("test/fixtures/redis-workerQueue.ts", ["hold", prefix, "B", "7", "10"])
          try {
            await Promise.all([holder.waitFor((l) => l === "ready"), waiter.waitFor((l) => l === "ready")])
            await raw.set(`${prefix}go:A`, "1")
            await holder.waitFor((l) => l === "running")
            await raw.set(`${prefix}go:B`, "1")
            // While the holder lives it refreshes its 1 s lock: after 2.5 s the waiter still has not run the item.
            await new Promise((resolve) => setTimeout(resolve, 2_500))
            expect(waiter.lines).toEqual(["ready"])
            expect(Number(await raw.get(`${prefix}runs`))).toBe(1)
            holder.kill("SIGKILL")
            expect(await holder.exited()).toBe("SIGKILL")
            await waiter.waitFor((l) => l.startsWith("result "), 10_000)
            expect(waiter.lines).toEqual(["ready", "running", "result 14"])
            expect(Number(await raw.get(`${prefix}runs`))).toBe(2)
            expect(await raw.get(`${prefix}r:7`)).toBe("14")
            expect(await waiter.exited()).toBe(0)
          } finally {
            holder.kill()
            waiter.kill()
          }
        })
      ),
    60_000
  )
})
