/**
 * Distributed backends on one Redis (127.0.0.1:6379), one process run, contenders side by side, interleaved
 * rounds, medians:
 *
 * 1. Durable job queue, concurrency 16: ours (`DurableQueue` on Redis: @effect/experimental `PersistedQueue`
 *    over our Redis store) against BullMQ. "add": N jobs offered one by one, 16 at a time. "process": the N jobs
 *    drained by a consumer with concurrency 16 and a no-op handler. Prints jobs/s and the ratio to BullMQ.
 * 2. Cross-process single-flight (ours only, no peer does it): `RedisWorkerQueue` requires/s of distinct keys
 *    (each one lock + worker + result write + notification) and of keys already in Redis (cache hits).
 *
 * PostgreSQL (ours vs pg-boss) is not measured: there is no SQL-backed runner yet.
 *
 *   npx tsx bench/distributed.ts [--jobs 10000] [--rounds 3] [--dashboard]
 *
 * `--dashboard`: instead, ours alone against ours with a dashboard attached and one SSE client connected
 * (interleaved rounds), to show the dashboard costs the queue nothing measurable.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Queue as BullQueue, Worker as BullWorker } from "bullmq"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as os from "node:os"
import * as DurableQueue from "../src/redis/DurableQueue.js"
import * as RedisClient from "../src/redis/RedisClient.js"
import * as RedisResultCache from "../src/redis/ResultCache.js"
import * as RedisWorkerQueue from "../src/redis/WorkerQueue.js"
import { attachDashboard } from "./_dashboard.js"
import { arg, median, pool, queueRound, type Round } from "./_shared.js"

const JOBS = arg("jobs", 10_000)
const ROUNDS = arg("rounds", 3)
const CONCURRENCY = 16
const connection = { host: "127.0.0.1", port: 6379 }

const cleanup = async (raw: Redis, pattern: string) => {
  let cursor = "0"
  do {
    const [next, keys] = await raw.scan(cursor, "MATCH", pattern, "COUNT", 1000)
    cursor = next
    if (keys.length > 0) await raw.del(...keys)
  } while (cursor !== "0")
}



const bullmq = async (raw: Redis): Promise<Round> => {
  const name = `bench-bull-${randomUUID()}`
  const queue = new BullQueue(name, { connection })
  try {
    let t = performance.now()
    await pool(JOBS, CONCURRENCY, (i) => queue.add("job", { n: i }, { removeOnComplete: true }))
    const add = JOBS / ((performance.now() - t) / 1000)
    let done = 0
    let finish!: () => void
    const finished = new Promise<void>((resolve) => (finish = resolve))
    t = performance.now()
    const worker = new BullWorker(name, async () => {
      if (++done === JOBS) finish()
    }, { connection: { ...connection, maxRetriesPerRequest: null }, concurrency: CONCURRENCY })
    await finished
    const processed = JOBS / ((performance.now() - t) / 1000)
    await worker.close()
    return { add, process: processed }
  } finally {
    await queue.obliterate({ force: true }).catch(() => undefined)
    await queue.close()
    await cleanup(raw, `bull:${name}*`)
  }
}

const ours = (raw: Redis, dashboard = false): Promise<Round> => {
  const prefix = `bench-dq-${randomUUID()}:`
  return Effect.gen(function*() {
    const queue = yield* DurableQueue.make({ name: "jobs", prefix, schema: Schema.Struct({ n: Schema.Number }), pollInterval: "5 millis" })
    if (dashboard) yield* attachDashboard(queue)
    return yield* queueRound(JOBS, CONCURRENCY, queue.offer, (handler) =>
      Effect.forkScoped(queue.run(handler, { concurrency: CONCURRENCY })))
  }).pipe(
    Effect.scoped,
    Effect.provide(RedisClient.layer()),
    Effect.ensuring(Effect.promise(() => cleanup(raw, `${prefix}*`))),
    Effect.runPromise
  )
}

const singleFlight = (raw: Redis) => {
  const prefix = `bench-wq-${randomUUID()}:`
  return Effect.gen(function*() {
    const cache = yield* RedisResultCache.make<number, number, number>({ schema: Schema.Number, prefix: `${prefix}r:` })
    const queue = yield* RedisWorkerQueue.make({ cache, concurrency: CONCURRENCY, lockPrefix: `${prefix}lock:`, worker: (n: number) => Effect.succeed(n * 2) })
    const items = Array.from({ length: JOBS }, (_, n) => n)
    let t = performance.now()
    yield* Effect.forEach(items, (n) => queue.require(n), { concurrency: CONCURRENCY * 4, discard: true })
    const misses = JOBS / ((performance.now() - t) / 1000)
    t = performance.now()
    yield* Effect.forEach(items, (n) => queue.require(n), { concurrency: CONCURRENCY * 4, discard: true })
    return { misses, hits: JOBS / ((performance.now() - t) / 1000) }
  }).pipe(
    Effect.scoped,
    Effect.provide(RedisClient.layer()),
    Effect.ensuring(Effect.promise(() => cleanup(raw, `${prefix}*`))),
    Effect.runPromise
  )
}

/** `--dashboard`: ours without and with a dashboard and one SSE client, interleaved. */
const dashboardRows = async (raw: Redis, fmt: (x: number) => string) => {
  const rounds: Record<"alone" | "watched", Array<Round>> = { alone: [], watched: [] }
  for (let r = 0; r < ROUNDS; r++) {
    rounds.alone.push(await ours(raw))
    rounds.watched.push(await ours(raw, true))
  }
  console.log("\n| DurableQueue (Redis) | add jobs/s | process jobs/s | rounds (process) |")
  console.log("|---|---:|---:|---|")
  for (const [label, xs] of [["alone", rounds.alone], ["dashboard + 1 SSE client", rounds.watched]] as const) {
    console.log(`| ${label} | ${fmt(median(xs.map((x) => x.add)))} | ${fmt(median(xs.map((x) => x.process)))} | ${xs.map((x) => fmt(x.process)).join(", ")} |`)
  }
  const ratio = median(rounds.watched.map((x) => x.process)) / median(rounds.alone.map((x) => x.process))
  console.log(`\nwith dashboard / alone: process ${ratio.toFixed(2)}x`)
}

const main = async () => {
  const raw = new Redis(connection)
  const fmt = (x: number) => Math.round(x).toLocaleString("en-US")
  if (process.argv.includes("--dashboard")) {
    console.log(`Dashboard cost: ${JOBS.toLocaleString("en-US")} jobs, concurrency ${CONCURRENCY}, median of ${ROUNDS} interleaved rounds`)
    console.log(`node ${process.version}, ${os.cpus().length} CPUs (nproc), load ${os.loadavg()[0]!.toFixed(1)}`)
    await dashboardRows(raw, fmt)
    await raw.quit()
    return
  }
  console.log(`Distributed benchmark: ${JOBS.toLocaleString("en-US")} jobs, concurrency ${CONCURRENCY}, median of ${ROUNDS} rounds`)
  console.log(`node ${process.version}, ${os.cpus().length} CPUs (nproc), ${new Date().toISOString().slice(0, 10)}, load ${os.loadavg()[0]!.toFixed(1)}`)
  const rounds: Record<"bullmq" | "ours", Array<Round>> = { bullmq: [], ours: [] }
  for (let r = 0; r < ROUNDS; r++) {
    rounds.bullmq.push(await bullmq(raw))
    rounds.ours.push(await ours(raw))
  }
  const row = (label: string, xs: Array<Round>) => {
    const add = median(xs.map((x) => x.add))
    const proc = median(xs.map((x) => x.process))
    return { label, add, proc }
  }
  const b = row("BullMQ", rounds.bullmq)
  const o = row("ours: DurableQueue (Redis)", rounds.ours)
  console.log("\n| queue | add jobs/s | process jobs/s | process vs BullMQ |")
  console.log("|---|---:|---:|---:|")
  for (const x of [b, o]) console.log(`| ${x.label} | ${fmt(x.add)} | ${fmt(x.proc)} | ${(x.proc / b.proc).toFixed(2)}x |`)
  console.log(`\nDurableQueue / BullMQ: add ${(o.add / b.add).toFixed(2)}x, process ${(o.proc / b.proc).toFixed(2)}x (target >= 1.0x processing)`)
  const sf = await singleFlight(raw)
  console.log(`\nRedisWorkerQueue (cross-process single-flight), ${JOBS.toLocaleString("en-US")} distinct keys, ${CONCURRENCY} workers:`)
  console.log(`  first requires (lock + run + result + notify): ${fmt(sf.misses)} requires/s; again (Redis hits): ${fmt(sf.hits)} requires/s`)
  await raw.quit()
}

main().then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
