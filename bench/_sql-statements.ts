/**
 * Statements per job on PostgreSQL (issue 16): offers `--jobs` jobs (offerAll, 1,000 a call), drains them with `run`
 * at `--concurrency` (default settings, no-op handler or `--ms`), and counts the statements this process sent to
 * the database in each phase (node-postgres `Client.query` calls, grouped by their first words).
 *
 *   npx tsx bench/_sql-statements.ts [--jobs 5000] [--concurrency 16] [--ms 0]
 */
import { PgClient } from "@effect/sql-pg"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import { randomUUID } from "node:crypto"
import pg from "pg"
import * as DurableQueue from "../src/sql/DurableQueue.js"
import { arg, batches, counter, machine, timed, until } from "./_shared.js"

const JOBS = arg("jobs", 5_000)
const CONCURRENCY = arg("concurrency", 16)
const MS = arg("ms", 0)

const counts = new Map<string, number>()
const query = pg.Client.prototype.query
pg.Client.prototype.query = function(this: pg.Client, ...args: Array<unknown>) {
  const text = typeof args[0] === "string" ? args[0] : (args[0] as { text?: string }).text ?? "?"
  const key = text.replace(/\s+/g, " ").trim().slice(0, 48)
  counts.set(key, (counts.get(key) ?? 0) + 1)
  return (query as (...a: Array<unknown>) => unknown).apply(this, args)
} as typeof query

const report = (phase: string, jobs: number) => {
  const total = [...counts.values()].reduce((a, b) => a + b, 0)
  console.log(`\n${phase}: ${total} statements, ${(total / jobs).toFixed(3)} per job`)
  for (const [key, n] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, 8)) {
    console.log(`  ${String(n).padStart(6)}  ${key}`)
  }
  counts.clear()
}

const program = Effect.gen(function*() {
  const tableName = `stmts_${randomUUID().replace(/-/g, "").slice(0, 12)}`
  const queue = yield* DurableQueue.make({ name: "jobs", tableName, schema: Schema.Struct({ n: Schema.Number }) })
  counts.clear()
  for (const batch of batches(JOBS, 1_000)) yield* queue.offerAll(batch.map((n) => ({ value: { n } })))
  report("offerAll", JOBS)
  const handled = counter(JOBS)
  let fiber: Fiber.RuntimeFiber<never, unknown> | undefined
  const sample = yield* Effect.promise(() =>
    timed(JOBS, async () => {
      fiber = Effect.runFork(queue.run(() =>
        MS === 0 ? Effect.sync(handled.hit) : Effect.zipRight(Effect.sleep(MS), Effect.sync(handled.hit)), {
        concurrency: CONCURRENCY
      }))
      await handled.all
      const before = new Map(counts)
      await until(async () =>
        (await Effect.runPromise(queue.size)) === 0
      )
      // The bench's own polling for "all acknowledged" is not the queue's work.
      for (const [key, n] of counts) {
        if ((before.get(key) ?? 0) !== n && key.startsWith("SELECT COUNT")) {
          counts.set(key, before.get(key) ?? 0)
        }
      }
    })
  )
  report(`run (${Math.round(sample.rate)} jobs/s, ${sample.cpu.toFixed(1)} µs CPU/job)`, JOBS)
  yield* Fiber.interrupt(fiber!)
  const sql = yield* SqlClient.SqlClient
  yield* sql`DROP TABLE IF EXISTS ${sql(tableName)}`
  console.log(`\n${machine()}`)
})

Effect.runPromise(
  program.pipe(
    Effect.scoped,
    Effect.provide(PgClient.layer({ host: "127.0.0.1", port: 5432, database: "test", username: "postgres" }))
  )
).then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
