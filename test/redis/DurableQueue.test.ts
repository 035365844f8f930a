import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Redis } from "ioredis"
import { OptionError } from "../../src/OptionError.js"
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

const nothingWithin = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.timeout(effect, "300 millis").pipe(Effect.option, Effect.map(Option.isNone))

describe.skipIf(!up)("redis DurableQueue (PersistedQueue over our Redis store)", () => {
  it.live("offer by id: the same id offered twice is delivered once", () =>
    withPrefix((prefix) =>
      Effect.gen(function*() {
        const queue = yield* queueOf(prefix)
        expect(yield* queue.offer(1, { id: "job-1" })).toBe("job-1")
        yield* queue.offer(1, { id: "job-1" })
        const seen: Array<string> = []
        yield* queue.take((n, job) => Effect.sync(() => seen.push(`${job.id}=${n}`)))
        expect(seen).toEqual(["job-1=1"])
        expect(yield* nothingWithin(queue.take(() => Effect.void))).toBe(true)
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))

  it.live("at-least-once: a failed attempt puts the job back; it is acknowledged only after a success", () =>
    withPrefix((prefix) =>
      Effect.gen(function*() {
        const queue = yield* queueOf(prefix)
        yield* queue.offer(7)
        const handler = (n: number, job: DurableQueue.Job) =>
          job.attempt === 1 ? Effect.fail(`attempt ${job.attempt} failed`) : Effect.succeed(n * 2)
        expect(yield* queue.take(handler)).toEqual(Exit.fail("attempt 1 failed"))
        expect(yield* queue.take(handler)).toEqual(Exit.succeed(14))
        expect(yield* nothingWithin(queue.take(handler))).toBe(true)
        expect(yield* queue.deadLetters).toEqual([])
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))

  it.live("after maxAttempts failures the job goes to the dead letters with its last error", () =>
    withPrefix((prefix) =>
      Effect.gen(function*() {
        const queue = yield* queueOf(prefix, 2)
        const id = yield* queue.offer(5)
        const handler = (_n: number, job: DurableQueue.Job) => Effect.fail(`boom-${job.attempt}`)
        expect(yield* queue.take(handler)).toEqual(Exit.fail("boom-1"))
        expect(yield* queue.take(handler)).toEqual(Exit.fail("boom-2"))
        expect(yield* nothingWithin(queue.take(handler))).toBe(true)
        const dead = yield* queue.deadLetters
        expect(dead.map(({ attempts, id, value }) => ({ id, value, attempts }))).toEqual([{ id, value: 5, attempts: 2 }])
        expect(dead[0]!.lastError).toContain("boom-2")
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))

  it.live("an interrupted handler puts its job back without counting an attempt", () =>
    withPrefix((prefix) =>
      Effect.gen(function*() {
        const queue = yield* queueOf(prefix, 1)
        yield* queue.offer(3)
        let started = false
        const fiber = yield* Effect.fork(queue.take(() => Effect.zipRight(Effect.sync(() => (started = true)), Effect.never)))
        while (!started) yield* Effect.sleep("5 millis")
        yield* Fiber.interrupt(fiber)
        expect(yield* queue.take((n, job) => Effect.succeed([n, job.attempt]))).toEqual(Exit.succeed([3, 1]))
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))

  it.live("run: 200 jobs over 8 takers in two queues (two connections), each acknowledged once", () =>
    withPrefix((prefix, raw) =>
      Effect.gen(function*() {
        const a = yield* queueOf(prefix)
        const b = yield* queueOf(prefix)
        yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) => a.offer(i, { id: `j${i}` }), { discard: true })
        const done = new Map<number, number>()
        const handler = (n: number) => Effect.sync(() => done.set(n, (done.get(n) ?? 0) + 1))
        yield* Effect.forkScoped(a.run(handler, { concurrency: 4 }))
        yield* Effect.forkScoped(b.run(handler, { concurrency: 4 }))
        for (let i = 0; i < 500 && done.size < 200; i++) yield* Effect.sleep("10 millis")
        expect(done.size).toBe(200)
        expect([...done.values()].every((n) => n === 1)).toBe(true)
        expect(yield* Effect.promise(() => raw.hlen(`${prefix}jobs:pending`))).toBe(0)
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))

  it.live("a job running through several lease checks is neither handed out again nor lost (upstream store bug)", () =>
    withPrefix((prefix, raw) =>
      Effect.gen(function*() {
        const make = DurableQueue.make({ name: "jobs", prefix, schema: Schema.Number, pollInterval: "10 millis", leaseDuration: "150 millis" })
        const a = yield* make
        const b = yield* make
        yield* Effect.forEach([1, 2, 3], (n) => a.offer(n, { id: `j${n}` }), { discard: true })
        const runs: Array<number> = []
        const handler = (n: number) => Effect.zipRight(Effect.sync(() => runs.push(n)), Effect.sleep("400 millis"))
        yield* Effect.forkScoped(a.run(handler, { concurrency: 2 }))
        yield* Effect.forkScoped(b.run(handler, { concurrency: 2 }))
        const pending = Effect.promise(() => raw.hlen(`${prefix}jobs:pending`))
        for (let i = 0; i < 300 && (runs.length < 3 || (yield* pending) > 0); i++) yield* Effect.sleep("10 millis")
        // Several more lease checks pass: nothing comes back.
        yield* Effect.sleep("500 millis")
        expect(runs.sort()).toEqual([1, 2, 3])
        expect(yield* Effect.promise(() => raw.llen(`${prefix}jobs`))).toBe(0)
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))

  it.live("bad options fail with OptionError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(DurableQueue.make({ name: "q", schema: Schema.Number, maxAttempts: 0 }))
      expect(error).toBeInstanceOf(OptionError)
      expect(error.message).toContain("maxAttempts")
    }).pipe(Effect.scoped, Effect.provide(RedisClient.layer())))

  it.live("a taker killed with SIGKILL: its job comes back after the lease and another taker finishes it", () =>
    withPrefix((prefix) =>
      Effect.gen(function*() {
        const queue = yield* DurableQueue.make({ name: "jobs", prefix, schema: Schema.Number, pollInterval: "20 millis", leaseDuration: "600 millis" })
        const child = spawnFixture("test/fixtures/redis-durableQueue.ts", [prefix, "jobs"])
        yield* Effect.addFinalizer(() => Effect.sync(() => child.kill()))
        yield* Effect.promise(() => child.waitFor((l) => l === "ready"))
        const id = yield* queue.offer(9)
        yield* Effect.promise(() => child.waitFor((l) => l.startsWith("took ")))
        expect(child.lines).toContain(`took ${id}`)
        child.kill("SIGKILL")
        expect(yield* Effect.promise(() => child.exited())).toBe("SIGKILL")
        const exit = yield* queue.take((n, job) => Effect.succeed([n, job.id])).pipe(Effect.timeout("10 seconds"))
        expect(exit).toEqual(Exit.succeed([9, id]))
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ), 60_000)

  it.live("a late settlement leaves alone a job another taker holds now: no ack, no requeue, its lock kept", () =>
    withPrefix((prefix, raw) =>
      Effect.gen(function*() {
        const queue = yield* queueOf(prefix)
        yield* queue.offer(1, { id: "stale-ok" })
        yield* queue.offer(2, { id: "stale-fail" })
        yield* queue.offer(3, { id: "marker" })
        // While each handler runs, its lease "lapses" and another taker (another process) takes the job: its lock
        // now holds someone else's token.
        const stolen = (id: string) => Effect.promise(() => raw.set(`${prefix}jobs:lock:${id}`, "another-worker", "PX", 60_000))
        yield* queue.take((_n, job) => stolen(job.id))
        yield* queue.take((_n, job) => Effect.zipRight(stolen(job.id), Effect.fail("boom")))
        // A job settled after those, on the same connection: once it is acknowledged, so were they (or not).
        yield* queue.take(() => Effect.void)
        for (let i = 0; i < 200 && (yield* Effect.promise(() => raw.hexists(`${prefix}jobs:pending`, "marker"))) === 1; i++) {
          yield* Effect.sleep("10 millis")
        }
        expect(yield* Effect.promise(() => raw.hexists(`${prefix}jobs:pending`, "marker"))).toBe(0)
        for (const id of ["stale-ok", "stale-fail"]) {
          expect(yield* Effect.promise(() => raw.hexists(`${prefix}jobs:pending`, id))).toBe(1)
          expect(yield* Effect.promise(() => raw.get(`${prefix}jobs:lock:${id}`))).toBe("another-worker")
        }
        // The failed one was not put back in the queue either: the other taker owns it.
        expect(yield* Effect.promise(() => raw.llen(`${prefix}jobs`))).toBe(0)
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))
})
