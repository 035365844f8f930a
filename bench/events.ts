/**
 * What job events cost the queue (issue #11): `bench/distributed.ts`'s and `bench/distributed-sql.ts`'s add/process
 * round (N jobs offered 16 at a time, then drained with concurrency 16 and a no-op handler), on Redis and on
 * PostgreSQL, in three variants, interleaved round by round, medians:
 * - "no events": the same core and store with a bus that publishes nothing (what the queue did before events);
 * - "events": events published (3 a job: Offered, Started, Completed), nobody subscribed;
 * - "events + subscriber": and one `events` stream reading them in this process (its count printed: events are
 *   at most once, so a shortfall is events lost).
 *
 *   npx tsx bench/events.ts [--jobs 5000] [--rounds 3]
 */
import { PgClient } from "@effect/sql-pg"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as os from "node:os"
import type * as DurableQueue from "../src/DurableQueue.js"
import * as core from "../src/internal/durableQueue/core.js"
import { type EventPort, inProcessMarks } from "../src/internal/durableQueue/events.js"
import { queueSettings } from "../src/internal/durableQueue/options.js"
import { redisPort } from "../src/internal/durableQueue/redisEvents.js"
import { escapeName, makeStore as makeRedisStore } from "../src/internal/durableQueue/redisStore.js"
import { sqlPort } from "../src/internal/durableQueue/sqlEvents.js"
import { makeStore as makeSqlStore } from "../src/internal/durableQueue/sqlStore.js"
import { connect } from "../src/internal/redis/client.js"
import { arg, median, queueRound, type Round } from "./_shared.js"

const JOBS = arg("jobs", 5_000)
const ROUNDS = arg("rounds", 3)
const CONCURRENCY = 16
const schema = Schema.Struct({ n: Schema.Number })
type Variant = "no events" | "events" | "events + subscriber"
const VARIANTS: ReadonlyArray<Variant> = ["no events", "events", "events + subscriber"]

const silent: EventPort = { bus: { publish: () => Effect.void, subscribe: Stream.never }, marks: inProcessMarks() }

/** One round on `queue`; with a subscriber, it listens (a probe heard) before the round starts. */
const round = (
  queue: DurableQueue.DurableQueue<{ readonly n: number }>,
  subscribe: boolean
): Effect.Effect<Round & { received: number }, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    let received = 0
    let heard = false
    if (subscribe) {
      yield* Effect.forkScoped(
        Stream.runForEach(queue.events, (event) => Effect.sync(() => event.id === "probe" ? heard = true : received++))
      )
      while (!heard) {
        yield* queue.offer({ n: -1 }, { id: "probe" })
        yield* Effect.sleep("20 millis")
      }
      yield* queue.take(() => Effect.void)
      received = 0
    }
    const result = yield* queueRound(JOBS, CONCURRENCY, queue.offer, (handler) =>
      Effect.forkScoped(queue.run(handler, { concurrency: CONCURRENCY })))
    // Events of the last jobs may still be on their way: wait for them (at most 2 s).
    for (let i = 0; subscribe && i < 200 && received < 3 * JOBS; i++) {
      yield* Effect.sleep("10 millis")
    }
    return { ...result, received }
  })

const onRedis = (variant: Variant) => {
  const prefix = `bench-ev-${randomUUID()}:`
  return Effect.gen(function*() {
    const settings = yield* queueSettings({ name: "jobs", schema, pollInterval: "5 millis" })
    const redis = yield* connect({ options: { enableAutoPipelining: true } })
    const port = variant === "no events" ? silent : redisPort(redis, {}, `${prefix}{${escapeName("jobs")}}:`, "jobs")
    const queue = yield* core.make(makeRedisStore(redis, prefix, settings), settings, schema, port)
    return yield* round(queue, variant === "events + subscriber")
  }).pipe(
    Effect.scoped,
    Effect.ensuring(Effect.promise(async () => {
      const raw = new Redis()
      const keys = await raw.keys(`${prefix}*`)
      if (keys.length > 0) await raw.del(...keys)
      await raw.quit()
    }))
  )
}

const pg = PgClient.layer({
  host: "127.0.0.1",
  port: 5432,
  database: "test",
  username: process.env.PGUSER ?? "postgres"
})

const onPg = (variant: Variant) => {
  const tableName = `bench_ev_${randomUUID().replace(/-/g, "").slice(0, 12)}`
  return Effect.gen(function*() {
    const settings = yield* queueSettings({ name: "jobs", schema, pollInterval: "5 millis" })
    const store = yield* makeSqlStore(settings, { tableName, notify: true })
    const port = variant === "no events" ? silent : yield* sqlPort("jobs", tableName, true)
    const queue = yield* core.make(store, settings, schema, port)
    return yield* round(queue, variant === "events + subscriber")
  }).pipe(
    Effect.scoped,
    Effect.ensuring(
      Effect.ignore(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP TABLE IF EXISTS ${sql(tableName)}`))
    ),
    Effect.provide(Layer.orDie(pg))
  )
}

const main = Effect.gen(function*() {
  const fmt = (x: number) => Math.round(x).toLocaleString("en-US")
  console.log(
    `Job events benchmark: ${
      JOBS.toLocaleString("en-US")
    } jobs, concurrency ${CONCURRENCY}, median of ${ROUNDS} interleaved rounds`
  )
  console.log(
    `node ${process.version}, ${os.cpus().length} CPUs (nproc), ${new Date().toISOString().slice(0, 10)}, load ${
      os.loadavg()[0]!.toFixed(1)
    }`
  )
  for (const [backend, run] of [["Redis", onRedis], ["PostgreSQL", onPg]] as const) {
    const rounds = new Map<Variant, Array<Round & { received: number }>>(VARIANTS.map((v) => [v, []]))
    for (let r = 0; r < ROUNDS; r++) for (const variant of VARIANTS) rounds.get(variant)!.push(yield* run(variant))
    const base = median(rounds.get("no events")!.map((x) => x.process))
    const baseAdd = median(rounds.get("no events")!.map((x) => x.add))
    console.log(
      `\n${backend}\n| variant | add jobs/s | process jobs/s | add vs none | process vs none | events received |`
    )
    console.log("|---|---:|---:|---:|---:|---:|")
    for (const variant of VARIANTS) {
      const xs = rounds.get(variant)!
      const add = median(xs.map((x) => x.add))
      const proc = median(xs.map((x) => x.process))
      const received = variant === "events + subscriber"
        ? `${fmt(median(xs.map((x) => x.received)))} of ${fmt(3 * JOBS)}`
        : ""
      console.log(
        `| ${variant} | ${fmt(add)} | ${fmt(proc)} | ${(add / baseAdd).toFixed(2)}x | ${
          (proc / base).toFixed(2)
        }x | ${received} |`
      )
    }
  }
})

Effect.runPromise(main).then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
