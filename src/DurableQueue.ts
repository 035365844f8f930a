/**
 * A durable job queue shared by processes and machines, whatever stores it: Redis (`effect-workers/redis`),
 * PostgreSQL or SQLite (`effect-workers/sql`), or memory for tests (`DurableQueue.memory`). One core holds every
 * rule over thin stores (src/internal/durableQueue/), so every backend keeps the same contract: offer by id (an id
 * offered twice is queued once), jobs encoded to JSON in JavaScript by the item Schema (a value JSON cannot hold is
 * refused at `offer`), at-least-once delivery under a lease the taker refreshes while its job runs (a killed
 * taker's jobs come back once the lease expires), an attempt counted when a job is leased (so a job that kills its
 * process dead-letters after `maxAttempts` too), an acknowledgement only after the handler succeeded, and after
 * `maxAttempts` failed attempts a dead letter with the last error, which `requeue` queues again and `purge` deletes.
 * Since 0.2.0 (issue #11): backoff between attempts (a retry waits in the store, holding no taker), delayed jobs,
 * priorities, attempt timeouts, `cancel`, progress and `status` by id, results by id with a time to live, `pause`,
 * `drain`, `counts` and `requeueAll`, on every store.
 *
 * `TaskEngine.fromDurableQueue` and `JobRunner`'s `source` option run their work from one.
 *
 * @since 0.1.0
 */
import type { NonEmptyReadonlyArray } from "effect/Array"
import type * as Context from "effect/Context"
import type * as Cron from "effect/Cron"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Schedule from "effect/Schedule"
import type * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as backoffInternal from "./internal/durableQueue/backoff.js"
import * as batchInternal from "./internal/durableQueue/batch.js"
import { BatchFailure } from "./internal/durableQueue/batch.js"
import { DurableQueueError } from "./internal/durableQueue/error.js"
import * as internalError from "./internal/durableQueue/error.js"
import * as memoryInternal from "./internal/durableQueue/memoryStore.js"
import { DurableQueueMetrics } from "./internal/durableQueue/telemetry.js"
import type { OptionError } from "./OptionError.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface DurableQueue<in out A> {
  readonly name: string
  /**
   * Queues a job and returns its id: unless `id` is given, a UUIDv7 (time-ordered: it reveals the offer time to the
   * millisecond; pass `id` to avoid that). With an `id` already offered (waiting, running, done or dead), nothing is
   * queued again. A value whose encoded form is not plain JSON (a function, `undefined` in an array, `NaN`, a `BigInt`,
   * a cycle, a `Date` or class instance, nesting deeper than 1000) fails with `DurableQueueError` "EncodeFailed" naming
   * the id; an `id` that is not a non-empty string (or holds a NUL or a lone UTF-16 surrogate) with `OptionError`, as
   * does any bad option of `OfferOptions` (naming it).
   */
  readonly offer: (value: A, options?: OfferOptions) => Effect.Effect<string, DurableQueueError | OptionError>
  /**
   * Queues many jobs in one round trip to the store (one script call on Redis, one multi-row `INSERT … ON CONFLICT` on
   * PostgreSQL, one transaction on SQLite) and returns their ids, one per entry in entry order (a UUIDv7 where no `id`
   * is given: time-ordered, it reveals the offer time to the millisecond; pass `id` to avoid that), as BullMQ's
   * `addBulk`. Ids are de-duplicated as `offer` does, within the batch too: of entries sharing an id, the first is
   * queued and the others are not (their id is still returned), and an id already offered is not queued again. Each
   * entry may carry `offer`'s options (a delay, a priority, a timeout, a backoff). All or nothing before the store:
   * every entry's options and value are checked and encoded first, so one hostile entry (a bad id or option:
   * `OptionError` naming it, as `entries[2].delay`; a value whose encoded form is not plain JSON: `DurableQueueError`
   * "EncodeFailed" naming its id) fails the call and NOTHING of the batch is written. An empty array writes nothing.
   * `entries` that is not an array, or an entry that is not an object, fails with `OptionError`. An "Offered" event is
   * sent for each job handed to the store (as events never slow the queue, a batch of more than 10,000 overflows the
   * event buffer: its oldest "Offered" are dropped, logged).
   */
  readonly offerAll: (
    entries: ReadonlyArray<OfferEntry<A>>
  ) => Effect.Effect<ReadonlyArray<string>, DurableQueueError | OptionError>
  /**
   * Waits for a job, runs `handler` under a lease, and acknowledges the job when it succeeded. A failure before
   * the last attempt puts the job back, not leased again before its backoff has passed (the queue's `backoff`,
   * or the offer's); on the last it goes to the dead letters. The handler's outcome is returned as an `Exit`;
   * only a failing store fails the effect. Interrupting `take` puts the job back without counting an attempt.
   * A job cancelled while it runs (`cancel`) has its handler interrupted: the `Exit` is interrupted and the job
   * is not retried. With `result`, the handler's value is stored, encoded with that schema, for `result(id)`
   * (a `result` that is not a Schema, or an unknown option, fails with `OptionError`).
   */
  readonly take: {
    <X, E, R>(
      handler: (value: A, job: Job) => Effect.Effect<X, E, R>
    ): Effect.Effect<Exit.Exit<X, E>, DurableQueueError, R>
    <X, E, R, XI = X>(
      handler: (value: A, job: Job) => Effect.Effect<X, E, R>,
      options: TakeOptions<X, XI> | undefined
    ): Effect.Effect<Exit.Exit<X, E>, DurableQueueError | OptionError, R>
  }
  /**
   * Runs `handler` on jobs forever, `concurrency` at a time (default 1); store failures are logged and retried.
   * Interrupting it (a scope closing, SIGTERM under `NodeRuntime.runMain`) takes no new job and lets the running
   * ones finish and be acknowledged, waiting at most `shutdownTimeout` (default 30 seconds); a job still running
   * then is left to its lease and comes back once this process is gone. The interrupt returns once the settlements
   * of the jobs it ran (acknowledgements, retries, dead letters) and the put-back of jobs leased but not started are
   * written to the store, so a `status` or `counts` read right after sees them; that write waits 5 seconds at most
   * more (a store not answering: they are still retried meanwhile, else their leases lapse and the jobs come back).
   * A shutdown does not interrupt handlers; the queue's or the offer's `timeout` and `cancel` do. A `concurrency`
   * that is not an integer from 1 to 1,000,000 (`NaN`, `"8"`) or a bad `shutdownTimeout` fails at once with
   * `OptionError`.
   */
  readonly run: <X, E, R, XI = X>(
    handler: (value: A, job: Job) => Effect.Effect<X, E, R>,
    options?: RunOptions<X, XI>
  ) => Effect.Effect<never, OptionError, R>
  /**
   * Runs `handler` on BATCHES of jobs forever, as pg-boss's `batchSize` and BullMQ Pro's batches: `values` and
   * `jobs` are aligned (job i carries value i; its `id`, `attempt` and `progress` work as in `run`), at most `size`
   * per call (default 100), `concurrency` batches at once (default 1). A batch is the jobs buffered or leased now;
   * with `maxWait` a taker holding fewer than `size` waits that long for more (default 0: no wait). The handler's
   * outcome settles every job of its batch, submitted together (one store write per 256 settlements):
   * - success: every job is acknowledged;
   * - a failure or defect (a synchronous throw, a non-Effect returned, the timeout): every job fails with it, and
   *   each is retried by its OWN attempts and backoff and dead-lettered alone after `maxAttempts`, as in `run`;
   * - a failure with a `BatchFailure` listing some indexes: those jobs fail with their own error, the others are
   *   acknowledged (a `BatchFailure` naming an index outside the batch, twice, or not an integer fails every job).
   *
   * A job that does not decode is not given to the handler (it fails alone). The batch's timeout is the shortest
   * of its jobs' (the offer's, else the queue's): past it every job fails with "TimedOut". A `cancel` of a job in
   * a running batch does not interrupt the batch: the job is settled "cancelled" when the batch ends, whatever the
   * handler did with it, and is not retried. A job cancelled before the batch started is not given to the handler.
   * Leases of the batch's jobs are refreshed while it runs. Interrupting `runBatch` takes no new job; a taker
   * waiting out `maxWait` runs the batch it holds at once, and running batches finish within `shutdownTimeout`
   * (default 30 seconds); as for `run`, the interrupt returns once their settlements and the put-back are written
   * (5 seconds at most more). A bad `size`, `maxWait`, `concurrency`, `shutdownTimeout` or `result` (not a Schema), or
   * an unknown option, fails at once with `OptionError` naming it. (Since 0.3.0.)
   *
   * With `{ result: schema }` the handler succeeds with an array of results ALIGNED with `values` (result i is job
   * i's), and each job acknowledged keeps its own, encoded with `schema`, for `result(id)` (for the queue's
   * `resultTimeToLive`), as `run` keeps one: a result that does not encode is not stored (logged, naming the job)
   * and its job stays done, the others keep theirs. An array of another length, no array, or one that throws as
   * it is read (a Proxy) fails EVERY job of the batch with `DurableQueueError` "ResultsMismatch" naming the batch's
   * size and what came (which result is whose cannot be told), each retried by its own attempts as any failure.
   * A `BatchFailure` may carry `results`, aligned the same way, for the jobs it acknowledges (the entries at its
   * failed indexes are ignored); without them those jobs keep no result. A cancelled job keeps none.
   */
  readonly runBatch: {
    <X, E, R, XI = X>(
      handler: (
        values: NonEmptyReadonlyArray<A>,
        jobs: NonEmptyReadonlyArray<Job>
      ) => Effect.Effect<ReadonlyArray<X>, E, R>,
      options: RunBatchOptions<X, XI>
    ): Effect.Effect<never, OptionError, R>
    <X, E, R>(
      handler: (values: NonEmptyReadonlyArray<A>, jobs: NonEmptyReadonlyArray<Job>) => Effect.Effect<X, E, R>,
      options?: RunBatchOptions
    ): Effect.Effect<never, OptionError, R>
  }
  /**
   * The jobs that failed `maxAttempts` times (or whose last lease lapsed without a settlement), oldest first. Dead
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
  /**
   * Cancels job `id`: waiting or delayed, it is removed (state "cancelled"; its id stays known, so it is not
   * offered again); running, its handler is interrupted and the job is not retried. A runner in another process
   * learns it at its next lease refresh (a third of `leaseDuration` at most). `false` when no such job is waiting,
   * delayed or running (unknown, done, dead or already cancelled). A bad `id` fails with `OptionError`.
   */
  readonly cancel: (id: string) => Effect.Effect<boolean, DurableQueueError | OptionError>
  /**
   * What the store knows of job `id`, from any process: its state, attempts, last progress and last error; none
   * when it was never offered, its dead letter was purged, or it was done or cancelled longer ago than
   * `resultTimeToLive` (Redis drops those records then; SQL and memory keep them). A done id is never queued again
   * either way.
   */
  readonly status: (id: string) => Effect.Effect<Option.Option<JobStatus>, DurableQueueError | OptionError>
  /**
   * The value the handler of job `id` succeeded with, decoded by `schema`, while its `resultTimeToLive` lasts.
   * Stored only when `take`, `run` or `runBatch` were given `{ result: schema }`; none before the job is done. A stored
   * result that does not decode fails with `DurableQueueError` "DecodeFailed" naming the job.
   */
  readonly result: <X, XI>(
    id: string,
    schema: Schema.Schema<X, XI>
  ) => Effect.Effect<Option.Option<X>, DurableQueueError | OptionError>
  /**
   * Pauses the queue for every runner on the store: no job is leased until `resume`; running jobs finish. Jobs this
   * instance had leased ahead are back in the store, waiting, when it returns (a store that does not answer holds
   * it 5 s at most more).
   */
  readonly pause: Effect.Effect<void, DurableQueueError>
  /** Resumes a paused queue; idle takers look for jobs at once. */
  readonly resume: Effect.Effect<void, DurableQueueError>
  readonly isPaused: Effect.Effect<boolean, DurableQueueError>
  /**
   * Waits until no job is waiting, delayed or running (polling every `pollInterval`); never completes while a
   * paused queue holds jobs.
   */
  readonly drain: Effect.Effect<void, DurableQueueError>
  /** Jobs by state, in every process, and whether the queue is paused. */
  readonly counts: Effect.Effect<Counts, DurableQueueError>
  /** Queues every dead letter again, attempts reset to 0; returns how many. */
  readonly requeueAll: Effect.Effect<number, DurableQueueError>
  /**
   * What happens to this queue's jobs, in every process (Redis pub/sub, PostgreSQL LISTEN/NOTIFY, in-process for
   * memory and SQLite), from subscription on; at most once: an event lost on the way is not sent again. Events
   * never slow or fail the queue (they are published in batches, fire-and-forget); a subscriber more than 10,000
   * events behind loses the oldest, with a logged count. "Offered" is sent for every offer, also of an id the store
   * already knew, once a subscription exists. On Redis it is published only while some `events` stream of the queue
   * (in any process) is subscribed, as the offer script reads when it writes: a stream hears the "Offered" of every
   * offer Redis ran after its subscription was made (not of one it ran before, even when the stream started first).
   * The other events on Redis are sent in batches only when the channel has a subscriber as the batch goes out: an
   * event emitted after a stream subscribed reaches it. On PostgreSQL every event is sent only while some `events`
   * stream of the queue (in any process) holds its listeners' lock, which emitters look at once a second: a stream's
   * first events arrive 1.1 s after it starts, and every event emitted after its first one ARRIVED reaches it (what it
   * heard in those 1.1 s is delivered too, but some events of that span may be missing: an emitter trusts its last
   * look for 1 s). The streams of all queues of one client in a process keep ONE pooled connection between them
   * while any runs (15 queues on the `PgClient` default pool of 10 leave 9 connections to the queues); on a pool of
   * one connection a stream fails with "StoreFailed" naming `maxConnections`.
   */
  readonly events: Stream.Stream<JobEvent, DurableQueueError>
  /**
   * Offers `value` at each occurrence of `spec` (a cron expression, read in UTC unless `timeZone`; a `Cron`; or
   * `{ every }`, occurrence k at k × every since the epoch) while the scope lives, with the job id
   * `schedule:<id>:<occurrence as ISO string>`: run it in every process and each occurrence is still stored once,
   * and none is missed while one of them lives. A `Schedule` is refused (its occurrences count from when its
   * process started, so processes would not agree); a bad `id`, cron expression or `every` fails with `OptionError`
   * naming it. Calling it clears an earlier `unschedule` of `id`. `options` gives the occurrences a `priority`,
   * `timeout` and `backoff` (checked at this call).
   */
  readonly schedule: (
    id: string,
    spec: ScheduleSpec,
    value: A,
    options?: ScheduleOptions
  ) => Effect.Effect<void, DurableQueueError | OptionError, Scope.Scope>
  /**
   * Stops schedule `id` in every process (a mark the store keeps): each stops before its next occurrence, and
   * their `schedule` scopes may stay open. An occurrence being offered as the mark is written may still go out.
   */
  readonly unschedule: (id: string) => Effect.Effect<void, DurableQueueError | OptionError>
  /**
   * The jobs in `state`, from any process: up to `limit` (default 100, at most 1,000) after skipping `offset` (at
   * most 100,000), each with its attempts, last progress, last error, age in its state and value. Each call reads
   * a bounded range of the store (an index or key range), never the whole queue. Order: waiting in the order they
   * will run (then delayed jobs whose time came), delayed by due time, running by lease deadline, done, dead and
   * cancelled newest first (Redis lists cancelled jobs in no particular order). What the store does not keep is
   * not listed: Redis drops a done record after `resultTimeToLive` (SQL and memory keep done jobs). A `state` that is
   * not a `JobState`, or a `limit` / `offset` that is not an integer in range (`NaN`, `-1`, `1e12`, `"10"`), fails
   * with `OptionError` naming it. (Since 0.3.0.)
   */
  readonly jobs: (
    state: JobState,
    options?: JobsOptions
  ) => Effect.Effect<ReadonlyArray<JobSummary<A>>, DurableQueueError | OptionError>
}

/**
 * @since 0.3.0
 * @category models
 */
export interface JobsOptions {
  /** The most jobs listed, an integer from 1 to 1,000. Default: 100. */
  readonly limit?: number | undefined
  /** Jobs skipped first, an integer from 0 to 100,000 (a store walks them). Default: 0. */
  readonly offset?: number | undefined
}

/**
 * One job of `jobs`.
 *
 * @since 0.3.0
 * @category models
 */
export interface JobSummary<A> {
  readonly id: string
  readonly state: JobState
  /** Attempts counted so far. */
  readonly attempts: number
  /** The last value given to `Job.progress`, as JSON gives it back; undefined when none. */
  readonly progress: unknown
  readonly lastError: string | undefined
  /**
   * How long ago (ms, the store's clock, so processes agree) the job entered its state: waiting since it became
   * ready, delayed since it was offered or retried, done, dead or cancelled since then. Undefined where the store
   * does not keep it: running jobs (no store writes a lease's start), done jobs on Redis.
   */
  readonly ageMillis: number | undefined
  /**
   * The job's value, decoded: waiting, delayed, running and dead jobs; none for done and cancelled jobs (Redis drops
   * their value, so no store lists it) and for a value that no longer decodes with the schema (see `payload`).
   */
  readonly value: Option.Option<A>
  /** The job as stored (JSON text): waiting, delayed, running and dead jobs. */
  readonly payload: string | undefined
}

/**
 * An event of a job: `at` is the wall time (ms since the epoch) in the process that sent it; `attempt` on
 * Started, Failed, Retried, Dead, Completed; `error` (the failure, rendered) on Failed, Retried and Dead; `progress`
 * (the reported JSON value) on Progress.
 *
 * @since 0.1.0
 * @category models
 */
export interface JobEvent {
  readonly _tag: "Offered" | "Started" | "Progress" | "Completed" | "Failed" | "Retried" | "Dead" | "Cancelled"
  readonly id: string
  readonly at: number
  readonly attempt?: number | undefined
  readonly error?: string | undefined
  readonly progress?: unknown
}

/**
 * When a schedule offers: a cron expression (5 fields, or 6 with seconds first), a `Cron`, or a fixed interval
 * anchored at the epoch.
 *
 * @since 0.1.0
 * @category models
 */
export type ScheduleSpec = string | Cron.Cron | { readonly every: Duration.DurationInput }

/**
 * @since 0.1.0
 * @category models
 */
export interface ScheduleOptions extends Pick<OfferOptions, "priority" | "timeout" | "backoff"> {
  /** The time zone of a cron expression given as a string (an IANA name such as "Europe/Paris"). Default: UTC. */
  readonly timeZone?: string | undefined
}

/**
 * The options of one `offer`. Every bad value fails the offer with `OptionError` naming the field and the value.
 *
 * @since 0.2.0
 * @category models
 */
export interface OfferOptions {
  /**
   * The job's id (default: a UUIDv7, time-ordered: it reveals the offer time to the millisecond; pass `id` to avoid
   * that): an id already offered is not queued again.
   */
  readonly id?: string | undefined
  /**
   * Not leased before this long from now (the store's clock), at most 10 years. Not together with `runAt`.
   */
  readonly delay?: Duration.DurationInput | undefined
  /**
   * Not leased before this time: a `Date` or epoch milliseconds (read against `Clock`), within 10 years of now
   * (further back is likely epoch seconds); a past time is now. Not together with `delay`.
   */
  readonly runAt?: Date | number | undefined
  /** An integer from -1,000,000 to 1,000,000, default 0: higher first, equal ones in offer order. */
  readonly priority?: number | undefined
  /** This job's attempt timeout, overriding the queue's `timeout`. */
  readonly timeout?: Duration.DurationInput | undefined
  /** This job's backoff between attempts, overriding the queue's (data, since another process may run it). */
  readonly backoff?: Backoff | undefined
}

/**
 * @since 0.2.0
 * @category models
 */
export interface TakeOptions<X, XI> {
  /** Stores the handler's value, encoded with this schema, for `result(id)` (for the queue's `resultTimeToLive`). */
  readonly result?: Schema.Schema<X, XI> | undefined
}

/**
 * @since 0.2.0
 * @category models
 */
export interface RunOptions<X, XI> extends TakeOptions<X, XI> {
  /** Jobs run at once, an integer from 1 to 1,000,000. Default: 1. */
  readonly concurrency?: number | undefined
  /** How long an interrupted `run` waits for running jobs to finish. Default: 30 seconds. */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
}

/**
 * The options of `runBatch`. Every bad value fails with `OptionError` naming the field and the value. With
 * `result` (a `Schema.Schema<X, XI>`), the handler must succeed with a `ReadonlyArray<X>`, one result per job
 * (`X` and `XI` default to `never`: without type arguments, no `result` may be given).
 *
 * @since 0.3.0
 * @category models
 */
export interface RunBatchOptions<X = never, XI = X> {
  /**
   * Keeps each job's own result, encoded with this schema, for `result(id)` (for the queue's `resultTimeToLive`):
   * the handler then succeeds with one result per job, aligned with `values` (see `runBatch`). (Since 0.3.0.)
   */
  readonly result?: Schema.Schema<X, XI> | undefined
  /** The most jobs given to one handler call, an integer from 1 to 10,000. Default: 100. */
  readonly size?: number | undefined
  /**
   * How long a taker holding fewer than `size` jobs waits for more before it runs them (at most 2^31 - 1 ms).
   * Default: 0, the jobs buffered or leased now.
   */
  readonly maxWait?: Duration.DurationInput | undefined
  /** Batches run at once, an integer from 1 to 1,000,000. Default: 1. */
  readonly concurrency?: number | undefined
  /** How long an interrupted `runBatch` waits for running batches to finish. Default: 30 seconds. */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
}

/**
 * One failed job of a `BatchFailure`: its index in the batch (`values[index]`, `jobs[index]`) and its error.
 *
 * @since 0.3.0
 * @category models
 */
export interface BatchItemFailure<E> {
  readonly index: number
  readonly error: E
}

/**
 * What a `runBatch` handler fails with to fail SOME jobs of its batch: the jobs at `failures`' indexes fail with
 * their own error (each retried or dead-lettered by its own attempts), the others are acknowledged; an empty
 * `failures` acknowledges all. Under `runBatch`'s `result`, `results` (one per job of the batch, aligned with
 * `values`; the entries at failed indexes are ignored) are the results the acknowledged jobs keep; without
 * `results` they keep none, and `results` of another length fail every job ("ResultsMismatch").
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { DurableQueue } from "effect-workers"
 *
 * // Rows 1 and 3 were refused; the others are done.
 * const partly = Effect.fail(
 *   new DurableQueue.BatchFailure({ failures: [{ index: 1, error: "refused" }, { index: 3, error: "refused" }] })
 * )
 * ```
 *
 * @since 0.3.0
 * @category errors
 */
export { BatchFailure }

/**
 * @since 0.3.0
 * @category refinements
 */
export const isBatchFailure = (u: unknown): u is BatchFailure<unknown> => batchInternal.isBatchFailure(u)

/**
 * The delay before a failed job's next attempt, as data: it is stored with the job when given to `offer`,
 * because the process that runs the retry may not be the one that offered it. Build it with `Backoff.none`,
 * `Backoff.fixed` or `Backoff.exponential`.
 *
 * @since 0.2.0
 * @category models
 */
export type Backoff =
  | { readonly _tag: "None" }
  | { readonly _tag: "Fixed"; readonly millis: number }
  | {
    readonly _tag: "Exponential"
    /** The delay after the first failed attempt. */
    readonly baseMillis: number
    /** Each further delay is the previous one times this. */
    readonly factor: number
    /** No delay is longer. */
    readonly maxMillis: number
    /** Each delay is multiplied by a random factor from 0.8 to 1.2 (as `Schedule.jittered`), then capped. */
    readonly jitter: boolean
  }

/**
 * Constructors of `Backoff`. Their values are checked where they are used (`offer`, the queue's options): a bad
 * one (`NaN`, negative, a factor under 1) is an `OptionError` naming `backoff` and the field.
 *
 * @example
 * ```ts
 * import { DurableQueue } from "effect-workers"
 *
 * // After attempt n fails: 500 ms × 3^(n-1), at most 1 minute, jittered.
 * const backoff = DurableQueue.Backoff.exponential({ base: "500 millis", factor: 3, max: "1 minute" })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const Backoff: {
  /** Retries at once. */
  readonly none: Backoff
  /** The same delay after every failed attempt. */
  readonly fixed: (delay: Duration.DurationInput) => Backoff
  /** `base` × `factor`^(n-1) after the n-th failed attempt (factor default 2), at most `max` (default 5 minutes), jittered unless `jitter: false`. */
  readonly exponential: (options: {
    readonly base: Duration.DurationInput
    readonly factor?: number | undefined
    readonly max?: Duration.DurationInput | undefined
    readonly jitter?: boolean | undefined
  }) => Backoff
} = backoffInternal.constructors

/**
 * The state of a job: "waiting" (ready to be leased), "delayed" (not before its time: a `delay`, `runAt` or a
 * retry's backoff), "running" (leased), "done", "dead" (a dead letter) or "cancelled".
 *
 * @since 0.2.0
 * @category models
 */
export type JobState = "waiting" | "delayed" | "running" | "done" | "dead" | "cancelled"

/**
 * @since 0.2.0
 * @category models
 */
export interface JobStatus {
  readonly id: string
  readonly state: JobState
  /** Attempts counted so far (an attempt is counted when the job is leased). */
  readonly attempts: number
  /** The last value given to `Job.progress`, as JSON gives it back; undefined when none. */
  readonly progress: unknown
  /** The last failed attempt's error, where there was one. */
  readonly lastError: string | undefined
}

/**
 * @since 0.2.0
 * @category models
 */
export interface Counts {
  readonly waiting: number
  readonly delayed: number
  readonly running: number
  readonly dead: number
  readonly paused: boolean
  /**
   * Done jobs the store keeps (since 0.3.0): memory and SQL keep them all (SQL counts at most 100,000: done rows are
   * kept forever, and counting more would read them all), Redis for `resultTimeToLive`.
   */
  readonly done: number
  /**
   * How long (ms, the store's clock) the oldest waiting job has waited since it became ready; undefined when none
   * waits (since 0.3.0). On Redis, the oldest of the next job of each kind (priority 0, the highest and lowest
   * priority, the first delayed job whose time came).
   */
  readonly oldestWaitingMillis: number | undefined
}

/**
 * One job of `offerAll`: its value and `offer`'s options for it (`id`, `delay` or `runAt`, `priority`, `timeout`,
 * `backoff`), checked as `offer` checks them; an error names the entry (`entries[3].delay`).
 *
 * @since 0.1.0
 * @category models
 */
export interface OfferEntry<A> extends OfferOptions {
  readonly value: A
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Job {
  readonly id: string
  /** 1 for the first attempt; counted when the job is leased, so an attempt whose runner died counts. */
  readonly attempt: number
  /**
   * Records the job's progress, readable by id from any process (`status`) while it runs and after. The value
   * must be plain JSON (no `BigInt`, cycle, function, `NaN`, `Date`…) of at most 64 KiB encoded, else it fails
   * with `DurableQueueError` "ProgressRejected" naming the job. (Since 0.2.0.) `const { progress } = job` works;
   * it is the handle's own accessor (in `run` and `runBatch`), not a property of its own (a closure per job was 5 % of the Redis
   * consumer's CPU, issue #16), so a spread copy `{ ...job }` holds `id` and `attempt` only: pass the job itself.
   */
  readonly progress: (value: unknown) => Effect.Effect<void, DurableQueueError>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface DeadLetter<A> {
  readonly id: string
  readonly value: A
  readonly attempts: number
  /**
   * The last failure, rendered with `Cause.pretty`; for a job whose last lease lapsed unsettled, "leased N times,
   * maxAttempts M: the last lease (L ms) lapsed without a settlement (its runner died, hung past the lease, or lost
   * the store)" (N counts leases, which may exceed the runs when a lease lapsed under load).
   */
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
   * an offer, retry, requeue or resume from any process wakes idle takers at once, and an idle taker reads when the
   * next delayed job or lapsing lease is due and looks then; the poll is the safety net. Where changes are heard
   * (memory; Redis once its wake-up subscription holds; PostgreSQL once its LISTEN is confirmed), empty looks in a
   * row wait this, then twice as long each time up to 2 seconds (or this, if longer), and any wake-up starts again
   * from this: an idle `run` costs a tenth of the CPU, and a wake-up that is lost (a subscriber reconnecting, a
   * LISTEN gone deaf until its next probe, an offer from a process with `notify: false`) is made up for up to 2 s
   * later instead of 100 ms. SQLite and PostgreSQL with `notify: false` poll at this interval.) A `run` leases
   * four times its concurrency ahead of its takers (fewer round trips per job), more with fast handlers (two leases
   * of up to 256 jobs on Redis and PostgreSQL, one on SQLite); those jobs go back when it stops or when this
   * instance pauses the queue.
   */
  readonly pollInterval?: Duration.DurationInput | undefined
  /**
   * The delay before a failed job's next attempt (an offer's `backoff` overrides it): `Backoff` data, or any
   * `Schedule`, stepped once per failed attempt with the failure as input (the n-th failure waits the n-th
   * delay; a schedule that ends dead-letters the job at once). The job waits in the store as a delayed job,
   * holding no taker and no lease. Default: exponential from 1 second, ×2, at most 5 minutes, jittered.
   * (Since 0.2.0.)
   */
  readonly backoff?: Backoff | Schedule.Schedule<unknown, unknown> | undefined
  /**
   * How long one attempt may run (an offer's `timeout` overrides it): past it the handler is interrupted and the
   * attempt fails with `DurableQueueError` "TimedOut" naming the job, the attempt and the timeout (retried or
   * dead-lettered as any failure). At most 2^31 - 1 milliseconds (about 24.8 days, the longest JavaScript timer).
   * Default: none. (Since 0.2.0.)
   */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * How long a result stored with `{ result: schema }` stays readable by `result(id)`, and the least time a done
   * or cancelled job's `status` stays readable. Default: 1 day. (Since 0.2.0.)
   */
  readonly resultTimeToLive?: Duration.DurationInput | undefined
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
export const isDurableQueueError = (u: unknown): u is DurableQueueError => internalError.isDurableQueueError(u)

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

/**
 * The module's Effect `Metric`s, labelled `queue=<name>`: offered, acked, retried, dead, released and lease-expired
 * jobs. Names follow `effect_workers_<module>_<what>` (README, "Tracing and metrics"); read them with
 * `Metric.value(Metric.tagged(Metrics.x, label, value))` or export them with `@effect/opentelemetry`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const Metrics = DurableQueueMetrics

/**
 * A layer providing an in-memory queue (see `memory`) under your own tag; the Redis and SQL queues have the same
 * interface, so tests can swap this one in.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <Id, A, I>(
  tag: Context.Tag<Id, DurableQueue<A>>,
  options: Options<A, I>
): Layer.Layer<Id, OptionError> => Layer.scoped(tag, memory(options))
