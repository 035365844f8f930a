/**
 * Redis restarts during a run, on a private redis-server (its own port and directory, append-only file on) so the
 * shared Redis is never touched. The DurableQueue consumer, the cross-process WorkerQueue and the sliding-window
 * RateLimiter reconnect and go on; nothing is lost, nothing hangs, and what fails during the outage fails with a
 * typed error.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { Redis, type RedisOptions } from "ioredis"
import * as DurableQueue from "../../src/redis/DurableQueue.js"
import * as RedisRateLimiter from "../../src/redis/RateLimiter.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import * as RedisResultCache from "../../src/redis/ResultCache.js"
import * as RedisWorkerQueue from "../../src/redis/WorkerQueue.js"
import { hasRedisServer, type RedisServer, redisServer } from "../helpers/redisServer.js"
import { maxInWindow } from "../helpers/windows.js"

// Two ways to meet an outage: ioredis's own (commands wait in its offline queue for up to 20 reconnection attempts),
// and failing fast (a command fails after one attempt), where the Redis backends see errors.
const waiting: RedisOptions = { retryStrategy: () => 50 }
/** The lease of the DurableQueue restart case (ms). */
const LEASE_MS = 15_000

const failFast: RedisOptions = { retryStrategy: () => 50, maxRetriesPerRequest: 1 }

/** A connection of its own to `server`, as another process would have. */
const connection = (server: RedisServer, options: RedisOptions) =>
  Layer.build(RedisClient.layer({ url: server.url, options }))

const until = (condition: Effect.Effect<boolean>, what: string, timeoutMs = 20_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (!(yield* condition)) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep("5 millis")
    }
  })

/** "ok", "wrong value", "RedisError", "hang", or "defect"/"other" for anything else. */
const classify = (exit: Exit.Exit<number, unknown>, expected: number): string => {
  if (Exit.isSuccess(exit)) return exit.value === expected ? "ok" : "wrong value"
  if (Cause.defects(exit.cause).length > 0) return "defect"
  const failure = Cause.failureOption(exit.cause)
  if (failure._tag === "Some" && failure.value === "hang") return "hang"
  if (failure._tag === "Some" && failure.value instanceof RedisClient.RedisError) return "RedisError"
  return "other"
}

const withServer = <A, E>(f: (server: RedisServer) => Effect.Effect<A, E, Scope.Scope>, persistent = true) =>
  Effect.scoped(Effect.flatMap(redisServer({ persistent }), f))

describe.skipIf(!hasRedisServer)("redis restart", () => {
  it.live(
    "DurableQueue: Redis restarts mid-run; the consumer reconnects and every job is done, none lost",
    () =>
      withServer((server) =>
        Effect.gen(function*() {
          const queue = yield* DurableQueue.make({
            name: "jobs",
            schema: Schema.Number,
            pollInterval: "10 millis",
            // Long enough that no lease lapses during the outage (checked below): with 2 s, a loaded machine's
            // stop, start and reconnect outlasted it and 35 jobs ran twice (load 20).
            leaseDuration: `${LEASE_MS} millis`
          })
          const jobs = 300
          yield* Effect.forEach(Array.from({ length: jobs }, (_, i) => i), (i) => queue.offer(i, { id: `j${i}` }), {
            discard: true
          })
          const done = new Set<number>()
          let completions = 0
          yield* Effect.forkScoped(
            queue.run(
              (n) => Effect.zipRight(Effect.sleep("5 millis"), Effect.sync(() => (completions++, done.add(n)))),
              {
                concurrency: 8
              }
            )
          )
          yield* until(
            Effect.sync(() => done.size >= 50),
            "50 jobs done"
          )
          // Restart: stop (the append-only file is flushed on every write), start again on the same port and files.
          const stoppedAt = yield* Clock.currentTimeMillis
          yield* server.stop
          const during = done.size
          yield* Effect.sleep("300 millis")
          yield* server.start
          // The outage as this consumer saw it: from the stop to its first command answered after the start.
          yield* until(Effect.map(Effect.option(queue.size), Option.isSome), "the first answer after the restart")
          const outage = (yield* Clock.currentTimeMillis) - stoppedAt
          yield* until(Effect.sync(() => done.size >= jobs), "every job done")
          expect(during).toBeLessThan(jobs)
          expect(done.size).toBe(jobs)
          // Every job acknowledged: nothing waiting or leased. A job finished during the outage is acknowledged once
          // Redis is back (the store retries the settle for as long as a lease lasts, refreshing it meanwhile), so
          // none ran twice; a dropped acknowledgement would show here as a second run after the lease.
          yield* until(Effect.map(Effect.orDie(queue.size), (n) => n === 0), "every job acknowledged")
          // A lease is refreshed every third of its time, so it holds at least 2/3 of it past the stop: an outage
          // shorter than that (1 s of margin) lapses none, and then no job may run twice. After a longer one (a
          // machine stalled for seconds) only the jobs this consumer held at the stop may: the 8 running and up to
          // 4 x 8 leased ahead (core.ts LOOKAHEAD), each once.
          const redone = completions - jobs
          console.log(`Redis restart: outage ${outage} ms, ${redone} of ${jobs} jobs run twice`)
          if (outage < (LEASE_MS * 2) / 3 - 1_000) expect(redone).toBe(0)
          else expect(redone).toBeLessThanOrEqual(8 * (1 + 4))
        }).pipe(Effect.provide(RedisClient.layer({ url: server.url, options: failFast })))
      ),
    60_000
  )

  const modes = [
    {
      mode: "commands wait for the reconnect",
      options: waiting,
      persistent: true,
      claim: "every require gets its value, each item runs once"
    },
    {
      mode: "commands fail fast",
      options: failFast,
      persistent: true,
      claim: "every require settles, failures are RedisErrors"
    },
    {
      mode: "Redis comes back empty",
      options: waiting,
      persistent: false,
      claim: "every require gets its value, none hangs on a lost lock"
    }
  ] as const
  for (const { claim, mode, options, persistent } of modes) {
    it.live(
      `WorkerQueue (${mode}): two queues on separate connections require through a restart; ${claim}; afterwards single-flight goes on`,
      () =>
        withServer((server) =>
          Effect.gen(function*() {
            const prefix = "t:"
            const runs = new Map<number, number>()
            const worker = (n: number) =>
              Effect.sync(() => runs.set(n, (runs.get(n) ?? 0) + 1)).pipe(
                Effect.zipRight(Effect.sleep("20 millis")),
                Effect.as(n * 2)
              )
            const queueOn = (context: Context.Context<RedisClient.RedisClient>) =>
              Effect.provide(
                Effect.gen(function*() {
                  const cache = yield* RedisResultCache.make<number, number, number>({
                    schema: Schema.Number,
                    prefix: `${prefix}r:`
                  })
                  return yield* RedisWorkerQueue.make({
                    cache,
                    worker,
                    concurrency: 8,
                    lockTimeToLive: "3 seconds",
                    lockPrefix: `${prefix}lock:`
                  })
                }),
                context
              )
            const a = yield* queueOn(yield* connection(server, options))
            const b = yield* queueOn(yield* connection(server, options))
            const raw = new Redis(server.port, { retryStrategy: () => 50, lazyConnect: true })
            raw.on("error", () => {})
            yield* Effect.addFinalizer(() => Effect.sync(() => raw.disconnect()))
            const subscribers = Effect.promise(() =>
              raw.pubsub("NUMSUB", `${prefix}lock::done`).then((reply) => Number((reply as [string, number])[1]), () =>
                -1)
            )
            yield* until(
              Effect.map(subscribers, (n) =>
                n === 2),
              "both queues subscribed"
            )

            // Round 1: both processes require 400 items (each once), at 8 at a time; Redis goes away once 50 settled.
            const items = Array.from({ length: 400 }, (_, i) => i)
            let settled = 0
            const requireAll = (queue: typeof a) =>
              Effect.forEach(items, (n) =>
                queue.require(n).pipe(
                  Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => "hang" as const }),
                  Effect.exit,
                  Effect.map((exit) => classify(exit, n * 2)),
                  Effect.ensuring(Effect.sync(() => settled++))
                ), { concurrency: 8 })
            const fibers = yield* Effect.forEach([a, b], (queue) => Effect.fork(requireAll(queue)))
            yield* until(Effect.sync(() => settled >= 50), "50 requires settled")
            yield* server.stop
            yield* Effect.sleep("300 millis")
            yield* server.start
            const [outA, outB] = (yield* Fiber.joinAll(fibers)) as [Array<string>, Array<string>]
            const outcomes = [...outA, ...outB]
            const counts: Record<string, number> = {}
            for (const outcome of outcomes) counts[outcome] = (counts[outcome] ?? 0) + 1
            if (options === waiting) {
              // ioredis held the commands through the outage: every require got its value, and each item ran once in
              // both processes (the locks, refreshed through the outage, survived it in the append-only file). When
              // Redis comes back empty, the locks and results are gone: an item may run once more, never hang.
              expect(counts).toEqual({ ok: 800 })
              expect(items.filter((n) => persistent ? runs.get(n) !== 1 : !(runs.get(n)! >= 1 && runs.get(n)! <= 2)))
                .toEqual([])
            } else {
              // Failing fast: what ran into the outage failed with a RedisError; nothing hung, nothing died.
              expect(Object.keys(counts).filter((k) => k !== "ok" && k !== "RedisError")).toEqual([])
              expect(counts.RedisError ?? 0).toBeGreaterThan(0)
            }

            // Both subscriptions came back with the connections (the restarted server starts with none).
            yield* until(Effect.map(subscribers, (n) => n === 2), "both queues subscribed again")
            // Round 2, after the restart: 100 new items required by both processes at once run once each.
            const fresh = Array.from({ length: 100 }, (_, i) => 1_000 + i)
            const results = yield* Effect.all(
              [a, b].map((queue) => Effect.forEach(fresh, (n) => queue.require(n), { concurrency: 16 })),
              { concurrency: "unbounded" }
            ).pipe(Effect.timeout("20 seconds"))
            expect(results).toEqual([fresh.map((n) => n * 2), fresh.map((n) => n * 2)])
            expect(fresh.map((n) => runs.get(n))).toEqual(fresh.map(() => 1))
            // Round 1's items required again: all right, and every value a caller got in round 1 was stored (a holder
            // that met the outage stores its result once Redis is back), so none of those runs again. Failing fast,
            // only the items that nobody got (their requires failed) run now.
            const got = items.filter((n) => outA[n] === "ok" || outB[n] === "ok")
            if (options === waiting) expect(got).toEqual(items)
            const before = new Map(runs)
            expect(yield* Effect.forEach(items, (n) => a.require(n), { concurrency: 16 })).toEqual(
              items.map((n) => n * 2)
            )
            if (persistent) expect(got.filter((n) => runs.get(n) !== before.get(n))).toEqual([])
          }), persistent),
      60_000
    )
  }

  it.live(
    "WorkerQueue: a waiter whose notification was published while its subscriber was away looks again once it is back, not at the lock's expiry",
    () =>
      withServer((server) =>
        Effect.gen(function*() {
          const prefix = "n:"
          // B's connections come back 1.5 s after A's, so A's notification is published while B is not subscribed.
          let bDelay = 50
          const finish = yield* Deferred.make<void>()
          const running = yield* Deferred.make<void>()
          const queueOn = (options: RedisOptions, worker: (n: number) => Effect.Effect<number>) =>
            Effect.flatMap(connection(server, options), (context) =>
              Effect.provide(
                Effect.gen(function*() {
                  const cache = yield* RedisResultCache.make<number, number, number>({
                    schema: Schema.Number,
                    prefix: `${prefix}r:`
                  })
                  return yield* RedisWorkerQueue.make({
                    cache,
                    worker,
                    lockTimeToLive: "30 seconds",
                    lockPrefix: `${prefix}lock:`
                  })
                }),
                context
              ))
          const a = yield* queueOn(
            { ...waiting, connectionName: "a" },
            (n) => Deferred.succeed(running, undefined).pipe(Effect.zipRight(Deferred.await(finish)), Effect.as(n * 2))
          )
          const b = yield* queueOn({ retryStrategy: () => bDelay, connectionName: "b" }, (n) => Effect.succeed(-n))
          const raw = new Redis(server.port, { retryStrategy: () => 50, lazyConnect: true })
          raw.on("error", () => {})
          yield* Effect.addFinalizer(() => Effect.sync(() => raw.disconnect()))

          const holder = yield* Effect.fork(a.require(7))
          yield* Deferred.await(running)
          const waiter = yield* Effect.fork(b.require(7))
          // B is waiting once its connection has run the lock script (and found the lock held by A).
          yield* until(
            Effect.promise(() => raw.client("LIST") as Promise<string>).pipe(
              Effect.map((list) =>
                list.split("\n").some((line) => / name=b /.test(line) && / cmd=eval(sha)? /.test(line))
              )
            ),
            "B to find the lock held"
          )
          bDelay = 1_500
          yield* server.stop
          yield* server.start
          const restarted = Date.now()
          // A finishes as soon as it is back: its result is stored and announced before B resubscribes.
          yield* Deferred.succeed(finish, undefined)
          expect(yield* Fiber.join(holder)).toBe(14)
          // B gets A's result soon after it is back, long before the 30-second lock would have expired.
          expect(yield* Fiber.join(waiter).pipe(Effect.timeout("15 seconds"))).toBe(14)
          expect(Date.now() - restarted).toBeLessThan(15_000)
        })
      ),
    60_000
  )

  it.live(
    "RateLimiter.slidingWindow: three limiters on separate connections take through a restart in mid-window; no window over the limit, takes go on after it",
    () =>
      withServer((server) =>
        Effect.gen(function*() {
          const limit = 10
          const intervalMs = 1_500
          const times: Array<number> = []
          const takers = yield* Effect.forEach([failFast, waiting, failFast], (options) =>
            Effect.gen(function*() {
              const context = yield* connection(server, options)
              const limiter = yield* Effect.provide(
                RedisRateLimiter.slidingWindow({ key: "limit", limit, interval: intervalMs }),
                context
              )
              const taker = Effect.forever(Effect.flatMap(limiter.takeTimed(), (t) => Effect.sync(() => times.push(t))))
              return yield* Effect.fork(Effect.all([taker, taker, taker, taker], { concurrency: "unbounded" }))
            }))
          // The first window's starts are granted at once; Redis goes away as the second window's begin, so the window
          // at the restart is full of fresh starts that must keep the takers waiting after it.
          yield* until(Effect.sync(() => times.length > limit), "the second window's first start")
          yield* server.stop
          const stoppedAt = Date.now() * 1000
          yield* Effect.sleep("400 millis")
          const restartedAt = Date.now() * 1000
          yield* server.start
          yield* until(
            Effect.sync(() => times.filter((t) => t >= restartedAt).length >= limit),
            "a window of starts after the restart"
          )
          const exits = yield* Effect.forEach(takers, (fiber) => Fiber.interrupt(fiber))
          // The takers never failed nor died: they waited out the outage (retrying) and were interrupted here.
          expect(exits.map((exit) => Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause))).toEqual([
            true,
            true,
            true
          ])
          const sorted = [...times].sort((x, y) => x - y)
          // Nothing was granted while Redis was away.
          expect(sorted.filter((t) => t > stoppedAt && t < restartedAt)).toEqual([])
          // Across the restart too (the window's starts survived it in the append-only file): never over the limit.
          expect(maxInWindow(sorted, intervalMs * 1000)).toBe(limit)
        })
      ),
    60_000
  )
})
