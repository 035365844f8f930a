/**
 * A WorkerQueue whose single-flight spans every process on one Redis: when several processes `require` the same
 * item at once, the worker runs once in the whole cluster and the others get its result. It is the ordinary
 * WorkerQueue (same options, same `require` / `requireAll` / `close`) over a Redis `ResultCache`, with a worker
 * wrapped in a Redis lock: `SET NX PX`, refreshed while the run goes on, released together with the result write
 * and a pub/sub notification. If the process running an item dies, its lock expires after `lockTimeToLive` and a
 * waiting process takes the item over.
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as internal from "../internal/redis/workerQueue.js"
import type { OptionError } from "../OptionError.js"
import type * as WorkerQueue from "../WorkerQueue.js"
import type { RedisClient, RedisError } from "./RedisClient.js"
import type { RedisResultCache } from "./ResultCache.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<in out I, in out A, in out E = never, out R = never, in out K = I>
  extends Omit<WorkerQueue.Options<I, A, E, R, K>, "cache">
{
  /**
   * Where results are shared between processes: a cache from the Redis `ResultCache.make`, over the items' keys
   * (`key`, default: the item itself). Its prefix and key function name the item across processes, so every
   * process must use the same ones.
   */
  readonly cache: RedisResultCache<K, A>
  /**
   * How long a lock outlives its holder: a process that dies mid-run holds its items this long. The holder
   * refreshes it every third of it. A holder stalled for longer (event loop blocked, process paused) finds its lock
   * lapsed: if no other process took the item meanwhile, it takes the lock again and nothing runs twice; if one
   * did, the item runs in both and the holder logs "lost the lock". At least 30 milliseconds. Default: 10 seconds.
   */
  readonly lockTimeToLive?: Duration.DurationInput | undefined
  /** Put before the cache key to make the lock key, and names the notification channel. Default: "effect-workers:lock:". */
  readonly lockPrefix?: string | undefined
}

/**
 * A WorkerQueue with single-flight across processes. A failure is not shared: the holder releases the lock, its
 * own waiters get the failure, and a process still waiting runs the worker itself. Redis failures are
 * `RedisError`s of `require`. With `key` (DataLoader's `cacheKeyFn`), items with equal keys share one run in the
 * whole cluster: the lock and the result are at the cache's `storeKey` of the item's key.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { RedisClient, ResultCache, WorkerQueue } from "effect-workers/redis"
 *
 * const program = Effect.gen(function*() {
 *   const cache = yield* ResultCache.make<string, string, string>({
 *     schema: Schema.String,
 *     prefix: "pages:",
 *     timeToLive: "1 day"
 *   })
 *   const pages = yield* WorkerQueue.make({
 *     worker: (url: string) => Effect.promise(() => fetch(url).then((r) => r.text())),
 *     cache,
 *     concurrency: 8
 *   })
 *   // Run this in ten processes: each URL is fetched once in all of them.
 *   return yield* pages.require("http://127.0.0.1:8080/")
 * }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <I, A, E = never, R = never, K = I>(
  options: Options<I, A, E, R, K>
) => Effect.Effect<
  WorkerQueue.WorkerQueue<I, A, E | RedisError>,
  OptionError | RedisError,
  RedisClient | Scope.Scope | R
> = internal.make

/**
 * A layer providing a cross-process WorkerQueue under your own tag.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <Id, I, A, E = never, R = never, K = I>(
  tag: Context.Tag<Id, WorkerQueue.WorkerQueue<I, A, E | RedisError>>,
  options: Options<I, A, E, R, K>
): Layer.Layer<Id, OptionError | RedisError, RedisClient | R> => Layer.scoped(tag, internal.make(options))
