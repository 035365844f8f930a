/**
 * Where a WorkerQueue keeps the results it computed, so that the same item is never worked twice. A cache is
 * two operations, `get(key)` returning an `Option` (any `Some` is a hit, even of `0`, `null` or `undefined`) and
 * `set(key, value)`. Implementations: an LRU in memory with a time to live, a cache over your own functions (the
 * seed's `cache_get` / `cache_set`), and a persistent cache over `@effect/platform`'s `KeyValueStore`.
 *
 * @since 0.1.0
 */
import type * as KeyValueStore from "@effect/platform/KeyValueStore"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Schema from "effect/Schema"
import { ResultCacheMetrics } from "./internal/metrics.js"
import * as internal from "./internal/resultCache.js"
import { ResultCacheError } from "./internal/resultCache.js"
import type { OptionError } from "./OptionError.js"

/**
 * A result cache. Failures of the backing store are typed `ResultCacheError`s; a WorkerQueue logs them and goes on
 * without the cache rather than failing the work.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResultCache<in out K, in out V> {
  readonly get: (key: K) => Effect.Effect<Option.Option<V>, ResultCacheError>
  readonly set: (key: K, value: V) => Effect.Effect<void, ResultCacheError>
  /**
   * A synchronous read, for stores that can answer at once (the memory cache): a WorkerQueue uses it to answer
   * hits without a fiber step. Must agree with `get`.
   */
  readonly unsafeGet?: ((key: K) => Option.Option<V>) | undefined
  /** The number of entries, where the implementation knows it (the memory cache does). */
  readonly size?: Effect.Effect<number> | undefined
  /** Removes the key's entry, where the store can (the memory and `KeyValueStore` caches can). */
  readonly clear?: ((key: K) => Effect.Effect<void, ResultCacheError>) | undefined
  /** Removes every entry, where the store can. */
  readonly clearAll?: Effect.Effect<void, ResultCacheError> | undefined
}

/**
 * A read, a write or a removal of the backing store failed (`GetFailed`, `SetFailed`, `ClearFailed`: also when
 * the cache cannot remove entries at all). `key` is the key as the store sees it (`*` for every key).
 *
 * @since 0.1.0
 * @category errors
 */
export { ResultCacheError }

/**
 * @since 0.1.0
 * @category refinements
 */
export const isResultCacheError = (u: unknown): u is ResultCacheError => internal.isResultCacheError(u)

/**
 * @since 0.1.0
 * @category models
 */
export interface MemoryOptions {
  /** Most entries kept; the least recently used goes first. Default: unbounded. */
  readonly capacity?: number | undefined
  /** How long an entry stays a hit after it was written, read from `Clock`. Default: forever. */
  readonly timeToLive?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface MakeOptions<K, V, E = never, R = never> {
  /** Returns `Option.some(value)` for a hit, `Option.none()` for a miss; an Effect or a Promise. */
  readonly get: (key: K) => Effect.Effect<Option.Option<V>, E, R> | PromiseLike<Option.Option<V>>
  readonly set: (key: K, value: V) => Effect.Effect<unknown, E, R> | PromiseLike<unknown>
  /** Removes one entry; without it `clear` fails with `ResultCacheError` (`ClearFailed`). */
  readonly clear?: ((key: K) => Effect.Effect<unknown, E, R> | PromiseLike<unknown>) | undefined
  /** Removes every entry; without it `clearAll` fails with `ResultCacheError` (`ClearFailed`). */
  readonly clearAll?: (() => Effect.Effect<unknown, E, R> | PromiseLike<unknown>) | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface KeyValueStoreOptions<K, V, I> {
  /** Encodes values to JSON and back; a stored value it cannot decode is a miss and a logged warning. */
  readonly schema: Schema.Schema<V, I>
  /** Put before every key, so several caches can share one store. Default: none. */
  readonly prefix?: string | undefined
  /** Turns a key into the store's string key. Default: strings as they are, anything else as JSON. */
  readonly key?: ((key: K) => string) | undefined
}

/**
 * An LRU cache in memory. Expiry reads the time from `Clock`, so `TestClock` drives it in tests.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ResultCache } from "effect-workers"
 *
 * const program = Effect.gen(function*() {
 *   const cache = yield* ResultCache.memory<string, number>({ capacity: 10_000, timeToLive: "10 minutes" })
 *   yield* cache.set("a", 1)
 *   return yield* cache.get("a") // Option.some(1)
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const memory: <K, V>(options?: MemoryOptions) => Effect.Effect<ResultCache<K, V>, OptionError> = internal.memory

/**
 * A cache over your own `get` and `set`, which may return Effects or Promises. Their failures, thrown or
 * rejected, become `ResultCacheError`s. An unknown key (`gett`) or a `get`/`set` that is not a function fails with
 * `OptionError`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <K, V, E = never, R = never>(
  impl: MakeOptions<K, V, E, R>
) => Effect.Effect<ResultCache<K, V>, OptionError, R> = internal.make

/**
 * A cache over `KeyValueStore`: with `NodeKeyValueStore.layerFileSystem(dir)` results survive a restart. An
 * unknown option (`{ prefx: "a:" }`, with the nearest known name in the message), a `schema` that is not a
 * `Schema`, a `prefix` that is not a string or a `key` that is not a function fails with `OptionError`.
 *
 * @example
 * ```ts
 * import { NodeKeyValueStore } from "@effect/platform-node"
 * import { Effect, Schema } from "effect"
 * import { ResultCache } from "effect-workers"
 *
 * const cache = ResultCache.keyValueStore({ schema: Schema.Number, prefix: "squares:" }).pipe(
 *   Effect.provide(NodeKeyValueStore.layerFileSystem(".cache"))
 * )
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const keyValueStore: <K, V, I>(
  options: KeyValueStoreOptions<K, V, I>
) => Effect.Effect<ResultCache<K, V>, OptionError, KeyValueStore.KeyValueStore> = internal.keyValueStore

/**
 * A layer providing a memory cache under your own tag.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = <Id, K, V>(
  tag: Context.Tag<Id, ResultCache<K, V>>,
  options?: MemoryOptions
): Layer.Layer<Id, OptionError> => Layer.effect(tag, internal.memory<K, V>(options))

/**
 * A layer providing a `KeyValueStore` cache under your own tag.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerKeyValueStore = <Id, K, V, I>(
  tag: Context.Tag<Id, ResultCache<K, V>>,
  options: KeyValueStoreOptions<K, V, I>
): Layer.Layer<Id, OptionError, KeyValueStore.KeyValueStore> => Layer.effect(tag, internal.keyValueStore(options))

/**
 * Removes the key's entry (DataLoader's `clear`). A cache without `clear` fails with `ResultCacheError`
 * (`ClearFailed`), as does one whose `clear` throws.
 *
 * @since 0.1.0
 * @category operations
 */
export const clear: <K, V>(cache: ResultCache<K, V>, key: K) => Effect.Effect<void, ResultCacheError> = internal.clear

/**
 * Removes every entry (DataLoader's `clearAll`); `ResultCacheError` (`ClearFailed`) where the cache cannot.
 *
 * @since 0.1.0
 * @category operations
 */
export const clearAll: <K, V>(cache: ResultCache<K, V>) => Effect.Effect<void, ResultCacheError> = internal.clearAll

/**
 * Writes the value unless the key already has one (DataLoader's `prime`): `clear` first to replace a value.
 *
 * @since 0.1.0
 * @category operations
 */
export const prime: <K, V>(cache: ResultCache<K, V>, key: K, value: V) => Effect.Effect<void, ResultCacheError> =
  internal.prime

/**
 * The module's Effect `Metric`s, labelled `cache=<kind>` (`memory`, `custom`, `key_value_store`, `redis`): reads
 * that hit and that missed. Names follow `effect_workers_<module>_<what>` (README, "Tracing and metrics"); read them
 * with `Metric.value(Metric.tagged(Metrics.x, label, value))` or export them with `@effect/opentelemetry`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const Metrics = ResultCacheMetrics
