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
 * This store keeps one row per job in `tableName` (created if missing, migrated from earlier versions: see
 * sqlSchema.ts for the columns; shared by queues through `queue_name`, unique on `(queue_name, id_key)` where
 * `id_key` is the id, or the SHA-256 of an id over 128 characters): `state` 0 pending, 1 done, 2 dead,
 * 3 cancelled; `visible_at` (milliseconds, the database's clock) is when a pending job may be taken: its offer
 * time, its run time when delayed, or the end of its lease while leased; `timed` says whether that time is still to
 * come (delayed or leased) or the job is ready. Taking a job sets `visible_at` to now plus the lease, `timed`,
 * `acquired_by` to this store's id and counts an attempt, so a killed taker's jobs come back when the lease ends
 * with no sweeper. Offers of concurrent callers are inserted in one statement; a lease is one statement on
 * PostgreSQL (`FOR UPDATE SKIP LOCKED`), two on SQLite; the acknowledgements and put-backs of a settlement batch
 * one statement each. Rows of acknowledged jobs are kept (with their result until it expires), so an id offered
 * again later is still not queued twice. A paused queue has a row in `<tableName>_paused`, which the lease reads.
 *
 * On PostgreSQL (with `@effect/sql-pg`, whose client has `listen`), each batch of offers sends one notification in
 * the INSERT statement itself (`pg_notify` in a CTE, only when a row went in), as do retries and put-backs; every
 * store that takes LISTENs on the queue's channel (`channelOf`) and wakes its fetcher, so idle takers of all
 * processes look at once; polling (100 ms by default) stays as the safety net (notifications lost while a LISTEN
 * connection is down; see `listen` for how that is noticed).
 * Resuming a paused queue notifies too. A delayed job (or a retry after a backoff) sends nothing when its time
 * comes: idle takers read its due time after each empty lease (`nextDueMillis`, the `timed` index) and lease then.
 * SQLite has no notifications: an offer wakes the takers of its own process; a store that takes reads SQLite's
 * `data_version` every `pollInterval` (sqliteWatch.ts), which another process's commit changes, and wakes then.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Statement from "@effect/sql/Statement"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import { createHash } from "node:crypto"
import type { OptionError } from "../../OptionError.js"
import type * as SqlDurableQueue from "../../sql/DurableQueue.js"
import { checker } from "../options.js"
import { CLOSE_FLUSH_MILLIS, flushWithin } from "./closeFlush.js"
import * as core from "./core.js"
import { DurableQueueError } from "./error.js"
import { type QueueSettings, queueSettings } from "./options.js"
import { sqlPort } from "./sqlEvents.js"
import { localWriteCounter, watchDataVersion } from "./sqliteWatch.js"
import { channelOf, listen, listenerOf } from "./sqlListen.js"
import { listing } from "./sqlListing.js"
import { type Dialect, nowSql, pausedTableOf, prepareTable } from "./sqlSchema.js"
import {
  DONE_COUNT_CAP,
  type LeasedJob,
  type OfferedJob,
  type Settle,
  type Store,
  type StoredCounts,
  type StoredDeadLetter,
  type StoredState,
  type StoredStatus
} from "./store.js"

const tableNamePattern = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/

/**
 * The longest table name: the names made from it (`<schema>_<table>_results`, 8 characters more; `<table>_paused`)
 * must fit PostgreSQL's 63-byte identifiers, which it truncates silently: at 60 characters `_results` and the first
 * version's `_ready` would both become `<name>_re`, and a 63-character `<table>_paused` the jobs table itself.
 */
const MAX_TABLE_NAME = 48

/** Whether `tableName` is an identifier, optionally schema-qualified, of at most 48 characters. @internal */
export const isTableName = (tableName: string): boolean =>
  tableName.length <= MAX_TABLE_NAME && tableNamePattern.test(tableName)

/** Rows per statement (offers, leases, refreshes). */
const BATCH = 256

/**
 * Timed rows whose time came (delays passed, leases expired) made ready per statement: a burst of more becomes ready
 * over several (each examines at most this many timed rows; 1,024 is 4 full lease batches).
 */
const DUE_BATCH = 1_024

/**
 * The shortest time between two statements making the rows that came due ready (see `leaseStatement`): while takers
 * are busy, a delayed job starts at most this much after its time; an idle taker's poll (100 ms) always promotes.
 * 100 ms rather than 25: the first version's core over this store processed 1.14x faster on PostgreSQL with 100
 * (the round of bench/distributed-sql.ts, A/B interleaved, 9 rounds of 1,000 jobs at load 17-24; each promotion is a
 * round trip more). @internal
 */
export const PROMOTE_MILLIS = 100

/** The shortest time between two sweeps of expired results (ms): a sweep runs after acknowledging with results. */
const RESULT_SWEEP_MILLIS = 60_000

/**
 * Rows per INSERT of a bulk offer (its rows travel as one JSON parameter): larger batches are cut into statements of
 * this many in one transaction, so no single JSON text or statement grows without bound.
 */
const OFFER_ROWS = 5_000

/**
 * Characters (UTF-16 code units of ids, payloads and options) per INSERT of a bulk offer, at most (a job longer goes
 * alone, as a row of parameters): a batch past it is cut into statements of one transaction, as past `OFFER_ROWS`.
 * 16 M characters are at most 48 MB of UTF-8 (3 bytes a code unit at most; the general shape's JSON escapes only
 * ASCII quotes and backslashes, 2 bytes each), under every limit met on the way: a PostgreSQL jsonb value of 256 MB
 * (18 jobs of 16 MB with a priority failed whole: "total size of jsonb array elements exceeds the maximum of
 * 268435455 bytes", test/sql/DurableQueue.bigOffer.test.ts), its text parameter's 1 GB, SQLite's default
 * SQLITE_MAX_LENGTH of 1e9 bytes, a V8 string's ~536 M characters (`JSON.stringify` / `join` throw past it). A
 * statement's own cost (~0.1 ms) is nothing beside 48 MB's transfer and parse.
 */
const OFFER_CHARS = 16 * 1024 * 1024

/**
 * The cut of `offerChunks`, settable by tests (test/sql/DurableQueue.bigOffer.test.ts cuts at 1 M characters so the
 * suite need not send 280 MB to reach the real limit). @internal
 */
export const offerLimits: { chars: number } = { chars: OFFER_CHARS }

/**
 * `items` cut where a statement would pass `OFFER_ROWS` rows or `OFFER_CHARS` characters; `items` itself when it
 * fits one (the usual batch: no copy).
 */
export const offerChunks = <T>(
  items: ReadonlyArray<T>,
  job: (item: T) => OfferedJob
): ReadonlyArray<ReadonlyArray<T>> => {
  const out: Array<ReadonlyArray<T>> = []
  let start = 0
  let chars = 0
  for (let i = 0; i < items.length; i++) {
    const { id, options, payload } = job(items[i]!)
    const size = id.length + payload.length + (options === undefined ? 0 : options.length)
    if (i > start && (i - start === OFFER_ROWS || chars + size > offerLimits.chars)) {
      out.push(items.slice(start, i))
      start = i
      chars = 0
    }
    chars += size
  }
  out.push(start === 0 ? items : items.slice(start))
  return out
}

/** Between the ids and between the payloads of a plain bulk offer on PostgreSQL (`makeOffer`): U+001E, `chr(30)`. */
const SEPARATOR = "\u001e"

/** The longest id that is its own key (`idKey`); a plain offer row (`makeOffer`) relies on the same bound. */
const OWN_KEY_MAX = 128

/**
 * The unique key of an id: the id itself, or for an id longer than `OWN_KEY_MAX` characters its SHA-256 (a
 * PostgreSQL B-tree entry holds at most about 2,700 bytes, so a long id could not be indexed as it is).
 */
const idKey = (id: string): string =>
  id.length <= OWN_KEY_MAX ? id : `sha256:${createHash("sha256").update(id).digest("hex")}`

/** How long a small batch of settlements waits for more: each write is a commit (see core.ts `Settler`). */
const SETTLE_LINGER = 5

/**
 * The shortest time from the start of a lease that found fewer jobs than asked to the next, when woken by an offer:
 * under a stream of single offers, one lease statement (a commit) per 20 ms rather than per job; offers further
 * apart than that (50 a second) start with no wait.
 */
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

/** What every statement of one store needs. @internal */
export interface Ctx {
  readonly sql: SqlClient.SqlClient
  readonly dialect: Dialect
  readonly name: string
  readonly tableName: string
  readonly worker: string
  /** Sends the queue's notification (PostgreSQL with `notify`): jobs were queued again, or the queue resumed. */
  readonly requeued: Effect.Effect<void, SqlError>
  readonly notifying: boolean
  readonly channel: string
}

const fragments = ({ dialect, sql, tableName }: Ctx) => ({
  table: sql(tableName),
  paused: sql(pausedTableOf(tableName)),
  // The database's clock in milliseconds since the epoch, so the leases of processes on several machines agree.
  // (`now()`, the statement's time on PostgreSQL, is stable within a statement, so the lease can use its index.)
  now: sql.literal(nowSql(dialect))
})

/**
 * `sequence IN (the sequences)`, one statement text whatever the count, and the sequences as ONE parameter: on
 * SQLite a JSON array (`json_each`), not a `?` each, whose text differs per count and is prepared again for each
 * (SQLite compiles a statement in tens of µs; the client's cache keeps 200 texts) and bound 256 parameters a batch;
 * on PostgreSQL a `bigint[]` (`= ANY`), written as its array literal: `IN ($1, …, $256)` cost this process a
 * placeholder, a bind and a length-prefixed value per job, and the server a parameter and a list item per job
 * (bench/_pg-store-cpu.ts, RESULTS.md branch pgcpu). Either array is written by joining: a handle is an integer
 * the database gave (a number, a string for PostgreSQL's bigint, or a bigint under `SqlClient.SafeIntegers`, which
 * `JSON.stringify` refuses).
 */
const sequenceIn = (ctx: Ctx, sequences: ReadonlyArray<unknown>) =>
  ctx.dialect === "sqlite"
    ? ctx.sql`sequence IN (SELECT value FROM json_each(${`[${sequences.join(",")}]`}))`
    : ctx.sql`sequence = ANY(${`{${sequences.join(",")}}`}::bigint[])`

/** @internal */
export interface LeaseRow {
  readonly sequence: string | number
  readonly id: string
  readonly element: string
  readonly attempts: number | string
  readonly priority: number | string
  readonly options: string | null
}

/**
 * The lease statements. The lease reads ready rows (`timed = 0`) from the `pending` index in lease order (priority,
 * then offer order), so it examines the rows it takes, however many delayed rows wait; nothing while the queue is
 * paused (a row in `<table>_paused`). Timed rows whose time came (a delay passed, a lease expired) are made ready
 * first by `promote`, found by a range on the `timed` index; a cancel-asked one among them (its runner died) is
 * settled "cancelled" instead. `promote` runs before a lease at most every PROMOTE_MILLIS: a due job waits that much
 * longer at most. Exported for the tests' EXPLAIN.
 *
 * Why two statements: PostgreSQL plans each statement anew (`@effect/sql-pg` sends unnamed statements), and a
 * single statement doing both (CTEs: due rows, ready rows, the chosen among both, the rest made ready) took 0.37 ms
 * to plan against 0.18 ms for the first version's lease, and the whole lease 0.23 ms more (EXPLAIN ANALYZE, median
 * of 30, 10,000 ready rows); this lease plans in 0.19 ms. SQLite has no UPDATE in a CTE at all.
 *
 * @internal
 */
export const leaseStatement = (ctx: Ctx, leaseMillis: number, due: DueHint = { at: Infinity }) => {
  const { name, sql, worker } = ctx
  const { now, paused, table } = fragments(ctx)
  const lease = sql.literal(String(leaseMillis))
  const lock = sql.literal(ctx.dialect === "pg" ? "FOR UPDATE SKIP LOCKED" : "")
  const promote = sql`UPDATE ${table} SET timed = 0,
      state = CASE WHEN cancel_requested = 1 THEN 3 ELSE 0 END,
      acquired_by = CASE WHEN cancel_requested = 1 THEN NULL ELSE acquired_by END,
      updated_at = CASE WHEN cancel_requested = 1 THEN ${now} ELSE updated_at END
    WHERE sequence IN (
      SELECT sequence FROM ${table} WHERE queue_name = ${name} AND state = 0 AND timed = 1 AND visible_at <= ${now}
      ORDER BY visible_at LIMIT ${sql.literal(String(DUE_BATCH))} ${lock}
    )`
  let promoted = 0
  return (size: number): LeaseStatements => {
    const at = Date.now()
    // A row known to be due (`nextDueMillis` said when) is promoted at once: a delayed job starts on time.
    const before = at - promoted >= PROMOTE_MILLIS || at >= due.at ? [promote] : []
    if (before.length > 0) {
      promoted = at
      due.at = Infinity
    }
    return {
      before,
      take: sql<LeaseRow>`UPDATE ${table}
        SET timed = 1, visible_at = ${now} + ${lease}, acquired_by = ${worker}, attempts = attempts + 1
        WHERE sequence IN (
          SELECT sequence FROM ${table}
          WHERE queue_name = ${name} AND state = 0 AND timed = 0 AND visible_at <= ${now}
            AND NOT EXISTS (SELECT 1 FROM ${paused} WHERE queue_name = ${name})
          ORDER BY priority DESC, sequence LIMIT ${sql.literal(String(size))} ${lock}
        )
        RETURNING sequence, id, element, attempts, priority, options`
    }
  }
}

/**
 * When (ms, this process's clock) a timed row read by `nextDueMillis` comes due: the lease then promotes at once
 * instead of waiting out PROMOTE_MILLIS. @internal
 */
export interface DueHint {
  at: number
}

/**
 * The time until the first timed row (delayed, or leased: a lease that lapses) comes due, by the database's clock:
 * one entry of the `timed` index (`ORDER BY visible_at LIMIT 1` on its leading columns; the tests EXPLAIN it).
 * @internal
 */
export const nextDueStatement = (ctx: Ctx) => {
  const { name, sql } = ctx
  const { now, table } = fragments(ctx)
  return sql<{ due: number | string }>`SELECT visible_at - ${now} AS due FROM ${table}
    WHERE queue_name = ${name} AND state = 0 AND timed = 1 ORDER BY visible_at LIMIT 1`
}

/** `nextDueStatement`, recorded in `due`, so the lease at that time promotes the row. */
const makeNextDue = (ctx: Ctx, due: DueHint): Store["nextDueMillis"] =>
  Effect.map(
    nextDueStatement(ctx),
    (rows) => {
      if (rows.length === 0) return undefined
      const ms = Number(rows[0]!.due)
      due.at = Math.min(due.at, Date.now() + ms)
      return ms
    }
  )

/** @internal */
export interface LeaseStatements {
  /** Run first, in order (at most every PROMOTE_MILLIS: the rows that came due made ready). */
  readonly before: ReadonlyArray<Statement.Statement<unknown>>
  readonly take: Statement.Statement<LeaseRow>
}

const leasedJob = (row: LeaseRow): LeasedJob => ({
  id: row.id,
  payload: row.element,
  attempts: Number(row.attempts),
  handle: row.sequence,
  options: row.options ?? undefined
})

/**
 * `rows` in lease order (priority, then offer order) as `compare` says. PostgreSQL's take returns them so already
 * (its join follows the chosen rows' order): a check of each neighbour once (2 comparisons a row) instead of a sort
 * (about 8 a row for 256); the sort is stable, so the result is the same either way.
 */
const inLeaseOrder = <R>(rows: ReadonlyArray<R>, compare: (a: R, b: R) => number): ReadonlyArray<R> => {
  for (let i = 1; i < rows.length; i++) {
    if (compare(rows[i - 1]!, rows[i]!) > 0) return [...rows].sort(compare)
  }
  return rows
}

/** Leases come back in lease order: priority, then offer order. */
const byLeaseOrder = (rows: ReadonlyArray<LeaseRow>): ReadonlyArray<LeasedJob> =>
  inLeaseOrder(
    rows,
    (a, b) => Number(b.priority) - Number(a.priority) || Number(a.sequence) - Number(b.sequence)
  ).map(leasedJob)

/**
 * `byLeaseOrder` of the take's rows as arrays, in its RETURNING order (sequence, id, element, attempts, priority,
 * options): no object of six named properties per row. SQLite hands them so with better-sqlite3's raw mode
 * (`.values`): 3.2 -> 2.8 µs of CPU per job for the take alone (bench/_sqlite-db-cost.ts --cpu, 7 rounds, load 6);
 * PostgreSQL with node-postgres' `rowMode: "array"` (`.values` too), see `makeStore`'s lease.
 */
const byLeaseOrderValues = (rows: ReadonlyArray<ReadonlyArray<unknown>>): ReadonlyArray<LeasedJob> =>
  inLeaseOrder(rows, (a, b) => Number(b[4]) - Number(a[4]) || Number(a[0]) - Number(b[0]))
    .map((row) => ({
      id: row[1] as string,
      payload: row[2] as string,
      attempts: Number(row[3]),
      handle: row[0],
      options: (row[5] as string | null) ?? undefined
    }))

/**
 * The SQLite take's rows in lease order: as arrays (`byLeaseOrderValues`) but under `SqlClient.SafeIntegers`, where
 * they come as objects. @effect/sql-sqlite-node's raw mode (`.values`) never turns that setting on, so a sequence
 * past 2^53 came back as a rounded number (2^53 + 3 as 2^53 + 4) and acknowledged its neighbour, leaving the job
 * leased (test/sql/DurableQueue.store.test.ts, "handles past 2^53").
 */
const sqliteTake = (
  take: Statement.Statement<LeaseRow>
): Effect.Effect<ReadonlyArray<LeasedJob>, SqlError> =>
  Effect.flatMap(
    SqlClient.SafeIntegers,
    (safe) => safe ? Effect.map(take, byLeaseOrder) : Effect.map(take.values, byLeaseOrderValues)
  )

/**
 * Offers of concurrent callers go out in one INSERT. A batch that fails is written again row by row, so one bad
 * offer does not fail the others. (The core checked every id before: a non-string id once killed this fiber.)
 */
const makeOffer = (ctx: Ctx): Effect.Effect<Store["offer"], never, Scope.Scope> =>
  Effect.gen(function*() {
    const { channel, dialect, name, sql } = ctx
    const { now, table } = fragments(ctx)
    // SQLite 3.51+ (`jsonb_each` is new in 3.51.0, its change log): the rows' array parsed once into SQLite's binary
    // JSON (`jsonb_each`), so each of a row's 6 fields is read from it, where `json_each` hands each row as text that
    // `json_extract` parses again: 4.6 -> 3.7 µs of CPU per job for an INSERT of 1,000 (bench/_sqlite-db-cost.ts
    // --cpu, 7 rounds, load 9); the plain shape's 3 fields 1.04 -> 0.83 (better-sqlite3 alone, 14 alternated rounds
    // of 10 x 1,000, load 8). An older SQLite has no `jsonb_each` (an error at once, nothing written): the text form then.
    const each = dialect === "sqlite"
      ? yield* sql`SELECT 1 FROM jsonb_each('[]')`.pipe(
        Effect.as(sql.literal("jsonb_each")),
        Effect.orElseSucceed(() => sql.literal("json_each"))
      )
      : sql.literal("json_each")
    // A delayed job is a timed row: not leased before its time. In a row of its own the defaults (no delay, priority
    // 0, no options) go as SQL text, not parameters: a row of the first version's 4 parameters costs no more to bind.
    const zero = sql.literal("0")
    const valuesRow = ({ delayMillis, id, options, payload, priority }: OfferedJob) =>
      sql`VALUES (${name}, ${id}, ${idKey(id)}, ${payload}, ${
        delayMillis > 0 ? sql`${now} + ${Math.ceil(delayMillis)}` : now
      },
        ${delayMillis > 0 ? sql.literal("1") : zero}, ${priority === 0 ? zero : priority}, ${
        options ?? sql.literal("NULL")
      }, ${now}, ${now})`
    // Several rows go as ONE parameter, a JSON array of [id, id_key, payload, delay, priority, options] the database
    // unpacks in order: a VALUES list of 1,000 rows (4,000 parameters) took 300–400 ms a statement on PostgreSQL
    // here, 14x graphile-worker's add_jobs. (`WHERE true`: SQLite parses an upsert after a bare SELECT as a join's ON.)
    // jsonb on PostgreSQL: parsed once, where `json`'s `->>` parses a row's text again for each of its 6 fields
    // (1.17x plain, 1.33x ON CONFLICT, bench/_sql-offer-shapes.ts, load 9-12). Its one limit, no \u0000 escape in
    // a string, cannot bite: ids hold no NUL (the core refuses them) and payloads and options are JSON text, whose
    // escapes arrive here escaped again (`\\u0000`).
    // A plain job (no delay, priority 0, no options, an id that is its own key) travels as [id, payload] and the
    // other columns are constants: the database's CPU per offered job 8.1 -> 6.6 µs with the clock read once per
    // statement too (bench/_sql-offer-cost.ts, 5 rounds of 20,000, load 4.7; graphile-worker's add_jobs 7.6), and
    // the parameter is half the size. A batch with any other job goes in the general shape.
    const plain = (job: OfferedJob) =>
      job.delayMillis <= 0 && job.priority === 0 && job.options === undefined && job.id.length <= OWN_KEY_MAX &&
      (!job.custom || !job.id.includes(SEPARATOR))
    const rowsOf = (batch: ReadonlyArray<OfferedJob>) => {
      if (batch.length === 1) return valuesRow(batch[0]!)
      if (batch.every(plain)) {
        if (dialect === "pg") {
          // Ids and payloads as two texts joined by U+001E, split by the server (`string_to_table`, PostgreSQL 14+)
          // and zipped by ROWS FROM: no JSON escaping here (a payload's every quote escaped again) and no JSON
          // parse there. A payload is JSON text from `JSON.stringify` (encoding.ts), which writes no raw control
          // character; an id holding one goes in the general shape (`plain`). Were a payload to hold one anyway,
          // the payloads would outnumber the ids and the INSERT fail on a NULL id (NOT NULL): an error, no mix-up.
          // Against `jsonb_array_elements_text` of two JSON arrays: this process ~730 -> ~550 bytes allocated a job
          // with the core's one object a job (bench/_offer-cpu.ts --heap), the server 16.3 -> 15.2 µs a job
          // (bench/_sql-offer-cost.ts, 5 rounds of 20,000 at load 18-20: ratios only).
          const ids: Array<string> = new Array(batch.length)
          const payloads: Array<string> = new Array(batch.length)
          for (let i = 0; i < batch.length; i++) {
            ids[i] = batch[i]!.id
            payloads[i] = batch[i]!.payload
          }
          return sql`SELECT ${name}, j.id, j.id, j.p, c.t, 0, 0, NULL, c.t, c.t
            FROM (SELECT ${now} AS t) AS c,
              ROWS FROM (string_to_table(${ids.join(SEPARATOR)}, chr(30)),
                string_to_table(${payloads.join(SEPARATOR)}, chr(30))) WITH ORDINALITY AS j(id, p, i)
            ORDER BY i`
        }
        const json = JSON.stringify(batch.map(({ id, payload }) => [id, payload]))
        return sql`SELECT ${name}, json_extract(value, '$[0]'), json_extract(value, '$[0]'), json_extract(value, '$[1]'),
              c.t, 0, 0, NULL, c.t, c.t
            FROM (SELECT ${now} AS t) AS c, ${each}(${json}) WHERE true ORDER BY key`
      }
      const json = JSON.stringify(batch.map(({ delayMillis, id, options, payload, priority }) => [
        id,
        idKey(id),
        payload,
        delayMillis > 0 ? Math.ceil(delayMillis) : 0,
        priority,
        options ?? null
      ]))
      return dialect === "pg"
        ? sql`SELECT ${name}, r->>0, r->>1, r->>2, c.t + (r->>3)::bigint, CASE WHEN (r->>3)::bigint > 0 THEN 1 ELSE 0 END,
              (r->>4)::int, r->>5, c.t, c.t
            FROM (SELECT ${now} AS t) AS c, jsonb_array_elements(${json}::jsonb) WITH ORDINALITY AS j(r, i)
            ORDER BY i`
        : sql`SELECT ${name}, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
              ${now} + json_extract(value, '$[3]'), CASE WHEN json_extract(value, '$[3]') > 0 THEN 1 ELSE 0 END,
              json_extract(value, '$[4]'), json_extract(value, '$[5]'), ${now}, ${now}
            FROM ${each}(${json}) WHERE true ORDER BY key`
    }
    const columns = sql.literal(
      "(queue_name, id, id_key, element, visible_at, timed, priority, options, created_at, updated_at)"
    )
    const insert = (batch: ReadonlyArray<OfferedJob>) => {
      const rows = rowsOf(batch)
      // Ids the core generated (UUIDv7s: a counter and 62 random bits in their ms) are new by construction: no ON
      // CONFLICT, whose speculative insertion (an index probe and a token per row) made the store's offer of 1,000
      // rows 1.13-1.31x slower on PostgreSQL (bench/_sql-offer-shapes.ts, load 12-18). Were one known anyway, the
      // INSERT fails: an error, not a lost job.
      if (batch.every((job) => !job.custom)) {
        // Every row goes in: the notification needs no RETURNING to know it.
        return ctx.notifying
          ? sql`WITH inserted AS (INSERT INTO ${table} ${columns} ${rows}) SELECT pg_notify(${channel}, 'o')`
          : sql`INSERT INTO ${table} ${columns} ${rows}`
      }
      // With notifications, one NOTIFY per batch (in the same statement, so no round trip more), and only when a row
      // went in; it is delivered when the statement commits.
      return ctx.notifying
        ? sql`WITH inserted AS (
            INSERT INTO ${table} ${columns}
            ${rows} ON CONFLICT (queue_name, id_key) DO NOTHING RETURNING 1
          ) SELECT pg_notify(${channel}, 'o') FROM (SELECT 1 FROM inserted LIMIT 1) AS one`
        : sql`INSERT INTO ${table} ${columns}
          ${rows} ON CONFLICT (queue_name, id_key) DO NOTHING`
    }
    // Offers of concurrent callers go out in one INSERT. A batch that fails is written again row by row, so one
    // bad offer does not fail the others. (The core checked every id before: a non-string id once killed this fiber.)
    const offers = yield* Queue.unbounded<Waiting<OfferedJob>>()
    const writeOne = (one: Waiting<OfferedJob>) =>
      Effect.flatMap(Effect.exit(insert([one.item])), (exit) => Deferred.done(one.done, Exit.asVoid(exit)))
    const write = (batch: ReadonlyArray<Waiting<OfferedJob>>) =>
      Effect.flatMap(
        Effect.exit(Effect.suspend(() => insert(batch.map((w) => w.item)))),
        (exit) =>
          Exit.isFailure(exit) && batch.length > 1
            ? Effect.forEach(batch, writeOne, { discard: true })
            : Effect.forEach(batch, (w) => Deferred.done(w.done, Exit.asVoid(exit)), { discard: true })
      )
    // Callers' offers are independent: each statement's own (`OFFER_CHARS`), no transaction.
    yield* drain(offers, (batch) => Effect.forEach(offerChunks(batch, (w) => w.item), write, { discard: true }))
    // A batch of one caller (`offerAll`) is one statement, or several in one transaction past `OFFER_ROWS` rows or
    // `OFFER_CHARS` characters: all or nothing. Single offers of concurrent callers are coalesced by the `offers` fiber.
    return (jobs) => {
      if (jobs.length <= 1) {
        return Effect.forEach(jobs, (item) =>
          Effect.flatMap(Deferred.make<void, unknown>(), (done) => {
            offers.unsafeOffer({ item, done })
            return Deferred.await(done)
          }), { discard: true })
      }
      const statements = offerChunks(jobs, (job) => job)
      return statements.length === 1
        ? Effect.asVoid(Effect.suspend(() => insert(jobs)))
        : sql.withTransaction(
          Effect.forEach(statements, (chunk) => Effect.suspend(() => insert(chunk)), { discard: true })
        )
    }
  })

/**
 * Settlements: the acknowledgements and put-backs of a batch one statement each; failures one statement per job.
 * A job whose cancellation was asked is settled "cancelled" when it is put back or retried (it is not run again).
 */
const makeSettle = (ctx: Ctx): Store["settle"] => {
  const { sql, worker } = ctx
  const { now, table } = fragments(ctx)
  const held = sql`acquired_by = ${worker} AND state = 0`
  const unlessCancelled = sql.literal("CASE WHEN cancel_requested = 1 THEN 3 ELSE 0 END")
  const ack = (handles: ReadonlyArray<unknown>) =>
    sql`UPDATE ${table} SET state = 1, acquired_by = NULL, updated_at = ${now}
      WHERE ${sequenceIn(ctx, handles)} AND ${held}`
  // An acknowledgement with a result keeps it on the done row until it expires.
  const ackWithResults = (
    acks: ReadonlyArray<{ readonly handle: unknown; readonly result: string; readonly ttl: number }>
  ) =>
    sql`WITH v (seq, result, ttl) AS (VALUES ${
      sql.csv(acks.map(({ handle, result, ttl }) =>
        sql`(CAST(${handle as string | number} AS BIGINT), CAST(${result} AS TEXT), CAST(${ttl} AS BIGINT))`
      ))
    })
      UPDATE ${table} SET state = 1, acquired_by = NULL, updated_at = ${now},
        result = v.result, result_expires_at = ${now} + v.ttl
      FROM v WHERE sequence = v.seq AND ${held}`
  // A job put back untouched was counted at lease: the count goes back down (guarded, so a repeated batch cannot).
  const release = (handles: ReadonlyArray<unknown>) =>
    sql`UPDATE ${table} SET attempts = attempts - 1, acquired_by = NULL, visible_at = ${now}, timed = 0, state = ${unlessCancelled}
      WHERE ${sequenceIn(ctx, handles)} AND ${held}`
  // Failures of a batch in one statement (each row its kind, attempts, error and delay), as the acknowledgements
  // with results: one statement per failed job made a batch of 256 retries 256 commits. Kind 0 is a retry (put back,
  // or "cancelled" when that was asked), 2 dead, 3 cancelled.
  const fail = (fails: ReadonlyArray<Fail>) =>
    sql`WITH v (seq, kind, attempts, err, delay) AS (VALUES ${
      sql.csv(fails.map(({ attempts, delayMillis, handle, kind, lastError }) =>
        sql`(CAST(${handle as string | number} AS BIGINT), CAST(${kind} AS INTEGER), CAST(${attempts} AS INTEGER),
          CAST(${lastError} AS TEXT), CAST(${delayMillis} AS BIGINT))`
      ))
    })
      UPDATE ${table} SET state = CASE WHEN v.kind = 0 THEN ${unlessCancelled} ELSE v.kind END,
        attempts = v.attempts, last_failure = COALESCE(v.err, last_failure), acquired_by = NULL,
        visible_at = ${now} + v.delay, timed = CASE WHEN v.delay > 0 THEN 1 ELSE 0 END, updated_at = ${now}
      FROM v WHERE sequence = v.seq AND ${held}`
  const sweepResults = sweeper(ctx)
  return (batch: ReadonlyArray<Settle>) =>
    Effect.gen(function*() {
      const acks: Array<unknown> = []
      const withResults: Array<{ handle: unknown; result: string; ttl: number }> = []
      const releases: Array<unknown> = []
      const fails: Array<Fail> = []
      for (const { job, settlement } of batch) {
        if (settlement._tag === "Ack") {
          if (settlement.result === undefined) acks.push(job.handle)
          else withResults.push({ handle: job.handle, result: settlement.result, ttl: settlement.resultTtlMillis })
        } else if (settlement._tag === "Release") releases.push(job.handle)
        else if (settlement._tag === "Retry") {
          const { attempts, delayMillis, lastError } = settlement
          fails.push({
            handle: job.handle,
            kind: 0,
            attempts,
            lastError,
            delayMillis: Math.max(0, Math.ceil(delayMillis))
          })
        } else {
          const dead = settlement._tag === "Dead"
          fails.push({
            handle: job.handle,
            kind: dead ? 2 : 3,
            attempts: settlement.attempts,
            lastError: dead ? settlement.lastError : null,
            delayMillis: 0
          })
        }
      }
      if (acks.length > 0) {
        yield* ack(acks)
      }
      if (withResults.length > 0) {
        yield* Effect.zipRight(ackWithResults(withResults), sweepResults)
      }
      if (releases.length > 0) yield* release(releases)
      if (fails.length > 0) yield* fail(fails)
      // Jobs queued again: with notifications, takers in every process look at once (one statement per batch). A
      // retry with a delay notifies too, though it is not ready yet: takers find it by polling once its time came.
      if (releases.length > 0 || fails.some((f) => f.kind === 0)) yield* ctx.requeued
    })
}

interface Fail {
  readonly handle: unknown
  /** 0: retry, 2: dead, 3: cancelled. */
  readonly kind: 0 | 2 | 3
  readonly attempts: number
  readonly lastError: string | null
  readonly delayMillis: number
}

/** Drops results whose time to live passed, at most once a minute per store (none are read after expiry anyway). */
const sweeper = (ctx: Ctx): Effect.Effect<void, SqlError> => {
  const { name, sql } = ctx
  const { now, table } = fragments(ctx)
  let last = 0
  return Effect.suspend(() => {
    if (Date.now() - last < RESULT_SWEEP_MILLIS) return Effect.void
    last = Date.now()
    return sql`UPDATE ${table} SET result = NULL, result_expires_at = NULL
      WHERE queue_name = ${name} AND result_expires_at IS NOT NULL AND result_expires_at <= ${now}`
  })
}

interface StatusRow {
  readonly state: number | string
  readonly attempts: number | string
  readonly progress: string | null
  readonly last_failure: string | null
  readonly held: number | string
  readonly later: number | string
  readonly result: string | null
}

const stateOf = (row: StatusRow): StoredState => {
  switch (Number(row.state)) {
    case 1:
      return "done"
    case 2:
      return "dead"
    case 3:
      return "cancelled"
  }
  // Pending: leased while its lease lasts; delayed while its time has not come; else waiting (a lease that
  // expired included: its runner died, and the job is leased again).
  if (Number(row.later) === 1) return Number(row.held) === 1 ? "running" : "delayed"
  return "waiting"
}

/** Reading a queue: status by id, counts, size, dead letters. */
const makeReads = (ctx: Ctx) => {
  const { name, sql } = ctx
  const { now, paused, table } = fragments(ctx)
  const status = (id: string): Effect.Effect<StoredStatus | undefined, SqlError> =>
    Effect.map(
      sql<StatusRow>`SELECT state, attempts, progress, last_failure,
          CASE WHEN acquired_by IS NOT NULL THEN 1 ELSE 0 END AS held,
          CASE WHEN visible_at > ${now} THEN 1 ELSE 0 END AS later,
          CASE WHEN result_expires_at > ${now} THEN result ELSE NULL END AS result
        FROM ${table} WHERE queue_name = ${name} AND id_key = ${idKey(id)}`,
      (rows) => {
        const row = rows[0]
        return row === undefined ? undefined : {
          state: stateOf(row),
          attempts: Number(row.attempts),
          progress: row.progress ?? undefined,
          lastError: row.last_failure ?? undefined,
          result: row.result ?? undefined
        }
      }
    )
  // Pending rows by the two partial indexes (each branch names its index's predicate), so done rows are not read.
  const pending =
    sql`SELECT visible_at, acquired_by FROM ${table} WHERE queue_name = ${name} AND state = 0 AND timed = 0
    UNION ALL SELECT visible_at, acquired_by FROM ${table} WHERE queue_name = ${name} AND state = 0 AND timed = 1`
  const counts: Effect.Effect<StoredCounts, SqlError> = Effect.map(
    sql<
      {
        waiting: number | string | null
        delayed: number | string | null
        running: number | string | null
        dead: number | string
        paused: number | string
        done: number | string
        oldest: number | string | null
      }
    >`
      SELECT
        SUM(CASE WHEN visible_at <= ${now} THEN 1 ELSE 0 END) AS waiting,
        ${now} - MIN(CASE WHEN visible_at <= ${now} THEN visible_at END) AS oldest,
        (SELECT COUNT(*) FROM (SELECT 1 AS one FROM ${table} WHERE queue_name = ${name} AND state > 0 AND state = 1
          LIMIT ${sql.literal(String(DONE_COUNT_CAP))}) AS d) AS done,
        SUM(CASE WHEN visible_at > ${now} AND acquired_by IS NULL THEN 1 ELSE 0 END) AS delayed,
        SUM(CASE WHEN visible_at > ${now} AND acquired_by IS NOT NULL THEN 1 ELSE 0 END) AS running,
        (SELECT COUNT(*) FROM ${table} WHERE queue_name = ${name} AND state = 2) AS dead,
        (SELECT COUNT(*) FROM ${paused} WHERE queue_name = ${name}) AS paused
      FROM (${pending}) AS p`,
    (rows) => {
      const row = rows[0]!
      return {
        waiting: Number(row.waiting ?? 0),
        delayed: Number(row.delayed ?? 0),
        running: Number(row.running ?? 0),
        dead: Number(row.dead),
        paused: Number(row.paused) > 0,
        done: Number(row.done),
        oldestWaitingMillis: row.oldest === null ? undefined : Math.max(0, Number(row.oldest))
      }
    }
  )
  const size = Effect.map(
    sql<{ n: number | string }>`SELECT COUNT(*) AS n FROM (${pending}) AS p`,
    (rows) => Number(rows[0]?.n ?? 0)
  )
  const deadLetters = Effect.map(
    sql<{ id: string; element: string; attempts: number | string; last_failure: string | null }>`
      SELECT id, element, attempts, last_failure FROM ${table}
      WHERE queue_name = ${name} AND state = 2 ORDER BY updated_at, sequence`,
    (rows) =>
      rows.map((row): StoredDeadLetter => ({
        id: row.id,
        payload: row.element,
        attempts: Number(row.attempts),
        lastError: row.last_failure ?? ""
      }))
  )
  return { status, counts, size, deadLetters }
}

/** Acting on a queue or a job by id: cancel, progress, pause, dead letters queued again or purged. */
const makeControls = (ctx: Ctx) => {
  const { name, sql, worker } = ctx
  const { now, paused, table } = fragments(ctx)
  // A pending job is running while its lease lasts: then only asked (the holder learns at its next refresh).
  const running = sql`acquired_by IS NOT NULL AND visible_at > ${now}`
  const cancel = (id: string) =>
    Effect.map(
      sql<{ state: number | string }>`UPDATE ${table} SET
          state = CASE WHEN ${running} THEN 0 ELSE 3 END,
          cancel_requested = CASE WHEN ${running} THEN 1 ELSE 0 END,
          timed = CASE WHEN ${running} THEN 1 ELSE timed END,
          acquired_by = CASE WHEN ${running} THEN acquired_by ELSE NULL END,
          updated_at = ${now}
        WHERE queue_name = ${name} AND id_key = ${idKey(id)} AND state = 0 RETURNING state`,
      (rows) =>
        rows.length === 0 ? "none" as const : Number(rows[0]!.state) === 3 ? "cancelled" as const : "asked" as const
    )
  const progress = (job: LeasedJob, json: string) =>
    sql`UPDATE ${table} SET progress = ${json}
      WHERE sequence = ${job.handle as string | number} AND acquired_by = ${worker} AND state = 0`.pipe(Effect.asVoid)
  const setPaused = (on: boolean) =>
    on
      ? sql`INSERT INTO ${paused} (queue_name) VALUES (${name}) ON CONFLICT (queue_name) DO NOTHING`.pipe(Effect.asVoid)
      : Effect.zipRight(sql`DELETE FROM ${paused} WHERE queue_name = ${name}`, ctx.requeued)
  const fresh = sql`state = 0, timed = 0, attempts = 0, last_failure = NULL, acquired_by = NULL, cancel_requested = 0,
    visible_at = ${now}, updated_at = ${now}`
  const requeue = (id: string) =>
    Effect.tap(
      Effect.map(
        sql<{ id: string }>`UPDATE ${table} SET ${fresh} WHERE queue_name = ${name} AND id_key = ${
          idKey(id)
        } AND state = 2 RETURNING id`,
        (rows) => rows.length > 0
      ),
      (found) => found ? ctx.requeued : Effect.void
    )
  // Counted in the database on PostgreSQL; SQLite has no UPDATE in a CTE, so its rows come back (one integer each).
  const requeueAll = Effect.tap(
    ctx.dialect === "pg"
      ? Effect.map(
        sql<
          { n: number | string }
        >`WITH requeued AS (UPDATE ${table} SET ${fresh} WHERE queue_name = ${name} AND state = 2 RETURNING 1)
          SELECT COUNT(*) AS n FROM requeued`,
        (rows) => Number(rows[0]?.n ?? 0)
      )
      : Effect.map(
        sql`UPDATE ${table} SET ${fresh} WHERE queue_name = ${name} AND state = 2 RETURNING 1`,
        (rows) => rows.length
      ),
    (n) => n > 0 ? ctx.requeued : Effect.void
  )
  const purge = Effect.map(
    sql<{ id: string }>`DELETE FROM ${table} WHERE queue_name = ${name} AND state = 2 RETURNING id`,
    (rows) => rows.length
  )
  return { cancel, progress, setPaused, requeue, requeueAll, purge }
}

/**
 * Extends the leases this store holds; reports the ids among them whose cancellation was asked (the row keeps
 * `timed = 1`: a lease that lapsed and was made ready again, still unleased, is held again).
 */
const makeRefresh = (ctx: Ctx, leaseMillis: number): Store["refresh"] => {
  const { sql, worker } = ctx
  const { now, table } = fragments(ctx)
  const lease = sql.literal(String(leaseMillis))
  return (jobs) =>
    Effect.map(
      Effect.forEach(chunks(jobs, BATCH), (chunk) =>
        sql<
          { sequence: number | string; cancel_requested: number | string }
        >`UPDATE ${table} SET visible_at = ${now} + ${lease}, timed = 1
          WHERE ${sequenceIn(ctx, chunk.map((job) => job.handle))} AND acquired_by = ${worker} AND state = 0
          RETURNING sequence, cancel_requested`),
      (results) => {
        const asked = new Set(
          results.flat().filter((row) => Number(row.cancel_requested) === 1).map((row) => String(row.sequence))
        )
        return asked.size === 0 ? [] : jobs.filter((job) => asked.has(String(job.handle))).map((job) => job.id)
      }
    )
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
    const dialect = sql.onDialectOrElse({
      pg: () => "pg" as const,
      sqlite: () => "sqlite" as const,
      orElse: () => "other" as const
    })
    if (dialect === "other") {
      return yield* Effect.dieMessage("effect-workers/sql DurableQueue supports PostgreSQL and SQLite only")
    }
    const listener = dialect === "pg" && options.notify ? listenerOf(client) : undefined
    const channel = channelOf(tableName, name)
    const worker = globalThis.crypto.randomUUID()

    yield* prepareTable(sql, dialect, tableName)

    // Opened by a notification (PostgreSQL) or a changed `data_version` (SQLite) that jobs may be ready.
    const notified = yield* Effect.makeLatch(false)
    // SQLite (unless `notify: false`): the writes of this process's stores on this client, which its `data_version`
    // does not show.
    const local = dialect === "sqlite" && options.notify ? localWriteCounter(client) : undefined
    const wrote = local === undefined ? Effect.void : Effect.sync(() => {
      local.n++
    })
    const ctx: Ctx = {
      sql,
      dialect,
      name,
      tableName,
      worker,
      channel,
      notifying: listener !== undefined,
      requeued: listener !== undefined ? Effect.asVoid(sql`SELECT pg_notify(${channel}, 'o')`) : wrote
    }
    const offerRows = yield* makeOffer(ctx)
    const offer: Store["offer"] = local === undefined ? offerRows : (jobs) => Effect.tap(offerRows(jobs), () => wrote)
    const due: DueHint = { at: Infinity }
    const leaseRows = leaseStatement(ctx, leaseMillis, due)

    // A store LISTENs from its first lease on (a store that only offers never does: `@effect/sql-pg` shares one
    // LISTEN connection per client, and a stream's end UNLISTENs the channel for every stream of the client); the
    // first lease waits for the LISTEN to be confirmed (2 seconds at most), so an offer made anywhere after it is heard.
    // SQLite: a store watches `data_version` from its first lease on too (an idle run of concurrency 16 cost 29 µs
    // of CPU per ms of wall time leasing every 100 ms; bench/_idle-cpu.ts, bench/RESULTS.md branch sqliteidle).
    let listening = listener === undefined && local === undefined
    // Whether the LISTEN (or the `data_version` watch) hears (`Store.hearing`), once it was started.
    let hearing: Effect.Effect<boolean> = Effect.succeed(false)
    const scope = yield* Effect.scope
    const startListening = Effect.suspend(() => {
      if (listening) return Effect.void
      listening = true
      const heard = local !== undefined
        ? watchDataVersion(sql, local, notified, settings.pollMillis)
        : listen(listener!, channel, notified, sql)
      return Effect.map(Scope.extend(heard, scope), (heard) => {
        hearing = heard
      })
    })

    const store: Store = {
      backend: "sql",
      maxBatch: BATCH,
      // Fast takers lease up to a full batch at once (a lease of 256 costs about what one of 64 does: store.ts).
      leaseBatch: BATCH,
      // A run whose full leases find its takers waiting asks for the next lease as one arrives (core.ts
      // `Feed.overlap`), so PostgreSQL leases while node runs the buffer instead of the two alternating (issue 16:
      // `_profile.ts` no-op, 20,000 jobs, 6 alternate runs a set: jobs/s 1.31x, 1.25x, 1.01x at c16, 1.11x at c64;
      // CPU per job 0.97-1.03x). Such a run holds up to 2 x 256 jobs (and what it has not settled yet); bench/RESULTS.md,
      // branch pglead. Not SQLite: its statements run in this process, so nothing can overlap there; two sets of
      // four drained faster (jobs/s 1.39x, 1.40x) and two did not (0.97x, 1.04x), which is noise with no mechanism,
      // and a run there would hold twice the jobs for it.
      leaseWhileRunning: dialect === "pg",
      wakeSpacingMillis: WAKE_SPACING,
      settleLingerMillis: SETTLE_LINGER,
      ready: notified.await,
      offer,
      lease: (max) =>
        Effect.zipRight(
          Effect.zipRight(startListening, notified.close),
          Effect.suspend(() => {
            const { before, take } = leaseRows(max)
            return Effect.zipRight(
              Effect.forEach(before, (statement) => statement, { discard: true }),
              // PostgreSQL's rows as arrays too: its bigint comes as a string whatever `SqlClient.SafeIntegers` says.
              dialect === "sqlite" ? sqliteTake(take) : Effect.map(take.values, byLeaseOrderValues)
            )
          })
        ),
      refresh: makeRefresh(ctx, leaseMillis),
      settle: makeSettle(ctx),
      ...makeReads(ctx),
      ...makeControls(ctx),
      nextDueMillis: makeNextDue(ctx, due),
      jobs: listing(sql, dialect, tableName, name, leaseMillis).jobs,
      // With `notify: false` a store does not hear: its idle takers poll every `pollInterval`.
      ...(listener === undefined && local === undefined ? {} : { hearing: Effect.suspend(() => hearing) })
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
  // The batch being written: a write cut short by the close is written again (offers insert ON CONFLICT DO
  // NOTHING, so a batch the database took already adds nothing).
  let inFlight: ReadonlyArray<Waiting<A>> = []
  const once = Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(restore(Queue.takeBetween(queue, 1, BATCH)), (chunk) => {
      inFlight = Array.from(chunk)
      return Effect.zipRight(restore(guarded(inFlight)), Effect.sync(() => inFlight = []))
    })
  )
  // As the scope closes: what is left is written for 5 s at most (closeFlush.ts), then its callers fail.
  const flush = Effect.gen(function*() {
    while (inFlight.length > 0 || (yield* Queue.size(queue)) > 0) {
      if (inFlight.length === 0) inFlight = Array.from(yield* Queue.takeUpTo(queue, BATCH))
      yield* guarded(inFlight)
      inFlight = []
    }
  })
  const letGo = Effect.flatMap(Queue.takeAll(queue), (rest) =>
    Effect.sync(() => {
      const error = new Error(`DurableQueue: the queue closed before this offer was written (${CLOSE_FLUSH_MILLIS} ms)`)
      for (const w of [...inFlight, ...rest]) Deferred.unsafeDone(w.done, Exit.fail(error))
      inFlight = []
    }))
  return once.pipe(
    Effect.forever,
    Effect.interruptible,
    Effect.onInterrupt(() => flushWithin(flush, letGo)),
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
    const notify = yield* check.require(
      "notify",
      options.notify,
      options.notify === undefined || typeof options.notify === "boolean",
      "a boolean"
    )
    const tableName = options.tableName ?? "effect_workers_queue"
    yield* check.require(
      "tableName",
      options.tableName,
      typeof tableName === "string" && isTableName(tableName),
      `an SQL identifier, optionally schema-qualified (letters, digits, _), of at most ${MAX_TABLE_NAME} characters`
    )
    const store = yield* makeStore(settings, { tableName, notify: notify ?? true }).pipe(
      Effect.mapError((cause) =>
        new DurableQueueError({ reason: "StoreFailed", backend: "sql", queue: settings.name, cause })
      )
    )
    return yield* core.make(store, settings, options.schema, yield* sqlPort(settings.name, tableName, notify ?? true))
  })
