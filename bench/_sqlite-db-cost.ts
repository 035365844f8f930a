/**
 * SQLite's own time per job (issue 16, the DATABASE side): the store's statements (its SQL text, through
 * better-sqlite3 directly, prepared once, so none of the core's or @effect/sql's CPU) against the FLOOR's, on a
 * WAL-mode file each, rounds interleaved, medians printed. Fill `--jobs` jobs in INSERTs of 1,000 (the store's
 * json_each shape, one transaction each), then lease 256 (the store's two statements: promote and take) and
 * acknowledge 256 until empty. Variants: the table as `prepareTable` makes it ("ours": the session-7 store's
 * shapes), the same without an index, other statement shapes (the insert's row source, the take's form and what it
 * returns, the ack's id list, time-ordered ids, a shorter `acquired_by`), the floor. `--only` picks variants by
 * name (`;`-separated, a trailing `*` a prefix; the floor always runs).
 *
 * Both files run at the same durability: WAL, `synchronous` unset, which better-sqlite3's SQLite (built with
 * SQLITE_DEFAULT_WAL_SYNCHRONOUS=1) holds at NORMAL once a WAL file is in use, as the store's client and the
 * floor of bench/distributed-sql.ts do (no fsync per commit; `synchronous = FULL` costs 1.2-2.5 ms a commit here).
 *
 *   npx tsx bench/_sqlite-db-cost.ts [--jobs 20000] [--rounds 5] [--cpu] [--only "ours;ours, ids v7;ours, take*"]
 *
 * `--cpu`: this process's CPU time per job instead of wall time (steadier on a shared machine).
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
const CPU = process.argv.includes("--cpu")
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
  readonly id?: () => string
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
      if (after === "-unique") {
        // The table again without its UNIQUE (queue_name, id_key), then the indexes again.
        const [{ text }] = yield* sql<{ text: string }>`SELECT sql AS text FROM sqlite_master WHERE name = 'jobs'`
        yield* sql.unsafe(text.replace(/,\s*UNIQUE \(queue_name, id_key\)/, "").replace("jobs", "jobs2"))
        yield* sql.unsafe("DROP TABLE jobs")
        yield* sql.unsafe("ALTER TABLE jobs2 RENAME TO jobs")
        yield* prepareTable(sql, "sqlite", "jobs")
      } else if (after !== "") {
        for (const statement of after.split(";")) yield* sql.unsafe(statement)
      }
    }).pipe(Effect.scoped, Effect.provide(SqliteClient.layer({ filename: file })))
  )

const WORKER = randomUUID()

/** The INSERT's row source: the store's json_extract per field, `->>` per field, or bound VALUES rows. */
type InsertShape = "json_extract" | "arrow" | "arrow, no ORDER BY" | "jsonb_each" | "jsonb_each, id once" | "values 100"
/** The lease: the store's `IN (SELECT … LIMIT)` or an UPDATE … ORDER BY … LIMIT; what it returns. */
interface Shape {
  readonly insert?: InsertShape
  readonly take?: "in" | "in, no visible_at" | "update limit"
  readonly returning?: string
  readonly raw?: boolean
  readonly ack?: "json_each" | "in list"
  readonly ids?: "v4" | "v7"
  /** The lease holder's id written in `acquired_by` (a random UUID, 36 characters, by default). */
  readonly worker?: string
}
const COLUMNS = "(queue_name, id, id_key, element, visible_at, timed, priority, options, created_at, updated_at)"
const insertSql = (shape: InsertShape) => {
  if (shape === "values 100") {
    const row = `('jobs', ?, ?, ?, ${NOW}, 0, 0, NULL, ${NOW}, ${NOW})`
    return `INSERT INTO jobs ${COLUMNS} VALUES ${Array.from({ length: 100 }, () => row).join(", ")}`
  }
  const f = shape === "json_extract" || shape.startsWith("jsonb_each")
    ? (i: number) => `json_extract(value, '$[${i}]')`
    : (i: number) => `value ->> ${i}`
  const each = shape.startsWith("jsonb_each") ? "jsonb_each" : "json_each"
  // "id once": the key is null in the row when it is the id (ids of 128 characters or fewer), taken from the id.
  const key = shape === "jsonb_each, id once" ? `COALESCE(${f(1)}, ${f(0)})` : f(1)
  return `INSERT INTO jobs ${COLUMNS}
      SELECT 'jobs', ${f(0)}, ${key}, ${f(2)}, ${NOW} + ${f(3)}, CASE WHEN ${f(3)} > 0 THEN 1 ELSE 0 END,
        ${f(4)}, ${f(5)}, ${NOW}, ${NOW}
      FROM ${each}(?) WHERE true${shape === "arrow, no ORDER BY" ? "" : " ORDER BY key"}`
}
/** A time-ordered id (UUID v7 layout: 48 bits of ms, then random), as ids the core might generate. */
let lastMs = 0
let seq = 0
const uuid7 = () => {
  const ms = Date.now()
  seq = ms === lastMs ? seq + 1 : 0
  lastMs = ms
  const hex = ms.toString(16).padStart(12, "0") + seq.toString(16).padStart(4, "0")
  const r = randomUUID().replace(/-/g, "")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7${hex.slice(13, 16)}-${r.slice(16, 20)}-${r.slice(20)}`
}
const ours = (name: string, after = "", shape: Shape = {}): Variant => ({
  name,
  ...(shape.ids === "v7" ? { id: uuid7 } : {}),
  create: (file) => prepared(file, after),
  statements: (db) => {
    const insert = db.prepare(insertSql(shape.insert ?? "json_extract"))
    const worker = shape.worker ?? WORKER
    const promote = db.prepare(`UPDATE jobs SET timed = 0,
        state = CASE WHEN cancel_requested = 1 THEN 3 ELSE 0 END,
        acquired_by = CASE WHEN cancel_requested = 1 THEN NULL ELSE acquired_by END,
        updated_at = CASE WHEN cancel_requested = 1 THEN ${NOW} ELSE updated_at END
      WHERE sequence IN (SELECT sequence FROM jobs WHERE queue_name = 'jobs' AND state = 0 AND timed = 1
        AND visible_at <= ${NOW} ORDER BY visible_at LIMIT 1024)`)
    const returning = shape.returning ?? "sequence, id, element, attempts, priority, options"
    const visible = shape.take === "in, no visible_at" ? "" : `AND visible_at <= ${NOW}`
    const take = db.prepare(
      shape.take === "update limit"
        ? `UPDATE jobs
      SET timed = 1, visible_at = ${NOW} + 30000, acquired_by = ?, attempts = attempts + 1
      WHERE queue_name = 'jobs' AND state = 0 AND timed = 0 AND visible_at <= ${NOW}
        AND NOT EXISTS (SELECT 1 FROM jobs_paused WHERE queue_name = 'jobs')
      RETURNING ${returning} ORDER BY priority DESC, sequence LIMIT ${LEASE}`
        : `UPDATE jobs
      SET timed = 1, visible_at = ${NOW} + 30000, acquired_by = ?, attempts = attempts + 1
      WHERE sequence IN (SELECT sequence FROM jobs
        WHERE queue_name = 'jobs' AND state = 0 AND timed = 0 ${visible}
          AND NOT EXISTS (SELECT 1 FROM jobs_paused WHERE queue_name = 'jobs')
        ORDER BY priority DESC, sequence LIMIT ${LEASE})
      RETURNING ${returning}`
    )
    if (shape.raw === true) (take as unknown as { raw: (on: boolean) => void }).raw(true)
    const ackJson = db.prepare(`UPDATE jobs SET state = 1, acquired_by = NULL, updated_at = ${NOW}
      WHERE sequence IN (SELECT value FROM json_each(?)) AND acquired_by = ? AND state = 0`)
    const ackLists = new Map<number, Stmt>()
    const ackList = (n: number) => {
      let s = ackLists.get(n)
      if (s === undefined) {
        s = db.prepare(`UPDATE jobs SET state = 1, acquired_by = NULL, updated_at = ${NOW}
          WHERE sequence IN (${Array.from({ length: n }, () => "?").join(", ")}) AND acquired_by = ? AND state = 0`)
        ackLists.set(n, s)
      }
      return s
    }
    const fillValues = db.transaction((ids: ReadonlyArray<string>) => {
      for (let i = 0; i < ids.length; i += 100) {
        insert.run(ids.slice(i, i + 100).flatMap((id, n) => [id, id, JSON.stringify({ n: i + n })]))
      }
    })
    return {
      fill: (ids) =>
        shape.insert === "values 100"
          ? fillValues(ids)
          : insert.run(
            JSON.stringify(
              ids.map((
                id,
                n
              ) => [id, shape.insert === "jsonb_each, id once" ? null : id, JSON.stringify({ n }), 0, 0, null])
            )
          ),
      lease: () => {
        promote.run()
        const rows = take.all(worker)
        // The store's per-row work: each row made a job (the lease order sort is left out).
        return shape.raw === true
          ? (rows as unknown as Array<Array<unknown>>).map((r) => Number(r[0]))
          : rows.map((r) => Number(r.sequence))
      },
      ack: (seqs) =>
        shape.ack === "in list" ? ackList(seqs.length).run(...seqs, worker) : ackJson.run(JSON.stringify(seqs), worker)
    }
  }
})

const only = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1]!.split(";") : undefined
const all: Array<Variant> = [
  ours("ours"),
  ours("ours, ack by IN list (as the store)", "", { ack: "in list" }),
  ours("ours, insert ->>", "", { insert: "arrow" }),
  ours("ours, insert ->> no ORDER BY", "", { insert: "arrow, no ORDER BY" }),
  ours("ours, insert jsonb_each", "", { insert: "jsonb_each" }),
  ours("ours, insert VALUES x100", "", { insert: "values 100" }),
  ours("store now (jsonb_each, raw take)", "", { insert: "jsonb_each", raw: true }),
  ours("store now, key null when it is the id", "", { insert: "jsonb_each, id once", raw: true }),
  ours("store now, worker id of 12", "", { insert: "jsonb_each", raw: true, worker: WORKER.slice(0, 12) }),
  ours("ours, ids v7", "", { ids: "v7" }),
  ours("ours, take UPDATE LIMIT", "", { take: "update limit" }),
  ours("ours, take without visible_at", "", { take: "in, no visible_at" }),
  ours("ours, take returning sequence", "", { returning: "sequence" }),
  ours("ours, take raw rows", "", { raw: true }),
  ours("ours, worker id of 12", "", { worker: WORKER.slice(0, 12) }),
  ours("ours, worker id of 1", "", { worker: "w" }),
  ours("ours - settled index", "DROP INDEX jobs_settled"),
  ours("ours - unique index", "-unique"),
  ours("ours - pending index", "DROP INDEX jobs_pending"),
  ours("ours - dead, results index", "DROP INDEX jobs_dead; DROP INDEX jobs_results"),
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
const picked = (name: string) =>
  only === undefined || name === "FLOOR" ||
  only.some((o) => name === o || (o.endsWith("*") && name.startsWith(o.slice(0, -1))))
const variants = all.filter((v) => picked(v.name))

const runVariant = async (v: Variant) => {
  const dir = mkdtempSync(join(os.tmpdir(), "sqlite-db-cost-"))
  const file = join(dir, "q.db")
  try {
    await v.create(file)
    const db = new Database(file)
    db.pragma("journal_mode = WAL")
    const s = v.statements(db)
    // Wall time (what the queue's rate sees, commits' fsyncs included) or, with `--cpu`, this process's CPU time
    // (steadier on a shared machine; better-sqlite3 runs on this thread).
    const clock = CPU
      ? () => process.cpuUsage().user / 1000 + process.cpuUsage().system / 1000
      : () => performance.now()
    const t0 = clock()
    for (let i = 0; i < JOBS; i += 1_000) {
      s.fill(Array.from({ length: Math.min(1_000, JOBS - i) }, v.id ?? (() => randomUUID())))
    }
    const t1 = clock()
    let leaseMs = 0
    let ackMs = 0
    let done = 0
    while (done < JOBS) {
      const a = clock()
      const seqs = s.lease()
      const b = clock()
      if (seqs.length === 0) throw new Error(`${v.name}: empty lease at ${done}`)
      s.ack(seqs)
      ackMs += clock() - b
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
  console.log(
    `${JOBS} jobs, SQLite statements alone (better-sqlite3), medians of ${ROUNDS}, µs ${CPU ? "of CPU" : ""} per job:`
  )
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
