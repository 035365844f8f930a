/**
 * The dashboard's per-sample cost (issue #15): the time of one sample (a Redis queue's counts, dead letters and six
 * job lists, the in-process counters, the snapshot's JSON) and the snapshot's size, with a queue holding
 * `--jobs` waiting jobs and 100 dead letters. Run once per interval (1 s by default) whatever the jobs/s.
 *
 *   npx tsx bench/_sample-cost.ts [--pg] [--jobs 10000] [--samples 50]
 */
import { PgClient } from "@effect/sql-pg"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as os from "node:os"
import type * as DurableQueue from "../src/DurableQueue.js"
import { Sampler } from "../src/internal/dashboard/sampler.js"
import * as RedisDurableQueue from "../src/redis/DurableQueue.js"
import * as RedisClient from "../src/redis/RedisClient.js"
import * as SqlDurableQueue from "../src/sql/DurableQueue.js"
import { arg, cleanup, flag, median } from "./_shared.js"

const PG = flag("pg")
const JOBS = arg("jobs", 10_000)
const SAMPLES = arg("samples", 50)

const PgLayer = PgClient.layer({ host: "127.0.0.1", port: 5432, database: "test", username: "postgres" })

const measure = (queue: DurableQueue.DurableQueue<number>) =>
  Effect.gen(function*() {
    yield* queue.offerAll(Array.from({ length: 100 }, (_, n) => ({ value: n, id: `dead-${n}` })))
    yield* Effect.forEach(Array.from({ length: 100 }), () => queue.take(() => Effect.fail("no")), { discard: true })
    yield* queue.offerAll(Array.from({ length: JOBS }, (_, n) => ({ value: n })))
    // The sampler alone (no server): an action's poke makes each `current` read the stores anew.
    const sampler = new Sampler([queue], {
      title: "t",
      actions: false,
      readOnly: true,
      intervalMillis: 3_600_000,
      modules: !flag("no-modules"),
      processMemory: undefined
    })
    const times: Array<number> = []
    const cpus: Array<number> = []
    let size = 0
    for (let i = 0; i < SAMPLES; i++) {
      sampler.poke()
      const t = performance.now()
      const c = process.cpuUsage()
      const json = yield* sampler.current
      const used = process.cpuUsage(c)
      cpus.push((used.user + used.system) / 1000)
      times.push(performance.now() - t)
      size = json.length
    }
    console.log(`load ${os.loadavg()[0]!.toFixed(1)}; ${JOBS} waiting, 100 dead letters`)
    console.log(
      `one sample: median ${median(times).toFixed(2)} ms wall, ${median(cpus).toFixed(2)} ms CPU; snapshot ${
        (size / 1024).toFixed(1)
      } KiB (${PG ? "PostgreSQL" : "Redis"})`
    )
  })

const main = async () => {
  const raw = new Redis({ host: "127.0.0.1", port: 6379 })
  const prefix = `bench-sample-${randomUUID()}:`
  const table = `bench_sample_${randomUUID().replace(/-/g, "").slice(0, 12)}`
  const options = { name: "jobs", schema: Schema.Number, maxAttempts: 1 }
  if (PG) {
    await Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* Effect.ensuring(
        Effect.scoped(Effect.flatMap(SqlDurableQueue.make({ ...options, tableName: table }), measure)),
        Effect.ignore(sql`DROP TABLE IF EXISTS ${sql(table)}, ${sql(`${table}_paused`)}`)
      )
    }).pipe(Effect.provide(Layer.orDie(PgLayer)), Effect.runPromise)
  } else {
    await Effect.scoped(Effect.flatMap(RedisDurableQueue.make({ ...options, prefix }), measure)).pipe(
      Effect.provide(RedisClient.layer()),
      Effect.ensuring(Effect.promise(() => cleanup(raw, `${prefix}*`))),
      Effect.runPromise
    )
  }
  await raw.quit()
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
