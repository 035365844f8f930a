/**
 * The SERVER's CPU per offered job on PostgreSQL (issue 16, bulk offer): INSERT shapes of 1,000 rows, each run as it
 * is (commit included) on one connection and timed by its backend's CPU (/proc/<pid>/schedstat; PostgreSQL on this
 * machine), against graphile-worker's `add_jobs` on its own schema. Each shape fills its own fresh table (ours as
 * `prepareTable` makes it) with `--jobs` jobs; shapes interleaved per round; medians printed, in µs per job.
 *
 *   npx tsx bench/_sql-offer-cost.ts [--jobs 20000] [--rounds 5] [--only <part of a shape's name>]
 */
import { PgClient } from "@effect/sql-pg"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import { makeWorkerUtils } from "graphile-worker"
import { randomUUID } from "node:crypto"
import { readFileSync } from "node:fs"
import pg from "pg"
import { prepareTable } from "../src/internal/durableQueue/sqlSchema.js"
import { arg, batches, median } from "./_shared.js"

const JOBS = arg("jobs", 20_000)
const ROUNDS = arg("rounds", 5)
const ONLY = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1]! : ""
const connection = { host: "127.0.0.1", port: 5432, database: "test", user: "postgres" }
const NOW = "(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT"
const db = new pg.Pool({ ...connection, max: 1 })
let backendPid = 0
const cpuNs = () => Number(readFileSync(`/proc/${backendPid}/schedstat`, "utf8").split(" ")[0])

const prepared = (table: string) =>
  Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (sql) => prepareTable(sql.withoutTransforms(), "pg", table)).pipe(
      Effect.provide(PgClient.layer({ host: "127.0.0.1", port: 5432, database: "test", username: "postgres" }))
    )
  )

interface Job {
  readonly id: string
  readonly payload: string
}
interface Shape {
  readonly name: string
  /** Makes the target; returns the statement of a batch and the teardown. */
  readonly setUp: () => Promise<{ insert: (jobs: ReadonlyArray<Job>) => Promise<unknown>; drop: () => Promise<void> }>
}

const cols = "(queue_name, id, id_key, element, visible_at, timed, priority, options, created_at, updated_at)"

const ours = (name: string, statement: (t: string, jobs: ReadonlyArray<Job>) => [string, Array<unknown>]): Shape => ({
  name,
  setUp: async () => {
    const t = `bench_oc_${randomUUID().replace(/-/g, "").slice(0, 12)}`
    await prepared(t)
    return {
      insert: (jobs) => db.query(...statement(t, jobs)),
      drop: async () => {
        await db.query(`DROP TABLE IF EXISTS ${t}, ${t}_paused`)
      }
    }
  }
})

const jsonbRows = (jobs: ReadonlyArray<Job>) => JSON.stringify(jobs.map((j) => [j.id, j.id, j.payload, 0, 0, null]))
const notify = (t: string, insert: string) => `WITH inserted AS (${insert}) SELECT pg_notify('ew:${t}', 'o')`

const shapes: ReadonlyArray<Shape> = [
  ours("ours now (jsonb, ORDER BY i, notify)", (t, jobs) => [
    notify(
      t,
      `INSERT INTO ${t} ${cols} SELECT 'jobs', r->>0, r->>1, r->>2, ${NOW} + (r->>3)::bigint,
        CASE WHEN (r->>3)::bigint > 0 THEN 1 ELSE 0 END, (r->>4)::int, r->>5, ${NOW}, ${NOW}
      FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS j(r, i) WHERE true ORDER BY i`
    ),
    [jsonbRows(jobs)]
  ]),
  ours("jsonb, now once (CROSS JOIN)", (t, jobs) => [
    notify(
      t,
      `INSERT INTO ${t} ${cols} SELECT 'jobs', r->>0, r->>1, r->>2, c.t + (r->>3)::bigint,
        CASE WHEN (r->>3)::bigint > 0 THEN 1 ELSE 0 END, (r->>4)::int, r->>5, c.t, c.t
      FROM (SELECT ${NOW} AS t) AS c, jsonb_array_elements($1::jsonb) WITH ORDINALITY AS j(r, i) ORDER BY i`
    ),
    [jsonbRows(jobs)]
  ]),
  ours("unnest typed arrays, now once", (t, jobs) => [
    notify(
      t,
      `INSERT INTO ${t} ${cols} SELECT 'jobs', u.id, u.k, u.e, c.t + u.d, CASE WHEN u.d > 0 THEN 1 ELSE 0 END, u.p,
        u.o, c.t, c.t
      FROM (SELECT ${NOW} AS t) AS c,
        unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::int[], $6::text[]) WITH ORDINALITY
        AS u(id, k, e, d, p, o, i) ORDER BY u.i`
    ),
    [
      jobs.map((j) => j.id),
      jobs.map((j) => j.id),
      jobs.map((j) => j.payload),
      jobs.map(() => 0),
      jobs.map(() => 0),
      jobs.map(() => null)
    ]
  ]),
  ours("unnest 3 arrays (defaults as constants), now once", (t, jobs) => [
    notify(
      t,
      `INSERT INTO ${t} ${cols} SELECT 'jobs', u.id, u.k, u.e, c.t, 0, 0, NULL, c.t, c.t
      FROM (SELECT ${NOW} AS t) AS c, unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(id, k, e, i)
      ORDER BY u.i`
    ),
    [jobs.map((j) => j.id), jobs.map((j) => j.id), jobs.map((j) => j.payload)]
  ]),
  ours("unnest 2 arrays (id twice), now once", (t, jobs) => [
    notify(
      t,
      `INSERT INTO ${t} ${cols} SELECT 'jobs', u.id, u.id, u.e, c.t, 0, 0, NULL, c.t, c.t
      FROM (SELECT ${NOW} AS t) AS c, unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(id, e, i)
      ORDER BY u.i`
    ),
    [jobs.map((j) => j.id), jobs.map((j) => j.payload)]
  ]),
  ours("unnest 2 arrays, no ORDER BY", (t, jobs) => [
    notify(
      t,
      `INSERT INTO ${t} ${cols} SELECT 'jobs', u.id, u.id, u.e, c.t, 0, 0, NULL, c.t, c.t
      FROM (SELECT ${NOW} AS t) AS c, unnest($1::text[], $2::text[]) AS u(id, e)`
    ),
    [jobs.map((j) => j.id), jobs.map((j) => j.payload)]
  ]),
  ours("unnest 2 arrays, no ORDER BY, no notify", (t, jobs) => [
    `INSERT INTO ${t} ${cols} SELECT 'jobs', u.id, u.id, u.e, c.t, 0, 0, NULL, c.t, c.t
      FROM (SELECT ${NOW} AS t) AS c, unnest($1::text[], $2::text[]) AS u(id, e)`,
    [jobs.map((j) => j.id), jobs.map((j) => j.payload)]
  ]),
  ours("jsonb 2 fields, now once", (t, jobs) => [
    notify(
      t,
      `INSERT INTO ${t} ${cols} SELECT 'jobs', r->>0, r->>0, r->>1, c.t, 0, 0, NULL, c.t, c.t
      FROM (SELECT ${NOW} AS t) AS c, jsonb_array_elements($1::jsonb) WITH ORDINALITY AS j(r, i) ORDER BY i`
    ),
    [JSON.stringify(jobs.map((j) => [j.id, j.payload]))]
  ]),
  ours("jsonb 2 flat arrays (ROWS FROM), now once", (t, jobs) => [
    notify(
      t,
      `INSERT INTO ${t} ${cols} SELECT 'jobs', j.id, j.id, j.p, c.t, 0, 0, NULL, c.t, c.t
      FROM (SELECT ${NOW} AS t) AS c, ROWS FROM (jsonb_array_elements_text($1::jsonb),
        jsonb_array_elements_text($2::jsonb)) WITH ORDINALITY AS j(id, p, i) ORDER BY i`
    ),
    [JSON.stringify(jobs.map((j) => j.id)), JSON.stringify(jobs.map((j) => j.payload))]
  ]),
  // Ids and payloads as two texts joined by U+001E (JSON text never holds a raw control character), split by the
  // server: no JSON escaping in this process, no JSON parse in the server.
  ours("2 flat arrays as text split on U+001E (string_to_array, unnest), now once", (t, jobs) => [
    notify(
      t,
      `INSERT INTO ${t} ${cols} SELECT 'jobs', j.id, j.id, j.p, c.t, 0, 0, NULL, c.t, c.t
      FROM (SELECT ${NOW} AS t) AS c, unnest(string_to_array($1, chr(30)),
        string_to_array($2, chr(30))) WITH ORDINALITY AS j(id, p, i) ORDER BY i`
    ),
    [jobs.map((j) => j.id).join("\u001e"), jobs.map((j) => j.payload).join("\u001e")]
  ]),
  ours("2 flat arrays as text split on U+001E (string_to_table, ROWS FROM), now once", (t, jobs) => [
    notify(
      t,
      `INSERT INTO ${t} ${cols} SELECT 'jobs', j.id, j.id, j.p, c.t, 0, 0, NULL, c.t, c.t
      FROM (SELECT ${NOW} AS t) AS c, ROWS FROM (string_to_table($1, chr(30)),
        string_to_table($2, chr(30))) WITH ORDINALITY AS j(id, p, i) ORDER BY i`
    ),
    [jobs.map((j) => j.id).join("\u001e"), jobs.map((j) => j.payload).join("\u001e")]
  ]),
  {
    name: "graphile add_jobs",
    setUp: async () => {
      const schema = `bench_oc_g_${randomUUID().replace(/-/g, "").slice(0, 12)}`
      const gp = new pg.Pool({ ...connection, max: 1 })
      const utils = await makeWorkerUtils({ pgPool: gp, schema })
      await utils.migrate()
      await utils.release()
      await gp.end()
      return {
        insert: (jobs) =>
          db.query(
            `SELECT count(*) FROM ${schema}.add_jobs(ARRAY(
               SELECT ROW('job', p, NULL, NULL, NULL, NULL, NULL, NULL)::${schema}.job_spec
               FROM json_array_elements($1::json) AS p))`,
            [`[${jobs.map((j) => j.payload).join(",")}]`]
          ),
        drop: async () => {
          await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
        }
      }
    }
  }
]

const main = async () => {
  const picked = shapes.filter((s) => s.name.includes(ONLY))
  backendPid = (await db.query("SELECT pg_backend_pid() AS pid")).rows[0].pid
  const costs = new Map(picked.map((s) => [s.name, [] as Array<number>]))
  for (let round = 0; round < ROUNDS; round++) {
    for (const shape of picked) {
      const { drop, insert } = await shape.setUp()
      try {
        const all = batches(JOBS, 1_000).map((b) =>
          b.map((n) => ({ id: randomUUID(), payload: JSON.stringify({ n }) }))
        )
        await insert(all[0]!.slice(0, 1).map((j) => ({ ...j, id: randomUUID() })))
        const before = cpuNs()
        for (const batch of all) await insert(batch)
        costs.get(shape.name)!.push((cpuNs() - before) / 1000 / JOBS)
      } finally {
        await drop()
      }
    }
    process.stderr.write(`round ${round + 1}/${ROUNDS}\n`)
  }
  for (const [name, xs] of costs) {
    console.log(`${name.padEnd(52)} ${median(xs).toFixed(2)} µs/job  [${xs.map((x) => x.toFixed(2)).join(", ")}]`)
  }
  await db.end()
}

main().then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
