/**
 * The SQL durable queue on PostgreSQL (127.0.0.1:5432, database `test`) against pg-boss, one process run,
 * contenders side by side in interleaved rounds, medians; each on its own table or schema, dropped afterwards.
 *
 * "add": N jobs offered one by one, 16 at a time (ours: `DurableQueue.offer`; pg-boss: `send`). "process": the N
 * jobs drained with a no-op handler at concurrency 16 (ours: `run` with `concurrency: 16`). pg-boss has no
 * concurrency option in v10: a worker fetches `batchSize` jobs, runs the handler on the batch, and then waits out
 * the rest of its polling interval (0.5 s at the least) before it fetches again, even when jobs are waiting. So it
 * runs twice: "16 in flight" (one worker, `batchSize` 16, the batch's jobs run concurrently: what concurrency 16 is)
 * on fewer jobs, as it is slow, and "256 in flight" (16 workers of `batchSize` 16), its best here.
 *
 * "ours, notify: false": ours without PostgreSQL notifications (`notify: false`), to show what the NOTIFY sent with
 * each batch of offers costs. "two clients": the N jobs offered through one PgClient (16 at a time) while a second
 * one (as another process would) runs them at concurrency 16, both at default poll intervals: jobs/s from the first
 * offer to the last job done, with and without notifications. "wake-up latency": an offer through one PgClient (as another process would have it)
 * until the handler starts on a second one whose taker is idle, with notifications (default `pollInterval`, 1 s)
 * and without (default 100 ms), `--samples` offers each, spaced by 50-250 ms at random.
 *
 * graphile-worker 0.16 runs as a peer too ("graphile-worker"): `addJob` one by one, then `run` at concurrency 16.
 *
 * For reference, ours on SQLite (a temp file; no peer), and `PersistedQueue` over `@effect/sql`'s own `SqlPersistedQueue` store (16 takers), which we do not
 * use (its leases are never refreshed; see src/internal/durableQueue/sqlStore.ts).
 *
 *   npx tsx bench/distributed-sql.ts [--jobs 10000] [--rounds 3]
 */
import * as PersistedQueue from "@effect/experimental/PersistedQueue"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqlPersistedQueue from "@effect/sql/SqlPersistedQueue"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import * as os from "node:os"
import { join } from "node:path"
import PgBoss from "pg-boss"
import * as DurableQueue from "../src/sql/DurableQueue.js"
import { Logger, makeWorkerUtils, run as runGraphile } from "graphile-worker"
import { arg, median, pool, queueRound, type Round } from "./_shared.js"

const JOBS = arg("jobs", 10_000)
const ROUNDS = arg("rounds", 3)
const SAMPLES = arg("samples", 40)
const SLOW_JOBS = Math.min(JOBS, 320)
const CONCURRENCY = 16
const connection = { host: "127.0.0.1", port: 5432, database: "test", user: "postgres" }
const Client = PgClient.layer({ host: connection.host, port: connection.port, database: connection.database, username: connection.user })




const pgBoss = async (jobs: number, workers: number, batchSize: number): Promise<Round> => {
  const schema = `bench_pgboss_${randomUUID().replace(/-/g, "").slice(0, 12)}`
  const boss = new PgBoss({ ...connection, schema, supervise: false, schedule: false, max: 10 })
  boss.on("error", (error) => console.error("pg-boss:", error))
  await boss.start()
  try {
    const name = "jobs"
    await boss.createQueue(name)
    let t = performance.now()
    await pool(jobs, CONCURRENCY, (n) => boss.send(name, { n }))
    const add = jobs / ((performance.now() - t) / 1000)
    let done = 0
    let finish!: () => void
    const finished = new Promise<void>((resolve) => (finish = resolve))
    t = performance.now()
    for (let w = 0; w < workers; w++) {
      await boss.work<{ n: number }>(name, { batchSize, pollingIntervalSeconds: 0.5 }, async (batch) => {
        await Promise.all(batch.map(async () => {
          if (++done === jobs) finish()
        }))
      })
    }
    await finished
    const processed = jobs / ((performance.now() - t) / 1000)
    await boss.offWork(name)
    return { add, process: processed }
  } finally {
    await boss.stop({ graceful: false, wait: true }).catch(() => undefined)
    await Effect.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`).pipe(Effect.provide(Client)))
  }
}

/**
 * graphile-worker 0.16 (the fastest known PostgreSQL queue): `addJob` one by one, 16 at a time; then `run` with
 * concurrency 16, its 100 ms default poll (it LISTENs for new jobs too), a pool of 17 connections (it warns below
 * its concurrency) and a silent logger (its default prints a line per job), in its own schema, dropped afterwards.
 */
const silent = new Logger(() => () => {})
const graphile = async (jobs: number): Promise<Round> => {
  const schema = `bench_graphile_${randomUUID().replace(/-/g, "").slice(0, 12)}`
  const connectionString = `postgres://${connection.user}@${connection.host}:${connection.port}/${connection.database}`
  const utils = await makeWorkerUtils({ connectionString, schema, logger: silent })
  try {
    await utils.migrate()
    let t = performance.now()
    await pool(jobs, CONCURRENCY, (n) => utils.addJob("job", { n }))
    const add = jobs / ((performance.now() - t) / 1000)
    let done = 0
    let finish!: () => void
    const finished = new Promise<void>((resolve) => (finish = resolve))
    t = performance.now()
    const runner = await runGraphile({
      connectionString,
      schema,
      concurrency: CONCURRENCY,
      maxPoolSize: CONCURRENCY + 1,
      logger: silent,
      noHandleSignals: true,
      taskList: { job: async () => { if (++done === jobs) finish() } }
    })
    await finished
    const processed = jobs / ((performance.now() - t) / 1000)
    await runner.stop()
    return { add, process: processed }
  } finally {
    await utils.withPgClient((client) => client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)).catch(() => undefined)
    await utils.release()
  }
}

const ours = (backend: "pg" | "sqlite" = "pg", notify = true): Promise<Round> => {
  const tableName = `bench_dq_${randomUUID().replace(/-/g, "").slice(0, 12)}`
  const dir = backend === "sqlite" ? mkdtempSync(join(os.tmpdir(), "bench-dq-")) : undefined
  const layer: Layer.Layer<SqlClient.SqlClient, unknown> = dir === undefined ? Client : SqliteClient.layer({ filename: join(dir, "queue.db") })
  return Effect.gen(function*() {
    const queue = yield* DurableQueue.make({ name: "jobs", tableName, schema: Schema.Struct({ n: Schema.Number }), pollInterval: "5 millis", notify })
    return yield* queueRound(JOBS, CONCURRENCY, queue.offer, (handler) =>
      Effect.forkScoped(queue.run(handler, { concurrency: CONCURRENCY })))
  }).pipe(
    Effect.scoped,
    Effect.ensuring(Effect.ignore(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP TABLE IF EXISTS ${sql(tableName)}`))),
    Effect.provide(layer),
    Effect.ensuring(Effect.sync(() => dir !== undefined && rmSync(dir, { recursive: true, force: true }))),
    Effect.runPromise
  )
}

/** Jobs/s end to end: offered through client A while client B runs them; default poll intervals. */
const twoClients = (notify: boolean): Promise<number> => {
  const tableName = `bench_two_${randomUUID().replace(/-/g, "").slice(0, 12)}`
  return Effect.gen(function*() {
    const make = DurableQueue.make({ name: "jobs", tableName, schema: Schema.Struct({ n: Schema.Number }), notify })
    const a = yield* make.pipe(Effect.provide(yield* Layer.build(Client)))
    const b = yield* make.pipe(Effect.provide(yield* Layer.build(Client)))
    let done = 0
    let finish!: () => void
    const finished = new Promise<void>((resolve) => (finish = resolve))
    yield* Effect.forkScoped(b.run(() =>
      Effect.sync(() => {
        if (++done === JOBS) finish()
      }), { concurrency: CONCURRENCY }))
    yield* Effect.sleep("200 millis")
    const t = performance.now()
    yield* Effect.forEach(Array.from({ length: JOBS }, (_, n) => n), (n) => a.offer({ n }), { concurrency: CONCURRENCY, discard: true })
    yield* Effect.promise(() => finished)
    return JOBS / ((performance.now() - t) / 1000)
  }).pipe(
    Effect.scoped,
    Effect.ensuring(Effect.ignore(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP TABLE IF EXISTS ${sql(tableName)}`))),
    Effect.provide(Client),
    Effect.runPromise
  )
}

/** Milliseconds from an offer through one client to the start of its handler on another, whose taker is idle. */
const wakeLatency = (notify: boolean): Promise<Array<number>> => {
  const tableName = `bench_lat_${randomUUID().replace(/-/g, "").slice(0, 12)}`
  return Effect.gen(function*() {
    const make = DurableQueue.make({ name: "jobs", tableName, schema: Schema.Number, notify })
    const a = yield* make.pipe(Effect.provide(yield* Layer.build(Client)))
    const b = yield* make.pipe(Effect.provide(yield* Layer.build(Client)))
    const started = new Map<number, number>()
    yield* Effect.forkScoped(b.run((n) => Effect.sync(() => started.set(n, performance.now())), { concurrency: 1 }))
    const times: Array<number> = []
    for (let i = 0; i < SAMPLES; i++) {
      yield* Effect.sleep(50 + Math.random() * 200)
      const t = performance.now()
      yield* a.offer(i)
      while (!started.has(i)) yield* Effect.sleep(1)
      times.push(started.get(i)! - t)
    }
    return times
  }).pipe(
    Effect.scoped,
    Effect.ensuring(Effect.ignore(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP TABLE IF EXISTS ${sql(tableName)}`))),
    Effect.provide(Client),
    Effect.runPromise
  )
}

// For reference: `@effect/sql`'s own store under `PersistedQueue` (what we do not use; see src/internal/durableQueue/sqlStore.ts).
const upstream = (): Promise<Round> => {
  const tableName = `bench_up_${randomUUID().replace(/-/g, "").slice(0, 12)}`
  return Effect.gen(function*() {
    const store = yield* SqlPersistedQueue.make({ tableName, pollInterval: "5 millis" })
    const factory = yield* Effect.provideService(PersistedQueue.makeFactory, PersistedQueue.PersistedQueueStore, store)
    const queue = yield* factory.make({ name: "jobs", schema: Schema.Struct({ n: Schema.Number }) })
    return yield* queueRound(JOBS, CONCURRENCY, (value) => queue.offer(value), (handler) =>
      Effect.forEach(Array.from({ length: CONCURRENCY }), () => Effect.forkScoped(Effect.forever(queue.take(handler)))))
  }).pipe(
    Effect.scoped,
    Effect.ensuring(Effect.ignore(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP TABLE IF EXISTS ${sql(tableName)}`))),
    Effect.provide(Client),
    Effect.runPromise
  )
}

const main = async () => {
  const fmt = (x: number) => Math.round(x).toLocaleString("en-US")
  console.log(`SQL durable queue on PostgreSQL: ${JOBS.toLocaleString("en-US")} jobs (pg-boss at 16 in flight: ${SLOW_JOBS}), concurrency ${CONCURRENCY}, median of ${ROUNDS} rounds`)
  console.log(`node ${process.version}, ${os.cpus().length} CPUs (nproc), ${new Date().toISOString().slice(0, 10)}, load ${os.loadavg()[0]!.toFixed(1)}`)
  const rounds: Record<"ours" | "quiet" | "two" | "twoQuiet" | "sqlite" | "upstream" | "boss16" | "boss256" | "graphile", Array<Round>> = {
    ours: [],
    graphile: [],
    quiet: [],
    two: [],
    twoQuiet: [],
    sqlite: [],
    upstream: [],
    boss16: [],
    boss256: []
  }
  for (let r = 0; r < ROUNDS; r++) {
    rounds.boss256.push(await pgBoss(JOBS, 16, 16))
    rounds.ours.push(await ours())
    rounds.graphile.push(await graphile(JOBS))
    rounds.quiet.push(await ours("pg", false))
    rounds.two.push({ add: 0, process: await twoClients(true) })
    rounds.twoQuiet.push({ add: 0, process: await twoClients(false) })
    rounds.boss16.push(await pgBoss(SLOW_JOBS, 1, 16))
    rounds.upstream.push(await upstream())
    rounds.sqlite.push(await ours("sqlite"))
  }
  const row = (xs: Array<Round>) => ({ add: median(xs.map((x) => x.add)), proc: median(xs.map((x) => x.process)) })
  const o = row(rounds.ours)
  const q = row(rounds.quiet)
  const b16 = row(rounds.boss16)
  const b256 = row(rounds.boss256)
  const up = row(rounds.upstream)
  const lite = row(rounds.sqlite)
  const gw = row(rounds.graphile)
  console.log(`\n| queue | add jobs/s | process jobs/s | ours vs it: add | ours vs it: process |`)
  console.log("|---|---:|---:|---:|---:|")
  console.log(`| ours: DurableQueue (PostgreSQL), concurrency 16 | ${fmt(o.add)} | ${fmt(o.proc)} | | |`)
  console.log(`| ours, notify: false (no NOTIFY per batch of offers) | ${fmt(q.add)} | ${fmt(q.proc)} | ${(o.add / q.add).toFixed(2)}x | ${(o.proc / q.proc).toFixed(2)}x |`)
  console.log(`| pg-boss 10, 1 worker × batchSize 16 (16 in flight) | ${fmt(b16.add)} | ${fmt(b16.proc)} | ${(o.add / b16.add).toFixed(2)}x | ${(o.proc / b16.proc).toFixed(2)}x |`)
  console.log(`| pg-boss 10, 16 workers × batchSize 16 (256 in flight) | ${fmt(b256.add)} | ${fmt(b256.proc)} | ${(o.add / b256.add).toFixed(2)}x | ${(o.proc / b256.proc).toFixed(2)}x |`)
  console.log(`| graphile-worker 0.16, concurrency 16 | ${fmt(gw.add)} | ${fmt(gw.proc)} | ${(o.add / gw.add).toFixed(2)}x | ${(o.proc / gw.proc).toFixed(2)}x |`)
  console.log(`| for reference: PersistedQueue on @effect/sql's SqlPersistedQueue store | ${fmt(up.add)} | ${fmt(up.proc)} | ${(o.add / up.add).toFixed(2)}x | ${(o.proc / up.proc).toFixed(2)}x |`)
  console.log(`| for reference: ours on SQLite (a temp file, embedded), concurrency 16 | ${fmt(lite.add)} | ${fmt(lite.proc)} | | |`)
  const two = row(rounds.two).proc
  const twoQuiet = row(rounds.twoQuiet).proc
  console.log(`\ntwo clients (offered through A while B runs them, end to end): notify ${fmt(two)} jobs/s, notify: false ${fmt(twoQuiet)} jobs/s (${(two / twoQuiet).toFixed(2)}x)`)
  const notified = await wakeLatency(true)
  const polled = await wakeLatency(false)
  const pct = (xs: ReadonlyArray<number>, p: number) => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!
  const lat = (xs: ReadonlyArray<number>) => `median ${pct(xs, 0.5).toFixed(1)} ms, p90 ${pct(xs, 0.9).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms`
  console.log(`\nwake-up latency, offer on client A -> handler start on client B (idle), ${SAMPLES} offers:`)
  console.log(`- notify (default, pollInterval 100 ms): ${lat(notified)}`)
  console.log(`- notify: false (pollInterval 100 ms): ${lat(polled)}`)
  console.log(`\nload average after: ${os.loadavg().map((x) => x.toFixed(2)).join(", ")}`)
}

main().then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
