/**
 * The Redis store of `DurableQueue` driven directly through its port (no core), where its own scripts carry the
 * risk of issue #11: priority order as a sorted-set member order, delayed jobs moved by the lease script in bulk,
 * cancel of a leased job whose runner died, done records that expire on Redis's clock, chunked requeueAll. The
 * same features through the public API, on every store, are in test/DurableQueue.contract.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { Redis } from "ioredis"
import { queueSettings } from "../../src/internal/durableQueue/options.js"
import { keysOf, makeStore } from "../../src/internal/durableQueue/redisStore.js"
import type { LeasedJob, Settlement, Store } from "../../src/internal/durableQueue/store.js"
import { withRedisPrefix } from "../helpers/redis.js"
import { redis, requireService } from "../helpers/services.js"
import { eventually, ids, job } from "../helpers/storePort.js"

const up = await requireService(redis)

/** Two stores (two lease holders, as two processes; the second's lease 5 s) on one queue under a fresh prefix. */
const withStores = <A, E>(
  leaseMillis: number,
  f: (a: Store, b: Store, raw: Redis, prefix: string) => Effect.Effect<A, E>
) =>
  withRedisPrefix("dqs", (prefix, raw) =>
    Effect.gen(function*() {
      const settings = (lease: number) => queueSettings({ name: "jobs", schema: Schema.Number, leaseDuration: lease })
      return yield* f(
        makeStore(raw, prefix, yield* settings(leaseMillis)),
        makeStore(raw, prefix, yield* settings(5_000)),
        raw,
        prefix
      )
    }))

const settleOne = (store: Store, leased: LeasedJob, settlement: Settlement) =>
  store.settle([{ job: leased, settlement }])

describe.skipIf(!up)("redis DurableQueue store (port level)", () => {
  it.live("priority: higher first, ties in offer order; a prioritized job put back keeps its place, one of priority 0 goes last", () =>
    withStores(5_000, (store) =>
      Effect.gen(function*() {
        yield* store.offer([job("low", { priority: -5 }), job("a0"), job("hi1", { priority: 1_000_000 }), job("a1")])
        yield* store.offer([job("hi2", { priority: 1_000_000 }), job("min", { priority: -1_000_000 }), job("a2")])
        const first = yield* store.lease(3)
        expect(ids(first)).toEqual(["hi1", "hi2", "a0"])
        // hi2 released, then hi1 retried: back in their offer-order place (a sorted set by sequence). a0 dead and
        // requeued: behind a1 and a2 (priority 0 is a list, as before #11 and as BullMQ's wait list).
        yield* settleOne(store, first[1]!, { _tag: "Release", attempts: 0 })
        yield* settleOne(store, first[0]!, { _tag: "Retry", attempts: 1, lastError: "e", delayMillis: 0 })
        yield* settleOne(store, first[2]!, { _tag: "Dead", attempts: 1, lastError: "e" })
        expect(yield* store.requeue("a0")).toBe(true)
        expect(ids(yield* store.lease(64))).toEqual(["hi1", "hi2", "a1", "a2", "a0", "low", "min"])
      })))

  it.live("1,000 delayed jobs becoming ready move to waiting in one lease, in priority order, none before its time", () =>
    withStores(5_000, (store, _other, raw, prefix) =>
      Effect.gen(function*() {
        const k = keysOf(prefix, "jobs")
        // Offered in 4 calls of 250; priority i % 7, so the first 64 leased must be the priority-6 jobs.
        const all = Array.from({ length: 1_000 }, (_, i) => job(`d${i}`, { delayMillis: 400, priority: i % 7 }))
        for (let i = 0; i < 1_000; i += 250) yield* store.offer(all.slice(i, i + 250))
        yield* store.offer([job("now")])
        expect(ids(yield* store.lease(64))).toEqual(["now"])
        expect(yield* store.counts).toMatchObject({ waiting: 0, delayed: 1_000, running: 1 })
        expect((yield* store.status("d0"))?.state).toBe("delayed")
        // Due on Redis's clock: counts (read at TIME) sees them as waiting before any lease moved them.
        yield* eventually(Effect.map(store.counts, (c) => c.delayed === 0 && c.waiting === 1_000))
        expect(yield* Effect.promise(() => raw.zcard(k.delayed))).toBe(1_000)
        const leased = yield* store.lease(64)
        expect(yield* Effect.promise(() => raw.zcard(k.delayed))).toBe(0)
        expect(yield* Effect.promise(async () => (await raw.llen(k.waiting)) + (await raw.zcard(k.prioritized)))).toBe(
          1_000 - 64
        )
        const six = all.filter((_, i) => i % 7 === 6).map((j) => j.id)
        expect(ids(leased)).toEqual(six.slice(0, 64))
        let rest: Array<string> = []
        for (let got = yield* store.lease(64); got.length > 0; got = yield* store.lease(64)) {
          rest = rest.concat(ids(got))
        }
        expect(new Set([...ids(leased), ...rest]).size).toBe(1_000)
      })))

  it.live("a retry with delayMillis holds no lease, says delayed, keeps its attempts and error, and comes back after it", () =>
    withStores(5_000, (store, _other, raw, prefix) =>
      Effect.gen(function*() {
        yield* store.offer([job("r", { options: "{\"timeout\":5}" })])
        const [leased] = yield* store.lease(1)
        expect(leased).toMatchObject({ id: "r", attempts: 1, options: "{\"timeout\":5}" })
        yield* settleOne(store, leased!, { _tag: "Retry", attempts: 1, lastError: "flaky", delayMillis: 300 })
        expect(yield* Effect.promise(() => raw.zcard(keysOf(prefix, "jobs").leased))).toBe(0)
        expect(yield* store.status("r")).toEqual({
          state: "delayed",
          attempts: 1,
          progress: undefined,
          lastError: "flaky",
          result: undefined
        })
        expect(yield* store.lease(1)).toEqual([])
        let again: ReadonlyArray<LeasedJob> = []
        yield* eventually(Effect.map(store.lease(1), (got) => (again = got).length === 1))
        expect(again[0]).toMatchObject({ id: "r", attempts: 2, options: "{\"timeout\":5}" })
      })))

  it.live("cancel: waiting and delayed become cancelled; leased is asked, refresh reports it, its release settles it cancelled", () =>
    withStores(5_000, (store, other) =>
      Effect.gen(function*() {
        yield* store.offer([
          job("run", { priority: 9 }),
          job("wait"),
          job("later", { delayMillis: 60_000 }),
          job("pri", { priority: -2 })
        ])
        const [running] = yield* store.lease(1)
        expect((yield* store.status("pri"))?.state).toBe("waiting")
        expect(yield* store.cancel("pri")).toBe("cancelled")
        expect(yield* store.cancel("wait")).toBe("cancelled")
        expect(yield* store.cancel("later")).toBe("cancelled")
        expect(yield* store.cancel("wait")).toBe("none")
        expect(yield* store.cancel("nope")).toBe("none")
        expect(yield* store.cancel("run")).toBe("asked")
        // Only the holder learns it; another store's refresh of the job is ignored.
        expect(yield* other.refresh([running!])).toEqual([])
        expect(yield* store.refresh([running!])).toEqual(["run"])
        yield* settleOne(store, running!, { _tag: "Release", attempts: 0 })
        expect((yield* store.status("run"))?.state).toBe("cancelled")
        expect((yield* store.status("wait"))?.state).toBe("cancelled")
        expect(yield* store.counts).toEqual({ waiting: 0, delayed: 0, running: 0, dead: 0, paused: false })
        // Their ids stay known: offered again, nothing is queued.
        yield* store.offer([job("run"), job("wait"), job("later"), job("pri")])
        expect(yield* store.size).toBe(0)
        expect(yield* store.lease(64)).toEqual([])
      })))

  it.live("a leased job asked to cancel whose runner died is settled cancelled by the next lease, never handed out again", () =>
    withStores(150, (dying, live) =>
      Effect.gen(function*() {
        yield* dying.offer([job("c")])
        expect(ids(yield* dying.lease(1))).toEqual(["c"])
        expect(yield* dying.cancel("c")).toBe("asked")
        yield* live.offer([job("next")])
        // The lease (150 ms) lapses with no refresh: the next lease after it settles "c" instead of leasing it.
        const seen: Array<string> = []
        yield* eventually(Effect.gen(function*() {
          seen.push(...ids(yield* live.lease(64)))
          return (yield* live.status("c"))?.state === "cancelled"
        }))
        expect(seen).toEqual(["next"])
        expect(yield* live.status("c")).toEqual({
          state: "cancelled",
          attempts: 1,
          progress: undefined,
          lastError: undefined,
          result: undefined
        })
        expect(yield* live.size).toBe(1)
      })))

  it.live("done records: status says done (attempts, progress, last error, result) until resultTtlMillis, then unknown; the custom id stays known", () =>
    withStores(5_000, (store, _other, raw, prefix) =>
      Effect.gen(function*() {
        const k = keysOf(prefix, "jobs")
        yield* store.offer([job("x"), job("y"), job("z")])
        const [x, y, z] = yield* store.lease(3)
        yield* store.progress(x!, "{\"pct\":50}")
        yield* settleOne(store, z!, { _tag: "Retry", attempts: 1, lastError: "flaky", delayMillis: 0 })
        yield* settleOne(store, x!, { _tag: "Ack", result: "{\"v\":1}", resultTtlMillis: 300 })
        yield* settleOne(store, y!, { _tag: "Ack", result: "{}", resultTtlMillis: 0 })
        const [z2] = yield* store.lease(1)
        yield* settleOne(store, z2!, { _tag: "Ack", result: undefined, resultTtlMillis: 60_000 })
        const done = { state: "done", progress: undefined, lastError: undefined, result: undefined }
        expect(yield* store.status("x")).toEqual({
          ...done,
          attempts: 1,
          progress: "{\"pct\":50}",
          result: "{\"v\":1}"
        })
        expect(yield* store.status("y")).toBe(undefined)
        expect(yield* store.status("z")).toEqual({ ...done, attempts: 2, lastError: "flaky" })
        yield* eventually(Effect.map(store.status("x"), (s) => s === undefined))
        // Dropped from Redis by the next settlement (no sweeper); the record still in its time kept.
        expect(yield* Effect.promise(() => raw.hexists(k.results, "x"))).toBe(1)
        yield* store.offer([job("w")])
        const [w] = yield* store.lease(1)
        yield* settleOne(store, w!, { _tag: "Ack", result: "2", resultTtlMillis: 60_000 })
        for (const key of [k.results, k.attempts, k.progress]) {
          expect(yield* Effect.promise(() => raw.hexists(key, "x"))).toBe(0)
        }
        expect(yield* Effect.promise(() => raw.zrange(k.expiry, 0, -1))).toEqual(["z", "w"])
        // Of a done job only small fields stay: no payload, member, priority or options.
        for (const key of [k.payloads, k.members, k.priorities, k.options]) {
          expect(yield* Effect.promise(() => raw.hlen(key))).toBe(0)
        }
        yield* store.offer([job("x"), job("y")])
        expect(yield* store.size).toBe(0)
        expect(yield* store.status("never")).toBe(undefined)
      })))

  it.live("progress is stored only by the holder; pause stops leasing for every store, resume lets it go on", () =>
    withStores(5_000, (store, other) =>
      Effect.gen(function*() {
        yield* store.offer([job("p"), job("q")])
        const [p] = yield* store.lease(1)
        yield* other.progress(p!, "\"not mine\"")
        expect((yield* store.status("p"))?.progress).toBe(undefined)
        yield* store.progress(p!, "0.5")
        expect(yield* store.status("p")).toMatchObject({ state: "running", progress: "0.5" })
        yield* store.setPaused(true)
        expect(yield* other.lease(64)).toEqual([])
        expect(yield* other.counts).toEqual({ waiting: 1, delayed: 0, running: 1, dead: 0, paused: true })
        yield* other.setPaused(false)
        expect(ids(yield* other.lease(64))).toEqual(["q"])
        expect((yield* store.counts).paused).toBe(false)
      })))

  it.live("requeueAll queues 2,500 dead letters again in chunks, attempts and errors reset, priorities kept", () =>
    withStores(5_000, (store) =>
      Effect.gen(function*() {
        const all = Array.from({ length: 2_500 }, (_, i) => job(`j${i}`, { priority: i === 2_499 ? 9 : 0 }))
        for (let i = 0; i < all.length; i += 500) yield* store.offer(all.slice(i, i + 500))
        for (let got = yield* store.lease(64); got.length > 0; got = yield* store.lease(64)) {
          yield* store.settle(
            got.map((leased) => ({ job: leased, settlement: { _tag: "Dead", attempts: 1, lastError: "no" } }))
          )
        }
        expect((yield* store.counts).dead).toBe(2_500)
        expect(yield* store.requeueAll).toBe(2_500)
        expect(yield* store.requeueAll).toBe(0)
        expect(yield* store.counts).toMatchObject({ waiting: 2_500, dead: 0 })
        expect(yield* store.status("j7")).toEqual({
          state: "waiting",
          attempts: 0,
          progress: undefined,
          lastError: undefined,
          result: undefined
        })
        const [first] = yield* store.lease(1)
        expect(first).toMatchObject({ id: "j2499", attempts: 1 })
      })))
})
