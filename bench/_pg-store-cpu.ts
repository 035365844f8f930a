/**
 * The PostgreSQL store alone, through its port (no core, no Effect fiber per job): what the store's own JavaScript,
 * `@effect/sql(-pg)`, node-postgres cost this process per job, and what its statements cost the database backend
 * (issue #16, branch pgcpu: both share the machine's 2 cores). Per round, a fresh table: fills it with `--jobs` jobs
 * (`offer`, 1,000 a call), then one loop leases `--batch` jobs and acknowledges them in one settlement until the
 * queue is empty (the drain). The client has ONE connection (`maxConnections: 1`, no notifications), so the drain's
 * statements all run on one backend, whose CPU time is read from /proc/<pid>/schedstat (the database is on this
 * machine; other sessions' load does not enter it). Prints the medians of `--rounds` after one warm-up round, the
 * drain's line last (bench/_ab.mjs reads it). `--safe`: the store under `SqlClient.SafeIntegers`.
 *
 *   npx tsx bench/_pg-store-cpu.ts [--jobs 20000] [--batch 256] [--rounds 5] [--safe] [--profile <file>]
 *   node bench/_ab.mjs --a /work/wt/base --b . --runs 6 -- npx tsx $PWD/bench/_pg-store-cpu.ts
 *
 * `--profile <file>`: the last round's drain alone, profiled (as bench/_profile.ts) into <file>.
 */
import type * as PgClientModule from "@effect/sql-pg/PgClient"
import type * as SqlClientModule from "@effect/sql/SqlClient"
import type * as EffectModule from "effect/Effect"
import type * as SchemaModule from "effect/Schema"
import { randomUUID } from "node:crypto"
import { readFileSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import * as os from "node:os"
import type * as OptionsModule from "../src/internal/durableQueue/options.js"
import type * as SqlStoreModule from "../src/internal/durableQueue/sqlStore.js"
import type { OfferedJob } from "../src/internal/durableQueue/store.js"
import { arg, median } from "./_shared.js"

// The checkout in the working directory (its src and node_modules: one copy of effect), so bench/_ab.mjs can run
// this file in a checkout that lacks it: `node bench/_ab.mjs --a <dir> -- npx tsx $PWD/bench/_pg-store-cpu.ts`.
const root = process.cwd()
const Effect: typeof EffectModule = await import(`${root}/node_modules/effect/dist/esm/Effect.js`)
const Schema: typeof SchemaModule = await import(`${root}/node_modules/effect/dist/esm/Schema.js`)
const PgClient: typeof PgClientModule = await import(`${root}/node_modules/@effect/sql-pg/dist/esm/PgClient.js`)
const SqlClient: typeof SqlClientModule = await import(`${root}/node_modules/@effect/sql/dist/esm/SqlClient.js`)
const { queueSettings }: typeof OptionsModule = await import(`${root}/src/internal/durableQueue/options.ts`)
const { makeStore }: typeof SqlStoreModule = await import(`${root}/src/internal/durableQueue/sqlStore.ts`)

const JOBS = arg("jobs", 20_000)
const BATCH = arg("batch", 256)
const OFFER = 1_000
const ROUNDS = arg("rounds", 5)
const SAFE = process.argv.includes("--safe")
const profileTo = process.argv.includes("--profile") ? process.argv[process.argv.indexOf("--profile") + 1] : undefined

interface Sample {
  readonly rate: number
  readonly cpu: number
  /** The backend's CPU µs per job. */
  readonly db: number
}

const round = (profile = false): Promise<{ offer: Sample; drain: Sample }> => {
  const tableName = `pg_store_cpu_${randomUUID().replace(/-/g, "").slice(0, 12)}`
  return Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* Effect.addFinalizer(() =>
      Effect.ignore(Effect.forEach(
        [tableName, `${tableName}_paused`],
        (table) => sql`DROP TABLE IF EXISTS ${sql(table)}`,
        { discard: true }
      ))
    )
    const [{ pid }] = yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`
    /** The backend's time on a CPU (µs), from /proc/<pid>/schedstat. */
    const dbMicros = () => Number(readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ")[0]) / 1_000
    const timed = (run: EffectModule.Effect<unknown, unknown>) =>
      Effect.promise(async (): Promise<Sample> => {
        const cpu = process.cpuUsage()
        const db = dbMicros()
        const t = performance.now()
        await Effect.runPromise(Effect.orDie(run))
        const seconds = (performance.now() - t) / 1000
        const used = process.cpuUsage(cpu)
        return { rate: JOBS / seconds, cpu: (used.user + used.system) / JOBS, db: (dbMicros() - db) / JOBS }
      })
    const settings = yield* queueSettings({ name: "jobs", schema: Schema.Number })
    const store = yield* makeStore(settings, { tableName, notify: false })
    const batches = Array.from(
      { length: Math.ceil(JOBS / OFFER) },
      (_, b) =>
        Array.from({ length: Math.min(OFFER, JOBS - b * OFFER) }, (_, k): OfferedJob => ({
          id: randomUUID(),
          payload: JSON.stringify({ n: b * OFFER + k }),
          custom: false,
          delayMillis: 0,
          priority: 0,
          options: undefined
        }))
    )
    const offer = yield* timed(Effect.forEach(batches, store.offer, { discard: true }))
    let done = 0
    const loop = Effect.gen(function*() {
      while (true) {
        const leased = yield* store.lease(BATCH)
        if (leased.length === 0) return
        for (const job of leased) JSON.parse(job.payload)
        yield* store.settle(leased.map((job) => ({
          job,
          settlement: { _tag: "Ack", result: undefined, resultTtlMillis: settings.resultTtlMillis }
        })))
        done += leased.length
      }
    }).pipe(Effect.provideService(SqlClient.SafeIntegers, SAFE))
    const session = new Session()
    if (profile) {
      session.connect()
      yield* Effect.promise(() => session.post("Profiler.enable"))
      yield* Effect.promise(() => session.post("Profiler.setSamplingInterval", { interval: 200 }))
      yield* Effect.promise(() => session.post("Profiler.start"))
    }
    const drain = yield* timed(loop)
    if (profile) {
      const { profile: taken } = yield* Effect.promise(() => session.post("Profiler.stop"))
      writeFileSync(profileTo!, JSON.stringify(taken))
    }
    if (done !== JOBS) throw new Error(`drained ${done} of ${JOBS}`)
    return { offer, drain }
  }).pipe(
    Effect.scoped,
    Effect.provide(
      PgClient.layer({ host: "127.0.0.1", port: 5432, database: "test", username: "postgres", maxConnections: 1 })
    ),
    Effect.runPromise
  )
}

const main = async () => {
  await round()
  const rounds: Array<{ offer: Sample; drain: Sample }> = []
  for (let r = 0; r < ROUNDS; r++) rounds.push(await round(profileTo !== undefined && r === ROUNDS - 1))
  const line = (what: string, pick: (r: { offer: Sample; drain: Sample }) => Sample) =>
    `${what}: ${Math.round(median(rounds.map((r) => pick(r).rate)))} jobs/s, ${
      median(rounds.map((r) => pick(r).cpu)).toFixed(2)
    } µs CPU per job, ${median(rounds.map((r) => pick(r).db)).toFixed(2)} µs database backend CPU per job`
  console.log(
    `PostgreSQL store alone${SAFE ? " (SafeIntegers)" : ""}, ${JOBS} jobs, medians of ${ROUNDS}, load ${
      os.loadavg()[0]!.toFixed(1)
    }`
  )
  console.log(line(`offer (${OFFER} a call)`, (r) => r.offer))
  console.log(line(`drain (lease ${BATCH} + ack)`, (r) => r.drain))
}

main().then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
