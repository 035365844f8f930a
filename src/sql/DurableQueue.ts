/**
 * A `DurableQueue` (see `effect-workers/DurableQueue` for the contract) on PostgreSQL or SQLite through
 * `@effect/sql`'s `SqlClient` (`@effect/sql-pg`, `@effect/sql-sqlite-node`): offer by id (an id offered twice is
 * queued once), at-least-once delivery, a lease refreshed while a job runs (a killed taker's jobs come back once it
 * expires), an acknowledgement only after the handler succeeded, and after `maxAttempts` failures a dead-letter
 * row with the last error. One table (`tableName`, created if missing) holds every queue's jobs; done and
 * cancelled rows are kept (that is how an id is never queued twice; a result is kept on its done row until its time
 * to live ends) — delete old ones yourself (`DELETE FROM effect_workers_queue WHERE state IN (1, 3) AND
 * updated_at < …`, milliseconds since the epoch; state 1 is done, 3 cancelled). A second table,
 * `<tableName>_paused`, holds a row per paused queue.
 *
 * A table made by an earlier version is migrated when a queue starts (columns added, one index replaced by two:
 * on PostgreSQL under an advisory lock, in a transaction that blocks writes to the table while the two indexes
 * build). Upgrade every process of a table together: an earlier version still running ignores
 * delays, priorities and pauses, and leases without an index.
 *
 * It runs on a store of ours, not `@effect/sql`'s `SqlPersistedQueue`, whose leases are never refreshed and whose
 * ids collide across queues (the details are in the store's source header). Leases are read from the database's
 * clock, so processes on several machines agree on them. On PostgreSQL an offer wakes the idle takers of every
 * process at once (LISTEN/NOTIFY, one notification per batch of offers; see `notify`); on SQLite, those of its own
 * process at once, and those of others within `pollInterval` (100 ms by default): a taker reads SQLite's
 * `PRAGMA data_version`, which another connection's commit changes, that often. An idle taker reads when the next delayed job (or retry
 * after its backoff, or lapsing lease) is due and looks then. On PostgreSQL, once its LISTEN is confirmed, an idle
 * taker's empty looks in a row wait `pollInterval`, doubling up to 2 s (a notification lost, or an offer from a
 * process with `notify: false`, is then seen up to 2 s later); so on SQLite, where `data_version` stands in for
 * the notifications; `notify: false` keeps polling at `pollInterval`. When processes of one queue use different
 * `maxAttempts`, the taker running a job's last attempt by its own count dead-letters it.
 *
 * @since 0.1.0
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Shared from "../DurableQueue.js"
import * as internal from "../internal/durableQueue/sqlStore.js"
import type { OptionError } from "../OptionError.js"

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
  /**
   * How often an idle taker looks for jobs. Default: 100 milliseconds. (On PostgreSQL with `notify`, offers wake
   * takers at once and polling is the safety net; a longer poll made processing slower in bench/distributed-sql.ts,
   * 0.81× at 1 second, because a taker that found nothing waits out the poll whenever no notification comes.)
   */
  readonly pollInterval?: Shared.Options<A, I>["pollInterval"]
  /**
   * The table of jobs, shared by every queue on it (an SQL identifier, optionally schema-qualified: "jobs",
   * "app.jobs"), at most 48 characters (the names of its indexes and of `<tableName>_paused` must fit PostgreSQL's
   * 63-byte identifiers). Created if missing; a table of an earlier version is migrated. Default: "effect_workers_queue".
   */
  readonly tableName?: string | undefined
  /**
   * PostgreSQL: an offer (and a job retried or put back) sends a notification (`NOTIFY`, one per batch of offers,
   * in the INSERT statement) to a channel of the table and queue, which every process taking from the queue
   * `LISTEN`s to (from its first take on, through `@effect/sql-pg`'s listening connection), so an idle taker
   * anywhere starts at once instead of at its next poll; polling stays as the safety net. A taker checks every 5 seconds, with a notification to itself, that it still hears, and
   * listens anew when not (after a database restart: offers made before it noticed wait for a poll at most). Set
   * `false` where `LISTEN` cannot work (a pooler in transaction mode): takers then only poll. SQLite: takers read `PRAGMA data_version` every
   * `pollInterval` and look when another connection committed, so their empty looks back off to 2 s; `false`
   * keeps them leasing every `pollInterval` instead. Default: true.
   */
  readonly notify?: boolean | undefined
}

/**
 * The error of every backend (`reason` "StoreFailed" or "EncodeFailed", `backend` "sql" here).
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
 * A durable queue on the `SqlClient` in context (PostgreSQL or SQLite). Creating its table can fail with a
 * `DurableQueueError` ("StoreFailed"); bad options fail with `OptionError`.
 *
 * @example
 * ```ts
 * import { SqliteClient } from "@effect/sql-sqlite-node"
 * import { Effect, Schema } from "effect"
 * import { DurableQueue } from "effect-workers/sql"
 *
 * const program = Effect.gen(function*() {
 *   const emails = yield* DurableQueue.make({ name: "emails", schema: Schema.Struct({ to: Schema.String }) })
 *   yield* emails.offer({ to: "a@example.com" }, { id: "welcome:42" })
 *   yield* Effect.forkScoped(emails.run(({ to }) => Effect.log(`sending to ${to}`), { concurrency: 16 }))
 * }).pipe(Effect.scoped, Effect.provide(SqliteClient.layer({ filename: "jobs.db" })))
 * // PostgreSQL: PgClient.layer({ url: Redacted.make("postgres://…") }) from "@effect/sql-pg"
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <A, I>(
  options: Options<A, I>
) => Effect.Effect<DurableQueue<A>, OptionError | DurableQueueError, SqlClient.SqlClient | Scope.Scope> = internal.make
