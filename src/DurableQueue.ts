/**
 * A durable job queue shared by processes and machines, whatever stores it: Redis (`effect-workers/redis`),
 * PostgreSQL or SQLite (`effect-workers/sql`), or memory for tests (`DurableQueue.memory`). Every backend offers
 * the same contract: offer by id (an id offered twice is queued once), at-least-once delivery under a lease the
 * taker refreshes while its job runs (a killed taker's jobs come back once the lease expires), an acknowledgement
 * only after the handler succeeded, and after `maxAttempts` failures a dead-letter record with the last error.
 *
 * `TaskEngine.fromDurableQueue` and `JobRunner`'s `source` option run their work from one.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { DurableQueueError } from "./internal/durableQueue.js"
import * as memoryInternal from "./internal/memoryDurableQueue.js"
import type { OptionError } from "./OptionError.js"

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
  /**
   * Jobs not yet done: waiting in the queue plus leased to a taker (running, or fetched ahead), in every process.
   * Acknowledged jobs and dead letters are not counted. `JobRunner`'s `stopWhenEmpty` stops on 0.
   */
  readonly size: Effect.Effect<number, DurableQueueError>
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
  /** The queue's name: every process using the same name (on the same store) shares its jobs. */
  readonly name: string
  /** Encodes jobs to JSON and back. */
  readonly schema: Schema.Schema<A, I>
  /** Attempts before a job goes to the dead letters, an integer from 1. Default: 3. */
  readonly maxAttempts?: number | undefined
  /** How long a job stays leased to a taker that stopped refreshing (it died). Refreshed every third. Default: 30 seconds. */
  readonly leaseDuration?: Duration.DurationInput | undefined
  /** How often an idle taker looks for jobs. Default: 100 millis. */
  readonly pollInterval?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category errors
 */
export { DurableQueueError }

/**
 * @since 0.1.0
 * @category refinements
 */
export const isDurableQueueError = (u: unknown): u is DurableQueueError => u instanceof DurableQueueError

/**
 * The contract in one process, with no store, for tests of code that takes a `DurableQueue`: offer by id, attempts,
 * dead letters, interruption and `run`'s graceful shutdown behave as on Redis or SQL (`backend` "memory" in
 * errors). There is no lease (an in-process taker cannot die without settling its job) and nothing outlives the
 * scope.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { DurableQueue } from "effect-workers"
 *
 * const program = Effect.gen(function*() {
 *   const queue = yield* DurableQueue.memory({ name: "emails", schema: Schema.String, maxAttempts: 2 })
 *   yield* queue.offer("a@example.com", { id: "welcome:42" })
 *   yield* queue.take((to) => Effect.log(`sending to ${to}`))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const memory: <A, I>(options: Options<A, I>) => Effect.Effect<DurableQueue<A>, OptionError, Scope.Scope> =
  memoryInternal.make
