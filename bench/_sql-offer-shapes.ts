/**
 * Statement shapes for a bulk offer on PostgreSQL, side by side on tables of the store's form (issue 16): the
 * store's `offer` (both of its statements), `offerAll` through the core, and hand-written SQL through node-postgres
 * (the shapes tried). Each inserts 1,000 rows a call, 4 calls in flight, on its own table; rounds interleaved;
 * median jobs/s and this process's CPU per job printed.
 *
 *   npx tsx bench/_sql-offer-shapes.ts [--rounds 5] [--jobs 20000] [--only <part of a shape's name>]
 */
import { PgClient } from "@effect/sql-pg"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { randomUUID } from "node:crypto"
import pg from "pg"
import { queueSettings } from "../src/internal/durableQueue/options.js"
import { makeStore } from "../src/internal/durableQueue/sqlStore.js"
import type { Store } from "../src/internal/durableQueue/store.js"
import * as DurableQueue from "../src/sql/DurableQueue.js"
import { arg, batches, median, pool } from "./_shared.js"

const ROUNDS = arg("rounds", 5)
const JOBS = arg("jobs", 20_000)
const connection = { host: "127.0.0.1", port: 5432, database: "test", user: "postgres" }
const NOW = "(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT"

const createTable = async (db: pg.Pool, t: string) => {
  await db.query(`CREATE TABLE ${t} (
    sequence BIGSERIAL PRIMARY KEY, queue_name TEXT NOT NULL, id TEXT NOT NULL, id_key TEXT NOT NULL,
    element TEXT NOT NULL, state SMALLINT NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    visible_at BIGINT NOT NULL, acquired_by TEXT NULL, last_failure TEXT NULL, created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL, priority INTEGER NOT NULL DEFAULT 0, timed SMALLINT NOT NULL DEFAULT 0,
    options TEXT NULL, cancel_requested SMALLINT NOT NULL DEFAULT 0, progress TEXT NULL, result TEXT NULL,
    result_expires_at BIGINT NULL, UNIQUE (queue_name, id_key))`)
  await db.query(
    `CREATE INDEX ${t}_pending ON ${t} (queue_name, priority DESC, sequence) WHERE state = 0 AND timed = 0`
  )
  await db.query(`CREATE INDEX ${t}_timed ON ${t} (queue_name, visible_at) WHERE state = 0 AND timed = 1`)
  await db.query(`CREATE INDEX ${t}_dead ON ${t} (queue_name, updated_at, sequence) WHERE state = 2`)
  await db.query(
    `CREATE INDEX ${t}_results ON ${t} (queue_name, result_expires_at) WHERE result_expires_at IS NOT NULL`
  )
}

interface Row {
  id: string
  payload: string
}
type Shape = (db: pg.Pool, t: string, rows: ReadonlyArray<Row>) => Promise<unknown>

const cols = "(queue_name, id, id_key, element, visible_at, timed, priority, options, created_at, updated_at)"
const notifyWrap = (t: string, body: string, skipKnown = true) =>
  skipKnown
    ? `WITH inserted AS (INSERT INTO ${t} ${cols} ${body} ON CONFLICT (queue_name, id_key) DO NOTHING RETURNING 1)
   SELECT pg_notify('ew:${t}', 'o') FROM (SELECT 1 FROM inserted LIMIT 1) AS one`
    : `WITH inserted AS (INSERT INTO ${t} ${cols} ${body}) SELECT pg_notify('ew:${t}', 'o')`

const jsonShape = (skipKnown: boolean): Shape => (db, t, rows) =>
  db.query(
    notifyWrap(
      t,
      `SELECT 'jobs', r->>0, r->>1, r->>2, ${NOW} + (r->>3)::bigint, CASE WHEN (r->>3)::bigint > 0 THEN 1 ELSE 0 END,
       (r->>4)::int, r->>5, ${NOW}, ${NOW}
     FROM json_array_elements($1::json) WITH ORDINALITY AS j(r, i) WHERE true ORDER BY i`,
      skipKnown
    ),
    [JSON.stringify(rows.map((r) => [r.id, r.id, r.payload, 0, 0, null]))]
  )

/** As `jsonShape`, the rows parsed once as jsonb (`json`'s `->>` parses the row's text again for each field). */
const jsonbShape = (skipKnown: boolean): Shape => (db, t, rows) =>
  db.query(
    notifyWrap(
      t,
      `SELECT 'jobs', r->>0, r->>1, r->>2, ${NOW} + (r->>3)::bigint, CASE WHEN (r->>3)::bigint > 0 THEN 1 ELSE 0 END,
       (r->>4)::int, r->>5, ${NOW}, ${NOW}
     FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS j(r, i) WHERE true ORDER BY i`,
      skipKnown
    ),
    [JSON.stringify(rows.map((r) => [r.id, r.id, r.payload, 0, 0, null]))]
  )

const unnestBody =
  `SELECT 'jobs', u.id, u.k, u.e, ${NOW} + u.d, CASE WHEN u.d > 0 THEN 1 ELSE 0 END, u.p, u.o, ${NOW}, ${NOW}
  FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::int[], $6::text[]) WITH ORDINALITY
    AS u(id, k, e, d, p, o, i) ORDER BY u.i`
const unnestParams = (rows: ReadonlyArray<Row>) => [
  rows.map((r) => r.id),
  rows.map((r) => r.id),
  rows.map((r) => r.payload),
  rows.map(() => 0),
  rows.map(() => 0),
  rows.map(() => null)
]
const unnestShape: Shape = (db, t, rows) => db.query(notifyWrap(t, unnestBody), unnestParams(rows))

const unnestNoConflict: Shape = (db, t, rows) => db.query(`INSERT INTO ${t} ${cols} ${unnestBody}`, unnestParams(rows))

const recordsetShape: Shape = (db, t, rows) =>
  db.query(
    notifyWrap(
      t,
      `SELECT 'jobs', r.i, r.k, r.e, ${NOW} + r.d, CASE WHEN r.d > 0 THEN 1 ELSE 0 END, r.p, r.o, ${NOW}, ${NOW}
     FROM json_to_recordset($1::json) AS r(i text, k text, e text, d bigint, p int, o text)`
    ),
    [JSON.stringify(rows.map((r) => ({ i: r.id, k: r.id, e: r.payload, d: 0, p: 0, o: null })))]
  )

const PgLayer = PgClient.layer({ ...connection, username: connection.user })
const scope = Effect.runSync(Scope.make())
const runtime = await Effect.runPromise(Layer.toRuntime(PgLayer).pipe(Scope.extend(scope)))
const runIn = Runtime.runPromise(runtime)
const stores = new Map<string, Store>()
/** The store's own `offer` (what the core hands a batch to). */
const storeShape = (custom: boolean): Shape => async (_db, t, rows) => {
  let store = stores.get(t)
  if (store === undefined) {
    store = await runIn(
      Effect.flatMap(
        queueSettings({ name: "jobs", schema: Schema.String }),
        (settings) => makeStore(settings, { tableName: t, notify: true })
      ).pipe(Scope.extend(scope))
    )
    stores.set(t, store)
  }
  return Effect.runPromise(
    store.offer(
      rows.map((r) => ({
        id: r.id,
        payload: r.payload,
        custom,
        delayMillis: 0,
        priority: 0,
        options: undefined
      }))
    )
  )
}
const queues = new Map<string, DurableQueue.DurableQueue<{ readonly n: number }>>()
/** `offerAll` through the core (ids generated, values encoded). */
const coreShape = (notify: boolean): Shape => async (_db, t, rows) => {
  let queue = queues.get(t)
  if (queue === undefined) {
    queue = await runIn(
      DurableQueue.make({ name: "jobs", tableName: t, schema: Schema.Struct({ n: Schema.Number }), notify }).pipe(
        Scope.extend(scope)
      )
    )
    queues.set(t, queue)
  }
  return Effect.runPromise(queue.offerAll(rows.map((_, n) => ({ value: { n } }))))
}

const allShapes: ReadonlyArray<readonly [string, Shape]> = [
  ["store.offer, generated ids (plain INSERT)", storeShape(false)],
  ["store.offer, custom ids (ON CONFLICT)", storeShape(true)],
  ["DurableQueue offerAll (core + store)", coreShape(true)],
  ["DurableQueue offerAll, notify: false", coreShape(false)],
  ["SQL: json_array_elements + ON CONFLICT + notify", jsonShape(true)],
  ["SQL: json_array_elements, plain + notify", jsonShape(false)],
  ["SQL: jsonb_array_elements + ON CONFLICT + notify", jsonbShape(true)],
  ["SQL: jsonb_array_elements, plain + notify", jsonbShape(false)],
  ["SQL: unnest arrays + ON CONFLICT + notify", unnestShape],
  ["SQL: json_to_recordset + ON CONFLICT + notify", recordsetShape],
  ["SQL: unnest, plain, no notify", unnestNoConflict]
]

/** `--only <text>`: the shapes whose name contains it. */
const only = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1]! : ""

const main = async () => {
  const shapes = allShapes.filter(([name]) => name.includes(only))
  const db = new pg.Pool({ ...connection, max: 8 })
  const rates = new Map<string, Array<number>>(shapes.map(([name]) => [name, []]))
  const cpus = new Map<string, Array<number>>(shapes.map(([name]) => [name, []]))
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, shape] of shapes) {
      const t = `bench_shape_${randomUUID().replace(/-/g, "").slice(0, 12)}`
      await createTable(db, t)
      try {
        const all = batches(JOBS, 1_000).map((b) =>
          b.map((n) => ({ id: randomUUID(), payload: JSON.stringify({ n }) }))
        )
        if (name.startsWith("store") || name.startsWith("DurableQueue")) await shape(db, t, [])
        const cpu = process.cpuUsage()
        const start = performance.now()
        await pool(all.length, 4, (b) => shape(db, t, all[b]!))
        rates.get(name)!.push(JOBS / ((performance.now() - start) / 1000))
        const used = process.cpuUsage(cpu)
        cpus.get(name)!.push((used.user + used.system) / JOBS)
        const count = (await db.query(`SELECT count(*)::int AS n FROM ${t}`)).rows[0].n
        if (count !== JOBS) throw new Error(`${name}: ${count} rows`)
      } finally {
        await db.query(`DROP TABLE IF EXISTS ${t}, ${t}_paused`)
      }
    }
  }
  for (const [name, xs] of rates) {
    console.log(
      `${name.padEnd(40)} ${Math.round(median(xs))} jobs/s  [${xs.map(Math.round).join(", ")}]  CPU ${
        median(cpus.get(name)!).toFixed(1)
      } µs/job`
    )
  }
  await db.end()
}

main().then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
