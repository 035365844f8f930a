/**
 * The Redis store of `DurableQueue` driven directly through its port (no core), where its own scripts carry the
 * risk of issue #11: priority order as a sorted-set member order, delayed jobs moved by the lease script in bulk,
 * cancel of a leased job whose runner died, done and cancelled records that expire on Redis's clock, chunked requeueAll,
 * and the batch scripts' nasty cases (ids twice in a batch, a former holder's settlement, jobs cancelled mid-lease). The
 * same features through the public API, on every store, are in test/helpers/durableContract.ts.
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

  // An idle fetcher backs off to 2 s where the store hears (core.ts `IdleBackoff`); a lease whose runner died
  // publishes nothing, so it is found at its deadline only because the next due time counts leases.
  it.live("nextDueMillis with nothing delayed is the deadline of the lease out (a lapsing lease is looked for then)", () =>
    withStores(5_000, (store) =>
      Effect.gen(function*() {
        expect(yield* store.nextDueMillis).toBeUndefined()
        yield* store.offer([job("held")])
        const leasedAt = Date.now()
        expect(ids(yield* store.lease(1))).toEqual(["held"])
        const due = yield* store.nextDueMillis
        // 5 s less the time from before the lease to after the read (+5 ms: Redis's clock is read apart from ours).
        expect(due).toBeGreaterThanOrEqual(5_000 - (Date.now() - leasedAt) - 5)
        expect(due).toBeLessThanOrEqual(5_000)
      })))

  // The lease script writes its deadline as text made by string.format('%d'), a C long: a deadline past 2^63
  // (leaseDuration has no upper bound) came out as -9223372036854775808, so the next lease of any holder took the
  // job as expired and ran it again while its runner still held it.
  it.live("a lease too long for a 64-bit deadline is held, not taken by another holder at once", () =>
    withStores(1e19, (store, other, raw, prefix) =>
      Effect.gen(function*() {
        yield* store.offer([job("long")])
        expect(ids(yield* store.lease(1))).toEqual(["long"])
        const deadline = yield* Effect.promise(() => raw.zscore(keysOf(prefix, "jobs").leased, "long"))
        expect(Number(deadline)).toBeGreaterThan(Date.now())
        expect(ids(yield* other.lease(1))).toEqual([])
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
        yield* eventually(store.counts, (c) => c.delayed === 0 && c.waiting === 1_000)
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
        const again = yield* eventually(store.lease(1), (got) => got.length === 1)
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
        expect(yield* store.counts).toMatchObject({ waiting: 0, delayed: 0, running: 0, dead: 0, paused: false })
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
        yield* eventually(
          Effect.gen(function*() {
            seen.push(...ids(yield* live.lease(64)))
            return yield* live.status("c")
          }),
          (status) => status?.state === "cancelled"
        )
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
        yield* eventually(store.status("x"), (s) => s === undefined)
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
        expect(yield* other.counts).toMatchObject({ waiting: 1, delayed: 0, running: 1, dead: 0, paused: true })
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

  // Issue #16: the scripts read and write a whole batch with one command per key (HMGET owners, HSET attempts...),
  // so what a per-job loop got for free (a second settlement of one id finds the owner gone) must hold by design.
  it.live("settle: a former holder's settlement after its lease moved is ignored; an id twice in a batch is settled once, by its first settlement", () =>
    withStores(150, (former, current) =>
      Effect.gen(function*() {
        yield* former.offer([job("x"), job("y"), job("z")])
        const old = yield* former.lease(3)
        expect(ids(old)).toEqual(["x", "y", "z"])
        // The former holder's lease (150 ms) lapses unrefreshed: the current store leases them again.
        const now: Array<LeasedJob> = []
        yield* eventually(Effect.map(current.lease(64), (got) => now.push(...got)), (leased) => leased === 3)
        expect(now.map((j) => [j.id, j.attempts])).toEqual([["x", 2], ["y", 2], ["z", 2]])
        yield* former.settle(old.map((j) => ({ job: j, settlement: { _tag: "Dead", attempts: 1, lastError: "late" } })))
        expect(yield* current.counts).toMatchObject({ running: 3, dead: 0 })
        const [x, y, z] = now
        yield* current.settle([
          { job: y!, settlement: { _tag: "Retry", attempts: 2, lastError: "first", delayMillis: 0 } },
          { job: x!, settlement: { _tag: "Ack", result: "\"x1\"", resultTtlMillis: 60_000 } },
          { job: y!, settlement: { _tag: "Ack", result: "\"y2\"", resultTtlMillis: 60_000 } },
          { job: x!, settlement: { _tag: "Dead", attempts: 2, lastError: "second" } },
          { job: z!, settlement: { _tag: "Release", attempts: 1 } }
        ])
        expect(yield* current.status("x")).toMatchObject({ state: "done", attempts: 2, result: "\"x1\"" })
        expect(yield* current.status("y")).toMatchObject({ state: "waiting", attempts: 2, lastError: "first" })
        expect(yield* current.status("z")).toMatchObject({ state: "waiting", attempts: 1 })
        expect(yield* current.counts).toMatchObject({ waiting: 2, running: 0, dead: 0 })
        // Each queued once: a double enqueue would lease y or z twice.
        expect(ids(yield* current.lease(64))).toEqual(["y", "z"])
      })))

  it.live("offer: an id twice in one batch is kept once, with its first payload; custom and generated ids, known ones skipped", () =>
    withStores(5_000, (store) =>
      Effect.gen(function*() {
        yield* store.offer([job("known")])
        yield* store.offer([
          job("d", { payload: "\"first\"" }),
          job("g", { custom: false, payload: "\"g1\"" }),
          job("d", { payload: "\"second\"", priority: 5 }),
          job("known", { payload: "\"again\"" }),
          job("g", { custom: false, payload: "\"g2\"" }),
          job("p", { priority: 3, payload: "\"p\"" }),
          job("p", { payload: "\"p2\"" })
        ])
        expect(yield* store.size).toBe(4)
        const got = yield* store.lease(64)
        expect(got.map((j) => [j.id, j.payload, j.attempts])).toEqual([
          ["p", "\"p\"", 1],
          ["known", "\"known\"", 1],
          ["d", "\"first\"", 1],
          ["g", "\"g1\"", 1]
        ])
      })))

  it.live("a batch settling jobs cancelled mid-lease: retried and released ones become cancelled, acknowledged ones done, the rest untouched", () =>
    withStores(5_000, (store, other) =>
      Effect.gen(function*() {
        yield* store.offer([job("theirs")])
        const [theirs] = yield* other.lease(1)
        yield* store.offer([job("r"), job("a"), job("b"), job("keep")])
        const [r, a, b, keep] = yield* store.lease(4)
        for (const id of ["theirs", "r", "a", "b"]) expect(yield* store.cancel(id)).toBe("asked")
        expect(yield* store.refresh([r!, a!, b!, keep!])).toEqual(["r", "a", "b"])
        // "theirs" (held by the other store) comes first, so this batch's held jobs are not its first entries.
        yield* store.settle([
          { job: theirs!, settlement: { _tag: "Ack", result: undefined, resultTtlMillis: 60_000 } },
          { job: keep!, settlement: { _tag: "Release", attempts: 0 } },
          { job: r!, settlement: { _tag: "Retry", attempts: 1, lastError: "boom", delayMillis: 0 } },
          { job: a!, settlement: { _tag: "Ack", result: undefined, resultTtlMillis: 60_000 } },
          { job: b!, settlement: { _tag: "Release", attempts: 0 } }
        ])
        expect((yield* store.status("theirs"))?.state).toBe("running")
        expect(yield* store.status("r")).toMatchObject({ state: "cancelled", attempts: 1 })
        expect((yield* store.status("a"))?.state).toBe("done")
        expect((yield* store.status("b"))?.state).toBe("cancelled")
        expect(yield* store.status("keep")).toMatchObject({ state: "waiting", attempts: 0 })
        expect(ids(yield* store.lease(64))).toEqual(["keep"])
        // Still asked: the other store's release of it settles it cancelled.
        expect(yield* other.refresh([theirs!])).toEqual(["theirs"])
        yield* other.settle([{ job: theirs!, settlement: { _tag: "Release", attempts: 0 } }])
        expect((yield* store.status("theirs"))?.state).toBe("cancelled")
      })))

  it.live("cancelled records live as long as done ones (resultTimeToLive), then are unknown and dropped; their custom ids stay known", () =>
    withRedisPrefix("dqs", (prefix, raw) =>
      Effect.gen(function*() {
        const k = keysOf(prefix, "jobs")
        const settings = (resultTimeToLive: number) =>
          queueSettings({ name: "jobs", schema: Schema.Number, leaseDuration: 150, resultTimeToLive })
        const ttl = 3_600_000
        const store = makeStore(raw, prefix, yield* settings(ttl))
        const none = makeStore(raw, prefix, yield* settings(0))
        const redisNow = Effect.promise(async () => {
          const [s, us] = await raw.time()
          return Number(s) * 1000 + Math.floor(Number(us) / 1000)
        })
        yield* store.offer([job("waiting"), job("held"), job("dies"), job("next"), job("gone")])
        const before = yield* redisNow
        expect(yield* store.cancel("waiting")).toBe("cancelled")
        const [held, dies] = yield* store.lease(2)
        expect(yield* store.cancel("held")).toBe("asked")
        expect(yield* store.cancel("dies")).toBe("asked")
        yield* store.settle([{ job: held!, settlement: { _tag: "Cancelled", attempts: 1 } }])
        // "dies" is never settled: its lease (150 ms) lapses and a later lease settles it cancelled (paused, so
        // that lease hands out nothing else).
        yield* store.setPaused(true)
        yield* eventually(Effect.zipRight(store.lease(64), store.status("dies")), (s) => s?.state === "cancelled")
        const after = yield* redisNow
        expect(dies!.id).toBe("dies")
        // Each of the three ways to a cancelled record (cancel, settlement, a lapsed lease) gives it the time to live
        // of a done record, from the moment it was cancelled on Redis's clock (no wait: its end is read).
        for (const id of ["waiting", "held", "dies"]) {
          expect((yield* store.status(id))?.state).toBe("cancelled")
          const ends = Number(yield* Effect.promise(() => raw.zscore(k.expiry, id)))
          expect(ends).toBeGreaterThanOrEqual(before + ttl)
          expect(ends).toBeLessThanOrEqual(after + ttl)
        }
        // A time to live of 0 keeps no record at all (as for a done job).
        expect(yield* none.cancel("gone")).toBe("cancelled")
        expect(yield* none.status("gone")).toBe(undefined)
        // Their time passed (moved into the past rather than waited for): unknown at once, dropped from Redis by
        // the next cancel or settlement (no sweeper).
        yield* Effect.promise(() => raw.zadd(k.expiry, 1, "waiting", 1, "held", 1, "dies"))
        for (const id of ["waiting", "held", "dies"]) expect(yield* store.status(id)).toBe(undefined)
        expect(yield* Effect.promise(() => raw.smembers(k.cancelled))).toHaveLength(3)
        expect((yield* Effect.promise(() => raw.hkeys(k.attempts))).sort()).toEqual(["dies", "held"])
        expect(yield* store.cancel("next")).toBe("cancelled")
        expect(yield* Effect.promise(() => raw.smembers(k.cancelled))).toEqual(["next"])
        expect(yield* Effect.promise(() => raw.zrange(k.expiry, 0, -1))).toEqual(["next"])
        expect(yield* Effect.promise(() => raw.hkeys(k.attempts))).toEqual([])
        expect(yield* Effect.promise(() => raw.hlen(k.payloads))).toBe(0)
        yield* store.offer([job("waiting"), job("held"), job("dies"), job("gone")])
        expect(yield* store.size).toBe(0)
      })))

  it.live("batches larger than one Lua unpack holds (~8,000 values): 4,100 jobs offered in one call and settled in one", () =>
    withStores(5_000, (store, _other, raw, prefix) =>
      Effect.gen(function*() {
        const k = keysOf(prefix, "jobs")
        const all = Array.from({ length: 4_100 }, (_, i) => job(`j${i}`, { custom: i % 2 === 0 }))
        yield* store.offer([...all, job("j0", { payload: "\"again\"" })])
        expect(yield* store.size).toBe(4_100)
        const leased: Array<LeasedJob> = []
        for (let got = yield* store.lease(256); got.length > 0; got = yield* store.lease(256)) leased.push(...got)
        expect(leased.length).toBe(4_100)
        expect(leased[0]).toMatchObject({ id: "j0", payload: "\"j0\"", attempts: 1 })
        yield* store.settle(
          leased.map((j) => ({
            job: j,
            settlement: { _tag: "Ack", result: `${j.id.length}`, resultTtlMillis: 60_000 }
          }))
        )
        expect(yield* store.counts).toMatchObject({ waiting: 0, running: 0 })
        expect(yield* Effect.promise(() => raw.zcard(k.expiry))).toBe(4_100)
        expect(yield* Effect.promise(() => raw.hlen(k.results))).toBe(4_100)
        expect(yield* store.status("j4099")).toMatchObject({ state: "done", attempts: 1, result: "5" })
      })))
  // The store's arguments once went to ioredis spread into the call: 60,000 of them overflowed the call stack.
  it.live("a call of 30,000 jobs (90,000 script arguments) is one offer and one settlement, not a stack overflow", () =>
    withStores(60_000, (store) =>
      Effect.gen(function*() {
        const all = Array.from({ length: 30_000 }, (_, i) => job(`big${i}`, { custom: i % 3 === 0 }))
        yield* store.offer(all)
        expect(yield* store.size).toBe(30_000)
        const leased: Array<LeasedJob> = []
        for (let got = yield* store.lease(10_000); got.length > 0; got = yield* store.lease(10_000)) leased.push(...got)
        expect(leased.length).toBe(30_000)
        yield* store.settle(
          leased.map((j) => ({ job: j, settlement: { _tag: "Ack", result: undefined, resultTtlMillis: 60_000 } }))
        )
        expect(yield* store.counts).toMatchObject({ waiting: 0, running: 0 })
        expect(yield* store.status("big29999")).toMatchObject({ state: "done" })
      })))
})
