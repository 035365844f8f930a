/**
 * A `DurableQueue` (see `effect-workers/DurableQueue` for the contract) on Redis: the shared core over a store of
 * Lua scripts that move opaque strings (src/internal/durableQueue/redisStore.ts), for sources that must outlive a
 * process and be shared by several: offer by id (an id offered twice is queued once), at-least-once delivery, a
 * lease refreshed while a job runs (a killed taker's jobs come back once it expires, that attempt counted), an
 * acknowledgement only after the handler succeeded, and after `maxAttempts` failed attempts a dead letter with the
 * last error. Keys are `<prefix>{<escaped name>}:<suffix>`, so no two queue names collide. An offer from any process
 * wakes idle takers at once (a message on the queue's pub/sub channel `<prefix>{<escaped name>}:wake`, heard by a
 * second connection each taking instance opens at its first lease); `pollInterval` is only the safety net: once
 * that subscription holds, an idle taker's empty looks in a row wait `pollInterval`, doubling up to 2 s (so a
 * wake-up lost while the subscriber reconnects is made up for up to 2 s later; delayed jobs and lapsed leases are
 * still looked for at their due time).
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Shared from "../DurableQueue.js"
import * as internal from "../internal/durableQueue/redisStore.js"
import type { OptionError } from "../OptionError.js"
import type { RedisClient } from "./RedisClient.js"

/**
 * @since 0.1.0
 * @category models
 */
export type DurableQueue<A> = Shared.DurableQueue<A>

/**
 * @since 0.1.0
 * @category models
 */
export type Job = Shared.Job

/**
 * @since 0.1.0
 * @category models
 */
export type DeadLetter<A> = Shared.DeadLetter<A>

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<A, I> extends Shared.Options<A, I> {
  /** Put before every Redis key (`<prefix>{<escaped name>}:<suffix>`). Default: "effect-workers:queue:". */
  readonly prefix?: string | undefined
}

/**
 * The error of every backend (`reason` "StoreFailed" or "EncodeFailed", `backend` "redis" here).
 *
 * @since 0.1.0
 * @category errors
 */
export const DurableQueueError: typeof Shared.DurableQueueError = Shared.DurableQueueError

/**
 * @since 0.1.0
 * @category errors
 */
export type DurableQueueError = Shared.DurableQueueError

/**
 * What a `runBatch` handler fails with to fail some jobs of its batch (see `DurableQueue.BatchFailure`).
 *
 * @since 0.3.0
 * @category errors
 */
export const BatchFailure: typeof Shared.BatchFailure = Shared.BatchFailure

/**
 * @since 0.3.0
 * @category errors
 */
export type BatchFailure<E> = Shared.BatchFailure<E>

/**
 * @since 0.3.0
 * @category models
 */
export type RunBatchOptions = Shared.RunBatchOptions

/**
 * A durable queue on the `RedisClient` connection.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { DurableQueue, RedisClient } from "effect-workers/redis"
 *
 * const program = Effect.gen(function*() {
 *   const emails = yield* DurableQueue.make({ name: "emails", schema: Schema.Struct({ to: Schema.String }) })
 *   yield* emails.offer({ to: "a@example.com" }, { id: "welcome:42" })
 *   yield* Effect.forkScoped(emails.run(({ to }) => Effect.log(`sending to ${to}`), { concurrency: 16 }))
 * }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <A, I>(
  options: Options<A, I>
) => Effect.Effect<DurableQueue<A>, OptionError, RedisClient | Scope.Scope> = internal.make
