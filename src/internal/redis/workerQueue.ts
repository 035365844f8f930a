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
import type { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import type { OptionError } from "../../OptionError.js"
import type { RedisResultCache } from "../../redis/ResultCache.js"
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

/** The options checked once, with their defaults. */
interface Config<I, A, E, R, K> {
  readonly lockTtl: Duration.Duration
  readonly lockTtlMillis: number
  readonly cache: RedisResultCache<K, A>
  readonly itemKey: (item: I) => K
  readonly lockPrefix: string
  readonly worker: (item: I) => Effect.Effect<A, E, R>
}

const configOf = <I, A, E, R, K>(
  options: RedisWorkerQueue.Options<I, A, E, R, K>
): Effect.Effect<Config<I, A, E, R, K>, OptionError> =>
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
    return { lockTtl, lockTtlMillis, cache, itemKey, lockPrefix, worker: options.worker }
  })

/** One call of the worker on one item: where its result and lock are, and the token its lock holds. */
interface Flight<I, K> {
  readonly item: I
  readonly key: K
  readonly storeKey: string
  readonly lockKey: string
  readonly token: string
}

/**
 * The single-flight of one queue: the scripts, the waiters of its one subscription, and a worker that runs an item
 * once per cluster (see the header).
 */
class SingleFlight<I, A, E, R, K> {
  // One subscription per queue: every completion of any item of this prefix is announced on one channel, and
  // the message names the item's key. Waiters register before they look at Redis, so none misses its message.
  private readonly waiters = new Map<string, Set<Deferred.Deferred<Signal>>>()
  private readonly channel: string
  private readonly acquireCmd: (...args: Array<string | number>) => Promise<unknown>
  private readonly refreshCmd: (...args: Array<string | number>) => Promise<unknown>
  private readonly completeCmd: (...args: Array<string | number>) => Promise<unknown>
  private readonly releaseCmd: (...args: Array<string | number>) => Promise<unknown>
  private readonly owner = randomUUID()
  private counter = 0
  private readonly storeRetry: Schedule.Schedule<unknown>

  constructor(
    private readonly config: Config<I, A, E, R, K>,
    client: Redis,
    private readonly scope: Scope.Scope
  ) {
    this.channel = `${config.lockPrefix}:done`
    this.acquireCmd = defineScript(client, "ewSingleFlightAcquire", acquireScript, 2)
    this.refreshCmd = defineScript(client, "ewSingleFlightRefresh", refreshScript, 1)
    this.completeCmd = defineScript(client, "ewSingleFlightComplete", completeScript, 2)
    this.releaseCmd = defineScript(client, "ewSingleFlightRelease", releaseScript, 1)
    this.storeRetry = Schedule.exponential("50 millis").pipe(
      Schedule.union(Schedule.spaced("1 second")),
      Schedule.upTo(config.lockTtl)
    )
  }

  private wake(set: Set<Deferred.Deferred<Signal>> | undefined, signal: Signal): void {
    if (set) { for (const deferred of set) Deferred.unsafeDone(deferred, Exit.succeed(signal)) }
  }

  /** Subscribes `subscriber` (a connection of its own) to the queue's channel, and wakes the waiters it names. */
  listen(subscriber: Redis): Effect.Effect<void, RedisError> {
    const channel = this.channel
    subscriber.on("message", (from: string, message: string) => {
      if (from !== channel) return
      this.wake(this.waiters.get(message.slice(1)), message[0] === "+" ? "done" : "failed")
    })
    return command("SUBSCRIBE", () => subscriber.subscribe(channel)).pipe(
      Effect.tap(() => {
        // A notification published while the subscriber is away (Redis restarting, a dropped connection) is lost, and
        // its waiters would sleep until their lock wait ran out. So once the subscriber is back (ioredis subscribes it
        // again; this SUBSCRIBE is answered after that one), every waiter looks again.
        subscriber.on("ready", () => {
          subscriber.subscribe(channel).then(() => {
            for (const set of this.waiters.values()) this.wake(set, "reconnected")
          }, () => {})
        })
      }),
      Effect.asVoid
    )
  }

  private register(storeKey: string): Effect.Effect<Deferred.Deferred<Signal>, never, Scope.Scope> {
    return Effect.acquireRelease(
      Effect.map(Deferred.make<Signal>(), (deferred) => {
        let set = this.waiters.get(storeKey)
        if (!set) this.waiters.set(storeKey, set = new Set())
        set.add(deferred)
        return deferred
      }),
      (deferred) =>
        Effect.sync(() => {
          const set = this.waiters.get(storeKey)
          if (set?.delete(deferred) && set.size === 0) this.waiters.delete(storeKey)
        })
    )
  }

  /** The worker of the in-process queue: a run of `item` once per cluster, or the result another process stored. */
  readonly worker = (item: I): Effect.Effect<A, E | RedisError, R> =>
    Effect.suspend(() => {
      const key = this.config.itemKey(item)
      const storeKey = this.config.cache.storeKey(key)
      const lockKey = this.config.lockPrefix + storeKey
      return this.attempt({ item, key, storeKey, lockKey, token: `${this.owner}:${this.counter++}` })
    })

  /** Takes the result, or the lock and runs the worker, or waits for the holder and tries again. */
  private attempt(flight: Flight<I, K>): Effect.Effect<A, E | RedisError, R> {
    return Effect.scoped(this.look(flight)).pipe(
      Effect.flatMap((next): Effect.Effect<A, E | RedisError, R> =>
        next._tag === "Done" ? Effect.succeed(next.value) : next._tag === "Run"
          ? this.runHolding(flight)
          : this.attempt(flight)
      )
    )
  }

  private look(flight: Flight<I, K>) {
    return Effect.gen(this, function*() {
      const { key, lockKey, storeKey, token } = flight
      const signal = yield* this.register(storeKey)
      const [state, value] = (yield* command(
        "EVAL",
        () => this.acquireCmd(storeKey, lockKey, token, this.config.lockTtlMillis)
      )) as [number, string | number]
      if (state === 2) {
        const decoded = yield* this.config.cache.decode(storeKey, value as string)
        if (Option.isSome(decoded)) return { _tag: "Done", value: decoded.value } as const
        // Unreadable (another schema version): drop it and compute it again.
        yield* Effect.ignore(this.config.cache.delete(key))
        return { _tag: "Again" } as const
      }
      if (state === 1) return { _tag: "Run" } as const
      // Held elsewhere: wait for its notification, or for the lock to expire if its holder died.
      const wait = Math.min(this.config.lockTtlMillis, Math.max(1, (value as number) + 1))
      yield* Deferred.await(signal).pipe(
        Effect.timeoutTo({
          duration: Duration.millis(wait),
          onTimeout: (): Signal => "expired",
          onSuccess: (s) => s
        })
      )
      return { _tag: "Again" } as const
    })
  }

  private runHolding(flight: Flight<I, K>): Effect.Effect<A, E | RedisError, R> {
    return Effect.scoped(Effect.zipRight(Effect.forkScoped(this.refresher(flight)), this.config.worker(flight.item)))
      .pipe(
        Effect.onExit((exit) => Exit.isSuccess(exit) ? this.complete(flight, exit.value) : this.release(flight))
      )
  }

  /**
   * Extends the lock every third of its time to live while the worker runs. A lock that lapsed while nobody
   * wanted the item is taken again, so a stall costs a second run only if another process asked meanwhile.
   */
  private refresher({ lockKey, storeKey, token }: Flight<I, K>): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const lockTtlMillis = this.config.lockTtlMillis
      while (true) {
        yield* Effect.sleep(Duration.millis(Math.max(10, Math.floor(lockTtlMillis / 3))))
        const state = yield* command("EVAL", () => this.refreshCmd(lockKey, token, lockTtlMillis)).pipe(
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
  }

  private release({ lockKey, storeKey, token }: Flight<I, K>): Effect.Effect<void> {
    return command(
      "EVAL",
      () => this.releaseCmd(lockKey, token, this.channel, `-${storeKey}`)
    ).pipe(Effect.catchAll((error) => Effect.logWarning("RedisWorkerQueue: releasing a lock failed", error)))
  }

  /** Stores the result and releases the lock (one script, which also wakes the waiters). */
  private complete(flight: Flight<I, K>, value: A): Effect.Effect<void> {
    const { storeKey } = flight
    return Effect.matchEffect(this.config.cache.encode(storeKey, value), {
      onFailure: (error) =>
        Effect.zipRight(
          Effect.logWarning(`RedisWorkerQueue: storing the result of ${storeKey} failed`, error),
          this.release(flight)
        ),
      onSuccess: (raw) => this.store(flight, raw)
    })
  }

  private store(flight: Flight<I, K>, raw: string): Effect.Effect<void> {
    const { lockKey, storeKey, token } = flight
    const cache = this.config.cache
    const store = command(
      "EVAL",
      () => this.completeCmd(storeKey, lockKey, token, raw, cache.timeToLiveMillis, this.channel, `+${storeKey}`)
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
    return Effect.catchAll(
      store,
      (error) =>
        Effect.logWarning(`RedisWorkerQueue: storing the result of ${storeKey} failed; retrying`, error).pipe(
          Effect.zipRight(
            store.pipe(
              Effect.retry({ schedule: this.storeRetry }),
              Effect.catchAll(() => this.release(flight)),
              Effect.forkIn(this.scope)
            )
          ),
          Effect.asVoid
        )
    )
  }
}

/** @internal */
export const make = <I, A, E = never, R = never, K = I>(
  options: RedisWorkerQueue.Options<I, A, E, R, K>
): Effect.Effect<
  WorkerQueue.WorkerQueue<I, A, E | RedisError>,
  OptionError | RedisError,
  RedisClient | Scope.Scope | R
> =>
  Effect.gen(function*() {
    const config = yield* configOf(options)
    const { client, duplicate } = yield* RedisClient
    const flights = new SingleFlight(config, client, yield* Effect.scope)
    yield* flights.listen(yield* duplicate)
    const localCache: ResultCache.ResultCache<K, A> = {
      get: config.cache.get,
      // The worker stores the result itself, before it releases the lock.
      set: () => Effect.void
    }
    const { cache: _cache, lockPrefix: _lockPrefix, lockTimeToLive: _lockTtl, ...queueOptions } = options
    return yield* WorkerQueue.make<I, A, E | RedisError, R, K>({
      ...queueOptions,
      worker: flights.worker,
      cache: localCache
    })
  })
