/**
 * The SQLite store alone, through its port (no core, no Effect fiber per job): what the store's own JavaScript,
 * `@effect/sql`, better-sqlite3 and SQLite cost per job (issue #16, the store side). Per round, a fresh file: fills
 * a queue with `--jobs` jobs (`offer`, `--offer` a call: the bulk offer's cost), then one loop leases `--batch` jobs
 * and acknowledges them in one settlement until the queue is empty (the drain's cost); prints both as jobs/s and
 * this process's CPU µs per job (`process.cpuUsage`), the medians of `--rounds` after one warm-up round. Run it in
 * two checkouts to compare (bench/_ab.mjs reads the drain's line, the last; `--offer-line` puts the offer's last).
 *
 *   npx tsx bench/_sqlite-store-cpu.ts [--jobs 20000] [--batch 256] [--offer 1000] [--rounds 5] [--offer-line]
 *     [--profile <file>]
 *
 * `--profile <file>`: the last round's drain alone, profiled (as bench/_profile.ts) into <file>.
 */
import type * as SqliteClientModule from "@effect/sql-sqlite-node/SqliteClient"
import type * as EffectModule from "effect/Effect"
import type * as SchemaModule from "effect/Schema"
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import * as os from "node:os"
import { join } from "node:path"
import type * as OptionsModule from "../src/internal/durableQueue/options.js"
import type * as SqlStoreModule from "../src/internal/durableQueue/sqlStore.js"
import type { OfferedJob } from "../src/internal/durableQueue/store.js"
import { arg, median } from "./_shared.js"

// The checkout in the working directory (its src and node_modules: one copy of effect), so bench/_ab.mjs can run
// this file in a checkout that lacks it: `node bench/_ab.mjs --a <dir> -- npx tsx $PWD/bench/_sqlite-store-cpu.ts`.
const root = process.cwd()
const Effect: typeof EffectModule = await import(`${root}/node_modules/effect/dist/esm/Effect.js`)
const Schema: typeof SchemaModule = await import(`${root}/node_modules/effect/dist/esm/Schema.js`)
const SqliteClient: typeof SqliteClientModule = await import(
  `${root}/node_modules/@effect/sql-sqlite-node/dist/esm/SqliteClient.js`
)
const { queueSettings }: typeof OptionsModule = await import(`${root}/src/internal/durableQueue/options.ts`)
const { makeStore }: typeof SqlStoreModule = await import(`${root}/src/internal/durableQueue/sqlStore.ts`)

const JOBS = arg("jobs", 20_000)
const BATCH = arg("batch", 256)
const OFFER = arg("offer", 1_000)
const ROUNDS = arg("rounds", 5)
const profileTo = process.argv.includes("--profile") ? process.argv[process.argv.indexOf("--profile") + 1] : undefined

interface Sample {
  readonly rate: number
  readonly cpu: number
}
const timed = async (body: () => Promise<unknown>): Promise<Sample> => {
  const cpu = process.cpuUsage()
  const t = performance.now()
  await body()
  const seconds = (performance.now() - t) / 1000
  const used = process.cpuUsage(cpu)
  return { rate: JOBS / seconds, cpu: (used.user + used.system) / JOBS }
}

const round = async (profile = false) => {
  const dir = mkdtempSync(join(os.tmpdir(), "sqlite-store-cpu-"))
  try {
    return await Effect.gen(function*() {
      const settings = yield* queueSettings({ name: "jobs", schema: Schema.Number })
      const store = yield* makeStore(settings, { tableName: "jobs", notify: false })
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
      const offer = yield* Effect.promise(() =>
        timed(() => Effect.runPromise(Effect.forEach(batches, store.offer, { discard: true })))
      )
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
      })
      const session = new Session()
      if (profile) {
        session.connect()
        yield* Effect.promise(() => session.post("Profiler.enable"))
        yield* Effect.promise(() => session.post("Profiler.start"))
      }
      const drain = yield* Effect.promise(() => timed(() => Effect.runPromise(loop)))
      if (profile) {
        const { profile: taken } = yield* Effect.promise(() => session.post("Profiler.stop"))
        writeFileSync(profileTo!, JSON.stringify(taken))
      }
      if (done !== JOBS) throw new Error(`drained ${done} of ${JOBS}`)
      return { offer, drain }
    }).pipe(
      Effect.scoped,
      Effect.provide(SqliteClient.layer({ filename: join(dir, "q.db") })),
      Effect.runPromise
    )
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const main = async () => {
  await round()
  const rounds: Array<{ offer: Sample; drain: Sample }> = []
  for (let r = 0; r < ROUNDS; r++) rounds.push(await round(profileTo !== undefined && r === ROUNDS - 1))
  const line = (what: string, pick: (r: { offer: Sample; drain: Sample }) => Sample) =>
    `${what}: ${Math.round(median(rounds.map((r) => pick(r).rate)))} jobs/s, ${
      median(rounds.map((r) => pick(r).cpu)).toFixed(2)
    } µs CPU per job`
  console.log(`SQLite store alone, ${JOBS} jobs, medians of ${ROUNDS}, load ${os.loadavg()[0]!.toFixed(1)}`)
  const offer = line(`offer (${OFFER} a call)`, (r) => r.offer)
  const drain = line(`drain (lease ${BATCH} + ack)`, (r) => r.drain)
  console.log(process.argv.includes("--offer-line") ? `${drain}\n${offer}` : `${offer}\n${drain}`)
}

main().then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
