/**
 * The Redis connection the Redis backends share: a service holding one ioredis client, opened by `layer` and
 * closed (`QUIT`) when the layer's scope closes. Connection failures and command failures are typed `RedisError`s.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { Redis, RedisOptions } from "ioredis"
import * as internal from "../internal/redis/client.js"
import * as internalClient from "../internal/redis/client.js"
import { RedisError } from "../internal/redis/client.js"

/**
 * The service: the connected client, the options it was made from, and a way to open one more connection with
 * the same settings (pub/sub needs a connection of its own).
 *
 * @since 0.1.0
 * @category services
 */
// Its own class over the internal tag's key (the same service at run time): a subclass of the internal tag would
// carry the internal class as its identifier, which a consumer's declarations could only name by an internal path.
export class RedisClient extends Context.Tag(internal.RedisClient.key)<RedisClient, RedisClient.Service>() {}

/**
 * @since 0.1.0
 */
export declare namespace RedisClient {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    readonly client: Redis
    readonly options: Options
    /** A new connection with the same settings, closed with the given scope. */
    readonly duplicate: Effect.Effect<Redis, RedisError, Scope.Scope>
  }

  /**
   * @since 0.1.0
   * @category models
   */
  export interface Options {
    /** A `redis://` URL. Default: 127.0.0.1:6379 (ioredis's default). */
    readonly url?: string | undefined
    /** Further ioredis options (host, port, password, db, tls, retry strategy…). */
    readonly options?: RedisOptions | undefined
  }
}

/**
 * A Redis connection could not be opened, or a command failed.
 *
 * @since 0.1.0
 * @category errors
 */
export { RedisError }

/**
 * @since 0.1.0
 * @category refinements
 */
export const isRedisError = (u: unknown): u is RedisError => internalClient.isRedisError(u)

/**
 * Connects (and checks the connection with a `PING`); the scope's end closes it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options?: RedisClient.Options) => Effect.Effect<RedisClient.Service, RedisError, Scope.Scope> =
  internal.make

/**
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RedisClient } from "effect-workers/redis"
 *
 * const program = Effect.gen(function*() {
 *   const { client } = yield* RedisClient.RedisClient
 *   return yield* Effect.promise(() => client.ping())
 * }).pipe(Effect.provide(RedisClient.layer({ url: "redis://127.0.0.1:6379" })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: (options?: RedisClient.Options) => Layer.Layer<RedisClient, RedisError> = internal.layer
