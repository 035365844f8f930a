/**
 * The SQL store of `DurableQueue` (PostgreSQL and SQLite): it only stores; every rule is in core.ts. Written because the `SqlPersistedQueue` store that
 * ships with `@effect/sql` 0.52.1 (the `PersistedQueueStore` of `@effect/experimental`'s `PersistedQueue`)
 * loses leases and jobs; checked against PostgreSQL 15 and SQLite 3.53 (better-sqlite3):
 * - its leases are never refreshed: `refreshLocks` returns at once while the `elementIds` set is empty, and
 *   nothing ever adds to that set (only `delete` is called), so a job running longer than `lockExpiration`
 *   (2 minutes by default) is handed to a second taker while the first still runs it;
 * - the unique index is on `id` alone, not `(queue_name, id)`: offering id "x" to queue "b" after queue "a" got an
 *   "x" is silently dropped (`ON CONFLICT (id) DO NOTHING`), and queue "b" never sees the job;
 * - `id VARCHAR(36)` on PostgreSQL and MySQL: a custom id longer than 36 characters fails the offer;
 * - `acquired_at TIMESTAMP` (without time zone) is compared with `NOW()`: processes whose sessions use different
 *   `TimeZone` settings see each other's leases as expired (or live) for hours;
 * - the SQLite take is `UPDATE … RETURNING … ORDER BY … LIMIT`, which needs SQLite compiled with
 *   `SQLITE_ENABLE_UPDATE_DELETE_LIMIT` (better-sqlite3 is; SQLite's default build is not), and `CURRENT_TIMESTAMP`
 *   has one-second resolution, so a lease is only whole seconds and may last a second longer than asked;
 * - a job out of attempts stays a pending row (`completed = false`, `attempts >= maxAttempts`) that only the
 *   taker's `maxAttempts` keeps from running again; there is no dead-letter state to list;
 * - `PersistedQueue.take` opens a `Scope` per job and runs one `UPDATE` per acknowledgement.
 *
 * This store keeps one row per job in `tableName` (created if missing, shared by queues through `queue_name`,
 * unique on `(queue_name, id_key)` where `id_key` is the id, or the SHA-256 of an id over 128 characters):
 * `state` 0 pending, 1 acknowledged, 2 dead; `visible_at` (milliseconds, the database's clock) is when a pending
 * job may be taken: its offer time, or the end of its lease while leased. Taking a job sets `visible_at` to now
 * plus the lease, `acquired_by` to this store's id and counts an attempt, so a killed taker's jobs come back when
 * the lease ends with no sweeper. Offers of concurrent
 * callers are inserted in one statement; a lease is one statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL); the
 * acknowledgements and put-backs of a settlement batch one statement each.
 * Rows of acknowledged jobs are kept, so an id offered again later is still not queued twice.
 *
 * On PostgreSQL (with `@effect/sql-pg`, whose client has `listen`), each batch of offers sends one notification in
 * the INSERT statement itself (`pg_notify` in a CTE, only when a row went in), as do retries and put-backs; every
 * store that takes LISTENs on the queue's channel (`channelOf`) and wakes its fetcher, so idle takers of all
 * processes look at once; polling (100 ms by default) stays as the safety net (notifications lost while a LISTEN
 * connection is down; see `listen` for how that is noticed).
 * SQLite has no notifications: an offer wakes the takers of its own process; others poll (100 ms by default).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import { createHash } from "node:crypto"
import type { OptionError } from "../../OptionError.js"
import type * as SqlDurableQueue from "../../sql/DurableQueue.js"
import { checker } from "../options.js"
import * as core from "./core.js"
import { DurableQueueError } from "./error.js"
import { type QueueSettings, queueSettings } from "./options.js"
import { channelOf, listen, listenerOf } from "./sqlListen.js"
import type { LeasedJob, OfferedJob, Settle, Store, StoredDeadLetter } from "./store.js"

const tableNamePattern = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/

/** Whether `tableName` is an identifier, optionally schema-qualified. @internal */
export const isTableName = (tableName: string): boolean => tableNamePattern.test(tableName)

/** Rows per statement (offers, leases, refreshes). */
const BATCH = 256

/**
 * Rows per INSERT of a bulk offer (its rows travel as one JSON parameter): larger batches are cut into statements of
 * this many in one transaction, so no single JSON text or statement grows without bound.
 */
const OFFER_ROWS = 5_000

/**
 * The unique key of an id: the id itself, or for an id longer than 128 characters its SHA-256 (a PostgreSQL
 * B-tree entry holds at most about 2,700 bytes, so a long id could not be indexed as it is).
 */
const idKey = (id: string): string => id.length <= 128 ? id : `sha256:${createHash("sha256").update(id).digest("hex")}`

/** How long a small batch of settlements waits for more: each write is a commit (see core.ts `Settler`). */
const SETTLE_LINGER = 5

/** The shortest time between a lease that found nothing and the next, when woken by an offer. */
const WAKE_SPACING = 20

/** @internal */
export interface SqlStoreOptions {
  readonly tableName: string
  /** Whether offers notify other processes on PostgreSQL (LISTEN/NOTIFY). */
  readonly notify: boolean
}

interface Waiting<A> {
  readonly item: A
  readonly done: Deferred.Deferred<void, unknown>
}

const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/** The jobs table and its two partial indexes (ready jobs by visibility, dead letters by time), if missing. */
const createTable = (sql: SqlClient.SqlClient, dialect: "pg" | "sqlite", tableName: string): Effect.Effect<void, SqlError> => {
  const table = sql(tableName)
  const base = tableName.replace(/\./g, "_")
  const indexName = (suffix: string) => sql(`${base}_${suffix}`)
  // One statement for both dialects; only the column types differ.
  const [serial, small, big] = dialect === "pg"
    ? ["BIGSERIAL PRIMARY KEY", "SMALLINT", "BIGINT"]
    : ["INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER", "INTEGER"]
  const create = Effect.gen(function*() {
    yield* sql`CREATE TABLE IF NOT EXISTS ${table} (
      sequence ${sql.literal(serial)},
      queue_name TEXT NOT NULL,
      id TEXT NOT NULL,
      id_key TEXT NOT NULL,
      element TEXT NOT NULL,
      state ${sql.literal(small)} NOT NULL DEFAULT 0,
      attempts INTEGER NOT NULL DEFAULT 0,
      visible_at ${sql.literal(big)} NOT NULL,
      acquired_by TEXT NULL,
      last_failure TEXT NULL,
      created_at ${sql.literal(big)} NOT NULL,
      updated_at ${sql.literal(big)} NOT NULL,
      UNIQUE (queue_name, id_key)
    )`
    yield* sql`CREATE INDEX IF NOT EXISTS ${indexName("ready")} ON ${table} (queue_name, visible_at, sequence) WHERE state = 0`
    yield* sql`CREATE INDEX IF NOT EXISTS ${indexName("dead")} ON ${table} (queue_name, updated_at, sequence) WHERE state = 2`
  })
  // Several processes starting at once would race on PostgreSQL's CREATE TABLE IF NOT EXISTS (a unique violation
  // in pg_type): one at a time, under a transaction-scoped advisory lock.
  return dialect === "pg"
    ? Effect.zipRight(sql`SELECT pg_advisory_xact_lock(hashtext(${`effect-workers:${tableName}`}))`, create).pipe(sql.withTransaction)
    : create
}

/** @internal */
export const makeStore = (
  settings: QueueSettings,
  options: SqlStoreOptions
): Effect.Effect<Store, SqlError, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const client = yield* SqlClient.SqlClient
    const sql = client.withoutTransforms()
    const { leaseMillis, name } = settings
    const { tableName } = options
    const dialect = sql.onDialectOrElse({ pg: () => "pg" as const, sqlite: () => "sqlite" as const, orElse: () => "other" as const })
    if (dialect === "other") {
      return yield* Effect.dieMessage("effect-workers/sql DurableQueue supports PostgreSQL and SQLite only")
    }
    const listener = dialect === "pg" && options.notify ? listenerOf(client) : undefined
    const channel = channelOf(tableName, name)
    const table = sql(tableName)
    const worker = globalThis.crypto.randomUUID()
    // The database's clock in milliseconds since the epoch, so the leases of processes on several machines agree.
    // (`now()`, the statement's time on PostgreSQL, is stable within a statement, so the lease can use its index.)
    const now = dialect === "pg"
      ? sql.literal("(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT")
      : sql.literal("CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)")
    const lease = sql.literal(String(leaseMillis))

    yield* createTable(sql, dialect, tableName)

    const inList = (sequences: ReadonlyArray<unknown>) => sql.in(sequences as ReadonlyArray<string | number>)
    const lockClause = dialect === "pg" ? sql.literal("FOR UPDATE SKIP LOCKED") : sql.literal("")
    // Opened by a notification (PostgreSQL) that jobs may be ready.
    const notified = yield* Effect.makeLatch(false)
    const requeued = listener !== undefined ? sql`SELECT pg_notify(${channel}, 'o')` : Effect.void

    // Offers of concurrent callers go out in one INSERT. A batch that fails is written again row by row, so one
    // bad offer does not fail the others. (The core checked every id before: a non-string id once killed this fiber.)
    const offers = yield* Queue.unbounded<Waiting<OfferedJob>>()
    // Several rows go as ONE parameter, a JSON array of [id, id_key, payload] the database unpacks in order: a VALUES
    // list of 1,000 rows (4,000 parameters) took 300–400 ms a statement on PostgreSQL here, 14x graphile-worker's
    // add_jobs. (`WHERE true`: SQLite parses an upsert after a bare SELECT as a join's ON.)
    const rowsOf = (batch: ReadonlyArray<OfferedJob>) => {
      if (batch.length === 1) {
        const { id, payload } = batch[0]!
        return sql`VALUES (${name}, ${id}, ${idKey(id)}, ${payload}, ${now}, ${now}, ${now})`
      }
      const json = JSON.stringify(batch.map(({ id, payload }) => [id, idKey(id), payload]))
      return dialect === "pg"
        ? sql`SELECT ${name}, r->>0, r->>1, r->>2, ${now}, ${now}, ${now}
            FROM json_array_elements(${json}::json) WITH ORDINALITY AS j(r, i) WHERE true ORDER BY i`
        : sql`SELECT ${name}, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), ${now}, ${now}, ${now}
            FROM json_each(${json}) WHERE true ORDER BY key`
    }
    const insert = (batch: ReadonlyArray<OfferedJob>) => {
      const rows = rowsOf(batch)
      // With notifications, one NOTIFY per batch (in the same statement, so no round trip more), and only when a row
      // went in; it is delivered when the statement commits.
      return listener !== undefined
        ? sql`WITH inserted AS (
            INSERT INTO ${table} (queue_name, id, id_key, element, visible_at, created_at, updated_at)
            ${rows} ON CONFLICT (queue_name, id_key) DO NOTHING RETURNING 1
          ) SELECT pg_notify(${channel}, 'o') FROM (SELECT 1 FROM inserted LIMIT 1) AS one`
        : sql`INSERT INTO ${table} (queue_name, id, id_key, element, visible_at, created_at, updated_at)
          ${rows} ON CONFLICT (queue_name, id_key) DO NOTHING`
    }
    const writeOne = (one: Waiting<OfferedJob>) => Effect.flatMap(Effect.exit(insert([one.item])), (exit) => Deferred.done(one.done, Exit.asVoid(exit)))
    yield* drain(offers, (batch) =>
      Effect.flatMap(Effect.exit(insert(batch.map((w) => w.item))), (exit) =>
        Exit.isFailure(exit) && batch.length > 1
          ? Effect.forEach(batch, writeOne, { discard: true })
          : Effect.forEach(batch, (w) => Deferred.done(w.done, Exit.asVoid(exit)), { discard: true })))

    const ack = (handles: ReadonlyArray<unknown>) =>
      sql`UPDATE ${table} SET state = 1, acquired_by = NULL, updated_at = ${now}
        WHERE sequence IN ${inList(handles)} AND acquired_by = ${worker} AND state = 0`
    // A job put back untouched was counted at lease: the count goes back down (guarded, so a repeated batch cannot).
    const release = (handles: ReadonlyArray<unknown>) =>
      sql`UPDATE ${table} SET attempts = attempts - 1, acquired_by = NULL, visible_at = ${now}
        WHERE sequence IN ${inList(handles)} AND acquired_by = ${worker} AND state = 0`
    const fail = (handle: unknown, state: 0 | 2, attempts: number, lastError: string) =>
      sql`UPDATE ${table} SET state = ${state}, attempts = ${attempts}, last_failure = ${lastError},
        acquired_by = NULL, visible_at = ${now}, updated_at = ${now}
        WHERE sequence = ${handle as string | number} AND acquired_by = ${worker} AND state = 0`
    const settle = (batch: ReadonlyArray<Settle>) =>
      Effect.gen(function*() {
        const acks: Array<unknown> = []
        const releases: Array<unknown> = []
        let requeues = 0
        for (const { job, settlement } of batch) {
          if (settlement._tag === "Ack") acks.push(job.handle)
          else if (settlement._tag === "Release") releases.push(job.handle)
          else yield* fail(job.handle, settlement._tag === "Dead" ? 2 : 0, settlement.attempts, settlement.lastError)
          if (settlement._tag === "Retry") requeues++
        }
        if (acks.length > 0) yield* ack(acks)
        if (releases.length > 0) yield* release(releases)
        // Jobs queued again: with notifications, takers in every process look at once.
        if (requeues + releases.length > 0) yield* requeued
      })

    const leaseRows = (size: number) =>
      sql<{ sequence: string | number; id: string; element: string; attempts: number | string }>`
        UPDATE ${table} SET visible_at = ${now} + ${lease}, acquired_by = ${worker}, attempts = attempts + 1
        WHERE sequence IN (
          SELECT sequence FROM ${table}
          WHERE queue_name = ${name} AND state = 0 AND visible_at <= ${now}
          ORDER BY visible_at, sequence
          LIMIT ${sql.literal(String(size))} ${lockClause}
        )
        RETURNING sequence, id, element, attempts`
    // A store LISTENs from its first lease on (a store that only offers never does: `@effect/sql-pg` shares one
    // LISTEN connection per client, and a stream's end UNLISTENs the channel for every stream of the client); the
    // first lease waits for the LISTEN to be confirmed (2 seconds at most), so an offer made anywhere after it is heard.
    let listening = listener === undefined
    const scope = yield* Effect.scope
    const startListening = Effect.suspend(() => {
      if (listening) return Effect.void
      listening = true
      return Scope.extend(listen(listener!, channel, worker.replace(/-/g, "").slice(0, 16), notified, sql), scope)
    })

    const store: Store = {
      backend: "sql",
      maxBatch: BATCH,
      wakeSpacingMillis: WAKE_SPACING,
      settleLingerMillis: SETTLE_LINGER,
      ready: notified.await,
      // A batch of one caller (`offerAll`) is one statement (chunks in one transaction past `OFFER_ROWS`): all or
      // nothing. Single offers of concurrent callers are coalesced by the `offers` fiber instead.
      offer: (jobs) =>
        jobs.length > 1
          ? jobs.length <= OFFER_ROWS
            ? Effect.asVoid(insert(jobs))
            : sql.withTransaction(Effect.forEach(chunks(jobs, OFFER_ROWS), insert, { discard: true }))
          : Effect.forEach(jobs, (item) =>
          Effect.flatMap(Deferred.make<void, unknown>(), (done) => {
            offers.unsafeOffer({ item, done })
            return Deferred.await(done)
          }), { concurrency: "unbounded", discard: true }),
      lease: (max) =>
        Effect.zipRight(
          Effect.zipRight(startListening, notified.close),
          Effect.map(leaseRows(max), (rows) =>
            rows
              .map((row): LeasedJob => ({ id: row.id, payload: row.element, attempts: Number(row.attempts), handle: row.sequence }))
              .sort((a, b) => Number(a.handle) - Number(b.handle)))
        ),
      refresh: (jobs) =>
        Effect.forEach(chunks(jobs.map((job) => job.handle), BATCH), (chunk) =>
          sql`UPDATE ${table} SET visible_at = ${now} + ${lease}
            WHERE sequence IN ${inList(chunk)} AND acquired_by = ${worker} AND state = 0`, { discard: true }),
      settle,
      size: Effect.map(
        sql<{ n: number | string }>`SELECT COUNT(*) AS n FROM ${table} WHERE queue_name = ${name} AND state = 0`,
        (rows) => Number(rows[0]?.n ?? 0)
      ),
      deadLetters: Effect.map(
        sql<{ id: string; element: string; attempts: number | string; last_failure: string | null }>`
          SELECT id, element, attempts, last_failure FROM ${table}
          WHERE queue_name = ${name} AND state = 2 ORDER BY updated_at, sequence`,
        (rows) =>
          rows.map((row): StoredDeadLetter => ({ id: row.id, payload: row.element, attempts: Number(row.attempts), lastError: row.last_failure ?? "" }))
      ),
      requeue: (id) =>
        Effect.map(
          sql<{ id: string }>`UPDATE ${table} SET state = 0, attempts = 0, last_failure = NULL, visible_at = ${now}, updated_at = ${now}
            WHERE queue_name = ${name} AND id_key = ${idKey(id)} AND state = 2 RETURNING id`,
          (rows) => rows.length > 0
        ),
      purge: Effect.map(
        sql<{ id: string }>`DELETE FROM ${table} WHERE queue_name = ${name} AND state = 2 RETURNING id`,
        (rows) => rows.length
      )
    }
    return store
  })

/**
 * A fiber that hands what `queue` receives to `write` in batches of up to `BATCH` items, one batch at a time;
 * `write` settles each item's `done`. When the scope closes, what is still queued is written before the fiber ends.
 * A defect in `write` settles the batch's waiters with it instead of killing the fiber (and every later offer).
 */
const drain = <A>(
  queue: Queue.Queue<Waiting<A>>,
  write: (batch: ReadonlyArray<Waiting<A>>) => Effect.Effect<void>
): Effect.Effect<void, never, Scope.Scope> => {
  const guarded = (batch: ReadonlyArray<Waiting<A>>) =>
    write(batch).pipe(
      Effect.catchAllDefect((defect) => Effect.forEach(batch, (w) => Deferred.die(w.done, defect), { discard: true }))
    )
  // Only the wait is interruptible: a batch taken from the queue is always written and its waiters settled.
  const once = Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(restore(Queue.takeBetween(queue, 1, BATCH)), (chunk) => guarded(Array.from(chunk)))
  )
  const flushRest = Effect.gen(function*() {
    while ((yield* Queue.size(queue)) > 0) yield* once
  })
  return once.pipe(
    Effect.forever,
    Effect.interruptible,
    Effect.onInterrupt(() => flushRest.pipe(Effect.timeout("5 seconds"), Effect.ignore)),
    Effect.forkScoped,
    Effect.asVoid
  )
}

const check = checker("DurableQueue")

/** @internal */
export const make = <A, I>(
  options: SqlDurableQueue.Options<A, I>
): Effect.Effect<SqlDurableQueue.DurableQueue<A>, OptionError | DurableQueueError, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const settings = yield* queueSettings(options)
    const notify = yield* check.require("notify", options.notify, options.notify === undefined || typeof options.notify === "boolean", "a boolean")
    const tableName = options.tableName ?? "effect_workers_queue"
    yield* check.require("tableName", options.tableName, typeof tableName === "string" && isTableName(tableName), "an SQL identifier, optionally schema-qualified (letters, digits, _)")
    const store = yield* makeStore(settings, { tableName, notify: notify ?? true }).pipe(
      Effect.mapError((cause) => new DurableQueueError({ reason: "StoreFailed", backend: "sql", queue: settings.name, cause }))
    )
    return yield* core.make(store, settings, options.schema)
  })
