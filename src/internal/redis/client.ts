/**
 * The Redis connection shared by the Redis backends: one ioredis client opened by a layer and closed by its scope,
 * plus the typed error every Redis command failure becomes.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { Redis } from "ioredis"
import type { RedisOptions } from "ioredis"
import type * as RedisClientModule from "../../redis/RedisClient.js"
import { typeIdGuard } from "../errorTypeId.js"

/** @internal */
export class RedisError extends Schema.TaggedError<RedisError>("effect-workers/RedisClient/RedisError")("RedisError", {
  reason: Schema.Literal("ConnectFailed", "CommandFailed"),
  command: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    const cause = this.cause === undefined
      ? ""
      : `: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
    return this.reason === "ConnectFailed"
      ? `Redis: cannot connect${cause}`
      : `Redis: command ${this.command} failed${cause}`
  }
}

/** TypeId-based: see errorTypeId.ts. @internal */
export const isRedisError = typeIdGuard(RedisError, "effect-workers/RedisClient/RedisError")

/** @internal */
export class RedisClient extends Context.Tag("effect-workers/redis/RedisClient")<
  RedisClient,
  RedisClientModule.RedisClient.Service
>() {}

/** @internal */
export const command = <A>(name: string, run: () => Promise<A>): Effect.Effect<A, RedisError> =>
  Effect.tryPromise({ try: run, catch: (cause) => new RedisError({ reason: "CommandFailed", command: name, cause }) })

/**
 * QUIT, waited for 2 s at most, then the socket is dropped; a connection not ready (still connecting, or to a server
 * that never answers) is dropped at once: its QUIT would only wait in ioredis' offline queue for the 2 s. Runs as a
 * finalizer (uninterruptible), where a timeout cannot interrupt what it bounds unless that is made interruptible: on
 * a server that never answers, the QUIT's reply never came and the scope never closed.
 */
const close = (client: Redis): Effect.Effect<void> =>
  client.status !== "ready"
    ? Effect.sync(() => client.disconnect())
    : Effect.promise(() => client.quit().then(() => undefined, () => undefined)).pipe(
      Effect.interruptible,
      Effect.timeoutTo({ duration: "2 seconds", onTimeout: () => undefined, onSuccess: () => undefined }),
      Effect.ensuring(Effect.sync(() => client.disconnect()))
    )

/**
 * Opens a connection and waits for it (a `PING`), so an unreachable server fails the layer at once with
 * `ConnectFailed` instead of queueing commands forever. The wait is interruptible: a server that accepts the
 * connection and never answers (a stalled Redis, a wrong port held by another service) kept ioredis waiting for its
 * ready check forever, and inside `acquireRelease`'s acquire no timeout of the caller could end it (measured: a 1 s
 * `Effect.timeout("300 millis")` around `RedisClient.make` on such a server still waited at the test's 15 s limit).
 * Only creating the client is the acquire; the wait comes after, and a failed or interrupted wait drops the socket
 * at once (no QUIT: the server never answered anything).
 *
 * @internal
 */
export const connect = (
  options: RedisClientModule.RedisClient.Options
): Effect.Effect<Redis, RedisError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const redisOptions: RedisOptions = { ...options.options, lazyConnect: true }
      const client = options.url === undefined ? new Redis(redisOptions) : new Redis(options.url, redisOptions)
      // Without a listener ioredis prints every reconnect error; failures reach callers as typed errors.
      client.on("error", () => {})
      return client
    }),
    close
  ).pipe(
    Effect.tap((client) =>
      Effect.tryPromise({
        try: () => client.connect().then(() => client.ping()),
        catch: (cause) => new RedisError({ reason: "ConnectFailed", command: "PING", cause })
      }).pipe(Effect.interruptible, Effect.onError(() => Effect.sync(() => client.disconnect())))
    )
  )

/** @internal */
export const make = (
  options: RedisClientModule.RedisClient.Options = {}
): Effect.Effect<RedisClientModule.RedisClient.Service, RedisError, Scope.Scope> =>
  Effect.map(connect(options), (client) => ({
    client,
    options,
    duplicate: connect(options)
  }))

/** @internal */
export const layer = (options: RedisClientModule.RedisClient.Options = {}): Layer.Layer<RedisClient, RedisError> =>
  Layer.scoped(RedisClient, make(options))

/**
 * A Lua script as a command of `client` (ioredis `defineCommand`: `EVALSHA`, falling back to `EVAL` once), so
 * the script's text is not sent with every call.
 *
 * @internal
 */
export const defineScript = (
  client: Redis,
  name: string,
  lua: string,
  numberOfKeys: number
): (...args: Array<string | number | ReadonlyArray<string | number>>) => Promise<unknown> => {
  // An array argument stands for its elements: ioredis flattens a command's arguments one level.
  const commands = client as unknown as Record<
    string,
    ((...args: Array<string | number | ReadonlyArray<string | number>>) => Promise<unknown>) | undefined
  >
  if (commands[name] === undefined) client.defineCommand(name, { lua, numberOfKeys })
  return (...args) => commands[name]!(...args)
}
