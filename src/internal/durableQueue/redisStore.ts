/**
 * The Redis store of `DurableQueue`: each port operation is one Lua script call (redisScripts.ts) on a connection of
 * its own with auto-pipelining, so the leases and settlements of concurrent takers issued in one tick travel in one
 * round trip. Every rule is in core.ts.
 *
 * Keys are namespaced so that no two queue names collide: `<prefix>{<name>}:<suffix>`, where `<name>` is escaped
 * (every character but `A–Z a–z 0–9 _ . -` becomes `%` and four hex digits of its UTF-16 code unit), so it holds no
 * `}`, `:` or `%` of its own and cannot end early or fake a suffix; the suffixes are a fixed set. (Before, queue
 * "x:dead" was queue "x"'s dead-letter list.) The braces also keep one queue's keys in one Redis Cluster slot, as
 * the scripts need.
 *
 * Not `@effect/experimental`'s `PersistedQueue` (neither its Redis store nor its factory): its store 0.61 loses and
 * duplicates jobs (its reset script walks `HGETALL`'s flat reply with `pairs`; its failed script declares two keys
 * and uses three), its port has no dead letters, refresh or batch settlement, and its `take` opens a Scope per job.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Redis } from "ioredis"
import { OptionError } from "../../OptionError.js"
import type * as RedisDurableQueue from "../../redis/DurableQueue.js"
import { connect, defineScript, RedisClient } from "../redis/client.js"
import * as core from "./core.js"
import { type QueueSettings, queueSettings } from "./options.js"
import * as scripts from "./redisScripts.js"
import * as RedisWake from "./redisWake.js"
import type { LeasedJob, OfferedJob, Settle, Settlement, Store } from "./store.js"

/** The escaped name segment: no `}`, `:` or `%` but its own escapes, so distinct names give distinct keys. @internal */
export const escapeName = (name: string): string =>
  name.replace(/[^A-Za-z0-9_.-]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(4, "0")}`)

/** The keys of queue `name` under `prefix`. @internal */
export const keysOf = (prefix: string, name: string) => {
  const base = `${prefix}{${escapeName(name)}}:`
  return {
    waiting: `${base}waiting`,
    payloads: `${base}payloads`,
    attempts: `${base}attempts`,
    errors: `${base}errors`,
    owners: `${base}owners`,
    leased: `${base}leased`,
    dead: `${base}dead`,
    ids: `${base}ids`,
    /** A pub/sub channel, not a key: one message per offer call that queued a job (redisWake.ts). */
    wake: `${base}wake`
  } as const
}

/** Jobs leased per script call: a run leases up to 4 × its concurrency ahead (core.ts); 256 keeps one call near 1 ms. */
const MAX_BATCH = 256

const kindOf = (settlement: Settlement): string =>
  settlement._tag === "Ack" ? "a" : settlement._tag === "Release" ? "b" : settlement._tag === "Retry" ? "r" : "d"

/** @internal */
export const makeStore = (redis: Redis, prefix: string, settings: QueueSettings): Store => {
  const k = keysOf(prefix, settings.name)
  const token = globalThis.crypto.randomUUID()
  const call = (name: string, lua: string, keys: ReadonlyArray<string>) => {
    const command = defineScript(redis, name, lua, keys.length)
    return (...args: Array<string | number>) => Effect.tryPromise(() => command(...keys, ...args))
  }
  const offer = call("ewDqOffer", scripts.offer, [k.waiting, k.payloads, k.ids, k.wake])
  const lease = call("ewDqLease", scripts.lease, [k.waiting, k.leased, k.owners, k.attempts, k.payloads])
  const refresh = call("ewDqRefresh", scripts.refresh, [k.leased, k.owners])
  const settle = call("ewDqSettle", scripts.settle, [k.waiting, k.leased, k.owners, k.attempts, k.payloads, k.errors, k.dead])
  const deadLetters = call("ewDqDeadLetters", scripts.deadLetters, [k.dead, k.payloads, k.attempts, k.errors])
  const requeue = call("ewDqRequeue", scripts.requeue, [k.dead, k.waiting, k.attempts, k.errors])
  const purge = call("ewDqPurge", scripts.purge, [k.dead, k.payloads, k.attempts, k.errors, k.ids])
  return {
    backend: "redis",
    maxBatch: MAX_BATCH,
    wakeSpacingMillis: 0,
    ready: Effect.never,
    offer: (jobs: ReadonlyArray<OfferedJob>) => Effect.asVoid(offer(...jobs.flatMap((job) => [job.id, job.payload, job.custom ? "1" : "0"]))),
    lease: (max) =>
      Effect.map(lease(token, settings.leaseMillis, max), (reply) => {
        const flat = reply as Array<string | number>
        const out: Array<LeasedJob> = []
        for (let i = 0; i < flat.length; i += 3) {
          out.push({ id: String(flat[i]), payload: String(flat[i + 1]), attempts: Number(flat[i + 2]), handle: null })
        }
        return out
      }),
    refresh: (jobs: ReadonlyArray<LeasedJob>) => Effect.asVoid(refresh(token, settings.leaseMillis, ...jobs.map((job) => job.id))),
    settle: (batch: ReadonlyArray<Settle>) =>
      Effect.asVoid(settle(
        token,
        ...batch.flatMap(({ job, settlement }) => [
          job.id,
          kindOf(settlement),
          settlement._tag === "Ack" ? 0 : settlement.attempts,
          settlement._tag === "Retry" || settlement._tag === "Dead" ? settlement.lastError : ""
        ])
      )),
    size: Effect.map(
      Effect.tryPromise(() => redis.multi().llen(k.waiting).zcard(k.leased).exec()),
      (replies) => (replies ?? []).reduce((sum, [, n]) => sum + Number(n ?? 0), 0)
    ),
    deadLetters: Effect.map(deadLetters(), (reply) => {
      const flat = reply as Array<string>
      const out = []
      for (let i = 0; i < flat.length; i += 4) {
        out.push({ id: flat[i]!, payload: flat[i + 1]!, attempts: Number(flat[i + 2]), lastError: flat[i + 3]! })
      }
      return out
    }),
    requeue: (id) => Effect.map(requeue(id), (n) => Number(n) === 1),
    purge: Effect.map(purge(), Number)
  }
}

/** @internal */
export const make = <A, I>(
  options: RedisDurableQueue.Options<A, I>
): Effect.Effect<RedisDurableQueue.DurableQueue<A>, OptionError, RedisClient | Scope.Scope> =>
  Effect.gen(function*() {
    const settings = yield* queueSettings(options)
    const prefix = options.prefix ?? "effect-workers:queue:"
    if (typeof prefix !== "string") {
      return yield* new OptionError({ module: "DurableQueue", field: "prefix", value: prefix, expected: "a string" })
    }
    const { options: clientOptions } = yield* RedisClient
    // A connection of its own with auto-pipelining: the leases and settlements of concurrent takers issued in one
    // tick travel in one round trip.
    const redis = yield* connect({ ...clientOptions, options: { ...clientOptions.options, enableAutoPipelining: true } }).pipe(Effect.orDie)
    const store = makeStore(redis, prefix, settings)
    const wake = yield* RedisWake.make(clientOptions, keysOf(prefix, settings.name).wake)
    return yield* core.make({ ...store, ready: wake.ready, lease: (max) => Effect.zipRight(wake.arm, store.lease(max)) }, settings, options.schema)
  })
