/**
 * SQLite's own time per job (issue 16, the DATABASE side): the store's statements (its SQL text, through
 * better-sqlite3 directly, prepared once, so none of the core's or @effect/sql's CPU) against the FLOOR's, on a
 * WAL-mode file each, rounds interleaved, medians printed. Fill `--jobs` jobs in INSERTs of 1,000 (the store's
 * json_each shape, one transaction each), then lease 256 (the store's two statements: promote and take) and
 * acknowledge 256 until empty. Variants: the table as `prepareTable` makes it, the same without an index, the floor.
 *
 *   npx tsx bench/_sqlite-db-cost.ts [--jobs 20000] [--rounds 5]
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import { join } from "node:path"
import { nowSql, prepareTable } from "../src/internal/durableQueue/sqlSchema.js"
import { arg, median } from "./_shared.js"

const JOBS = arg("jobs", 20_000)
const ROUNDS = arg("rounds", 5)
const LEASE = 256
const NOW = nowSql("sqlite")

interface Stmt {
  run: (...args: Array<unknown>) => unknown
  all: (...args: Array<unknown>) => Array<Record<string, unknown>>
}
interface Db {
  prepare: (sql: string) => Stmt
  pragma: (s: string) => unknown
  exec: (s: string) => unknown
  close: () => void
  transaction: <A extends Array<unknown>>(f: (...a: A) => unknown) => (...a: A) => unknown
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new(file: string) => Db

interface Variant {
  readonly name: string
  readonly create: (file: string) => Promise<void>
  readonly statements: (db: Db) => {
    fill: (ids: ReadonlyArray<string>) => unknown
    lease: () => Array<number>
    ack: (seqs: ReadonlyArray<number>) => unknown
  }
}

const prepared = (file: string, after: string) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const sql = (yield* SqlClient.SqlClient).withoutTransforms()
      yield* prepareTable(sql, "sqlite", "jobs")
      if (after !== "") yield* sql.unsafe(after)
    }).pipe(Effect.scoped, Effect.provide(SqliteClient.layer({ filename: file })))
  )

const WORKER = randomUUID()
const ours = (name: string, after = "", each = "json_each"): Variant => ({
  name,
  create: (file) => prepared(file, after),
  statements: (db) => {
    const insert = db.prepare(`INSERT INTO jobs
      (queue_name, id, id_key, element, visible_at, timed, priority, options, created_at, updated_at)
      SELECT 'jobs', json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
        ${NOW} + json_extract(value, '$[3]'), CASE WHEN json_extract(value, '$[3]') > 0 THEN 1 ELSE 0 END,
        json_extract(value, '$[4]'), json_extract(value, '$[5]'), ${NOW}, ${NOW}
      FROM ${each}(?) WHERE true ORDER BY key`)
    const promote = db.prepare(`UPDATE jobs SET timed = 0,
        state = CASE WHEN cancel_requested = 1 THEN 3 ELSE 0 END,
        acquired_by = CASE WHEN cancel_requested = 1 THEN NULL ELSE acquired_by END,
        updated_at = CASE WHEN cancel_requested = 1 THEN ${NOW} ELSE updated_at END
      WHERE sequence IN (SELECT sequence FROM jobs WHERE queue_name = 'jobs' AND state = 0 AND timed = 1
        AND visible_at <= ${NOW} ORDER BY visible_at LIMIT 1024)`)
    const take = db.prepare(`UPDATE jobs
      SET timed = 1, visible_at = ${NOW} + 30000, acquired_by = ?, attempts = attempts + 1
      WHERE sequence IN (SELECT sequence FROM jobs
        WHERE queue_name = 'jobs' AND state = 0 AND timed = 0 AND visible_at <= ${NOW}
          AND NOT EXISTS (SELECT 1 FROM jobs_paused WHERE queue_name = 'jobs')
        ORDER BY priority DESC, sequence LIMIT ${LEASE})
      RETURNING sequence, id, element, attempts, priority, options`)
    const ack = db.prepare(`UPDATE jobs SET state = 1, acquired_by = NULL, updated_at = ${NOW}
      WHERE sequence IN (SELECT value FROM json_each(?)) AND acquired_by = ? AND state = 0`)
    return {
      fill: (ids) => insert.run(JSON.stringify(ids.map((id, n) => [id, id, JSON.stringify({ n }), 0, 0, null]))),
      lease: () => {
        promote.run()
        return take.all(WORKER).map((r) => Number(r.sequence))
      },
      ack: (seqs) => ack.run(JSON.stringify(seqs), WORKER)
    }
  }
})

const variants: Array<Variant> = [
  ours("ours"),
  ours("ours, rows by jsonb_each", "", "jsonb_each"),
  ours("ours - settled index", "DROP INDEX jobs_settled"),
  ours("ours - timed index", "DROP INDEX jobs_timed"),
  {
    name: "FLOOR",
    create: async () => {},
    statements: (db) => {
      db.exec(
        "CREATE TABLE floor (id INTEGER PRIMARY KEY, payload TEXT NOT NULL, locked_until INTEGER NOT NULL DEFAULT 0)"
      )
      const insert = db.prepare("INSERT INTO floor (payload) VALUES (?)")
      const fill = db.transaction((ids: ReadonlyArray<string>) => {
        for (let n = 0; n < ids.length; n++) insert.run(JSON.stringify({ n }))
      })
      const lease = db.prepare(`UPDATE floor SET locked_until = ? WHERE id IN (
        SELECT id FROM floor WHERE locked_until < ? ORDER BY id LIMIT ${LEASE}) RETURNING id, payload`)
      const ack = db.prepare("DELETE FROM floor WHERE id IN (SELECT value FROM json_each(?))")
      return {
        fill: (ids) => fill(ids),
        lease: () => {
          const now = Date.now()
          return lease.all(now + 30_000, now).map((r) => Number(r.id))
        },
        ack: (seqs) => ack.run(JSON.stringify(seqs))
      }
    }
  }
]

const runVariant = async (v: Variant) => {
  const dir = mkdtempSync(join(os.tmpdir(), "sqlite-db-cost-"))
  const file = join(dir, "q.db")
  try {
    await v.create(file)
    const db = new Database(file)
    db.pragma("journal_mode = WAL")
    const s = v.statements(db)
    const t0 = performance.now()
    for (let i = 0; i < JOBS; i += 1_000) {
      s.fill(Array.from({ length: Math.min(1_000, JOBS - i) }, () => randomUUID()))
    }
    const t1 = performance.now()
    let leaseMs = 0
    let ackMs = 0
    let done = 0
    while (done < JOBS) {
      const a = performance.now()
      const seqs = s.lease()
      const b = performance.now()
      if (seqs.length === 0) throw new Error(`${v.name}: empty lease at ${done}`)
      s.ack(seqs)
      ackMs += performance.now() - b
      leaseMs += b - a
      done += seqs.length
    }
    db.close()
    return { insert: ((t1 - t0) * 1000) / JOBS, lease: (leaseMs * 1000) / JOBS, ack: (ackMs * 1000) / JOBS }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const main = async () => {
  const results = new Map<string, Array<{ insert: number; lease: number; ack: number }>>()
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(i + round) % variants.length]!
      results.set(v.name, [...(results.get(v.name) ?? []), await runVariant(v)])
    }
  }
  console.log(`${JOBS} jobs, SQLite statements alone (better-sqlite3), medians of ${ROUNDS}, µs per job:`)
  for (const v of variants) {
    const rs = results.get(v.name)!
    const m = (k: "insert" | "lease" | "ack") => median(rs.map((r) => r[k])).toFixed(1)
    console.log(`${v.name.padEnd(40)} insert ${m("insert")}  lease ${m("lease")}  ack ${m("ack")}`)
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
