/**
 * Issue 16, branch pglayout: how long the layout candidates of bench/_sql-db-cost.ts (`L a` HOT lease, `L b` ids
 * table, `L c` done table) take to migrate an existing table of `--jobs` jobs (1,000,000 by default) made by
 * today's `prepareTable`: `--done` of them done (0.9 by default), the rest waiting. Each step is timed (wall; the
 * machine's load is printed) in the order a migration would run them, on one table, which is then dropped.
 *
 *   npx tsx bench/_sql-layout-migrate.ts [--jobs 1000000] [--done 0.9]
 */
import { PgClient } from "@effect/sql-pg"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import { randomUUID } from "node:crypto"
import { loadavg } from "node:os"
import pg from "pg"
import { prepareTable } from "../src/internal/durableQueue/sqlSchema.js"
import { arg } from "./_shared.js"

const JOBS = arg("jobs", 1_000_000)
const DONE = arg("done", 0.9)
const NOW = "(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT"
const db = new pg.Client({ host: "127.0.0.1", port: 5432, database: "test", user: "postgres" })

const step = async (what: string, text: string) => {
  const start = performance.now()
  const res = await db.query(text)
  const ms = performance.now() - start
  const rows = Array.isArray(res) ? "" : res.rowCount === null ? "" : ` (${res.rowCount} rows)`
  console.log(`${(ms / 1000).toFixed(2).padStart(7)} s  ${what}${rows}  [load ${loadavg()[0]!.toFixed(1)}]`)
}

const main = async () => {
  await db.connect()
  const t = `layoutmig_${randomUUID().replace(/-/g, "").slice(0, 10)}`
  await Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (sql) => prepareTable(sql.withoutTransforms(), "pg", t)).pipe(
      Effect.provide(PgClient.layer({ host: "127.0.0.1", port: 5432, database: "test", username: "postgres" }))
    )
  )
  try {
    console.log(`${JOBS} jobs, ${DONE * 100} % done, table ${t}`)
    await step(
      "fill (not part of the migration)",
      `INSERT INTO ${t} (queue_name, id, id_key, element, state, attempts, visible_at, timed, priority, created_at,
        updated_at)
       SELECT 'jobs', u, u, '{"n":' || g || '}', CASE WHEN g <= ${Math.round(JOBS * DONE)} THEN 1 ELSE 0 END,
         CASE WHEN g <= ${Math.round(JOBS * DONE)} THEN 1 ELSE 0 END, ${NOW}, 0, 0, ${NOW}, ${NOW}
       FROM (SELECT g, gen_random_uuid()::text AS u FROM generate_series(1, ${JOBS}) AS g) AS s`
    )
    await step("VACUUM ANALYZE (not part of the migration)", `VACUUM ANALYZE ${t}`)
    const size = await db.query(`SELECT pg_size_pretty(pg_total_relation_size('${t}')) AS s`)
    console.log(`          table with its indexes: ${size.rows[0].s}`)
    // (a) HOT lease: a column with a constant default (no rewrite since PostgreSQL 11) and room on new pages.
    await step(
      "(a) ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0",
      `ALTER TABLE ${t} ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0`
    )
    await step("(a) SET (fillfactor = 50)", `ALTER TABLE ${t} SET (fillfactor = 50)`)
    // A new lane for rows of the new layout (`timed = 2`), which a previous version's lease predicate (`timed = 0`)
    // never reads: its index is built by reading the whole table (SHARE lock: offers wait; CONCURRENTLY would not).
    await step(
      "(a) CREATE INDEX pending2 … WHERE state = 0 AND timed = 2",
      `CREATE INDEX ${t}_pending2 ON ${t} (queue_name, priority DESC, sequence) WHERE state = 0 AND timed = 2`
    )
    // (b) ids table: which ids were custom is not recorded, so every id is copied.
    await step(
      "(b) CREATE TABLE _ids",
      `CREATE TABLE ${t}_ids (queue_name TEXT COLLATE "C" NOT NULL, id_key TEXT COLLATE "C" NOT NULL,
        sequence BIGINT NOT NULL, PRIMARY KEY (queue_name, id_key))`
    )
    await step("(b) copy every id into _ids", `INSERT INTO ${t}_ids SELECT queue_name, id_key, sequence FROM ${t}`)
    await step(
      "(b) CREATE INDEX lookup (queue_name, id_key), not unique",
      `CREATE INDEX ${t}_key ON ${t} (queue_name, id_key)`
    )
    await step(
      "(b) DROP the unique (queue_name, id_key)",
      `ALTER TABLE ${t} DROP CONSTRAINT ${t}_queue_name_id_key_key`
    )
    // (c) done table: done rows moved out of the jobs table.
    await step(
      "(c) CREATE TABLE _done + index",
      `CREATE TABLE ${t}_done (queue_name TEXT COLLATE "C" NOT NULL, id_key TEXT COLLATE "C" NOT NULL,
        id TEXT NOT NULL, sequence BIGINT NOT NULL, attempts INTEGER NOT NULL, progress TEXT NULL, last_failure TEXT NULL,
        result TEXT NULL, result_expires_at BIGINT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
        PRIMARY KEY (queue_name, id_key));
       CREATE INDEX ${t}_done_settled ON ${t}_done (queue_name, updated_at, sequence)`
    )
    await step(
      "(c) move the done rows (DELETE … RETURNING into INSERT)",
      `WITH d AS (DELETE FROM ${t} WHERE state = 1
         RETURNING queue_name, id_key, id, sequence, attempts, progress, last_failure, result, result_expires_at,
           created_at, updated_at)
       INSERT INTO ${t}_done SELECT * FROM d`
    )
    await step("(c) VACUUM the jobs table after the move", `VACUUM ${t}`)
  } finally {
    await db.query(`DROP TABLE IF EXISTS ${t}, ${t}_paused, ${t}_ids, ${t}_done`)
    await db.end()
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
