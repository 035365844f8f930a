/**
 * A durable job queue on Redis, on a store of ours implementing `@effect/experimental`'s `PersistedQueueStore`
 * (the one shipped with `@effect/experimental` 0.61 duplicates and loses jobs whenever a lease check runs), for sources that must
 * outlive a process and be shared by several: offer by id (an id offered twice is queued once), at-least-once
 * delivery, a lease refreshed while a job runs (a killed taker's jobs come back once it expires), an
 * acknowledgement only after the handler succeeded, and after `maxAttempts` failures a dead-letter record with
 * the last error.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as internal from "../internal/redis/durableQueue.js"
import type { OptionError } from "../OptionError.js"
import type { RedisClient } from "./RedisClient.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface DurableQueue<in out A> {
  readonly name: string
  /** Queues a job and returns its id. With an `id` already offered, nothing is queued again. */
  readonly offer: (value: A, options?: { readonly id?: string | undefined }) => Effect.Effect<string, DurableQueueError>
  /**
   * Waits for a job, runs `handler` under a lease, and acknowledges the job when it succeeded. A failure before
   * the last attempt puts the job back; on the last it goes to the dead letters. The handler's outcome is
   * returned as an `Exit`; only a failing store fails the effect. Interrupting the handler puts the job back
   * without counting an attempt.
   */
  readonly take: <X, E, R>(
    handler: (value: A, job: Job) => Effect.Effect<X, E, R>
  ) => Effect.Effect<Exit.Exit<X, E>, DurableQueueError, R>
  /**
   * Runs `handler` on jobs forever, `concurrency` at a time (default 1); store failures are logged and retried.
   * Interrupting it (a scope closing, SIGTERM under `NodeRuntime.runMain`) takes no new job and lets the running
   * ones finish and be acknowledged, waiting at most `shutdownTimeout` (default 30 seconds); a job still running
   * then is left to its lease and comes back once this process is gone. Handlers run by `run` are not
   * interruptible: bound them with `Effect.timeout` where they may hang.
   */
  readonly run: <X, E, R>(
    handler: (value: A, job: Job) => Effect.Effect<X, E, R>,
    options?: {
      readonly concurrency?: number | undefined
      readonly shutdownTimeout?: Duration.DurationInput | undefined
    }
  ) => Effect.Effect<never, never, R>
  /** The jobs that failed `maxAttempts` times, oldest first. */
  readonly deadLetters: Effect.Effect<ReadonlyArray<DeadLetter<A>>, DurableQueueError>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Job {
  readonly id: string
  /** 1 for the first attempt. */
  readonly attempt: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface DeadLetter<A> {
  readonly id: string
  readonly value: A
  readonly attempts: number
  /** The last failure, rendered with `Cause.pretty`. */
  readonly lastError: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<A, I> {
  /** The queue's name: every process using the same name (and prefix) shares its jobs. */
  readonly name: string
  /** Encodes jobs to JSON and back. */
  readonly schema: Schema.Schema<A, I>
  /** Attempts before a job goes to the dead letters, an integer from 1. Default: 3. */
  readonly maxAttempts?: number | undefined
  /** How long a job stays leased to a taker that stopped refreshing (it died). Refreshed every third. Default: 30 seconds. */
  readonly leaseDuration?: Duration.DurationInput | undefined
  /** How often an idle taker looks for jobs. Default: 100 millis. */
  readonly pollInterval?: Duration.DurationInput | undefined
  /** Put before every Redis key. Default: "effect-workers:queue:". */
  readonly prefix?: string | undefined
}

/**
 * @since 0.1.0
 * @category errors
 */
export const DurableQueueError: typeof internal.DurableQueueError = internal.DurableQueueError

/**
 * @since 0.1.0
 * @category errors
 */
export interface DurableQueueError extends internal.DurableQueueError {}

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
