/**
 * Where a PostgreSQL drain's time goes (issue 16): offers `--jobs` jobs (offerAll, 1,000 a call), drains them with
 * `run` at `--concurrency` (default settings, no-op handler or `--ms`) and prints, for the drain alone:
 * - this process's CPU per job (`process.cpuUsage`) and the PostgreSQL server's (every `postgres` process's user +
 *   system time from /proc, the postmaster's reaped children included: the server runs on this machine);
 * - the statements this process sent (node-postgres `Client.query` calls, grouped by their first words), how many
 *   per job, and the time from sending each to its answer (sum and median per kind: round trip + server work).
 * `pg_stat_statements` is not loaded on this server, hence the client-side count.
 *
 *   npx tsx bench/_sql-where.ts [--jobs 20000] [--concurrency 16] [--ms 0] [--rounds 3]
 */
import { PgClient } from "@effect/sql-pg"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import { randomUUID } from "node:crypto"
import { readdirSync, readFileSync } from "node:fs"
import pg from "pg"
import * as DurableQueue from "../src/sql/DurableQueue.js"
import { arg, batches, counter, machine, timed, until } from "./_shared.js"

const JOBS = arg("jobs", 20_000)
const CONCURRENCY = arg("concurrency", 16)
const MS = arg("ms", 0)
const ROUNDS = arg("rounds", 3)

interface Kind {
  n: number
  ms: Array<number>
}
const kinds = new Map<string, Kind>()
let counting = false
const query = pg.Client.prototype.query
pg.Client.prototype.query = function(this: pg.Client, ...args: Array<unknown>) {
  if (!counting) return (query as (...a: Array<unknown>) => unknown).apply(this, args)
  const text = typeof args[0] === "string" ? args[0] : (args[0] as { text?: string }).text ?? "?"
  const key = text.replace(/\s+/g, " ").trim().slice(0, 40)
  const kind = kinds.get(key) ?? { n: 0, ms: [] }
  kinds.set(key, kind)
  kind.n++
  const last = args.length - 1
  const callback = args[last]
  if (typeof callback === "function") {
    const t = performance.now()
    args[last] = (...r: Array<unknown>) => {
      kind.ms.push(performance.now() - t)
      return (callback as (...a: Array<unknown>) => unknown)(...r)
    }
  }
  return (query as (...a: Array<unknown>) => unknown).apply(this, args)
} as typeof query

/** CPU seconds used by every `postgres` process so far (children the postmaster reaped included). */
const serverCpu = (): number => {
  let ticks = 0
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
      if (!stat.includes("(postgres)")) continue
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      // utime, stime, cutime, cstime are fields 14-17 (1-based), 11-14 after the name and state.
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])
    } catch {
      // gone
    }
  }
  return ticks / 100
}

const median = (xs: Array<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? 0 : s[Math.floor(s.length / 2)]!
}

const round = Effect.gen(function*() {
  const tableName = `where_${randomUUID().replace(/-/g, "").slice(0, 12)}`
  const queue = yield* DurableQueue.make({ name: "jobs", tableName, schema: Schema.Struct({ n: Schema.Number }) })
  for (const batch of batches(JOBS, 1_000)) yield* queue.offerAll(batch.map((n) => ({ value: { n } })))
  const handled = counter(JOBS)
  let fiber: Fiber.RuntimeFiber<never, unknown> | undefined
  kinds.clear()
  const server = serverCpu()
  counting = true
  const sample = yield* Effect.promise(() =>
    timed(JOBS, async () => {
      fiber = Effect.runFork(queue.run(() =>
        MS === 0 ? Effect.sync(handled.hit) : Effect.zipRight(Effect.sleep(MS), Effect.sync(handled.hit)), {
        concurrency: CONCURRENCY
      }))
      await handled.all
      counting = false
      await until(async () =>
        (await Effect.runPromise(queue.size)) === 0
      )
    })
  )
  const serverPerJob = (serverCpu() - server) / JOBS * 1e6
  counting = false
  yield* Fiber.interrupt(fiber!)
  const total = [...kinds.values()].reduce((a, k) => a + k.n, 0)
  console.log(
    `\n${Math.round(sample.rate)} jobs/s; CPU per job: node ${sample.cpu.toFixed(1)} µs, PostgreSQL ${
      serverPerJob.toFixed(1)
    } µs; ${total} statements (${(total / JOBS).toFixed(3)} per job)`
  )
  for (const [key, k] of [...kinds].sort((a, b) => b[1].n - a[1].n).slice(0, 8)) {
    const sum = k.ms.reduce((a, b) => a + b, 0)
    console.log(
      `  ${String(k.n).padStart(6)} × ${key.padEnd(40)} p50 ${median(k.ms).toFixed(2)} ms, sum ${sum.toFixed(0)} ms`
    )
  }
  const sql = yield* SqlClient.SqlClient
  yield* sql`DROP TABLE IF EXISTS ${sql(tableName)}`
}).pipe(Effect.scoped)

/**
 * `--variants "A=1;A=2,B=3"`: environment settings tried in turn within each round (order rotated), for A/B
 * comparisons of experimental switches in one process; each line is labelled with its variant.
 */
const VARIANTS = process.argv.includes("--variants")
  ? process.argv[process.argv.indexOf("--variants") + 1]!.split(";")
  : [""]

const program = Effect.gen(function*() {
  console.log(`${machine()}; ${JOBS} jobs, concurrency ${CONCURRENCY}, handler ${MS} ms`)
  for (let r = 0; r < ROUNDS; r++) {
    for (let v = 0; v < VARIANTS.length; v++) {
      const variant = VARIANTS[(v + r) % VARIANTS.length]!
      for (const pair of variant.split(",").filter((x) => x.includes("="))) {
        const [key, value] = pair.split("=") as [string, string]
        process.env[key] = value
      }
      if (variant !== "") console.log(`\n[${variant}]`)
      yield* round
    }
  }
})

Effect.runPromise(
  program.pipe(
    Effect.provide(PgClient.layer({ host: "127.0.0.1", port: 5432, database: "test", username: "postgres" }))
  )
).then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
