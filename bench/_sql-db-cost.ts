/**
 * The database's own cost per job on PostgreSQL (issue 16, the DATABASE side): our statements (the store's SQL
 * text, run through node-postgres) against the FLOOR's, each run under `EXPLAIN (ANALYZE, BUFFERS, WAL)`, so the
 * figures are the server's execution and planning time, WAL bytes, records and full-page images of that statement
 * alone (other engineers' load on the same server does not enter the WAL figures). No commit time in them.
 * Per table variant: fill `--jobs` jobs in INSERTs of 1,000 (the store's jsonb shape), then lease 256 + acknowledge
 * 256 until empty, one at a time; then `pg_stat_user_tables` (HOT updates) and index sizes. Variants (each its own
 * table, rounds interleaved, medians printed). `--cpu`: each statement run as it is (its commit included) and
 * timed by its backend's CPU time (/proc/<pid>/schedstat; PostgreSQL on this machine), which the machine's load
 * does not inflate as it does EXPLAIN's wall times; no WAL figures then: the store's table as `prepareTable` makes it (`ours`), and the same
 * with one index dropped (what that index costs), and the floor's 3-column table.
 *
 * Layout candidates of issue 16 (branch pglayout, bench/RESULTS.md): the variants named `L a…` to `L d…` (see `Layout`).
 *
 *   npx tsx bench/_sql-db-cost.ts [--jobs 20000] [--rounds 3] [--only <part of a variant's name>] [--cpu]
 *     [--ahead <lease batches held>] [--custom] [--offers-only]
 *   e.g. --cpu --ahead 2 --rounds 6 --only "ours|FLOOR|L a: HOT lease, ff50|L d: a ff50 + unique + done table"
 */
import { PgClient } from "@effect/sql-pg"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import { randomUUID } from "node:crypto"
import { readFileSync } from "node:fs"
import pg from "pg"
import { prepareTable } from "../src/internal/durableQueue/sqlSchema.js"
import { arg, median } from "./_shared.js"

const JOBS = arg("jobs", 20_000)
const ROUNDS = arg("rounds", 3)
const ONLY = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1]! : ""
const LEASE = 256
const connection = { host: "127.0.0.1", port: 5432, database: "test", user: "postgres" }
const NOW = "(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT"
const db = new pg.Pool({ ...connection, max: 1 })
/** `--cpu`: statements run as they are (commit included) and timed by their backend's CPU, not EXPLAINed. */
const CPU = process.argv.includes("--cpu")
/** `--offers-only`: the INSERTs alone (no lease or acknowledgement). */
const OFFERS_ONLY = process.argv.includes("--offers-only")
/**
 * `--ahead <batches>`: lease batches held (leased, not yet acknowledged) while the next lease runs: 2 is one process
 * of the store (`leaseWhileRunning`: 2 x 256), 6 three processes. 0: lease, then acknowledge that batch (as before).
 */
const AHEAD = arg("ahead", 0)
/** `--custom`: the offers are of custom ids (the store's ON CONFLICT path; the ids tables of the layout variants). */
const CUSTOM = process.argv.includes("--custom")
let backendPid = 0
/** The backend's time on a CPU (ns), from /proc/<pid>/schedstat: load on the machine does not enter it. */
const cpuNs = () => Number(readFileSync(`/proc/${backendPid}/schedstat`, "utf8").split(" ")[0])

const prepared = (table: string) =>
  Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (sql) => prepareTable(sql.withoutTransforms(), "pg", table)).pipe(
      Effect.provide(PgClient.layer({ host: "127.0.0.1", port: 5432, database: "test", username: "postgres" }))
    )
  )

interface Cost {
  exec: number
  plan: number
  walBytes: number
  walRecords: number
  fpi: number
  n: number
}
const zero = (): Cost => ({ exec: 0, plan: 0, walBytes: 0, walRecords: 0, fpi: 0, n: 0 })

const explain = async (cost: Cost, text: string, values: ReadonlyArray<unknown>) => {
  if (CPU) {
    const before = cpuNs()
    await db.query(text, values as Array<unknown>)
    cost.exec += (cpuNs() - before) / 1e6
    cost.n++
    return
  }
  const res = await db.query(`EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) ${text}`, values as Array<unknown>)
  interface Explained {
    "Execution Time": number
    "Planning Time"?: number
    Plan: { "WAL Bytes"?: number; "WAL Records"?: number; "WAL FPI"?: number }
  }
  const top = ((res.rows[0] as Record<string, unknown>)["QUERY PLAN"] as Array<Explained>)[0]!
  cost.exec += top["Execution Time"]
  cost.plan += top["Planning Time"] ?? 0
  const plan = top.Plan
  cost.walBytes += plan["WAL Bytes"] ?? 0
  cost.walRecords += plan["WAL Records"] ?? 0
  cost.fpi += plan["WAL FPI"] ?? 0
  cost.n++
}

/** A UUID whose first 48 bits are the time in ms (the layout of UUID version 7): ids in offer order. */
const timeOrderedId = (): string => {
  const random = randomUUID()
  const hex = Date.now().toString(16).padStart(12, "0")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7${random.slice(15)}`
}
let ID: () => string = randomUUID

interface Variant {
  readonly name: string
  readonly create: (t: string) => Promise<void>
  /** SQL text and parameters of an INSERT of `ids`. */
  readonly insert: (t: string, ids: ReadonlyArray<string>) => [string, Array<unknown>]
  readonly lease: (t: string) => [string, Array<unknown>]
  readonly ack: (t: string, seqs: ReadonlyArray<number>) => [string, Array<unknown>]
}

const DOUBLE_NOW = "(date_part('epoch', now()) * 1000)::BIGINT"
let NOW_NOW = NOW
const oursInsert = (t: string, ids: ReadonlyArray<string>): [string, Array<unknown>] => [
  `INSERT INTO ${t} (queue_name, id, id_key, element, visible_at, timed, priority, options, created_at, updated_at)
   SELECT $1, r->>0, r->>1, r->>2, ${NOW_NOW} + (r->>3)::bigint, CASE WHEN (r->>3)::bigint > 0 THEN 1 ELSE 0 END,
     (r->>4)::int, r->>5, ${NOW_NOW}, ${NOW_NOW}
   FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS j(r, i) WHERE true ORDER BY i
   ${CUSTOM ? "ON CONFLICT (queue_name, id_key) DO NOTHING" : ""}`,
  ["jobs", JSON.stringify(ids.map((id, n) => [id, id, JSON.stringify({ n }), 0, 0, null]))]
]
const WORKER = randomUUID()
const oursLease = (t: string): [string, Array<unknown>] => [
  `UPDATE ${t} SET timed = 1, visible_at = ${NOW_NOW} + 30000, acquired_by = $2, attempts = attempts + 1
   WHERE sequence IN (
     SELECT sequence FROM ${t} WHERE queue_name = $1 AND state = 0 AND timed = 0 AND visible_at <= ${NOW_NOW}
       AND NOT EXISTS (SELECT 1 FROM ${t}_paused WHERE queue_name = $1)
     ORDER BY priority DESC, sequence LIMIT ${LEASE} FOR UPDATE SKIP LOCKED)
   RETURNING sequence, id, element, attempts, priority, options`,
  ["jobs", WORKER]
]
const oursAck = (t: string, seqs: ReadonlyArray<number>): [string, Array<unknown>] => [
  `UPDATE ${t} SET state = 1, acquired_by = NULL, updated_at = ${NOW_NOW}
   WHERE sequence IN (${seqs.map((_, i) => `$${i + 2}`).join(",")}) AND acquired_by = $1 AND state = 0`,
  [WORKER, ...seqs]
]

const COLS = "(queue_name, id, id_key, element, visible_at, timed, priority, options, created_at, updated_at)"
/** The rows as one jsonb array, the key left out (null) when it is the id. */
const jsonbNoKey = (order: boolean) => (t: string, ids: ReadonlyArray<string>): [string, Array<unknown>] => [
  `INSERT INTO ${t} ${COLS}
   SELECT $1, r->>0, COALESCE(r->>1, r->>0), r->>2, ${NOW} + (r->>3)::bigint, CASE WHEN (r->>3)::bigint > 0 THEN 1 ELSE 0 END,
     (r->>4)::int, r->>5, ${NOW}, ${NOW}
   FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS j(r, i) WHERE true ${order ? "ORDER BY i" : ""}`,
  ["jobs", JSON.stringify(ids.map((id, n) => [id, null, JSON.stringify({ n }), 0, 0, null]))]
]
/** The rows as one array per column (`unnest`), the key null when it is the id. */
const arrays = (order: boolean) => (t: string, ids: ReadonlyArray<string>): [string, Array<unknown>] => [
  `INSERT INTO ${t} ${COLS}
   SELECT $1, id, COALESCE(k, id), p, ${NOW} + d, CASE WHEN d > 0 THEN 1 ELSE 0 END, pr, o, ${NOW}, ${NOW}
   FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::int[], $7::text[]) WITH ORDINALITY
     AS u(id, k, p, d, pr, o, i) WHERE true ${order ? "ORDER BY i" : ""}`,
  [
    "jobs",
    ids,
    ids.map(() => null),
    ids.map((_, n) => JSON.stringify({ n })),
    ids.map(() => 0),
    ids.map(() => 0),
    ids.map(() => null)
  ]
]

const ours = (
  name: string,
  after: (t: string) => string = () => "",
  now = NOW,
  id: () => string = randomUUID,
  insert = oursInsert
): Variant => ({
  name,
  create: async (t) => {
    NOW_NOW = now
    ID = id
    await prepared(t)
    const extra = after(t)
    if (extra !== "") await db.query(extra)
  },
  insert,
  lease: oursLease,
  ack: oursAck
})

/**
 * Layout candidates (issue 16, branch pglayout): what the lease and the acknowledgement cost with
 * (a) `hotLease`: the lease writes only columns no index names (`lease_until`, new, `acquired_by`, `attempts`), so
 *     it is a HOT update when the row's page has room (`fillfactor`); leased rows stay in the `pending` index and the
 *     lease skips those whose lease has not ended (`--ahead` sets how many it steps over);
 * (b) `ids`: custom ids in `<t>_ids` (unique, written once by the offer, kept forever), the jobs table without the
 *     unique `(queue_name, id_key)`; a generated id (a random UUID, new by construction) found by `lookup`: a
 *     non-unique B-tree, a hash index on `id_key`, or nothing (a lower bound: found some other way);
 * (c) `done`: the acknowledgement moves the row to `<t>_done` (DELETE + INSERT of a slim record, one statement),
 *     or only deletes it (`none`: a generated id with no result, were done records allowed to lapse as on Redis).
 */
interface Layout {
  readonly hotLease: boolean
  readonly fillfactor?: number
  readonly ids: boolean
  readonly lookup: "unique" | "btree" | "hash" | "none"
  readonly done: "row" | "table" | "none"
}

const layoutRows = (ids: ReadonlyArray<string>) =>
  JSON.stringify(ids.map((id, n) => [id, id, JSON.stringify({ n }), 0, 0, null]))

const layout = (name: string, l: Layout): Variant => ({
  name,
  create: async (t) => {
    NOW_NOW = NOW
    ID = randomUUID
    await prepared(t)
    if (l.hotLease) await db.query(`ALTER TABLE ${t} ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0`)
    if (l.fillfactor !== undefined) await db.query(`ALTER TABLE ${t} SET (fillfactor = ${l.fillfactor})`)
    if (l.lookup !== "unique") await db.query(`ALTER TABLE ${t} DROP CONSTRAINT ${t}_queue_name_id_key_key`)
    if (l.lookup === "btree") await db.query(`CREATE INDEX ${t}_key ON ${t} (queue_name, id_key)`)
    if (l.lookup === "hash") await db.query(`CREATE INDEX ${t}_key ON ${t} USING hash (id_key)`)
    if (l.ids) {
      await db.query(`CREATE TABLE ${t}_ids (queue_name TEXT COLLATE "C" NOT NULL, id_key TEXT COLLATE "C" NOT NULL,
        sequence BIGINT NOT NULL, PRIMARY KEY (queue_name, id_key))`)
    }
    if (l.done === "table") {
      await db.query(`CREATE TABLE ${t}_done (queue_name TEXT COLLATE "C" NOT NULL, id_key TEXT COLLATE "C" NOT NULL,
        id TEXT NOT NULL, sequence BIGINT NOT NULL, attempts INTEGER NOT NULL, progress TEXT NULL, last_failure TEXT NULL,
        result TEXT NULL, result_expires_at BIGINT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
        PRIMARY KEY (queue_name, id_key))`)
      await db.query(`CREATE INDEX ${t}_done_settled ON ${t}_done (queue_name, updated_at, sequence)`)
    }
  },
  insert: (t, ids) => {
    if (CUSTOM && l.ids) {
      return [
        `WITH r AS MATERIALIZED (SELECT r->>0 AS id, r->>1 AS id_key, r->>2 AS element, i,
            nextval('${t}_sequence_seq') AS sequence
          FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS j(r, i) ORDER BY i),
        new AS (INSERT INTO ${t}_ids (queue_name, id_key, sequence) SELECT $1, id_key, sequence FROM r
          ON CONFLICT DO NOTHING RETURNING sequence)
        INSERT INTO ${t} (sequence, queue_name, id, id_key, element, visible_at, timed, priority, options, created_at,
          updated_at)
        SELECT r.sequence, $1, r.id, r.id_key, r.element, ${NOW}, 0, 0, NULL, ${NOW}, ${NOW}
        FROM r JOIN new ON new.sequence = r.sequence ORDER BY r.i`,
        ["jobs", layoutRows(ids)]
      ]
    }
    return oursInsert(t, ids)
  },
  lease: (t) =>
    l.hotLease
      ? [
        `UPDATE ${t} SET lease_until = ${NOW} + 30000, acquired_by = $2, attempts = attempts + 1
         WHERE sequence IN (
           SELECT sequence FROM ${t} WHERE queue_name = $1 AND state = 0 AND timed = 0 AND visible_at <= ${NOW}
             AND lease_until <= ${NOW}
             AND NOT EXISTS (SELECT 1 FROM ${t}_paused WHERE queue_name = $1)
           ORDER BY priority DESC, sequence LIMIT ${LEASE} FOR UPDATE SKIP LOCKED)
         RETURNING sequence, id, element, attempts, priority, options`,
        ["jobs", WORKER]
      ]
      : oursLease(t),
  ack: (t, seqs) => {
    const list = `sequence IN (${seqs.map((_, i) => `$${i + 2}`).join(",")}) AND acquired_by = $1 AND state = 0`
    if (l.done === "row") return oursAck(t, seqs)
    if (l.done === "none") return [`DELETE FROM ${t} WHERE ${list}`, [WORKER, ...seqs]]
    return [
      `WITH d AS (DELETE FROM ${t} WHERE ${list}
         RETURNING queue_name, id_key, id, sequence, attempts, progress, last_failure, created_at)
       INSERT INTO ${t}_done (queue_name, id_key, id, sequence, attempts, progress, last_failure, created_at, updated_at)
       SELECT queue_name, id_key, id, sequence, attempts, progress, last_failure, created_at, ${NOW} FROM d`,
      [WORKER, ...seqs]
    ]
  }
})

const layouts: Array<Variant> = [
  layout("L a: HOT lease", { hotLease: true, ids: false, lookup: "unique", done: "row" }),
  layout("L a: HOT lease, ff90", { hotLease: true, fillfactor: 90, ids: false, lookup: "unique", done: "row" }),
  layout("L a: HOT lease, ff70", { hotLease: true, fillfactor: 70, ids: false, lookup: "unique", done: "row" }),
  layout("L a: HOT lease, ff50", { hotLease: true, fillfactor: 50, ids: false, lookup: "unique", done: "row" }),
  layout("L b: ids table, btree lookup", { hotLease: false, ids: true, lookup: "btree", done: "row" }),
  layout("L b: ids table, hash lookup", { hotLease: false, ids: true, lookup: "hash", done: "row" }),
  layout("L b: ids table, no lookup", { hotLease: false, ids: true, lookup: "none", done: "row" }),
  layout("L c: done table", { hotLease: false, ids: false, lookup: "unique", done: "table" }),
  layout("L c: delete only", { hotLease: false, ids: false, lookup: "unique", done: "none" }),
  layout("L d: a ff90 + unique + done table", {
    hotLease: true,
    fillfactor: 90,
    ids: false,
    lookup: "unique",
    done: "table"
  }),
  layout("L d: a ff50 + unique + done table", {
    hotLease: true,
    fillfactor: 50,
    ids: false,
    lookup: "unique",
    done: "table"
  }),
  layout("L d: a ff90 + b btree + done table", {
    hotLease: true,
    fillfactor: 90,
    ids: true,
    lookup: "btree",
    done: "table"
  }),
  layout("L d: a ff70 + b btree + done table", {
    hotLease: true,
    fillfactor: 70,
    ids: true,
    lookup: "btree",
    done: "table"
  }),
  layout("L d: a ff50 + b btree + done table", {
    hotLease: true,
    fillfactor: 50,
    ids: true,
    lookup: "btree",
    done: "table"
  }),
  layout("L d: a ff90 + b hash + done table", {
    hotLease: true,
    fillfactor: 90,
    ids: true,
    lookup: "hash",
    done: "table"
  }),
  layout("L d: a ff50 + b btree + delete only", {
    hotLease: true,
    fillfactor: 50,
    ids: true,
    lookup: "btree",
    done: "none"
  }),
  layout("L d: a ff90 + b btree + delete only", {
    hotLease: true,
    fillfactor: 90,
    ids: true,
    lookup: "btree",
    done: "none"
  })
]

const all: Array<Variant> = [
  ours("ours"),
  ours("ours - settled index", (t) => `DROP INDEX ${t}_settled`),
  ours("ours - unique (queue_name, id_key)", (t) => `ALTER TABLE ${t} DROP CONSTRAINT ${t}_queue_name_id_key_key`),
  ours(
    "ours, (queue_name, id_key) not unique",
    (t) =>
      `ALTER TABLE ${t} DROP CONSTRAINT ${t}_queue_name_id_key_key; CREATE INDEX ${t}_key ON ${t} (queue_name, id_key)`
  ),
  ours("ours - timed index", (t) => `DROP INDEX ${t}_timed`),
  ours("ours, fillfactor 70", (t) => `ALTER TABLE ${t} SET (fillfactor = 70)`),
  ours(
    "ours, keys in the database's collation (before)",
    (t) =>
      `ALTER TABLE ${t} ALTER COLUMN queue_name TYPE text COLLATE "default", ALTER COLUMN id_key TYPE text COLLATE "default"`
  ),
  ours(
    "ours, keys in en-US (ICU) as a database in a language's collation",
    (t) =>
      `ALTER TABLE ${t} ALTER COLUMN queue_name TYPE text COLLATE "en-US-x-icu", ALTER COLUMN id_key TYPE text COLLATE "en-US-x-icu"`
  ),
  ours("ours, now() as double", () => "", DOUBLE_NOW),
  ours("ours, insert: jsonb, no key when the id", () => "", NOW, randomUUID, jsonbNoKey(true)),
  ours("ours, insert: jsonb, no key when the id, not ordered", () => "", NOW, randomUUID, jsonbNoKey(false)),
  ours("ours, insert: arrays, ordered", () => "", NOW, randomUUID, arrays(true)),
  ours("ours, insert: arrays", () => "", NOW, randomUUID, arrays(false)),
  ours("ours, time-ordered ids", () => "", NOW, timeOrderedId),
  ours("ours - dead - results", (t) => `DROP INDEX ${t}_dead; DROP INDEX ${t}_results`),
  // A sketch of the next step (not the store): the ids in a table of their own, written once per job by the offer,
  // so the lease's and acknowledgement's row versions no longer enter a (queue_name, id_key) index.
  {
    name: "ours, ids in their own table (sketch)",
    create: async (t) => {
      await prepared(t)
      await db.query(`ALTER TABLE ${t} DROP CONSTRAINT ${t}_queue_name_id_key_key`)
      await db.query(`CREATE TABLE ${t}_ids (queue_name TEXT COLLATE "C" NOT NULL, id_key TEXT COLLATE "C" NOT NULL,
        sequence BIGINT NOT NULL, PRIMARY KEY (queue_name, id_key))`)
    },
    insert: (t, ids) => [
      `WITH r AS MATERIALIZED (SELECT r->>0 AS id, COALESCE(r->>1, r->>0) AS id_key, r->>2 AS element, i,
          nextval('${t}_sequence_seq') AS sequence
        FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS j(r, i) ORDER BY i),
      new AS (INSERT INTO ${t}_ids (queue_name, id_key, sequence) SELECT $1, id_key, sequence FROM r
        ON CONFLICT DO NOTHING RETURNING sequence)
      INSERT INTO ${t} (sequence, queue_name, id, id_key, element, visible_at, timed, priority, options, created_at,
        updated_at)
      SELECT r.sequence, $1, r.id, r.id_key, r.element, ${NOW}, 0, 0, NULL, ${NOW}, ${NOW}
      FROM r JOIN new ON new.sequence = r.sequence ORDER BY r.i`,
      ["jobs", JSON.stringify(ids.map((id, n) => [id, null, JSON.stringify({ n }), 0, 0, null]))]
    ],
    lease: oursLease,
    ack: oursAck
  },
  {
    name: "FLOOR",
    create: async (t) => {
      ID = randomUUID
      await db.query(
        `CREATE TABLE ${t} (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL, locked_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity')`
      )
    },
    insert: (t, ids) => [`INSERT INTO ${t} (payload) SELECT unnest($1::text[])`, [
      ids.map((_, n) => JSON.stringify({ n }))
    ]],
    lease: (t) => [
      `UPDATE ${t} SET locked_until = now() + interval '30 seconds' WHERE id IN (
        SELECT id FROM ${t} WHERE locked_until < now() ORDER BY id LIMIT ${LEASE} FOR UPDATE SKIP LOCKED
      ) RETURNING id, payload`,
      []
    ],
    ack: (t, seqs) => [`DELETE FROM ${t} WHERE id = ANY($1::bigint[])`, [seqs]]
  },
  ...layouts
]
const variants = all.filter((v) =>
  ONLY === "" ||
  ONLY.split("|").some((part) => v.name === part || (part.endsWith("*") && v.name.startsWith(part.slice(0, -1))))
)

interface Result {
  insert: Cost
  lease: Cost
  ack: Cost
  hot: number
  upd: number
  sizes: string
  seconds: number
}

const runVariant = async (v: Variant): Promise<Result> => {
  const t = `dbcost_${randomUUID().replace(/-/g, "").slice(0, 10)}`
  await v.create(t)
  const insert = zero()
  const lease = zero()
  const ack = zero()
  const start = performance.now()
  try {
    for (let i = 0; i < JOBS; i += 1_000) {
      const ids = Array.from({ length: Math.min(1_000, JOBS - i) }, () => ID())
      const [text, values] = v.insert(t, ids)
      await explain(insert, text, values)
    }
    const first = Number(
      (await db.query(`SELECT min(${v.name === "FLOOR" ? "id" : "sequence"}) AS m FROM ${t}`)).rows[0].m
    )
    // Leases go in sequence order (one taker, one priority, leased rows skipped): batch k is the k-th LEASE sequences.
    // AHEAD batches stay leased while the next lease runs (what a lease steps over when leased rows stay in its index).
    const held: Array<number> = []
    const ackBatch = async (start: number) => {
      const seqs = Array.from({ length: Math.min(LEASE, JOBS - start) }, (_, k) => first + start + k)
      const [at, av] = v.ack(t, seqs)
      await explain(ack, at, av)
    }
    for (let start = 0; start < (OFFERS_ONLY ? 0 : JOBS); start += LEASE) {
      const [lt, lv] = v.lease(t)
      await explain(lease, lt, lv)
      held.push(start)
      while (held.length > AHEAD) await ackBatch(held.shift()!)
    }
    while (held.length > 0) await ackBatch(held.shift()!)
    const seconds = (performance.now() - start) / 1000
    // A backend flushes its statistics at most every second, and an idle one after 10 s (PostgreSQL 15): asked to
    // flush at the end of its next transaction, its counts are all in before they are read.
    await new Promise((r) => setTimeout(r, 1_100))
    await db.query("SELECT pg_stat_force_next_flush()")
    const stat = (await db.query(
      `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = $1`,
      [t]
    )).rows[0]
    const sizes = (await db.query(
      `SELECT c.relname, pg_relation_size(c.oid) AS bytes FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       WHERE i.indrelid = $1::regclass ORDER BY c.relname`,
      [t]
    )).rows.map((r) => `${String(r.relname).replace(t, "")} ${(Number(r.bytes) / 1024).toFixed(0)}k`).join(", ")
    const heap = (await db.query(`SELECT pg_relation_size($1::regclass) AS b`, [t])).rows[0].b
    const side = (await db.query(
      `SELECT s, pg_total_relation_size(to_regclass($1 || s)) AS b FROM unnest(ARRAY['_done', '_ids']) AS s
       WHERE to_regclass($1 || s) IS NOT NULL`,
      [t]
    )).rows.map((r) => `; ${String(r.s)} ${(Number(r.b) / 1024).toFixed(0)}k with its indexes`).join("")
    return {
      insert,
      lease,
      ack,
      hot: Number(stat?.n_tup_hot_upd ?? 0),
      upd: Number(stat?.n_tup_upd ?? 0),
      sizes: `heap ${(Number(heap) / 1024).toFixed(0)}k; ${sizes}${side}`,
      seconds
    }
  } finally {
    await db.query(`DROP TABLE IF EXISTS ${t}`)
    await db.query(`DROP TABLE IF EXISTS ${t}_paused`)
    await db.query(`DROP TABLE IF EXISTS ${t}_ids`)
    await db.query(`DROP TABLE IF EXISTS ${t}_done`)
  }
}

const perJob = (c: Cost) => ({
  us: ((c.exec + c.plan) * 1000) / JOBS,
  plan: (c.plan * 1000) / JOBS,
  exec: (c.exec * 1000) / JOBS,
  wal: c.walBytes / JOBS,
  rec: c.walRecords / JOBS,
  fpi: c.fpi / JOBS
})

const main = async () => {
  backendPid = (await db.query("SELECT pg_backend_pid() AS pid")).rows[0].pid
  const results = new Map<string, Array<Result>>()
  for (let round = 0; round < ROUNDS; round++) {
    const order = variants.map((_, i) => variants[(i + round) % variants.length]!)
    for (const v of order) {
      const r = await runVariant(v)
      results.set(v.name, [...(results.get(v.name) ?? []), r])
    }
  }
  console.log(`${JOBS} jobs, inserts of 1,000, lease ${LEASE} + ack ${LEASE}; medians of ${ROUNDS}; per job:`)
  console.log("server µs (exec+plan) | WAL bytes | WAL records | FPI  — insert / lease / ack")
  for (const v of variants) {
    const rs = results.get(v.name)!
    const m = (f: (r: Result) => number) => median(rs.map(f))
    const col = (k: "insert" | "lease" | "ack") =>
      `${m((r) => perJob(r[k]).us).toFixed(1)} µs (plan ${m((r) => perJob(r[k]).plan).toFixed(2)}), ${
        m((r) => perJob(r[k]).wal).toFixed(0)
      } B, ${m((r) => perJob(r[k]).rec).toFixed(2)} rec, ${m((r) => perJob(r[k]).fpi).toFixed(3)} fpi`
    console.log(`\n${v.name} (${m((r) => r.seconds).toFixed(2)} s wall)`)
    console.log(`  insert ${col("insert")}`)
    console.log(`  lease  ${col("lease")}`)
    console.log(`  ack    ${col("ack")}`)
    const round = (k: "insert" | "lease" | "ack") => rs.map((r) => perJob(r[k]).us.toFixed(1)).join(" ")
    console.log(`  rounds: insert ${round("insert")} | lease ${round("lease")} | ack ${round("ack")}`)
    const last = rs[rs.length - 1]!
    console.log(`  updates ${last.upd}, HOT ${last.hot}; ${last.sizes}`)
  }
  await db.end()
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
