/**
 * A ResultCache in Redis: values encoded to JSON by a `Schema`, string keys under a prefix, an optional time to
 * live set by the write itself (`SET … PX`). A stored value the schema cannot decode is a miss and a warning.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { OptionError } from "../../OptionError.js"
import type * as RedisResultCache from "../../redis/ResultCache.js"
import { checker } from "../options.js"
import { checkStoreOptions, countReads, defaultKey, ResultCacheError } from "../resultCache.js"
import { RedisClient } from "./client.js"

const check = checker("RedisResultCache")

/** @internal */
export const make = <K, V, I>(
  options: RedisResultCache.Options<K, V, I>
): Effect.Effect<RedisResultCache.RedisResultCache<K, V>, OptionError, RedisClient> =>
  Effect.gen(function*() {
    yield* checkStoreOptions(check, options, ["schema", "prefix", "timeToLive", "key"])
    const ttl = yield* check.optionalDuration("timeToLive", options.timeToLive)
    const ttlMillis = Option.match(ttl, { onNone: () => 0, onSome: Duration.toMillis })
    if (Option.isSome(ttl)) {
      yield* check.require("timeToLive", options.timeToLive, ttlMillis >= 1, "a duration of 1 millisecond or more")
    }
    const { client } = yield* RedisClient
    const prefix = options.prefix ?? ""
    const keyOf = options.key ?? defaultKey
    const codec = Schema.parseJson(options.schema)
    const decodeEither = Schema.decodeEither(codec)
    const encode = Schema.encode(codec)
    const storeKey = (key: K) => prefix + keyOf(key)
    const count = countReads("redis")

    const decode = (key: string, raw: string): Effect.Effect<Option.Option<V>> => {
      const decoded = decodeEither(raw)
      // An entry we cannot read (written by another version of the schema) is a miss: the worker recomputes it
      // and its write replaces the entry.
      return Either.isRight(decoded) ? Effect.succeed(Option.some(decoded.right)) : Effect.as(
        Effect.logWarning(`RedisResultCache: cannot decode the entry at key ${key}; treating it as a miss`).pipe(
          Effect.annotateLogs("error", ParseResult.TreeFormatter.formatErrorSync(decoded.left))
        ),
        Option.none<V>()
      )
    }
    const encodeRaw = (key: string, value: V): Effect.Effect<string, ResultCacheError> =>
      Effect.mapError(encode(value), (cause) => new ResultCacheError({ reason: "SetFailed", key, cause }))

    return {
      storeKey,
      timeToLiveMillis: ttlMillis,
      decode,
      encode: encodeRaw,
      get: (key: K) => {
        const k = storeKey(key)
        return Effect.tryPromise({
          try: () => client.get(k),
          catch: (cause) => new ResultCacheError({ reason: "GetFailed", key: k, cause })
        }).pipe(
          Effect.flatMap((raw) => raw === null ? Effect.succeed(Option.none<V>()) : decode(k, raw)),
          Effect.map(count)
        )
      },
      set: (key: K, value: V) => {
        const k = storeKey(key)
        return encodeRaw(k, value).pipe(
          Effect.flatMap((raw) =>
            Effect.tryPromise({
              try: () => ttlMillis > 0 ? client.set(k, raw, "PX", ttlMillis) : client.set(k, raw),
              catch: (cause) => new ResultCacheError({ reason: "SetFailed", key: k, cause })
            })
          ),
          Effect.asVoid
        )
      },
      delete: (key: K) => {
        const k = storeKey(key)
        return Effect.tryPromise({
          try: () => client.del(k),
          catch: (cause) => new ResultCacheError({ reason: "SetFailed", key: k, cause })
        }).pipe(Effect.asVoid)
      }
    } satisfies RedisResultCache.RedisResultCache<K, V>
  })
