/**
 * The bulk offer path alone, for `node --cpu-prof`-style profiles: `--jobs` jobs offered with `offerAll` (1,000 a
 * call, 4 calls in flight, as bench/distributed*.ts), `--rounds` times; prints jobs/s and this process's CPU µs per
 * job of each round (`process.cpuUsage`). `--store redis|pg|sqlite`; `--single`: `offer` one by one, 16 in flight,
 * instead. With `--profile <file>`, the last round alone is profiled (the inspector's CPU profiler) into <file>.
 *
 *   npx tsx bench/_offer-cpu.ts --store redis --jobs 50000 --rounds 3 --profile /tmp/offer.cpuprofile
 *   node bench/_profile-summary.mjs /tmp/offer.cpuprofile
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
import { arg, batches, flag, pool, timed } from "./_shared.js"

const JOBS = arg("jobs", 50_000)
const ROUNDS = arg("rounds", 3)
const store = process.argv.includes("--store") ? process.argv[process.argv.indexOf("--store") + 1]! : "redis"
const profileTo = process.argv.includes("--profile") ? process.argv[process.argv.indexOf("--profile") + 1] : undefined
const schema = Schema.Struct({ n: Schema.Number })

const round = (last: boolean) =>
  Effect.gen(function*() {
    const queue = yield* benchQueue(store, "offer-cpu", schema)
    const all = batches(JOBS, 1_000)
    const session = new Session()
    if (last && profileTo !== undefined) {
      session.connect()
      yield* Effect.promise(() => session.post("Profiler.enable"))
      yield* Effect.promise(() => session.post("Profiler.start"))
    }
    const sample = yield* Effect.promise(() =>
      flag("single")
        ? timed(
          JOBS,
          () => Effect.runPromise(Effect.forEach(all.flat(), (n) => queue.offer({ n }), { concurrency: 16 }))
        )
        : timed(
          JOBS,
          () => pool(all.length, 4, (b) => Effect.runPromise(queue.offerAll(all[b]!.map((n) => ({ value: { n } })))))
        )
    )
    if (last && profileTo !== undefined) {
      const { profile } = yield* Effect.promise(() => session.post("Profiler.stop"))
      writeFileSync(profileTo, JSON.stringify(profile))
    }
    console.log(
      `${store} ${flag("single") ? "offer" : "offerAll"}: ${Math.round(sample.rate)} jobs/s, ${
        sample.cpu.toFixed(1)
      } µs CPU per job, load ${os.loadavg()[0]!.toFixed(1)}`
    )
  }).pipe(Effect.scoped)

const program = Effect.gen(function*() {
  for (let r = 0; r < ROUNDS; r++) yield* round(r === ROUNDS - 1)
})

const layer: Layer.Layer<SqlClient.SqlClient | RedisClient.RedisClient, unknown> = store === "redis"
  ? RedisClient.layer() as unknown as Layer.Layer<SqlClient.SqlClient | RedisClient.RedisClient, unknown>
  : (store === "pg"
    ? PgClient.layer({ host: "127.0.0.1", port: 5432, database: "test", username: "postgres" })
    : SqliteClient.layer({
      filename: join(mkdtempSync(join(os.tmpdir(), "offer-cpu-")), "q.db")
    })) as unknown as Layer.Layer<SqlClient.SqlClient | RedisClient.RedisClient, unknown>

Effect.runPromise(program.pipe(Effect.provide(layer))).then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
