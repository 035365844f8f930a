/**
 * A `PersistedQueueStore` (the storage port of `@effect/experimental`'s `PersistedQueue`) on Redis, written
 * because the store that ships with `@effect/experimental` 0.61 loses and duplicates jobs:
 * - its `resetQueue` script walks `HGETALL`'s flat reply with `pairs`, so every pass pushes each pending job's id
 *   and payload back onto the queue whatever its lock — the job runs twice, and the bare id then breaks the next
 *   `take` script (a `cjson.decode` error after `LPOP`, which Redis does not roll back: that batch is lost);
 * - its `failed` script declares two keys but uses three, so a job out of attempts stays pending forever;
 * - offers without an id go to the head of the list (LIFO), those with one to the tail.
 * Keys of queue `name` under `prefix`: `name` (list of payloads), `name:ids` (ids offered), `name:pending`
 * (hash id → payload of leased jobs), `name:lock:<id>` (the lease), `name:failed` (list).
 */
import * as PersistedQueue from "@effect/experimental/PersistedQueue"
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import { defineScript } from "./client.js"

// KEYS: queue, ids. ARGV: id, payload, custom (1/0).
const offerScript = `
if ARGV[3] == '1' and redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[2])
return 1
`

// KEYS: queue, pending. ARGV: lock prefix, worker, lease (ms), most jobs. The payloads taken (leased).
const takeScript = `
local payloads = redis.call('LPOP', KEYS[1], ARGV[4])
if not payloads then return {} end
for _, payload in ipairs(payloads) do
  local id = cjson.decode(payload).id
  redis.call('SET', ARGV[1] .. id, ARGV[2], 'PX', ARGV[3])
  redis.call('HSET', KEYS[2], id, payload)
end
return payloads
`

// KEYS: pending, lock, target list (queue to requeue, failed list, or none). ARGV: id, payload, worker.
// Idempotent and safe when late: nothing happens if another taker holds the job's lock now (our lease lapsed and
// the job went to someone else), and the payload is pushed only if the job was still pending (a retried settle
// whose first try did run pushes nothing twice).
const settleScript = `
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[3] then return 0 end
redis.call('DEL', KEYS[2])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 and ARGV[2] ~= '' then redis.call('RPUSH', KEYS[3], ARGV[2]) end
return 1
`

// KEYS: pending, queue, failed list. ARGV: lock prefix, worker, then (id, target, payload) triples, target "n"
// (none), "q" (queue) or "f" (failed). The settlements of one event-loop turn in one call, each as `settleScript`.
const settleManyScript = `
for i = 3, #ARGV, 3 do
  local id = ARGV[i]
  local lock = ARGV[1] .. id
  local holder = redis.call('GET', lock)
  if not holder or holder == ARGV[2] then
    redis.call('DEL', lock)
    if redis.call('HDEL', KEYS[1], id) == 1 then
      local target = ARGV[i + 1]
      if target == 'q' then redis.call('RPUSH', KEYS[2], ARGV[i + 2])
      elseif target == 'f' then redis.call('RPUSH', KEYS[3], ARGV[i + 2]) end
    end
  end
end
return 1
`

// KEYS: queue, pending. ARGV: lock prefix. Puts back every leased job whose lease expired (its taker died).
const resetScript = `
local entries = redis.call('HGETALL', KEYS[2])
local n = 0
for i = 1, #entries, 2 do
  local id = entries[i]
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then
    redis.call('RPUSH', KEYS[1], entries[i + 1])
    redis.call('HDEL', KEYS[2], id)
    n = n + 1
  end
end
return n
`

/** @internal */
export interface Element {
  readonly id: string
  readonly element: unknown
  readonly attempts: number
  readonly lastFailure?: string
}

/** @internal */
export interface StoreOptions {
  readonly prefix: string
  readonly leaseMillis: number
  readonly pollMillis: number
}

/**
 * The `PersistedQueueStore` port, plus the two steps `DurableQueue` drives directly: the next leased job of a queue
 * and its settlement.
 *
 * @internal
 */
export interface Store extends Context.Tag.Service<PersistedQueue.PersistedQueueStore> {
  readonly next: (name: string) => Effect.Effect<Element>
  readonly settle: (name: string, element: Element, target: "queue" | "failed" | "none", payload: string) => Effect.Effect<void>
}

const storeError = (message: string) => (cause: unknown) => new PersistedQueue.PersistedQueueError({ message, cause })


/** @internal */
export const make = (
  redis: Redis,
  options: StoreOptions
): Effect.Effect<Store, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { leaseMillis, pollMillis, prefix } = options
    const worker = randomUUID()
    const keys = (name: string) => ({
      queue: `${prefix}${name}`,
      ids: `${prefix}${name}:ids`,
      pending: `${prefix}${name}:pending`,
      lockPrefix: `${prefix}${name}:lock:`,
      failed: `${prefix}${name}:failed`
    })
    const offerCmd = defineScript(redis, "ewDurableOffer", offerScript, 2)
    const takeCmd = defineScript(redis, "ewDurableTake", takeScript, 2)
    const settleCmd = defineScript(redis, "ewDurableSettle", settleScript, 3)
    const settleManyCmd = defineScript(redis, "ewDurableSettleMany", settleManyScript, 3)
    const resetCmd = defineScript(redis, "ewDurableReset", resetScript, 2)
    const everyThird = `${Math.max(10, Math.floor(leaseMillis / 3))} millis` as const

    // Leases of the jobs this process runs, refreshed together every third of the lease.
    const active = new Set<string>()
    yield* Effect.promise(async () => {
      if (active.size === 0) return
      const pipeline = redis.pipeline()
      for (const lock of active) pipeline.pexpire(lock, leaseMillis)
      await pipeline.exec()
    }).pipe(
      Effect.catchAllCause(() => Effect.void),
      Effect.zipRight(Effect.sleep(everyThird)),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )
    // Queues this process takes from: their expired leases are put back as often.
    const watched = new Set<string>()
    yield* Effect.tryPromise(() =>
      Promise.all(Array.from(watched, (name) => {
        const k = keys(name)
        return resetCmd(k.queue, k.pending, k.lockPrefix)
      }))
    ).pipe(
      Effect.catchAllCause(() => Effect.void),
      Effect.zipRight(Effect.sleep(everyThird)),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )

    // Settling (acknowledge, requeue, dead-letter) is sent without waiting for the reply, so a taker goes on to its
    // next job at once; the settlements of one event-loop turn go in one script call per queue. The replies still
    // pending when the scope closes are awaited. A settle lost in a crash only means the lease expires and the job
    // runs again.
    interface Settlement {
      readonly id: string
      readonly target: "queue" | "failed" | "none"
      readonly payload: string
      readonly since: number
    }
    const settling = new Set<Promise<unknown>>()
    const batches = new Map<string, Array<Settlement>>()
    let flushScheduled = false
    const track = (reply: Promise<unknown>) => {
      const tracked = reply.finally(() => settling.delete(tracked))
      settling.add(tracked)
    }
    // A settle that fails (Redis away) is retried on its own every 200 ms for as long as a lease lasts, and the
    // job's lease is refreshed meanwhile, so a job finished during an outage is acknowledged once Redis is back
    // instead of running again; after that long the lease is let go (the job comes back, at-least-once).
    const retryOne = (name: string, settlement: Settlement): Promise<void> => {
      const k = keys(name)
      const lock = k.lockPrefix + settlement.id
      const { id, payload, since, target } = settlement
      active.add(lock)
      const send = (): Promise<void> =>
        settleCmd(k.pending, lock, target === "failed" ? k.failed : k.queue, id, target === "none" ? "" : payload, worker)
          .then(() => void active.delete(lock), (cause) => {
            if (Date.now() - since < leaseMillis) return new Promise<void>((resolve) => setTimeout(resolve, 200)).then(send)
            active.delete(lock)
            Effect.runFork(Effect.logWarning("DurableQueue: settling a job failed; its lease will expire", cause))
          })
      return new Promise<void>((resolve) => setTimeout(resolve, 200)).then(send)
    }
    const flushSettles = () => {
      flushScheduled = false
      for (const [name, settlements] of batches) {
        batches.delete(name)
        const k = keys(name)
        const args: Array<string> = [k.lockPrefix, worker]
        for (const { id, payload, target } of settlements) {
          args.push(id, target === "none" ? "n" : target === "queue" ? "q" : "f", target === "none" ? "" : payload)
        }
        track(
          settleManyCmd(k.pending, k.queue, k.failed, ...args).then(
            undefined,
            () => Promise.all(settlements.map((settlement) => retryOne(name, settlement)))
          )
        )
      }
    }
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        flushSettles()
        return Effect.promise(() => Promise.allSettled(settling))
      }).pipe(Effect.timeout("5 seconds"), Effect.ignore)
    )
    const settle = (name: string, element: Element, target: "queue" | "failed" | "none", payload: string) =>
      Effect.sync(() => {
        active.delete(keys(name).lockPrefix + element.id)
        let batch = batches.get(name)
        if (batch === undefined) {
          batch = []
          batches.set(name, batch)
        }
        batch.push({ id: element.id, target, payload, since: Date.now() })
        if (!flushScheduled) {
          flushScheduled = true
          setImmediate(flushSettles)
        }
      })

    // One fetcher per queue name takes as many jobs as there are takers waiting, in one script call, and hands
    // them out; jobs fetched but not yet handed out are leased and refreshed like running ones, and put back when
    // the scope closes.
    interface Feed {
      demand: number
      readonly jobs: Queue.Queue<Element>
      readonly wake: Effect.Latch
    }
    const scope = yield* Effect.scope
    const feeds = new Map<string, Feed>()
    const feedOf = (name: string): Effect.Effect<Feed> =>
      Effect.suspend(() => {
        const existing = feeds.get(name)
        if (existing) return Effect.succeed(existing)
        const feed: Feed = { demand: 0, jobs: Effect.runSync(Queue.unbounded<Element>()), wake: Effect.unsafeMakeLatch(false) }
        feeds.set(name, feed)
        watched.add(name)
        const k = keys(name)
        const fetch = Effect.gen(function*() {
          while (true) {
            feed.wake.unsafeClose()
            const want = feed.demand - (yield* Queue.size(feed.jobs))
            if (want <= 0) {
              yield* feed.wake.await
              continue
            }
            // Uninterruptible from the call to the hand-over: jobs leased by a take already sent must reach
            // `feed.jobs`, where the put-back on shutdown finds them (cut in between, they would stay leased
            // to this process until their lease ran out).
            const taken = yield* Effect.uninterruptible(
              Effect.tryPromise(() =>
                takeCmd(k.queue, k.pending, k.lockPrefix, worker, leaseMillis, Math.min(want, 64)) as Promise<Array<string>>
              ).pipe(
                Effect.catchAll((error) =>
                  Effect.as(Effect.logWarning("DurableQueue: taking jobs failed; retrying", error), [] as Array<string>)
                ),
                Effect.flatMap((payloads) => {
                  const elements = payloads.map((payload) => JSON.parse(payload) as Element)
                  for (const element of elements) active.add(k.lockPrefix + element.id)
                  return Effect.as(Queue.offerAll(feed.jobs, elements), elements.length)
                })
              )
            )
            if (taken === 0) yield* Effect.sleep(pollMillis)
          }
        })
        const putBack = Effect.flatMap(Queue.takeAll(feed.jobs), (left) =>
          Effect.forEach(left, (element) => settle(name, element, "queue", JSON.stringify(element)), { discard: true }))
        return fetch.pipe(
          Effect.interruptible,
          Effect.onExit(() => putBack),
          Effect.forkIn(scope),
          Effect.as(feed)
        )
      })

    const next = (name: string): Effect.Effect<Element> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(feedOf(name), (feed) => {
          feed.demand++
          feed.wake.unsafeOpen()
          return restore(Queue.take(feed.jobs)).pipe(Effect.ensuring(Effect.sync(() => feed.demand--)))
        })
      )

    return {
      next,
      settle,
      offer: ({ element, id, isCustomId, name }) => {
        const k = keys(name)
        return Effect.tryPromise({
          try: () => offerCmd(k.queue, k.ids, id, JSON.stringify({ id, element, attempts: 0 }), isCustomId ? "1" : "0"),
          catch: storeError("Failed to offer a job")
        }).pipe(Effect.asVoid)
      },
      take: ({ maxAttempts, name }) =>
        Effect.uninterruptibleMask((restore) =>
          restore(next(name)).pipe(
            Effect.tap((element) =>
              Effect.addFinalizer(Exit.match({
                onSuccess: () => settle(name, element, "none", ""),
                onFailure: (cause) => {
                  if (Cause.isInterruptedOnly(cause)) return settle(name, element, "queue", JSON.stringify(element))
                  const failed = { ...element, attempts: element.attempts + 1, lastFailure: Cause.pretty(cause) }
                  return settle(name, element, failed.attempts >= maxAttempts ? "failed" : "queue", JSON.stringify(failed))
                }
              }))
            )
          )
        )
    } satisfies Store
  })
