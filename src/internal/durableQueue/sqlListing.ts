/**
 * `Store.jobs` on SQL (PostgreSQL and SQLite): one statement per call, each an index range bounded by
 * offset + limit (EXPLAIN in test/sql/DurableQueue.store.test.ts), never a scan of the queue's rows:
 * - waiting: ready rows from the `pending` index in lease order, then rows whose time came from the `timed` index;
 * - delayed and running: the `timed` index by time (delayed: not held; running: held). Running rows are read up to
 *   now + this queue's lease (`leaseMillis`): a lease ends no later (refreshes move it by a lease at most), and
 *   without the bound a page of running jobs asked past the last one would step over every delayed row (1,005 rows
 *   examined for 10 running with 1,000 delayed, EXPLAIN ANALYZE). A process of the same queue configured with a
 *   longer `leaseDuration` has its running jobs listed once their deadline is within this one's lease.
 * - done, dead, cancelled: the `settled` index (`(queue_name, state, updated_at, sequence) WHERE state > 0`),
 *   newest first. SQLite uses a partial index only when the query repeats its predicate, hence `state > 0 AND`.
 * Ages come from the row's times: `visible_at` (when a ready row became ready; when a due row came due),
 * `updated_at` (offer, retry, settlement). A lease's start is not written, so running rows have none.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import { type Dialect, nowSql } from "./sqlSchema.js"
import type { StoredJob, StoredState } from "./store.js"

interface JobRow {
  readonly id: string
  readonly element: string | null
  readonly attempts: number | string
  readonly progress: string | null
  readonly last_failure: string | null
  readonly age: number | string | null
}

const SETTLED: Partial<Record<StoredState, string>> = { done: "1", dead: "2", cancelled: "3" }

/** @internal */
export const listing = (
  sql: SqlClient.SqlClient,
  dialect: Dialect,
  tableName: string,
  name: string,
  leaseMillis: number
) => {
  const table = sql(tableName)
  const now = sql.literal(nowSql(dialect))
  const statement = (state: StoredState, limit: number, offset: number) => {
    const page = sql.literal(`LIMIT ${limit} OFFSET ${offset}`)
    const settled = SETTLED[state]
    if (settled !== undefined) {
      // Done and cancelled jobs are listed without payload, as on the other stores (Redis drops it then).
      const element = sql.literal(state === "dead" ? "element" : "NULL")
      return sql<JobRow>`SELECT id, ${element} AS element, attempts, progress, last_failure, ${now} - updated_at AS age
        FROM ${table} WHERE queue_name = ${name} AND state > 0 AND state = ${sql.literal(settled)}
        ORDER BY updated_at DESC, sequence DESC ${page}`
    }
    if (state === "waiting") {
      // Each part bounded by offset + limit before the two are merged in order: ready rows first (lease order),
      // then the rows that came due (the next lease makes them ready).
      const most = sql.literal(`LIMIT ${offset + limit}`)
      const cols = sql`id, element, attempts, progress, last_failure, ${now} - visible_at AS age`
      return sql<JobRow>`SELECT id, element, attempts, progress, last_failure, age FROM (
          SELECT * FROM (SELECT 0 AS part, priority AS k1, sequence AS k2, ${cols} FROM ${table}
            WHERE queue_name = ${name} AND state = 0 AND timed = 0 ORDER BY priority DESC, sequence ${most}) AS ready
          UNION ALL
          SELECT * FROM (SELECT 1 AS part, 0 AS k1, visible_at AS k2, ${cols} FROM ${table}
            WHERE queue_name = ${name} AND state = 0 AND timed = 1 AND visible_at <= ${now} ORDER BY visible_at ${most}) AS due
        ) AS w ORDER BY part, k1 DESC, k2 ${page}`
    }
    const running = state === "running"
    const held = sql.literal(running ? "IS NOT NULL" : "IS NULL")
    const age = sql.literal(running ? "NULL" : `${nowSql(dialect)} - updated_at`)
    const until = running ? sql`AND visible_at <= ${now} + ${sql.literal(String(leaseMillis))}` : sql.literal("")
    return sql<JobRow>`SELECT id, element, attempts, progress, last_failure, ${age} AS age FROM ${table}
      WHERE queue_name = ${name} AND state = 0 AND timed = 1 AND visible_at > ${now} ${until} AND acquired_by ${held}
      ORDER BY visible_at ${page}`
  }
  return {
    /** Exported for the tests' EXPLAIN. */
    statement,
    jobs: (state: StoredState, limit: number, offset: number): Effect.Effect<ReadonlyArray<StoredJob>, SqlError> =>
      Effect.map(statement(state, limit, offset), (rows) =>
        rows.map((row): StoredJob => ({
          id: row.id,
          payload: row.element ?? undefined,
          attempts: Number(row.attempts),
          progress: row.progress ?? undefined,
          lastError: row.last_failure ?? undefined,
          ageMillis: row.age === null ? undefined : Math.max(0, Number(row.age))
        })))
  }
}
