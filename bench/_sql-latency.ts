/**
 * Where the offer → start latency goes on PostgreSQL (issue 16): the latency run of bench/distributed-sql.ts (ours
 * only), with each offer's time split into phases: the producer's INSERT (offer resolved), the notification heard
 * by a LISTEN of this script's own, and the handler's start.
 *
 *   npx tsx bench/_sql-latency.ts [--samples 200] [--rate 50] [--rounds 1]
 */
import { PgClient } from "@effect/sql-pg"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { randomUUID } from "node:crypto"
import pg from "pg"
import { channelOf } from "../src/internal/durableQueue/sqlListen.js"
import * as DurableQueue from "../src/sql/DurableQueue.js"
import { arg, machine, median, percentile, sleep } from "./_shared.js"

// Lease statements sent by this process (node-postgres `Client.query` calls taking jobs): per offer, what a trickle
// costs the database.
let leases = 0
const query = pg.Client.prototype.query
pg.Client.prototype.query = function(this: pg.Client, ...args: Array<unknown>) {
  const text = typeof args[0] === "string" ? args[0] : ""
  if (/^UPDATE \S+\s+SET timed = 1, visible_at/.test(text)) leases++
  return (query as (...a: Array<unknown>) => unknown).apply(this, args)
} as typeof query

const SAMPLES = arg("samples", 200)
const RATE = arg("rate", 50)
const connection = { host: "127.0.0.1", port: 5432, database: "test", user: "postgres" }
const PgLayer = PgClient.layer({ ...connection, username: connection.user })
const schema = Schema.Struct({ n: Schema.Number })

const main = Effect.gen(function*() {
  const tableName = `bench_lat_${randomUUID().replace(/-/g, "").slice(0, 12)}`
  const consumer = yield* DurableQueue.make({ name: "jobs", tableName, schema })
  const producer = yield* DurableQueue.make({ name: "jobs", tableName, schema }).pipe(
    Effect.provide(yield* Layer.build(PgLayer))
  )
  const listener = new pg.Client(connection)
  yield* Effect.promise(() => listener.connect())
  const heard: Array<number> = []
  listener.on("notification", (message) => {
    if (message.payload === "o") heard.push(performance.now())
  })
  yield* Effect.promise(() => listener.query(`LISTEN "${channelOf(tableName, "jobs")}"`))
  const sent = new Array<number>(SAMPLES)
  const inserted = new Array<number>(SAMPLES)
  const started = new Array<number>(SAMPLES)
  const fiber = yield* Effect.fork(
    consumer.run(({ n }) => Effect.sync(() => (started[n] = performance.now())), { concurrency: 16 })
  )
  yield* Effect.sleep(500)
  leases = 0
  const t0 = performance.now()
  for (let i = 0; i < SAMPLES; i++) {
    const wait = t0 + (i * 1000) / RATE - performance.now()
    if (wait > 0) yield* Effect.promise(() => sleep(wait))
    sent[i] = performance.now()
    const n = i
    void Effect.runPromise(producer.offer({ n })).then(() => (inserted[n] = performance.now()))
  }
  yield* Effect.sleep(1_000)
  const leased = leases
  yield* Fiber.interrupt(fiber)
  yield* Effect.promise(() => listener.end())
  // Notification i is the first heard after offer i was sent (offers are 1000/RATE ms apart, one INSERT each).
  const phases = {
    insert: [] as Array<number>,
    notify: [] as Array<number>,
    start: [] as Array<number>,
    total: [] as Array<number>
  }
  let h = 0
  for (let i = 0; i < SAMPLES; i++) {
    while (h < heard.length && heard[h]! < sent[i]!) h++
    if (started[i] === undefined || inserted[i] === undefined || h >= heard.length) continue
    phases.insert.push(inserted[i]! - sent[i]!)
    phases.notify.push(heard[h]! - sent[i]!)
    phases.start.push(started[i]! - heard[h]!)
    phases.total.push(started[i]! - sent[i]!)
  }
  console.log(`${machine()}\nlease statements: ${leased} for ${SAMPLES} offers`)
  for (const [name, xs] of Object.entries(phases)) {
    console.log(
      `${name.padEnd(8)} p50 ${median(xs).toFixed(1)} ms  p90 ${percentile(xs, 0.9).toFixed(1)}  p99 ${
        percentile(xs, 0.99).toFixed(1)
      }  (${xs.length})`
    )
  }
  const sql = yield* SqlClient.SqlClient
  yield* sql`DROP TABLE IF EXISTS ${sql(tableName)}`
})

const rounds = async () => {
  for (let r = 0; r < arg("rounds", 1); r++) await Effect.runPromise(main.pipe(Effect.scoped, Effect.provide(PgLayer)))
}
rounds().then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
