/**
 * Single-flight across processes for WorkerQueue. The in-process WorkerQueue already runs an item once per
 * process; this wraps its worker so that the run is once per cluster: the worker first takes a Redis lock on the
 * item (`SET NX PX`, in one script with a look at the result key), refreshes it while the run goes on, and on
 * success writes the result and releases the lock in one script that also publishes a notification. A process
 * that finds the lock taken waits for that notification, or for the lock to expire (its holder died), then looks
 * again. A failure is not shared: it releases the lock and the waiters race for it, one of them runs the worker.
 * Redis going away is survived: a result that cannot be stored is stored in the background once Redis answers; a
 * lock that lapsed is taken again by its holder if nobody took it; waiters look again once their subscription is
 * back (a notification published meanwhile is lost).
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { randomUUID } from "node:crypto"
import type { OptionError } from "../../OptionError.js"
import type * as RedisWorkerQueue from "../../redis/WorkerQueue.js"
import type * as ResultCache from "../../ResultCache.js"
import * as WorkerQueue from "../../WorkerQueue.js"
import { checker } from "../options.js"
import { command, defineScript, RedisClient, type RedisError } from "./client.js"

const check = checker("RedisWorkerQueue")

// KEYS: result, lock. ARGV: token, lock ttl (ms).
// {2, value}: the result is there. {1, ""}: the lock is ours. {0, pttl}: someone else holds it.
const acquireScript = `
local v = redis.call('GET', KEYS[1])
if v then return {2, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, ''} end
return {0, redis.call('PTTL', KEYS[2])}
`

// KEYS: lock. ARGV: token, lock ttl (ms). 1: still ours, extended. 2: it had lapsed (the holder stalled for longer
// than the ttl, or Redis lost it in a restart) and nobody took it: ours again. 0: another process holds it now.
const refreshScript = `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
`

// KEYS: result, lock. ARGV: token, value, result ttl (ms, 0 = none), channel, message. 1 if the lock was still ours.
const completeScript = `
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
local held = 0
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  held = 1
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return held
`

// KEYS: lock. ARGV: token, channel, message.
const releaseScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`

type Signal = "done" | "failed" | "expired" | "reconnected"

/** @internal */
export const make = <I, A, E = never, R = never, K = I>(
  options: RedisWorkerQueue.Options<I, A, E, R, K>
): Effect.Effect<
  WorkerQueue.WorkerQueue<I, A, E | RedisError>,
  OptionError | RedisError,
  RedisClient | Scope.Scope | R
> =>
  Effect.gen(function*() {
    const lockTtl = yield* check.duration("lockTimeToLive", options.lockTimeToLive, "10 seconds")
    const lockTtlMillis = Math.round(Duration.toMillis(lockTtl))
    yield* check.require(
      "lockTimeToLive",
      options.lockTimeToLive,
      lockTtlMillis >= 30,
      "a duration of 30 milliseconds or more"
    )
    const cache = yield* check.require(
      "cache",
      options.cache,
      typeof options.cache?.storeKey === "function",
      "a cache made by the Redis ResultCache.make"
    )
    // The queue's `key` names the item in the cluster as it does in the process: the lock and the result are at
    // the cache's storeKey of the item's key, the same key the in-process queue reads the cache with. (Over the
    // item itself, a `key` joined items in one process but not across processes, and every read missed.)
    const keyOf = yield* check.require(
      "key",
      options.key,
      options.key === undefined || typeof options.key === "function",
      "a function from item to key"
    )
    const itemKey = keyOf === undefined ? (item: I) => item as unknown as K : keyOf
    const lockPrefix = options.lockPrefix ?? "effect-workers:lock:"
    const channel = `${lockPrefix}:done`
    const { client, duplicate } = yield* RedisClient

    // One subscription per queue: every completion of any item of this prefix is announced on one channel, and
    // the message names the item's key. Waiters register before they look at Redis, so none misses its message.
    const waiters = new Map<string, Set<Deferred.Deferred<Signal>>>()
    const subscriber = yield* duplicate
    subscriber.on("message", (from: string, message: string) => {
      if (from !== channel) return
      const signal: Signal = message[0] === "+" ? "done" : "failed"
      const set = waiters.get(message.slice(1))
      if (set) { for (const deferred of set) Deferred.unsafeDone(deferred, Exit.succeed(signal)) }
    })
    yield* command("SUBSCRIBE", () => subscriber.subscribe(channel))
    // A notification published while the subscriber is away (Redis restarting, a dropped connection) is lost, and
    // its waiters would sleep until their lock wait ran out. So once the subscriber is back (ioredis subscribes it
    // again; this SUBSCRIBE is answered after that one), every waiter looks again.
    subscriber.on("ready", () => {
      subscriber.subscribe(channel).then(() => {
        for (const set of waiters.values()) {
          for (const deferred of set) Deferred.unsafeDone(deferred, Exit.succeed("reconnected"))
        }
      }, () => {})
    })

    const acquireCmd = defineScript(client, "ewSingleFlightAcquire", acquireScript, 2)
    const refreshCmd = defineScript(client, "ewSingleFlightRefresh", refreshScript, 1)
    const completeCmd = defineScript(client, "ewSingleFlightComplete", completeScript, 2)
    const releaseCmd = defineScript(client, "ewSingleFlightRelease", releaseScript, 1)
    const owner = randomUUID()
    let counter = 0
    const scope = yield* Effect.scope
    const storeRetry = Schedule.exponential("50 millis").pipe(
      Schedule.union(Schedule.spaced("1 second")),
      Schedule.upTo(lockTtl)
    )

    const register = (storeKey: string) =>
      Effect.acquireRelease(
        Effect.map(Deferred.make<Signal>(), (deferred) => {
          let set = waiters.get(storeKey)
          if (!set) waiters.set(storeKey, set = new Set())
          set.add(deferred)
          return deferred
        }),
        (deferred) =>
          Effect.sync(() => {
            const set = waiters.get(storeKey)
            if (set?.delete(deferred) && set.size === 0) waiters.delete(storeKey)
          })
      )

    const runHolding = (
      item: I,
      storeKey: string,
      lockKey: string,
      token: string
    ): Effect.Effect<A, E | RedisError, R> => {
      // Extends the lock every third of its time to live while the worker runs. A lock that lapsed while nobody
      // wanted the item is taken again, so a stall costs a second run only if another process asked meanwhile.
      const refresher = Effect.gen(function*() {
        while (true) {
          yield* Effect.sleep(Duration.millis(Math.max(10, Math.floor(lockTtlMillis / 3))))
          const state = yield* command("EVAL", () => refreshCmd(lockKey, token, lockTtlMillis)).pipe(
            Effect.catchAll((error) =>
              Effect.as(Effect.logWarning("RedisWorkerQueue: refreshing a lock failed", error), 1)
            )
          )
          if (state === 2) {
            yield* Effect.logWarning(
              `RedisWorkerQueue: the lock of ${storeKey} lapsed during its run; nobody had taken it, taken again`
            )
          } else if (state === 0) {
            return yield* Effect.logWarning(
              `RedisWorkerQueue: lost the lock of ${storeKey} during its run (a stall longer than lockTimeToLive); another process runs it too`
            )
          }
        }
      })
      const release = command(
        "EVAL",
        () => releaseCmd(lockKey, token, channel, `-${storeKey}`)
      ).pipe(Effect.catchAll((error) => Effect.logWarning("RedisWorkerQueue: releasing a lock failed", error)))
      const complete = (value: A) =>
        Effect.matchEffect(cache.encode(storeKey, value), {
          onFailure: (error) =>
            Effect.zipRight(
              Effect.logWarning(`RedisWorkerQueue: storing the result of ${storeKey} failed`, error),
              release
            ),
          onSuccess: (raw) => {
            const store = command(
              "EVAL",
              () => completeCmd(storeKey, lockKey, token, raw, cache.timeToLiveMillis, channel, `+${storeKey}`)
            ).pipe(
              Effect.tap((held) =>
                held === 1 ? Effect.void : Effect.logWarning(
                  `RedisWorkerQueue: the lock of ${storeKey} was no longer ours when its result was stored (a stall longer than lockTimeToLive, or Redis away); another process may have run it too`
                )
              )
            )
            // Redis away (restarting, unreachable): the caller has its value at once, and the result is stored in
            // the background as soon as Redis answers, for as long as the lock would have lived, so the processes
            // waiting for it get it instead of running the item again once the lock expires.
            return Effect.catchAll(store, (error) =>
              Effect.logWarning(`RedisWorkerQueue: storing the result of ${storeKey} failed; retrying`, error).pipe(
                Effect.zipRight(
                  store.pipe(
                    Effect.retry({ schedule: storeRetry }),
                    Effect.catchAll(() => release),
                    Effect.forkIn(scope)
                  )
                ),
                Effect.asVoid
              ))
          }
        })
      return Effect.scoped(Effect.zipRight(Effect.forkScoped(refresher), options.worker(item))).pipe(
        Effect.onExit((exit) =>
          Exit.isSuccess(exit) ? complete(exit.value) : release
        )
      )
    }

    const worker = (item: I): Effect.Effect<A, E | RedisError, R> =>
      Effect.suspend(() => {
        const key = itemKey(item)
        const storeKey = cache.storeKey(key)
        const lockKey = lockPrefix + storeKey
        const token = `${owner}:${counter++}`
        const attempt: Effect.Effect<A, E | RedisError, R> = Effect.scoped(Effect.gen(function*() {
          const signal = yield* register(storeKey)
          const [state, value] = (yield* command(
            "EVAL",
            () => acquireCmd(storeKey, lockKey, token, lockTtlMillis)
          )) as [number, string | number]
          if (state === 2) {
            const decoded = yield* cache.decode(storeKey, value as string)
            if (Option.isSome(decoded)) return { _tag: "Done", value: decoded.value } as const
            // Unreadable (another schema version): drop it and compute it again.
            yield* Effect.ignore(cache.delete(key))
            return { _tag: "Again" } as const
          }
          if (state === 1) return { _tag: "Run" } as const
          // Held elsewhere: wait for its notification, or for the lock to expire if its holder died.
          const wait = Math.min(lockTtlMillis, Math.max(1, (value as number) + 1))
          yield* Deferred.await(signal).pipe(
            Effect.timeoutTo({
              duration: Duration.millis(wait),
              onTimeout: (): Signal => "expired",
              onSuccess: (s) => s
            })
          )
          return { _tag: "Again" } as const
        })).pipe(
          Effect.flatMap((next): Effect.Effect<A, E | RedisError, R> =>
            next._tag === "Done" ? Effect.succeed(next.value) : next._tag === "Run"
              ? runHolding(item, storeKey, lockKey, token)
              : attempt
          )
        )
        return attempt
      })

    const localCache: ResultCache.ResultCache<K, A> = {
      get: cache.get,
      // The worker stores the result itself, before it releases the lock.
      set: () => Effect.void
    }
    const { cache: _cache, lockPrefix: _lockPrefix, lockTimeToLive: _lockTtl, ...queueOptions } = options
    return yield* WorkerQueue.make<I, A, E | RedisError, R, K>({ ...queueOptions, worker, cache: localCache })
  })
