/**
 * Result caches for WorkerQueue: an LRU memory cache with a time to live read from `Clock`, a cache over user
 * functions, and a cache over `@effect/platform`'s `KeyValueStore` with `Schema` encoding.
 */
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as MutableHashMap from "effect/MutableHashMap"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { OptionError } from "../OptionError.js"
import type * as ResultCache from "../ResultCache.js"
import { typeIdGuard } from "./errorTypeId.js"
import { ResultCacheMetrics as Metrics } from "./metrics.js"
import { type Checker, checker } from "./options.js"
import { bump, labels } from "./telemetry.js"

const check = checker("ResultCache")

/** @internal */
export class ResultCacheError
  extends Schema.TaggedError<ResultCacheError>("effect-workers/ResultCache/ResultCacheError")(
    "ResultCacheError",
    {
      reason: Schema.Literal("GetFailed", "SetFailed", "ClearFailed"),
      key: Schema.String,
      cause: Schema.optional(Schema.Defect)
    }
  )
{
  override get message(): string {
    const what = this.reason === "GetFailed" ? "reading" : this.reason === "SetFailed" ? "writing" : "clearing"
    const cause = this.cause === undefined
      ? ""
      : `: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
    return `ResultCache: ${what} key ${this.key} failed${cause}`
  }
}

/** TypeId-based: see errorTypeId.ts. @internal */
export const isResultCacheError = typeIdGuard(ResultCacheError, "effect-workers/ResultCache/ResultCacheError")

/** @internal */
export const describeKey = (key: unknown): string => {
  if (typeof key === "string") return JSON.stringify(key)
  if (typeof key === "number" || typeof key === "bigint" || typeof key === "boolean") return String(key)
  try {
    return JSON.stringify(key) ?? String(key)
  } catch {
    return String(key)
  }
}

// --- memory -------------------------------------------------------------------------------------------------------

interface Node<K, V> {
  readonly key: K
  value: V
  expiresAt: number
  prev: Node<K, V> | undefined
  next: Node<K, V> | undefined
}

/**
 * A map from key to node (keys compared with `Equal`) plus a doubly linked list in recency order: the head is the
 * least recently used entry, evicted first. Every operation is O(1).
 */
class Lru<K, V> {
  readonly map = MutableHashMap.empty<K, Node<K, V>>()
  head: Node<K, V> | undefined = undefined
  tail: Node<K, V> | undefined = undefined
  size = 0
  constructor(readonly capacity: number, readonly ttlMillis: number) {}

  private unlink(node: Node<K, V>): void {
    if (node.prev) node.prev.next = node.next
    else this.head = node.next
    if (node.next) node.next.prev = node.prev
    else this.tail = node.prev
    node.prev = node.next = undefined
  }
  private append(node: Node<K, V>): void {
    node.prev = this.tail
    if (this.tail) this.tail.next = node
    else this.head = node
    this.tail = node
  }
  private remove(node: Node<K, V>): void {
    this.unlink(node)
    MutableHashMap.remove(this.map, node.key)
    this.size--
  }

  get(key: K, now: number): Option.Option<V> {
    const found = MutableHashMap.get(this.map, key)
    if (Option.isNone(found)) return Option.none()
    const node = found.value
    if (now >= node.expiresAt) {
      this.remove(node)
      return Option.none()
    }
    this.unlink(node)
    this.append(node)
    return Option.some(node.value)
  }

  delete(key: K): void {
    const found = MutableHashMap.get(this.map, key)
    if (Option.isSome(found)) this.remove(found.value)
  }

  clear(): void {
    MutableHashMap.clear(this.map)
    this.head = this.tail = undefined
    this.size = 0
  }

  set(key: K, value: V, now: number): void {
    const expiresAt = now + this.ttlMillis
    const found = MutableHashMap.get(this.map, key)
    if (Option.isSome(found)) {
      const node = found.value
      node.value = value
      node.expiresAt = expiresAt
      this.unlink(node)
      this.append(node)
      return
    }
    const node: Node<K, V> = { key, value, expiresAt, prev: undefined, next: undefined }
    MutableHashMap.set(this.map, key, node)
    this.append(node)
    this.size++
    while (this.size > this.capacity && this.head) this.remove(this.head)
  }
}

/** @internal */
export const memory = <K, V>(
  options: ResultCache.MemoryOptions = {}
): Effect.Effect<ResultCache.ResultCache<K, V>, OptionError> =>
  Effect.gen(function*() {
    yield* check.knownKeys(options, ["capacity", "timeToLive"])
    const capacity = yield* check.integerOrInfinity("capacity", options.capacity, Number.POSITIVE_INFINITY, 1)
    const ttl = options.timeToLive === undefined
      ? Duration.infinity
      : yield* check.require(
        "timeToLive",
        options.timeToLive,
        Option.exists(Duration.decodeUnknown(options.timeToLive), (d) => Duration.greaterThan(d, Duration.zero)),
        "a positive duration"
      ).pipe(Effect.map(Duration.decode))
    const lru = new Lru<K, V>(capacity, Duration.isFinite(ttl) ? Duration.toMillis(ttl) : Number.POSITIVE_INFINITY)
    // The clock is read synchronously, so the cache can answer without a fiber step; it is the Clock service in
    // force at construction, so TestClock drives it. A cache with no expiry never reads it.
    const clock = yield* Effect.clock
    const now = Duration.isFinite(ttl) ? () => clock.unsafeCurrentTimeMillis() : () => 0
    const count = countReads("memory")
    const unsafeGet = (key: K) => count(lru.get(key, now()))
    return {
      get: (key: K) => Effect.sync(() => unsafeGet(key)),
      unsafeGet,
      set: (key: K, value: V) => Effect.sync(() => lru.set(key, value, now())),
      size: Effect.sync(() => lru.size),
      clear: (key: K) => Effect.sync(() => lru.delete(key)),
      clearAll: Effect.sync(() => lru.clear())
    } satisfies ResultCache.ResultCache<K, V>
  })

/**
 * Counts a cache's reads as hits and misses (label `cache`: its kind) and returns what was read; a read that
 * failed counts as neither.
 * @internal
 */
export const countReads = (kind: string) => {
  const tags = labels("cache", kind)
  return <V>(found: Option.Option<V>): Option.Option<V> => {
    bump(Option.isSome(found) ? Metrics.hits : Metrics.misses, tags)
    return found
  }
}

// --- user functions -----------------------------------------------------------------------------------------------

const fromUser = <A, R>(
  run: () => Effect.Effect<A, unknown, R> | PromiseLike<A>,
  onError: (cause: unknown) => ResultCacheError
): Effect.Effect<A, ResultCacheError, R> =>
  Effect.suspend(() => {
    let result: Effect.Effect<A, unknown, R> | PromiseLike<A>
    try {
      result = run()
    } catch (cause) {
      return Effect.fail(onError(cause))
    }
    return Effect.isEffect(result)
      ? Effect.mapError(result, onError)
      : Effect.tryPromise({ try: () => Promise.resolve(result), catch: onError })
  })

const MAKE_KEYS = ["get", "set", "clear", "clearAll"]

/** `impl`'s keys are known, `get` and `set` are functions, `clear` and `clearAll` functions if given. */
const checkMake = (impl: unknown): Effect.Effect<void, OptionError> =>
  Effect.gen(function*() {
    yield* check.knownKeys(impl, MAKE_KEYS)
    const fields = (impl ?? {}) as Record<string, unknown>
    for (const field of MAKE_KEYS) {
      const value = fields[field]
      const optional = field === "clear" || field === "clearAll"
      yield* check.require(
        field,
        value,
        typeof value === "function" || (optional && value === undefined),
        optional ? "a function or undefined" : "a function"
      )
    }
  })

/** @internal */
export const make = <K, V, E = never, R = never>(
  impl: ResultCache.MakeOptions<K, V, E, R>
): Effect.Effect<ResultCache.ResultCache<K, V>, OptionError, R> =>
  Effect.zipRight(
    checkMake(impl),
    Effect.map(Effect.context<R>(), (context) => {
      const failed = (reason: ResultCacheError["reason"], key: string) => (cause: unknown) =>
        new ResultCacheError({ reason, key, cause })
      const userClear = impl.clear
      const userClearAll = impl.clearAll
      const count = countReads("custom")
      return {
        get: (key: K) =>
          Effect.provide(
            Effect.map(fromUser(() => impl.get(key), failed("GetFailed", describeKey(key))), count),
            context
          ),
        set: (key: K, value: V) =>
          Effect.provide(
            Effect.asVoid(fromUser(() => impl.set(key, value), failed("SetFailed", describeKey(key)))),
            context
          ),
        clear: userClear === undefined ?
          undefined :
          (key: K) =>
            Effect.provide(
              Effect.asVoid(fromUser(() => userClear(key), failed("ClearFailed", describeKey(key)))),
              context
            ),
        clearAll: userClearAll === undefined
          ? undefined
          : Effect.provide(Effect.asVoid(fromUser(() => userClearAll(), failed("ClearFailed", "*"))), context)
      }
    })
  )

/**
 * Runs one of a cache's operations so that a synchronous throw, a defect or a missing method is a typed
 * `ResultCacheError` rather than a crash of the caller.
 */
const guarded = <A>(
  run: (() => Effect.Effect<A, ResultCacheError>) | undefined,
  reason: ResultCacheError["reason"],
  key: string
): Effect.Effect<A, ResultCacheError> =>
  run === undefined
    ? Effect.fail(new ResultCacheError({ reason, key, cause: new Error("this cache cannot remove entries") }))
    : Effect.suspend(run).pipe(
      Effect.catchAllDefect((cause) => Effect.fail(new ResultCacheError({ reason, key, cause })))
    )

/** @internal */
export const clear = <K, V>(cache: ResultCache.ResultCache<K, V>, key: K): Effect.Effect<void, ResultCacheError> =>
  guarded(typeof cache.clear === "function" ? () => cache.clear!(key) : undefined, "ClearFailed", describeKey(key))

/** @internal */
export const clearAll = <K, V>(cache: ResultCache.ResultCache<K, V>): Effect.Effect<void, ResultCacheError> =>
  guarded(Effect.isEffect(cache.clearAll) ? () => cache.clearAll! : undefined, "ClearFailed", "*")

/** @internal */
export const prime = <K, V>(
  cache: ResultCache.ResultCache<K, V>,
  key: K,
  value: V
): Effect.Effect<void, ResultCacheError> =>
  Effect.flatMap(
    guarded(() => cache.get(key), "GetFailed", describeKey(key)),
    (found) =>
      Option.isOption(found) && Option.isSome(found)
        ? Effect.void
        : guarded(() => cache.set(key, value), "SetFailed", describeKey(key))
  )

// --- KeyValueStore ------------------------------------------------------------------------------------------------

/** @internal */
export const defaultKey = (key: unknown): string =>
  typeof key === "string" ? key : typeof key === "bigint" ? `${key}n` : JSON.stringify(key) ?? String(key)

/**
 * The options of a cache over a key-value store (this module's and the Redis one's): known keys only (a typo such
 * as `tll` would otherwise be a silent default), a `Schema`, a string prefix, a key function.
 * @internal
 */
export const checkStoreOptions = (
  check: Checker,
  options: unknown,
  known: ReadonlyArray<string>
): Effect.Effect<void, OptionError> =>
  Effect.gen(function*() {
    yield* check.knownKeys(options, known)
    if (options === undefined) return yield* check.require("schema", undefined, false, "a Schema")
    const { key, prefix, schema } = options as Record<string, unknown>
    yield* check.require("schema", schema, Schema.isSchema(schema), "a Schema")
    yield* check.require("prefix", prefix, prefix === undefined || typeof prefix === "string", "a string")
    yield* check.require("key", key, key === undefined || typeof key === "function", "a function")
  })

/** @internal */
export const keyValueStore = <K, V, I>(
  options: ResultCache.KeyValueStoreOptions<K, V, I>
): Effect.Effect<ResultCache.ResultCache<K, V>, OptionError, KeyValueStore.KeyValueStore> =>
  Effect.zipRight(checkStoreOptions(check, options, ["schema", "prefix", "key"]), KeyValueStore.KeyValueStore).pipe(
    Effect.map((store) => {
      const prefix = options.prefix ?? ""
      const keyOf = options.key ?? defaultKey
      const codec = Schema.parseJson(options.schema)
      const decode = Schema.decodeEither(codec)
      const encode = Schema.encode(codec)
      const count = countReads("key_value_store")
      return {
        get: (key: K) => {
          const storeKey = prefix + keyOf(key)
          return store.get(storeKey).pipe(
            Effect.mapError((cause) => new ResultCacheError({ reason: "GetFailed", key: storeKey, cause })),
            Effect.flatMap(Option.match({
              onNone: () => Effect.succeed(Option.none<V>()),
              onSome: (raw) => {
                const decoded = decode(raw)
                // An entry we cannot read (another version of the schema, a damaged file) is a miss: the worker
                // recomputes it and the write replaces it.
                return Either.isRight(decoded) ? Effect.succeed(Option.some(decoded.right)) : Effect.as(
                  Effect.logWarning(`ResultCache: cannot decode the entry at key ${storeKey}; treating it as a miss`)
                    .pipe(
                      Effect.annotateLogs("error", ParseResult.TreeFormatter.formatErrorSync(decoded.left))
                    ),
                  Option.none<V>()
                )
              }
            })),
            Effect.map(count)
          )
        },
        set: (key: K, value: V) => {
          const storeKey = prefix + keyOf(key)
          return encode(value).pipe(
            Effect.flatMap((raw) => store.set(storeKey, raw)),
            Effect.mapError((cause) => new ResultCacheError({ reason: "SetFailed", key: storeKey, cause }))
          )
        },
        clear: (key: K) => {
          const storeKey = prefix + keyOf(key)
          return Effect.mapError(
            store.remove(storeKey),
            (cause) => new ResultCacheError({ reason: "ClearFailed", key: storeKey, cause })
          )
        },
        // A store has no listing by prefix: clearing it all would remove other caches' entries, so only a cache
        // that has the store to itself (no prefix) can.
        clearAll: prefix === ""
          ? Effect.mapError(store.clear, (cause) => new ResultCacheError({ reason: "ClearFailed", key: "*", cause }))
          : undefined
      } satisfies ResultCache.ResultCache<K, V>
    })
  )
