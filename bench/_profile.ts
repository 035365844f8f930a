/**
 * The consumer alone, for `node --cpu-prof` (issue #16): fills a queue with `--jobs` jobs (offerAll, outside the
 * profile's interesting part), then drains it with `run` at `--concurrency` and a no-op handler, default settings,
 * (or `--ms` of waiting) and prints jobs/s and CPU µs per job of the drain. `--store redis|sqlite|pg`. With `--profile <file>`, the
 * drain alone is profiled (the inspector's CPU profiler, as `node --cpu-prof`, started after the fill) into <file>.
 *
 *   npx tsx bench/_profile.ts --store redis --jobs 50000 --profile /tmp/redis.cpuprofile
 *   node bench/_profile-summary.mjs /tmp/redis.cpuprofile
 */
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { mkdtempSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import * as os from "node:os"
import { join } from "node:path"
import * as RedisClient from "../src/redis/RedisClient.js"
import { benchQueue } from "./_benchQueue.js"
import { arg, batches, counter, timed, until } from "./_shared.js"

const JOBS = arg("jobs", 50_000)
const CONCURRENCY = arg("concurrency", 16)
/** The handler's work: `--ms` milliseconds of waiting (default none). */
const MS = arg("ms", 0)
const store = process.argv[process.argv.indexOf("--store") + 1] ?? "redis"
const schema = Schema.Struct({ n: Schema.Number })

const program = Effect.gen(function*() {
  const queue = yield* benchQueue(store, "profile", schema)
  for (const batch of batches(JOBS, 1_000)) yield* queue.offerAll(batch.map((n) => ({ value: { n } })))
  const handled = counter(JOBS)
  const profileTo = process.argv.includes("--profile") ? process.argv[process.argv.indexOf("--profile") + 1] : undefined
  const session = new Session()
  if (profileTo !== undefined) {
    session.connect()
    yield* Effect.promise(() => session.post("Profiler.enable"))
    // `--interval <µs>`: the sampling interval (V8's default is 1,000 µs: ~20 samples per 1,000 jobs at 20k/s).
    if (process.argv.includes("--interval")) {
      const interval = Number(process.argv[process.argv.indexOf("--interval") + 1])
      yield* Effect.promise(() => session.post("Profiler.setSamplingInterval", { interval }))
    }
    yield* Effect.promise(() => session.post("Profiler.start"))
  }
  const sample = yield* Effect.promise(() =>
    timed(JOBS, async () => {
      Effect.runFork(queue.run(() =>
        MS === 0 ? Effect.sync(handled.hit) : Effect.zipRight(Effect.sleep(MS), Effect.sync(handled.hit)), {
        concurrency: CONCURRENCY
      }))
      await handled.all
      await until(async () =>
        (await Effect.runPromise(queue.size)) === 0
      )
    })
  )
  if (profileTo !== undefined) {
    const { profile } = yield* Effect.promise(() => session.post("Profiler.stop"))
    writeFileSync(profileTo, JSON.stringify(profile))
  }
  console.log(
    `${store}: ${Math.round(sample.rate)} jobs/s, ${sample.cpu.toFixed(1)} µs CPU per job, load ${
      os.loadavg()[0]!.toFixed(1)
    }`
  )
})

const layer: Layer.Layer<SqlClient.SqlClient | RedisClient.RedisClient, unknown> = store === "redis"
  ? RedisClient.layer() as unknown as Layer.Layer<SqlClient.SqlClient | RedisClient.RedisClient, unknown>
  : (store === "pg"
    ? PgClient.layer({ host: "127.0.0.1", port: 5432, database: "test", username: "postgres" })
    : SqliteClient.layer({
      filename: join(mkdtempSync(join(os.tmpdir(), "profile-")), "q.db")
    })) as unknown as Layer.Layer<SqlClient.SqlClient | RedisClient.RedisClient, unknown>

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(layer))).then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
