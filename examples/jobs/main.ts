/**
 * Creates a SQLite database with pending jobs, runs the `hashJobs` runner until every job is done (the
 * `stopWhenEmpty` setting), and prints what each reader process did.
 *
 *   node --import tsx examples/jobs/main.ts              # 200 jobs
 *   JOBS=1000 HASH_JOBS_NUM_PROCESSES=4 node --import tsx examples/jobs/main.ts
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as JobRunner from "../../src/JobRunner.js"
import { Database, databaseFile, runner } from "./jobs.js"

const jobs = Number(process.env.JOBS ?? "200")

const seed = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE jobs (
    id INTEGER PRIMARY KEY, payload TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending', result TEXT, pid INTEGER
  )`
  yield* sql.withTransaction(Effect.forEach(
    Array.from({ length: jobs }, (_, i) => i),
    (i) => sql`INSERT INTO jobs (payload) VALUES (${`payload-${i}`})`,
    { discard: true }
  ))
  yield* Effect.logInfo(`created ${databaseFile} with ${jobs} pending jobs`)
}).pipe(Effect.provide(Database))

const report = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ status: string; pid: number | null; n: number }>`
    SELECT status, pid, COUNT(*) AS n FROM jobs GROUP BY status, pid ORDER BY status, pid`
  for (const row of rows) yield* Effect.logInfo(`${row.status} by process ${row.pid ?? "-"}: ${row.n}`)
}).pipe(Effect.provide(Database))

const program = Effect.gen(function*() {
  for (const suffix of ["", "-wal", "-shm"]) Fs.rmSync(databaseFile + suffix, { force: true })
  yield* seed
  const start = performance.now()
  const summary = yield* JobRunner.run(runner, { settings: { stopWhenEmpty: true } })
  const seconds = (performance.now() - start) / 1000
  yield* Effect.logInfo(
    `${summary.processed} processed, ${summary.failed} failed, ${summary.processesStarted} reader processes ` +
      `(${summary.restarts} restarts) in ${seconds.toFixed(1)} s`
  )
  yield* report
})

NodeRuntime.runMain(program)
