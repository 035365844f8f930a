/**
 * What a dashboard costs the queue it watches (issue #15): ours alone, against ours with a dashboard attached and
 * one Server-Sent Events client connected for the whole round (bench/_dashboard.ts; the dashboard reads the counts
 * and the first page of each state's jobs at each sample), and against ours listed far harder than a dashboard does
 * (`jobs` of all six states every 50 ms: 120 listings a second). On PostgreSQL (`--pg`) also ours without the
 * `settled` index the listing and the done count read (dropped after the queue made it), to price the index at
 * each acknowledgement. Rounds interleaved, medians and ratios printed. Not part of `npm run bench`'s peer
 * comparisons: the peers are in bench/distributed.ts.
 *
 * `--parts` measures the parts one by one instead (job events followed, the sampler's store reads at 5 a second,
 * a dashboard nobody watches, the whole), `--pair` only alone against the whole. A CPU µs/job column (the
 * process's, the whole round) is steadier than jobs/s on a shared machine.
 *
 *   npx tsx bench/dashboard.ts [--pg] [--parts | --pair] [--jobs 10000] [--rounds 5]
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
import * as DashboardNode from "../src/DashboardNode.js"
import type * as Api from "../src/DurableQueue.js"
import * as RedisDurableQueue from "../src/redis/DurableQueue.js"
import * as RedisClient from "../src/redis/RedisClient.js"
import * as SqlDurableQueue from "../src/sql/DurableQueue.js"
import { attachDashboard } from "./_dashboard.js"
import { arg, cleanup, flag, median, queueRound, type Round } from "./_shared.js"

const PG = flag("pg")
const JOBS = arg("jobs", 10_000)
const ROUNDS = arg("rounds", 5)
const CONCURRENCY = 16
const schema = Schema.Struct({ n: Schema.Number })
const STATES: ReadonlyArray<Api.JobState> = ["waiting", "delayed", "running", "done", "dead", "cancelled"]

type Variant =
  | "alone"
  | "watched"
  | "listing"
  | "no settled index"
  | "events"
  | "reads"
  | "unwatched"

/** `--parts`: the dashboard's parts one by one (what each costs the queue), instead of the listing rows. */
const PARTS = flag("parts")
/** `--pair`: ours alone against ours with a dashboard and one SSE client, nothing else (more rounds in the time). */
const PAIR = flag("pair")

const PgLayer = PgClient.layer({ host: "127.0.0.1", port: 5432, database: "test", username: "postgres" })

/** Lists all six states, 20 jobs each, every 50 ms while the scope lives. */
const listHard = <A>(queue: Api.DurableQueue<A>) =>
  Effect.forkScoped(Effect.forever(Effect.zipRight(
    Effect.forEach(STATES, (state) => queue.jobs(state, { limit: 20 }), { discard: true }),
    Effect.sleep("50 millis")
  )))

/** Follows the queue's job events and only counts them: the subscriber's receive and decode, nothing else. */
const followEvents = <A>(queue: Api.DurableQueue<A>) =>
  Effect.forkScoped(Stream.runForEach(queue.events, () => Effect.sync(() => void eventsSeen++)))
let eventsSeen = 0

/** What the sampler read at each sample of a watched dashboard woken by events (every 200 ms): counts, six lists. */
const readLikeSampler = <A>(queue: Api.DurableQueue<A>) =>
  Effect.forkScoped(Effect.forever(Effect.zipRight(
    Effect.zipRight(
      queue.counts,
      Effect.forEach(STATES, (state) => queue.jobs(state, { limit: 20 }), { concurrency: "unbounded", discard: true })
    ),
    Effect.sleep("200 millis")
  )))

const round = (
  queue: Api.DurableQueue<{ readonly n: number }>,
  variant: Variant
): Effect.Effect<Round, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    if (variant === "watched") yield* attachDashboard(queue)
    if (variant === "listing") yield* listHard(queue)
    if (variant === "events") yield* followEvents(queue)
    if (variant === "reads") yield* readLikeSampler(queue)
    if (variant === "unwatched") yield* DashboardNode.serve({ queues: [queue], readOnly: true })
    return yield* queueRound(
      JOBS,
      CONCURRENCY,
      queue.offer,
      (handler) => Effect.forkScoped(queue.run(handler, { concurrency: CONCURRENCY }))
    )
  })

const onRedis = (raw: Redis, variant: Variant): Promise<Round> => {
  const prefix = `bench-dash-${randomUUID()}:`
  return Effect.gen(function*() {
    const queue = yield* RedisDurableQueue.make({ name: "jobs", prefix, schema })
    return yield* round(queue, variant)
  }).pipe(
    Effect.scoped,
    Effect.provide(RedisClient.layer()),
    Effect.ensuring(Effect.promise(() => cleanup(raw, `${prefix}*`))),
    Effect.runPromise
  )
}

const onPg = (variant: Variant): Promise<Round> => {
  const table = `bench_dash_${randomUUID().replace(/-/g, "").slice(0, 12)}`
  return Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const measured = Effect.gen(function*() {
      const queue = yield* SqlDurableQueue.make({ name: "jobs", tableName: table, schema })
      if (variant === "no settled index") yield* sql`DROP INDEX ${sql(`${table}_settled`)}`
      return yield* round(queue, variant)
    }).pipe(Effect.scoped)
    return yield* Effect.ensuring(
      measured,
      Effect.ignore(sql`DROP TABLE IF EXISTS ${sql(table)}, ${sql(`${table}_paused`)}`)
    )
  }).pipe(Effect.provide(Layer.orDie(PgLayer)), Effect.runPromise)
}

const main = async () => {
  const raw = new Redis({ host: "127.0.0.1", port: 6379 })
  const fmt = (x: number) => Math.round(x).toLocaleString("en-US")
  const variants: ReadonlyArray<Variant> = PARTS
    ? ["alone", "events", "reads", "unwatched", "watched"]
    : PAIR
    ? ["alone", "watched"]
    : PG
    ? ["alone", "watched", "listing", "no settled index"]
    : ["alone", "watched", "listing"]
  console.log(
    `Dashboard cost on ${PG ? "PostgreSQL" : "Redis"}: ${
      JOBS.toLocaleString("en-US")
    } jobs, concurrency ${CONCURRENCY}, median of ${ROUNDS} interleaved rounds`
  )
  console.log(`node ${process.version}, ${os.cpus().length} CPUs (nproc), load ${os.loadavg()[0]!.toFixed(1)}`)
  const rounds = new Map<Variant, Array<Round & { readonly cpu: number }>>(variants.map((v) => [v, []]))
  for (let r = 0; r < ROUNDS; r++) {
    for (const variant of variants) {
      // The process's CPU per job over the whole round (offers, processing, the dashboard and its client): steadier
      // than jobs/s on a shared machine, and what the dashboard adds to the queue's process.
      const cpu = process.cpuUsage()
      const round = await (PG ? onPg(variant) : onRedis(raw, variant))
      const used = process.cpuUsage(cpu)
      rounds.get(variant)!.push({ ...round, cpu: (used.user + used.system) / JOBS })
    }
  }
  const labels: Record<Variant, string> = {
    alone: "alone",
    watched: "dashboard + 1 SSE client",
    listing: "jobs() of 6 states every 50 ms",
    "no settled index": "alone, without the settled index",
    events: "events followed (receive + decode only)",
    reads: "counts + 6 lists every 200 ms",
    unwatched: "dashboard, no browser"
  }
  console.log(
    `\n| DurableQueue (${PG ? "PostgreSQL" : "Redis"}) | add jobs/s | process jobs/s | CPU µs/job | rounds (process) |`
  )
  console.log("|---|---:|---:|---:|---|")
  for (const [variant, xs] of rounds) {
    console.log(
      `| ${labels[variant]} | ${fmt(median(xs.map((x) => x.add)))} | ${fmt(median(xs.map((x) => x.process)))} | ${
        median(xs.map((x) => x.cpu)).toFixed(1)
      } | ${xs.map((x) => fmt(x.process)).join(", ")} |`
    )
  }
  // The ratio of each interleaved pair (round r of a variant against round r of alone), then their median: a
  // round disturbed by another session's burst moves one ratio, not the median.
  const alone = rounds.get("alone")!
  for (const variant of variants.slice(1)) {
    const xs = rounds.get(variant)!
    const ratios = xs.map((x, r) => x.process / alone[r]!.process)
    console.log(
      `${labels[variant]} / alone: process ${
        (median(xs.map((x) => x.process)) / median(alone.map((x) => x.process))).toFixed(2)
      }x of medians, paired median ${median(ratios).toFixed(2)}x (${
        ratios.map((x) => x.toFixed(2)).join(", ")
      }), CPU +${(median(xs.map((x) => x.cpu)) - median(alone.map((x) => x.cpu))).toFixed(1)} µs/job`
    )
  }
  console.log(`load at the end ${os.loadavg()[0]!.toFixed(1)}`)
  await raw.quit()
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
