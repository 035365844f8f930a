/**
 * The table of the SQL store of `DurableQueue` (PostgreSQL and SQLite): created if missing, and brought up to date
 * when a table made by an earlier version is found, on every start. A new table is created in the first form and
 * migrated like an old one, so the migration runs (and is tested) on every table.
 *
 * Columns (one row per job, unique on `(queue_name, id_key)`, both in byte order on PostgreSQL: `byteOrderKeys`):
 * - `state`: 0 pending (waiting, delayed or running), 1 done, 2 dead, 3 cancelled;
 * - `visible_at` (ms, the database's clock): when a pending job may be leased: its offer time, its run time when
 *   delayed, the end of its lease while leased;
 * - `timed` (added by #11): 1 when `visible_at` is a time to wait for (a delayed job, or a lease), 0 when the job is
 *   ready. It splits pending rows over two partial indexes, so a lease reads the ready rows in priority order
 *   without stepping over delayed ones (with one index over all pending rows in priority order, a lease of 10
 *   examined 5,030 rows when 5,000 delayed rows came first; 20 with two: test/sql/DurableQueue.store.test.ts), and
 *   the rows whose time came are found by a range on `visible_at` and made ready (`timed` = 0);
 * - `priority`, `options` (the core's per-job settings, JSON), `cancel_requested` (1: cancellation of a running job
 *   asked), `progress` (JSON), `result` and `result_expires_at` (ms) on a done row (added by #11).
 *
 * `<table>_paused` holds one row per paused queue.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"

/** @internal */
export type Dialect = "pg" | "sqlite"

/** Columns added since the first version: name, then its type on PostgreSQL and SQLite. */
const ADDED: ReadonlyArray<readonly [string, string, string]> = [
  ["priority", "INTEGER NOT NULL DEFAULT 0", "INTEGER NOT NULL DEFAULT 0"],
  ["timed", "SMALLINT NOT NULL DEFAULT 0", "INTEGER NOT NULL DEFAULT 0"],
  ["options", "TEXT NULL", "TEXT NULL"],
  ["cancel_requested", "SMALLINT NOT NULL DEFAULT 0", "INTEGER NOT NULL DEFAULT 0"],
  ["progress", "TEXT NULL", "TEXT NULL"],
  ["result", "TEXT NULL", "TEXT NULL"],
  ["result_expires_at", "BIGINT NULL", "INTEGER NULL"]
]

/** The name of the table of paused queues. @internal */
export const pausedTableOf = (tableName: string): string => `${tableName}_paused`

/** The database's clock in milliseconds since the epoch, as SQL text. @internal */
export const nowSql = (dialect: Dialect): string =>
  dialect === "pg"
    ? "(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT"
    : "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"

/** The table as the first version created it (no index but the unique one). */
const createFirstForm = (sql: SqlClient.SqlClient, dialect: Dialect, tableName: string) => {
  // One statement for both dialects; only the column types differ.
  const [serial, small, big] = dialect === "pg"
    ? ["BIGSERIAL PRIMARY KEY", "SMALLINT", "BIGINT"]
    : ["INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER", "INTEGER"]
  return sql`CREATE TABLE IF NOT EXISTS ${sql(tableName)} (
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
}

/** The column names the table has now. */
const columnsOf = (
  sql: SqlClient.SqlClient,
  dialect: Dialect,
  tableName: string
): Effect.Effect<Set<string>, SqlError> => {
  const [schema, table] = tableName.includes(".") ? tableName.split(".") as [string, string] : ["main", tableName]
  const rows = dialect === "pg"
    ? sql<{ name: string }>`SELECT attname AS name FROM pg_attribute
        WHERE attrelid = to_regclass(${tableName}) AND attnum > 0 AND NOT attisdropped`
    : sql<{ name: string }>`SELECT name FROM pragma_table_info(${table}, ${schema})`
  return Effect.map(rows, (found) => new Set(found.map((row) => row.name)))
}

/**
 * Adds the missing columns. On SQLite two processes may add a column at once (PostgreSQL runs this under an
 * advisory lock): the loser's "duplicate column" error is ignored once the column is there.
 */
const addColumns = (sql: SqlClient.SqlClient, dialect: Dialect, tableName: string) =>
  Effect.gen(function*() {
    const present = yield* columnsOf(sql, dialect, tableName)
    const missing = ADDED.filter(([name]) => !present.has(name))
    for (const [name, pgType, sqliteType] of missing) {
      const added = dialect === "pg"
        ? sql`ALTER TABLE ${sql(tableName)} ADD COLUMN IF NOT EXISTS ${sql(name)} ${sql.literal(pgType)}`
        : sql`ALTER TABLE ${sql(tableName)} ADD COLUMN ${sql(name)} ${sql.literal(sqliteType)}`
      yield* added.pipe(
        Effect.catchAll((error) =>
          Effect.flatMap(columnsOf(sql, dialect, tableName), (now) => now.has(name) ? Effect.void : Effect.fail(error))
        )
      )
    }
    // Rows leased by an earlier version wait for their lease like any timed row (only once: when `timed` is new).
    if (missing.some(([name]) => name === "timed")) {
      yield* sql`UPDATE ${sql(tableName)} SET timed = 1
        WHERE state = 0 AND acquired_by IS NOT NULL AND visible_at > ${sql.literal(nowSql(dialect))}`
    }
  })

/**
 * Above this heap size (bytes) a table made earlier keeps its keys' collation (see `byteOrderKeys`): the ALTER
 * rebuilds every index under an exclusive lock, 12.4 s for a table of 1,000,000 jobs (291 MB with its indexes,
 * load 10 on this machine), so a start would stall every worker of the table for that long; 32 MB is about
 * 110,000 jobs, under 2 s.
 *
 * @internal
 */
export const BYTE_ORDER_KEYS_MAX_BYTES = 32 * 1024 * 1024

/**
 * PostgreSQL: the key columns `queue_name` and `id_key` in byte order (`COLLATE "C"`), not the database's
 * collation. Every write of a job (offer, lease, acknowledgement: each a new row version, none HOT, as each changes
 * a column of a partial index's predicate) inserts an entry into the unique `(queue_name, id_key)` index, which is
 * most of the database's cost per job (57 -> 43 µs of server CPU per job without it: bench/_sql-db-cost.ts
 * `--cpu`, 20,000 jobs, median of 5, load 5). In a language's collation each comparison of two ids is a
 * collation call, in byte order a `memcmp`: with the keys in ICU `en-US`, 69 µs per job against 62 in byte order
 * (same bench, 5 rounds); in this server's `C.UTF-8` (glibc compares it by code point) no difference was measured.
 * Equality is unchanged (a deterministic collation says equal only of equal bytes), so uniqueness and every lookup
 * mean what they meant, and nothing is sorted by these columns.
 *
 * A table is changed in place by `ALTER COLUMN … TYPE TEXT COLLATE "C"`: its rows are not rewritten (binary-coercible
 * type; its relfilenode stays) but its indexes are rebuilt under an exclusive lock. A new table is empty, so that is
 * instant; a table made earlier is changed when its heap is at most `maxBytes` (BYTE_ORDER_KEYS_MAX_BYTES), and a
 * larger one is left as it is: correct, without the gain; so is one PostgreSQL refuses to alter. SQLite compares
 * text byte for byte already (BINARY).
 */
const byteOrderKeys = (sql: SqlClient.SqlClient, tableName: string, maxBytes: number) =>
  Effect.gen(function*() {
    const columns = yield* sql<{ name: string; bytes: number | string }>`SELECT attname AS name,
        pg_relation_size(attrelid) AS bytes
      FROM pg_attribute
      WHERE attrelid = to_regclass(${tableName}) AND attname IN ('queue_name', 'id_key') AND NOT attisdropped
        AND attcollation <> (SELECT oid FROM pg_collation
          WHERE collname = 'C' AND collnamespace = 'pg_catalog'::regnamespace)`
    if (columns.length === 0 || Number(columns[0]!.bytes) > maxBytes) return
    const alter = columns.map(({ name }) => `ALTER COLUMN ${name} TYPE TEXT COLLATE "C"`).join(", ")
    // A speed-up, not a need: refused (a view or rule of the user's on the table makes PostgreSQL refuse any type
    // change of its columns), the table stays as it is. In a savepoint (`withTransaction` nested in the caller's
    // transaction), so the rest of the preparation still runs.
    yield* sql`ALTER TABLE ${sql(tableName)} ${sql.literal(alter)}`.pipe(sql.withTransaction, Effect.ignore)
  })

/**
 * The indexes: ready jobs in lease order (`pending`), timed jobs by time (`timed`), dead letters by time (`dead`),
 * results by expiry (`results`), done, dead and cancelled jobs by state and time (`settled`, issue #15: the
 * listing of `jobs` and the count of done jobs read a range of it, not the table). The first version's `ready` index (queue_name, visible_at, sequence) over every
 * pending row is dropped: the two partial indexes replace it, and each index costs every write.
 */
const createIndexes = (sql: SqlClient.SqlClient, dialect: Dialect, tableName: string) => {
  // An index lives in its table's schema. PostgreSQL names the schema on the table (`CREATE INDEX i ON s.t`),
  // SQLite on the index (`CREATE INDEX s.i ON t`: its `ON s.t` is a syntax error); both on the index when dropping.
  const dot = tableName.indexOf(".")
  const schema = dot < 0 ? undefined : tableName.slice(0, dot)
  const base = tableName.replace(/\./g, "_")
  const qualified = (suffix: string) => sql(schema === undefined ? `${base}_${suffix}` : `${schema}.${base}_${suffix}`)
  const [name, table] = dialect === "pg"
    ? [(suffix: string) => sql(`${base}_${suffix}`), sql(tableName)]
    : [qualified, sql(tableName.slice(dot + 1))]
  return Effect.all([
    sql`CREATE INDEX IF NOT EXISTS ${
      name("pending")
    } ON ${table} (queue_name, priority DESC, sequence) WHERE state = 0 AND timed = 0`,
    sql`CREATE INDEX IF NOT EXISTS ${name("timed")} ON ${table} (queue_name, visible_at) WHERE state = 0 AND timed = 1`,
    sql`CREATE INDEX IF NOT EXISTS ${name("dead")} ON ${table} (queue_name, updated_at, sequence) WHERE state = 2`,
    sql`CREATE INDEX IF NOT EXISTS ${
      name("results")
    } ON ${table} (queue_name, result_expires_at) WHERE result_expires_at IS NOT NULL`,
    sql`CREATE INDEX IF NOT EXISTS ${
      name("settled")
    } ON ${table} (queue_name, state, updated_at, sequence) WHERE state > 0`,
    sql`DROP INDEX IF EXISTS ${qualified("ready")}`
  ], { discard: true })
}

/**
 * Creates or migrates the table, its indexes and the table of paused queues. On PostgreSQL several processes
 * starting at once would race on CREATE TABLE IF NOT EXISTS (a unique violation in pg_type) and on the migration:
 * one at a time, under a transaction-scoped advisory lock.
 *
 * @internal
 */
export const prepareTable = (
  sql: SqlClient.SqlClient,
  dialect: Dialect,
  tableName: string,
  byteOrderKeysMaxBytes = BYTE_ORDER_KEYS_MAX_BYTES
): Effect.Effect<void, SqlError> => {
  const all = Effect.gen(function*() {
    yield* createFirstForm(sql, dialect, tableName)
    yield* addColumns(sql, dialect, tableName)
    if (dialect === "pg") yield* byteOrderKeys(sql, tableName, byteOrderKeysMaxBytes)
    yield* createIndexes(sql, dialect, tableName)
    yield* sql`CREATE TABLE IF NOT EXISTS ${sql(pausedTableOf(tableName))} (queue_name TEXT PRIMARY KEY)`
  })
  return dialect === "pg"
    ? Effect.zipRight(sql`SELECT pg_advisory_xact_lock(hashtext(${`effect-workers:${tableName}`}))`, all).pipe(
      sql.withTransaction
    )
    : all
}
