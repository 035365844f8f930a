/**
 * Durable queues on PostgreSQL (127.0.0.1:5432, database `test`) and SQLite: ours against pg-boss, graphile-worker
 * and a FLOOR per engine, side by side in one process run, contenders interleaved (order rotated each round),
 * ratios taken within a round, medians printed. Each contender on its own table or schema, dropped afterwards.
 *
 * Fair play (issue #16): ours at DEFAULT settings (100 ms poll, notifications on); the queue filled outside the
 * timed window by each contender's own fastest path; the clock stopped when the last job is ACKNOWLEDGED (ours:
 * `size` 0; pg-boss: no job of the queue below state "completed"; graphile-worker: its jobs table empty, as it
 * deletes a job on success; the floor: its last DELETE), each polled every 2 ms once the last handler ran; CPU
 * per job (`process.cpuUsage`, this whole process) beside jobs/s. Peers at their documented best:
 * - pg-boss 10: no concurrency option; a worker fetches `batchSize` jobs, runs the handler on the batch, then
 *   waits out its polling interval (0.5 s at the least) when the fetch was not full. Best here: 10 workers ×
 *   batchSize 200 (up to 2,000 jobs in flight: MORE than the others' 16 or 64), `pollingIntervalSeconds` 0.5;
 *   bulk: `insert` (one multi-row statement per call);
 * - graphile-worker 0.16: `run` at the same concurrency on a pool built before the window (migrated there too);
 *   "batched" is its batch jobs (a job whose payload is an array of 500 items, handed to the task at once:
 *   one lease and one completion per 500 items; the items share one attempt, so it is a different contract;
 *   counted per item); bulk: its `add_jobs` SQL function (what `addJobs` calls in later versions).
 *
 * FLOOR: a hand-written minimal at-least-once queue on the same engine: lease =
 * `UPDATE … SET locked_until = now() + 30 s WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT 100) RETURNING`,
 * ack = `DELETE … WHERE id = ANY(…)` of the batch, two loops on `pg` directly; SQLite the same with better-sqlite3
 * (`json_each` for the id list). No retries, no dead letters, no id de-duplication, no notification.
 *
 * Lateness (issue #11): delayed jobs offered at 50 jobs/s, each due 200–1,000 ms later; handler start − due time,
 * p50/p99, ours vs pg-boss `startAfter` and graphile-worker `runAt` (at its default poll and at ours), interleaved.
 *
 *   npx tsx bench/distributed-sql.ts [--quick] [--jobs 20000] [--rounds 5] [--samples 200] [--skip-latency]
 *     [--only-latency] [--late-jobs 60] [--late-rounds 3] [--only-offers] [--baseline <dir>] [--only-ours]
 *     [--only-batch] [--only-sqlite] [--only-bulk]
 *
 * `--only-bulk`: the bulk offer rows alone (PostgreSQL: ours `offerAll`, graphile-worker `add_jobs`, pg-boss
 * `insert`, the floor; SQLite: ours and the floor), no latency. Every PostgreSQL bulk row also gives the server's
 * CPU per job: that of the backends serving this process's connections (named `bench_<pid>`), from
 * /proc/<pid>/schedstat (PostgreSQL runs on this machine), so other clients of the server do not count.
 *
 * `--baseline <dir>`: another checkout of this repository, whose SQL DurableQueue runs as one more contender of the
 * process and bulk-offer rows (as bench/distributed.ts's for Redis); give it a node_modules symlinked to this one's,
 * so both run on one Effect runtime.
 */
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { Logger, makeWorkerUtils, run as runGraphile } from "graphile-worker"
import { randomUUID } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import { join } from "node:path"
import pg from "pg"
import PgBoss from "pg-boss"
import * as DurableQueue from "../src/sql/DurableQueue.js"
import {
  arg,
  batches,
  compare,
  compareLateness,
  type Contender,
  counter,
  drainBatchTimed,
  drainItemsTimed,
  drainTimed,
  dropSqlQueue,
  flag,
  type IdleMeasure,
  latencyLine,
  latencyOf,
  latenessOf,
  machine,
  offerAllOf,
  pool,
  PROCESS_GRID,
  processScenarios,
  type Sample,
  type Scenario,
  sleep,
  timed,
  until
} from "./_shared.js"

const QUICK = flag("quick")
const JOBS = arg("jobs", QUICK ? 5_000 : 20_000)
const ROUNDS = arg("rounds", QUICK ? 3 : 5)
const SAMPLES = arg("samples", QUICK ? 60 : 200)
const LATE_JOBS = arg("late-jobs", 60)
const LATE_ROUNDS = arg("late-rounds", QUICK ? 2 : 3)
const ONLY_LATENCY = flag("only-latency")
const ONLY_BULK = flag("only-bulk")
const BULK = 1_000
const GRAPHILE_BATCH = 500
const RUN_BATCH_SIZE = 100
const RUN_BATCH_AT_ONCE = 2
/** This process's connections' name: the server CPU of a bulk offer row is their backends' (`serverTimed`). */
const APP = `bench_${process.pid}`
const connection = { host: "127.0.0.1", port: 5432, database: "test", user: "postgres", application_name: APP }
const connectionString = `postgres://${connection.user}@${connection.host}:${connection.port}/${connection.database}`
const PgOptions = {
  host: connection.host,
  port: connection.port,
  database: connection.database,
  username: connection.user,
  applicationName: APP
}
const PgLayer = PgClient.layer(PgOptions)
const schema = Schema.Struct({ n: Schema.Number })
const unique = (prefix: string) => `${prefix}_${randomUUID().replace(/-/g, "").slice(0, 12)}`
const work = (ms: number): Promise<void> | undefined => ms === 0 ? undefined : sleep(ms)
const silent = new Logger(() => () => {})

/** better-sqlite3 (what `@effect/sql-sqlite-node` runs on; it ships no types): the little the floor uses. */
interface Statement {
  run: (...args: Array<unknown>) => unknown
  all: (...args: Array<unknown>) => Array<unknown>
}
interface SqliteDatabase {
  pragma: (text: string) => unknown
  exec: (text: string) => unknown
  prepare: (text: string) => Statement
  transaction: <A extends Array<unknown>>(body: (...args: A) => void) => (...args: A) => void
  close: () => void
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new(file: string) => SqliteDatabase

/** The CPU time (ns) so far of each backend serving this process's connections (pid → /proc schedstat's run time). */
let monitor: pg.Client | undefined
const backendTimes = async (): Promise<Map<number, number>> => {
  if (monitor === undefined) {
    monitor = new pg.Client({ ...connection, application_name: `${APP}_monitor` })
    await monitor.connect()
  }
  const { rows } = await monitor.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
    [APP]
  )
  const times = new Map<number, number>()
  for (const { pid } of rows) {
    try {
      times.set(pid, Number(readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ")[0]))
    } catch {
      // gone
    }
  }
  return times
}

/**
 * `timed`, plus the PostgreSQL server's CPU µs per job in the window: the backends of this process's connections,
 * read before and after it (a backend opened in the window counts from its start, connection set-up included; the
 * pools close after the window, so none is lost).
 */
const serverTimed = async (jobs: number, body: () => Promise<unknown>): Promise<Sample> => {
  const before = await backendTimes()
  const sample = await timed(jobs, body)
  const after = await backendTimes()
  let ns = 0
  for (const [pid, t] of after) ns += t - (before.get(pid) ?? 0)
  return { ...sample, server: ns / 1_000 / jobs }
}
const timedOn = (backend: Backend) => backend === "pg" ? serverTimed : timed

// ---------------------------------------------------------------- ours

type Backend = "pg" | "sqlite"
type Ours = DurableQueue.DurableQueue<{ readonly n: number }>

/** `--baseline <dir>` (see the header). */
const BASELINE_DIR = process.argv.includes("--baseline")
  ? process.argv[process.argv.indexOf("--baseline") + 1]
  : undefined
/**
 * `--only-ours`: ours, the baseline and the FLOOR only (no peers; of the offers, SQLite's bulk row, which has none).
 * `--only-sqlite`: the SQLite scenarios alone (process, batch handlers, bulk offer).
 */
const ONLY_OURS = flag("only-ours")

/** Runs `body` with fresh queues (default settings) on a unique table, dropped afterwards. */
const withOurs = <X>(
  backend: Backend,
  body: (queue: Ours, other: Ours) => Promise<X>,
  module: typeof DurableQueue = DurableQueue
): Promise<X> => withQueue(backend, schema, body, module)

/** `withOurs` for a queue of any schema (the batch jobs of `oursItems`). */
const withQueue = <X, A, I>(
  backend: Backend,
  schema: Schema.Schema<A, I>,
  body: (queue: DurableQueue.DurableQueue<A>, other: DurableQueue.DurableQueue<A>) => Promise<X>,
  module: typeof DurableQueue = DurableQueue
): Promise<X> => {
  const tableName = unique("bench_dq")
  const dir = backend === "sqlite" ? mkdtempSync(join(os.tmpdir(), "bench-dq-")) : undefined
  const layer: Layer.Layer<SqlClient.SqlClient, unknown> = dir === undefined
    ? PgLayer
    : SqliteClient.layer({ filename: join(dir, "queue.db") })
  return Effect.gen(function*() {
    const queue = yield* module.make({ name: "jobs", tableName, schema })
    // A second queue on a client of its own, as another process would have it (used by the latency run).
    const other = backend === "pg"
      ? yield* module.make({ name: "jobs", tableName, schema }).pipe(Effect.provide(yield* Layer.build(PgLayer)))
      : queue
    return yield* Effect.promise(() => body(queue, other))
  }).pipe(
    Effect.scoped,
    Effect.ensuring(Effect.flatMap(SqlClient.SqlClient, (sql) => dropSqlQueue(sql, tableName))),
    Effect.provide(layer),
    Effect.ensuring(Effect.sync(() => dir !== undefined && rmSync(dir, { recursive: true, force: true }))),
    Effect.runPromise
  )
}

const oursProcess = (
  backend: Backend,
  jobs: number,
  concurrency: number,
  ms: number,
  baseline?: typeof DurableQueue
): Contender => ({
  name: baseline === undefined
    ? `ours, concurrency ${concurrency} (default settings)`
    : `baseline ${BASELINE_DIR}, concurrency ${concurrency}`,
  run: () => withOurs(backend, (queue) => drainTimed(queue, jobs, BULK, concurrency, ms), baseline)
})

/** `runBatch` (issue #16): `RUN_BATCH_AT_ONCE` handler calls of up to `RUN_BATCH_SIZE` jobs, as the floor's 2 × 100. */
const oursRunBatch = (backend: Backend, jobs: number, ms: number): Contender => ({
  name: `ours runBatch (size ${RUN_BATCH_SIZE}, ${RUN_BATCH_AT_ONCE} at once)`,
  run: () => withOurs(backend, (queue) => drainBatchTimed(queue, jobs, BULK, RUN_BATCH_SIZE, RUN_BATCH_AT_ONCE, ms))
})

/** Like for like with graphile-worker's batch jobs: ours `run` on jobs whose payload is an array of 500 items. */
const oursItems = (backend: Backend, items: number, concurrency: number, ms: number): Contender => ({
  name: `ours run on batch jobs (${GRAPHILE_BATCH} items a job, as graphile's), concurrency ${concurrency}`,
  run: () =>
    withQueue(
      backend,
      Schema.Array(schema),
      (queue) => drainItemsTimed(queue, items, GRAPHILE_BATCH, concurrency, ms)
    )
})

const oursBulk = (backend: Backend, jobs: number): Contender => ({
  // SQLite has one writer: one call in flight, as its floor (the label said 4 for both until issue 16's SQL part).
  name: `ours offerAll (${BULK} a call, ${backend === "pg" ? 4 : 1} in flight)`,
  run: () =>
    withOurs(backend, (queue) => {
      const all = batches(jobs, BULK)
      return timedOn(backend)(jobs, () => pool(all.length, backend === "pg" ? 4 : 1, (b) => offerAllOf(queue, all[b]!)))
    })
})

/** Another checkout's SQL `DurableQueue` (`--baseline <dir>`, its own node_modules), for its bulk offer rows. */
interface Baseline {
  readonly dir: string
  readonly Effect: typeof Effect
  readonly DurableQueue: typeof DurableQueue
  readonly SqlClient: typeof SqlClient
  readonly PgClient: typeof PgClient
  readonly SqliteClient: typeof SqliteClient
}

const loadBaseline = async (dir: string): Promise<Baseline> => ({
  dir,
  Effect: await import(`${dir}/node_modules/effect/dist/esm/Effect.js`),
  DurableQueue: await import(`${dir}/src/sql/DurableQueue.ts`),
  SqlClient: await import(`${dir}/node_modules/@effect/sql/dist/esm/SqlClient.js`),
  PgClient: await import(`${dir}/node_modules/@effect/sql-pg/dist/esm/PgClient.js`),
  SqliteClient: await import(`${dir}/node_modules/@effect/sql-sqlite-node/dist/esm/SqliteClient.js`)
})

/** `oursBulk` with the baseline's code (its own Effect, clients and layers). */
const baselineBulk = (base: Baseline, backend: Backend, jobs: number): Contender => ({
  name: `baseline (${base.dir}) offerAll (${BULK} a call, ${backend === "pg" ? 4 : 1} in flight)`,
  run: () => {
    const E = base.Effect
    const tableName = unique("bench_dq_base")
    const dir = backend === "sqlite" ? mkdtempSync(join(os.tmpdir(), "bench-dq-")) : undefined
    const layer = dir === undefined
      ? base.PgClient.layer({ ...PgOptions })
      : base.SqliteClient.layer({ filename: join(dir, "queue.db") })
    return E.gen(function*() {
      const queue = yield* base.DurableQueue.make({ name: "jobs", tableName, schema })
      const all = batches(jobs, BULK)
      return yield* E.promise(() =>
        timedOn(backend)(
          jobs,
          () =>
            pool(
              all.length,
              backend === "pg" ? 4 : 1,
              (b) => E.runPromise(queue.offerAll(all[b]!.map((n) => ({ value: { n } }))))
            )
        )
      )
    }).pipe(
      E.scoped,
      E.ensuring(E.ignore(E.flatMap(base.SqlClient.SqlClient, (sql) => sql`DROP TABLE IF EXISTS ${sql(tableName)}`))),
      E.provide(layer as Layer.Layer<SqlClient.SqlClient, unknown>),
      E.ensuring(E.sync(() => dir !== undefined && rmSync(dir, { recursive: true, force: true }))),
      E.runPromise
    )
  }
})

const oursSingle = (jobs: number): Contender => ({
  name: "ours offer, 16 in flight",
  // As an Effect program offers: 16 fibers in one `Effect.forEach` (not a `runPromise` per offer, a fiber each).
  run: () =>
    withOurs(
      "pg",
      (queue) =>
        timed(jobs, () =>
          Effect.runPromise(Effect.forEach(
            Array.from({ length: jobs }, (_, n) => n),
            (n) => queue.offer({ n }),
            { concurrency: 16, discard: true }
          )))
    )
})

// ---------------------------------------------------------------- pg-boss

const withBoss = async <X>(body: (boss: PgBoss, pending: () => Promise<number>) => Promise<X>): Promise<X> => {
  const schemaName = unique("bench_pgboss")
  const boss = new PgBoss({ ...connection, schema: schemaName, supervise: false, schedule: false, max: 12 })
  boss.on("error", (error) => console.error("pg-boss:", error))
  await boss.start()
  await boss.createQueue("jobs")
  const pending = async () => {
    const rows = await boss.getDb().executeSql(
      `SELECT count(*)::int AS n FROM ${schemaName}.job WHERE name = 'jobs' AND state < 'completed'`,
      []
    ) as { rows: Array<{ n: number }> }
    return rows.rows[0]!.n
  }
  try {
    return await body(boss, pending)
  } finally {
    await boss.stop({ graceful: false, wait: true }).catch(() => undefined)
    const client = new pg.Client(connection)
    await client.connect()
    await client.query(`DROP SCHEMA IF EXISTS ${schemaName} CASCADE`).catch(() => undefined)
    await client.end()
  }
}

const bossInsert = (boss: PgBoss, ns: ReadonlyArray<number>) =>
  boss.insert(ns.map((n) => ({ name: "jobs", data: { n } })))

const bossProcess = (jobs: number, ms: number): Contender => ({
  name: "pg-boss 10, 10 workers × batchSize 200, poll 0.5 s",
  run: () =>
    withBoss(async (boss, pending) => {
      for (const batch of batches(jobs, BULK)) await bossInsert(boss, batch)
      const handled = counter(jobs)
      return timed(jobs, async () => {
        for (let w = 0; w < 10; w++) {
          await boss.work<{ n: number }>("jobs", { batchSize: 200, pollingIntervalSeconds: 0.5 }, (batch) =>
            Promise.all(batch.map(async () => {
              await work(ms)
              handled.hit()
            })))
        }
        await handled.all
        await until(async () =>
          (await pending()) === 0
        )
        await boss.offWork("jobs")
      })
    })
})

const bossBulk = (jobs: number): Contender => ({
  name: `pg-boss 10 insert (${BULK} a call, 4 in flight)`,
  run: () =>
    withBoss((boss) => {
      const all = batches(jobs, BULK)
      return serverTimed(jobs, () => pool(all.length, 4, (b) => bossInsert(boss, all[b]!)))
    })
})

const bossSingle = (jobs: number): Contender => ({
  name: "pg-boss 10 send, 16 in flight",
  run: () => withBoss((boss) => timed(jobs, () => pool(jobs, 16, (n) => boss.send("jobs", { n }))))
})

// ---------------------------------------------------------------- graphile-worker

const withGraphile = async <X>(body: (pgPool: pg.Pool, schemaName: string) => Promise<X>): Promise<X> => {
  const schemaName = unique("bench_graphile")
  const pgPool = new pg.Pool({ ...connection, max: 66 })
  const utils = await makeWorkerUtils({ pgPool, schema: schemaName, logger: silent })
  try {
    await utils.migrate()
    return await body(pgPool, schemaName)
  } finally {
    await pgPool.query(`DROP SCHEMA IF EXISTS ${schemaName} CASCADE`).catch(() => undefined)
    await utils.release()
    await pgPool.end()
  }
}

/** graphile-worker's bulk path: its `add_jobs` function, one statement for the batch. */
const graphileAdd = (pgPool: pg.Pool, schemaName: string, payloads: ReadonlyArray<unknown>) =>
  pgPool.query(
    `SELECT count(*) FROM ${schemaName}.add_jobs(ARRAY(
       SELECT ROW('job', p, NULL, NULL, NULL, NULL, NULL, NULL)::${schemaName}.job_spec FROM json_array_elements($1::json) AS p))`,
    [JSON.stringify(payloads)]
  )

const graphileProcess = (jobs: number, concurrency: number, ms: number, batched: boolean): Contender => ({
  name: batched
    ? `graphile-worker 0.16 batch jobs (${GRAPHILE_BATCH} items a job), concurrency ${concurrency}`
    : `graphile-worker 0.16, concurrency ${concurrency} (${jobs.toLocaleString("en-US")} jobs)`,
  run: () =>
    withGraphile(async (pgPool, schemaName) => {
      for (const batch of batches(jobs, batched ? BULK * GRAPHILE_BATCH : BULK)) {
        const payloads = batched
          ? batches(batch.length, GRAPHILE_BATCH).map((items) => items.map((n) => ({ n })))
          : batch.map((n) => ({ n }))
        await graphileAdd(pgPool, schemaName, payloads)
      }
      const handled = counter(jobs)
      const task = async (payload: unknown) => {
        const items = Array.isArray(payload) ? payload : [payload]
        await Promise.all(items.map(async () => {
          await work(ms)
          handled.hit()
        }))
      }
      let runner: Awaited<ReturnType<typeof runGraphile>> | undefined
      const sample = await timed(jobs, async () => {
        runner = await runGraphile({
          pgPool,
          schema: schemaName,
          concurrency,
          logger: silent,
          noHandleSignals: true,
          taskList: { job: task }
        })
        await handled.all
        await until(async () =>
          (await pgPool.query(`SELECT count(*)::int AS n FROM ${schemaName}._private_jobs`)).rows[0].n === 0
        )
      })
      await runner!.stop()
      return sample
    })
})

const graphileBulk = (jobs: number): Contender => ({
  name: `graphile-worker 0.16 add_jobs (${BULK} a call, 4 in flight)`,
  run: () =>
    withGraphile((pgPool, schemaName) => {
      const all = batches(jobs, BULK)
      return serverTimed(
        jobs,
        () => pool(all.length, 4, (b) => graphileAdd(pgPool, schemaName, all[b]!.map((n) => ({ n }))))
      )
    })
})

const graphileSingle = (jobs: number): Contender => ({
  name: "graphile-worker 0.16 addJob, 16 in flight",
  run: () =>
    withGraphile(async (pgPool, schemaName) => {
      const utils = await makeWorkerUtils({ pgPool, schema: schemaName, logger: silent })
      try {
        return await timed(jobs, () => pool(jobs, 16, (n) => utils.addJob("job", { n })))
      } finally {
        await utils.release()
      }
    })
})

// ---------------------------------------------------------------- floors

interface FloorEngine {
  readonly fill: (ns: ReadonlyArray<number>) => Promise<unknown>
  readonly lease: () => Promise<Array<{ id: number | string; payload: string }>>
  readonly ack: (ids: ReadonlyArray<number | string>) => Promise<unknown>
}

const withPgFloor = async <X>(body: (engine: FloorEngine) => Promise<X>): Promise<X> => {
  const table = unique("bench_floor")
  const pgPool = new pg.Pool({ ...connection, max: 6 })
  await pgPool.query(
    `CREATE TABLE ${table} (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL, locked_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity')`
  )
  try {
    return await body({
      fill: (ns) =>
        pgPool.query(`INSERT INTO ${table} (payload) SELECT unnest($1::text[])`, [
          ns.map((n) => JSON.stringify({ n }))
        ]),
      lease: async () =>
        (await pgPool.query(
          `UPDATE ${table} SET locked_until = now() + interval '30 seconds' WHERE id IN (
             SELECT id FROM ${table} WHERE locked_until < now() ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED
           ) RETURNING id, payload`
        )).rows,
      ack: (ids) => pgPool.query(`DELETE FROM ${table} WHERE id = ANY($1::bigint[])`, [ids])
    })
  } finally {
    await pgPool.query(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined)
    await pgPool.end()
  }
}

const withSqliteFloor = async <X>(body: (engine: FloorEngine) => Promise<X>): Promise<X> => {
  const dir = mkdtempSync(join(os.tmpdir(), "bench-floor-"))
  const db = new Database(join(dir, "floor.db"))
  db.pragma("journal_mode = WAL")
  db.exec("CREATE TABLE floor (id INTEGER PRIMARY KEY, payload TEXT NOT NULL, locked_until INTEGER NOT NULL DEFAULT 0)")
  const insert = db.prepare("INSERT INTO floor (payload) VALUES (?)")
  const fill = db.transaction((ns: ReadonlyArray<number>) => {
    for (const n of ns) insert.run(JSON.stringify({ n }))
  })
  const lease = db.prepare(`UPDATE floor SET locked_until = ? WHERE id IN (
    SELECT id FROM floor WHERE locked_until < ? ORDER BY id LIMIT 100) RETURNING id, payload`)
  const ack = db.prepare("DELETE FROM floor WHERE id IN (SELECT value FROM json_each(?))")
  try {
    return await body({
      fill: async (ns) => fill(ns),
      lease: async () => {
        const now = Date.now()
        return lease.all(now + 30_000, now) as Array<{ id: number; payload: string }>
      },
      ack: async (ids) => ack.run(JSON.stringify(ids))
    })
  } finally {
    db.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

const floorProcess = (withFloor: typeof withPgFloor, jobs: number, concurrency: number, ms: number): Contender => ({
  name: `FLOOR (lease 100 + ack 100, 2 loops × ${concurrency / 2})`,
  run: () =>
    withFloor(async (engine) => {
      for (const batch of batches(jobs, BULK)) await engine.fill(batch)
      let handled = 0
      const loop = async () => {
        while (true) {
          const rows = await engine.lease()
          if (rows.length === 0) return
          await pool(rows.length, concurrency / 2, async (i) => {
            JSON.parse(rows[i]!.payload)
            await work(ms)
            handled++
          })
          await engine.ack(rows.map((row) => row.id))
        }
      }
      const sample = await timed(jobs, () => Promise.all([loop(), loop()]))
      if (handled !== jobs) throw new Error(`floor handled ${handled} of ${jobs}`)
      return sample
    })
})

const floorBulk = (withFloor: typeof withPgFloor, jobs: number, inFlight: number): Contender => ({
  name: `FLOOR (one INSERT of ${BULK}${inFlight > 1 ? `, ${inFlight} in flight` : ", in a transaction"})`,
  run: () =>
    withFloor((engine) => {
      const all = batches(jobs, BULK)
      return (withFloor === withPgFloor ? serverTimed : timed)(
        jobs,
        () => pool(all.length, inFlight, (b) => engine.fill(all[b]!))
      )
    })
})

// ---------------------------------------------------------------- latency and lateness (idle consumers)

/** Ours: consumer and producer on clients of their own (as two processes), default settings (100 ms poll, notify). */
const oursIdle = <X>(measure: IdleMeasure<X>) =>
  withOurs("pg", async (consumer, producer) => {
    let started: (i: number) => void = () => {}
    const fiber = Effect.runFork(consumer.run(({ n }) => Effect.sync(() => started(n)), { concurrency: 16 }))
    await sleep(500)
    const out = await measure(
      (n, delay) => Effect.runPromise(delay === undefined ? producer.offer({ n }) : producer.offer({ n }, { delay })),
      (f) => (started = f)
    )
    await Effect.runPromise(Fiber.interrupt(fiber))
    return out
  })

/** pg-boss: `send` (with `startAfter`, a Date, for a delayed job); its workers poll every 0.5 s (its minimum). */
const bossIdle = <X>(measure: IdleMeasure<X>) =>
  withBoss(async (boss) => {
    let started: (i: number) => void = () => {}
    await boss.work<{ n: number }>("jobs", { batchSize: 16, pollingIntervalSeconds: 0.5 }, (batch) =>
      Promise.all(batch.map(async (job) =>
        started(job.data.n)
      )))
    await sleep(500)
    return measure(
      (n, delay) =>
        delay === undefined
          ? boss.send("jobs", { n })
          : boss.send("jobs", { n }, { startAfter: new Date(Date.now() + delay) }),
      (f) => (started = f)
    )
  })

/**
 * graphile-worker: `addJob` (with `runAt` for a delayed job); a ready job is heard by LISTEN, a future one is found by
 * its poll (`pollInterval`; undefined: its default, 2 s).
 */
const graphileIdle = <X>(measure: IdleMeasure<X>, pollInterval?: number) =>
  withGraphile(async (pgPool, schemaName) => {
    let started: (i: number) => void = () => {}
    const runner = await runGraphile({
      pgPool,
      schema: schemaName,
      concurrency: 16,
      ...(pollInterval === undefined ? {} : { pollInterval }),
      logger: silent,
      noHandleSignals: true,
      taskList: { job: async (payload) => started((payload as { n: number }).n) }
    })
    const utils = await makeWorkerUtils({ connectionString, schema: schemaName, logger: silent })
    await sleep(500)
    try {
      return await measure(
        (n, delay) =>
          delay === undefined
            ? utils.addJob("job", { n })
            : utils.addJob("job", { n }, { runAt: new Date(Date.now() + delay) }),
        (f) => (started = f)
      )
    } finally {
      await utils.release()
      await runner.stop()
    }
  })

const main = async () => {
  const fmt = (x: number) => Math.round(x).toLocaleString("en-US")
  console.log(
    `SQL durable queues: ${fmt(JOBS)} jobs per measurement, ${ROUNDS} rounds interleaved${QUICK ? " (--quick)" : ""}`
  )
  console.log(machine())
  const base = BASELINE_DIR === undefined ? undefined : await loadBaseline(BASELINE_DIR)
  const baseBulk = (backend: Backend) => base === undefined ? [] : [baselineBulk(base, backend, JOBS)]
  const baseProcess = (backend: Backend, jobs: number, concurrency: number, ms: number) =>
    base === undefined ? [] : [oursProcess(backend, jobs, concurrency, ms, base.DurableQueue)]
  // --only-offers: the offer rows alone (the offer path's own work, minutes shorter).
  const offersOnly = flag("only-offers") || ONLY_BULK
  const scenarios: Array<Scenario> = offersOnly ?
    [] :
    processScenarios("PostgreSQL ", JOBS, PROCESS_GRID, (jobs, concurrency, ms) => [
      oursProcess("pg", jobs, concurrency, ms),
      ...baseProcess("pg", jobs, concurrency, ms),
      ...(ONLY_OURS ? [] : [
        graphileProcess(jobs, concurrency, ms, true),
        // Slow here (one round trip to take and one to complete each job): fewer jobs, so a round stays short.
        graphileProcess(Math.min(jobs, QUICK ? 1_000 : 4_000), concurrency, ms, false),
        bossProcess(jobs, ms)
      ]),
      floorProcess(withPgFloor, jobs, concurrency, ms)
    ])
  if (!offersOnly) {
    // Batch handlers (issue #16): runBatch against the floor (both 2 × 100 leased), pg-boss 10 × 200 and
    // graphile-worker's batch jobs; then ours on batch jobs as graphile's (500 items a job, one attempt for all).
    scenarios.push({
      label: `PostgreSQL batch handlers, no-op (${fmt(JOBS)} jobs)`,
      contenders: [
        oursRunBatch("pg", JOBS, 0),
        floorProcess(withPgFloor, JOBS, 16, 0),
        oursProcess("pg", JOBS, 16, 0),
        ...(ONLY_OURS ? [] : [bossProcess(JOBS, 0), graphileProcess(JOBS, 16, 0, true)])
      ]
    })
    if (!ONLY_OURS) {
      scenarios.push({
        label: `PostgreSQL batch jobs of ${GRAPHILE_BATCH} items, no-op, concurrency 16 (${fmt(JOBS)} items)`,
        contenders: [oursItems("pg", JOBS, 16, 0), graphileProcess(JOBS, 16, 0, true)]
      })
    }
    scenarios.push({
      label: `SQLite batch handlers, no-op (${fmt(JOBS)} jobs)`,
      contenders: [
        oursRunBatch("sqlite", JOBS, 0),
        floorProcess(withSqliteFloor, JOBS, 16, 0),
        oursProcess("sqlite", JOBS, 16, 0)
      ]
    })
  }
  if (!ONLY_OURS) {
    scenarios.push({
      label: "PostgreSQL bulk offer",
      contenders: [
        oursBulk("pg", JOBS),
        graphileBulk(JOBS),
        bossBulk(JOBS),
        floorBulk(withPgFloor, JOBS, 4),
        ...baseBulk("pg")
      ]
    })
    const single = Math.ceil(JOBS / 4)
    scenarios.push({
      label: `PostgreSQL offer one by one (${fmt(single)} jobs)`,
      contenders: [oursSingle(single), graphileSingle(single), bossSingle(single)]
    })
  }
  if (!offersOnly) {
    scenarios.push(...processScenarios("SQLite ", JOBS, [[16, 0], [16, 1]], (jobs, concurrency, ms) => [
      oursProcess("sqlite", jobs, concurrency, ms),
      ...baseProcess("sqlite", jobs, concurrency, ms),
      floorProcess(withSqliteFloor, jobs, concurrency, ms)
    ]))
  }
  // No peer on SQLite: its bulk offer row is ours and the floor's, so `--only-ours` keeps it.
  {
    scenarios.push({
      label: "SQLite bulk offer",
      contenders: [oursBulk("sqlite", JOBS), floorBulk(withSqliteFloor, JOBS, 1), ...baseBulk("sqlite")]
    })
  }
  // --only-batch: the batch-handler scenarios alone (issue #16's runBatch rows); --only-sqlite: SQLite's alone;
  // --only-bulk: the bulk offer rows alone.
  const picked = scenarios.filter((scenario) =>
    (!flag("only-batch") || scenario.label.includes("batch")) &&
    (!flag("only-sqlite") || scenario.label.startsWith("SQLite")) &&
    (!ONLY_BULK || scenario.label.endsWith("bulk offer"))
  )
  if (!ONLY_LATENCY) await compare(picked, ROUNDS)

  if (!flag("skip-latency") && !ONLY_BULK) {
    console.log(
      `\nLatency on PostgreSQL, offer (another client) → handler start, ${SAMPLES} offers at 50 jobs/s, idle consumers at default settings:\n`
    )
    console.log("| consumer | p50 ms | p99 ms | max ms | samples |")
    console.log("|---|---:|---:|---:|---:|")
    console.log(latencyLine("ours (DurableQueue, PostgreSQL, notify)", await oursIdle(latencyOf(SAMPLES))))
    console.log(latencyLine("pg-boss 10 (poll 0.5 s, its minimum)", await bossIdle(latencyOf(SAMPLES))))
    console.log(latencyLine("graphile-worker 0.16 (LISTEN)", await graphileIdle(latencyOf(SAMPLES))))
    console.log(
      `\nLateness of delayed jobs on PostgreSQL, handler start − due time: ${LATE_JOBS} jobs offered at 50 jobs/s (another client), each due 200–1,000 ms after it is sent (spread, scrambled), ${LATE_ROUNDS} rounds interleaved, idle consumers, concurrency 16:\n`
    )
    await compareLateness([
      {
        name: "ours (DurableQueue, PostgreSQL; poll 100 ms, default; wakes at the next due time)",
        run: () => oursIdle(latenessOf(LATE_JOBS))
      },
      { name: "pg-boss 10 `startAfter` (poll 0.5 s, its minimum)", run: () => bossIdle(latenessOf(LATE_JOBS)) },
      {
        name: "graphile-worker 0.16 `runAt` (pollInterval 2 s, its default)",
        run: () => graphileIdle(latenessOf(LATE_JOBS), 2_000)
      },
      {
        name: "graphile-worker 0.16 `runAt` (pollInterval 100 ms, as our poll)",
        run: () => graphileIdle(latenessOf(LATE_JOBS), 100)
      }
    ], LATE_ROUNDS)
  }
  await monitor?.end()
  console.log(`\nload average after: ${os.loadavg().map((x) => x.toFixed(2)).join(", ")}`)
}

main().then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
