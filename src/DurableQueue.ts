/**
 * A durable job queue shared by processes and machines, whatever stores it: Redis (`effect-workers/redis`),
 * PostgreSQL or SQLite (`effect-workers/sql`), or memory for tests (`DurableQueue.memory`). One core holds every
 * rule over thin stores (src/internal/durableQueue/), so every backend keeps the same contract: offer by id (an id
 * offered twice is queued once), jobs encoded to JSON in JavaScript by the item Schema (a value JSON cannot hold is
 * refused at `offer`), at-least-once delivery under a lease the taker refreshes while its job runs (a killed
 * taker's jobs come back once the lease expires), an attempt counted when a job is leased (so a job that kills its
 * process dead-letters after `maxAttempts` too), an acknowledgement only after the handler succeeded, and after
 * `maxAttempts` failed attempts a dead letter with the last error, which `requeue` queues again and `purge` deletes.
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
import { DurableQueueError } from "./internal/durableQueue/error.js"
import * as memoryInternal from "./internal/durableQueue/memoryStore.js"
import type { OptionError } from "./OptionError.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface DurableQueue<in out A> {
  readonly name: string
  /**
   * Queues a job and returns its id (a random UUID unless `id` is given). With an `id` already offered (waiting,
   * running, done or dead), nothing is queued again. A value whose encoded form is not plain JSON (a function,
   * `undefined` in an array, `NaN`, a `BigInt`, a cycle, a `Date` or class instance, nesting deeper than 1000)
   * fails with `DurableQueueError` "EncodeFailed" naming the id; an `id` that is not a non-empty string (or holds a
   * NUL or a lone UTF-16 surrogate) with `OptionError`.
   */
  readonly offer: (value: A, options?: { readonly id?: string | undefined }) => Effect.Effect<string, DurableQueueError | OptionError>
  /**
   * Queues many jobs in one round trip to the store (one script call on Redis, one multi-row `INSERT … ON CONFLICT`
   * on PostgreSQL, one transaction on SQLite) and returns their ids, one per entry in entry order (random UUIDs
   * where no `id` is given), as BullMQ's `addBulk`. Ids are de-duplicated as `offer` does, within the batch too: of
   * entries sharing an id, the first is queued and the others are not (their id is still returned), and an id
   * already offered is not queued again. All or nothing before the store: every id and value is checked and
   * encoded first, so one hostile entry (an id that is not a non-empty string: `OptionError`; a value whose
   * encoded form is not plain JSON: `DurableQueueError` "EncodeFailed" naming its id) fails the call and NOTHING
   * of the batch is written. An empty array writes nothing. `entries` that is not an array, or an entry that is
   * not an object, fails with `OptionError`.
   */
  readonly offerAll: (entries: ReadonlyArray<OfferEntry<A>>) => Effect.Effect<ReadonlyArray<string>, DurableQueueError | OptionError>
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
   * interruptible: bound them with `Effect.timeout` where they may hang. A `concurrency` that is not an integer
   * from 1 to 1,000,000 (`NaN`, `"8"`) or a bad `shutdownTimeout` fails at once with `OptionError`.
   */
  readonly run: <X, E, R>(
    handler: (value: A, job: Job) => Effect.Effect<X, E, R>,
    options?: {
      readonly concurrency?: number | undefined
      readonly shutdownTimeout?: Duration.DurationInput | undefined
    }
  ) => Effect.Effect<never, OptionError, R>
  /**
   * The jobs that failed `maxAttempts` times (or whose runner died running their last attempt), oldest first. Dead
   * letters that no longer decode with the schema (jobs of an old version) are left out with a logged warning
   * naming them, never failing the others: `undecodableDeadLetters` lists them.
   */
  readonly deadLetters: Effect.Effect<ReadonlyArray<DeadLetter<A>>, DurableQueueError>
  /** The dead letters that do not decode with the schema, with their stored JSON and the decode error. */
  readonly undecodableDeadLetters: Effect.Effect<ReadonlyArray<UndecodableDeadLetter>, DurableQueueError>
  /** Queues dead letter `id` again, its attempts reset to 0; `false` when there is no dead letter with that id. */
  readonly requeue: (id: string) => Effect.Effect<boolean, DurableQueueError | OptionError>
  /** Deletes every dead letter (their ids may then be offered again); returns how many there were. */
  readonly purge: Effect.Effect<number, DurableQueueError>
  /**
   * Jobs not yet done: waiting in the queue plus leased to a taker (running, or fetched ahead), in every process.
   * Acknowledged jobs and dead letters are not counted. `JobRunner`'s `stopWhenEmpty` stops on 0.
   */
  readonly size: Effect.Effect<number, DurableQueueError>
}

/**
 * One job of `offerAll`: its value and, optionally, its id (as `offer`'s options).
 *
 * @since 0.1.0
 * @category models
 */
export interface OfferEntry<A> {
  readonly value: A
  readonly id?: string | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Job {
  readonly id: string
  /** 1 for the first attempt; counted when the job is leased, so an attempt whose runner died counts. */
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
 * A dead letter that does not decode with the queue's schema (a job of an old version): `requeue` or `purge` it.
 *
 * @since 0.1.0
 * @category models
 */
export interface UndecodableDeadLetter {
  readonly id: string
  /** The job as stored (JSON text). */
  readonly payload: string
  readonly attempts: number
  readonly lastError: string
  /** Why it does not decode. */
  readonly error: string
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
  /**
   * How long a job stays leased to a taker that stopped refreshing (it died); refreshed every third. At least
   * 100 milliseconds. Default: 30 seconds.
   */
  readonly leaseDuration?: Duration.DurationInput | undefined
  /**
   * How often an idle taker looks for jobs. Default: 100 millis. (On Redis, and on PostgreSQL with notifications,
   * an offer from any process wakes idle takers at once; the poll is the safety net.) A `run` leases up to four
   * times its concurrency ahead of its takers (fewer round trips per job); those jobs go back when it stops.
   */
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
 * The same core as Redis and SQL over a store in memory, for tests of code that takes a `DurableQueue`: the same
 * encoding and errors (a value Redis would refuse is refused here), the same attempts, dead letters, leases (read
 * through `Clock`, so `TestClock` drives them) and graceful `run` (`backend` "memory" in errors). Nothing outlives
 * the scope, and two `memory` queues never share jobs.
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
