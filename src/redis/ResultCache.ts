/**
 * A WorkerQueue `ResultCache` in Redis, shared by every process that uses the same Redis and prefix: values are
 * encoded to JSON with a `Schema`, keys sit under a prefix, and entries expire after an optional time to live
 * (kept by Redis itself). A stored value the schema cannot decode is a miss and a logged warning, as with the
 * `KeyValueStore` cache. Redis failures are typed `ResultCacheError`s, which a WorkerQueue logs and works past.
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Schema from "effect/Schema"
import * as internal from "../internal/redis/resultCache.js"
import type { OptionError } from "../OptionError.js"
import type { ResultCache, ResultCacheError } from "../ResultCache.js"
import type { RedisClient } from "./RedisClient.js"

/**
 * A `ResultCache` with the Redis details the cross-process WorkerQueue needs.
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisResultCache<in out K, in out V> extends ResultCache<K, V> {
  /** The Redis key an item's result is stored at (prefix included). */
  readonly storeKey: (key: K) => string
  /** The time to live in milliseconds, 0 for none. */
  readonly timeToLiveMillis: number
  /** Decodes a stored JSON string; one the schema rejects is `none` and a logged warning. */
  readonly decode: (storeKey: string, raw: string) => Effect.Effect<Option.Option<V>>
  /** Encodes a value to the JSON string stored. */
  readonly encode: (storeKey: string, value: V) => Effect.Effect<string, ResultCacheError>
  /** Removes an entry. */
  readonly delete: (key: K) => Effect.Effect<void, ResultCacheError>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<K, V, I> {
  /** Encodes values to JSON and back. */
  readonly schema: Schema.Schema<V, I>
  /** Put before every key, so several caches share one Redis database. Default: none. */
  readonly prefix?: string | undefined
  /** How long an entry lives after its write (Redis `PX`). Default: forever. */
  readonly timeToLive?: Duration.DurationInput | undefined
  /** Turns an item into its key. Default: strings as they are, anything else as JSON. */
  readonly key?: ((key: K) => string) | undefined
}

/**
 * A Redis result cache over the `RedisClient` connection.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { WorkerQueue } from "effect-workers"
 * import { RedisClient, ResultCache } from "effect-workers/redis"
 *
 * const program = Effect.gen(function*() {
 *   const cache = yield* ResultCache.make({ schema: Schema.Number, prefix: "squares:", timeToLive: "1 hour" })
 *   const queue = yield* WorkerQueue.make({ worker: (n: number) => Effect.succeed(n * n), cache })
 *   return yield* queue.require(12)
 * }).pipe(Effect.scoped, Effect.provide(RedisClient.layer({ url: "redis://127.0.0.1:6379" })))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <K, V, I>(
  options: Options<K, V, I>
) => Effect.Effect<RedisResultCache<K, V>, OptionError, RedisClient> = internal.make

/**
 * A layer providing a Redis result cache under your own tag.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <Id, K, V, I>(
  tag: Context.Tag<Id, ResultCache<K, V>>,
  options: Options<K, V, I>
): Layer.Layer<Id, OptionError, RedisClient> => Layer.effect(tag, internal.make(options))
