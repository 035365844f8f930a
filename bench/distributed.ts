/**
 * Durable queues on one Redis (127.0.0.1:6379): ours against BullMQ and against a FLOOR, side by side in one
 * process run, contenders interleaved (order rotated each round), ratios taken within a round, medians printed.
 *
 * What is fair here (issue #16, "a benchmark a sceptic accepts"):
 * - every contender at its documented best: BullMQ `addBulk` for bulk adds, `removeOnComplete`, its worker built
 *   with `autorun: false` and `waitUntilReady` OUTSIDE the timed window (so is ours: `make`, then `run` in the
 *   window); ours at its DEFAULT settings (100 ms poll, 30 s lease), not a bench-tuned poll;
 * - the same jobs in flight: concurrency 16 and 64 for everyone (the floor runs two loops of half that);
 * - the clock stops when the last job is ACKNOWLEDGED: BullMQ's "completed" event (sent after `moveToCompleted`),
 *   ours `size` 0 (polled every 2 ms once the last handler ran), the floor's last ack reply;
 * - the queue is filled outside the window by each contender's own fastest path, then drained in it;
 * - CPU per job (`process.cpuUsage`, this whole process: the consumer, its client, the bench glue) beside jobs/s.
 *
 * FLOOR: a hand-written minimal at-least-once queue on the same Redis: a list of ids, a hash of payloads, a sorted
 * set of leases; lease = one script (LPOP 100 ids, ZADD their deadline, HMGET their payloads), ack = one script
 * (ZREM + HDEL of the batch); two loops so one's round trip overlaps the other's handlers. No retries, no dead
 * letters, no ids de-duplicated, no lease refresh: what the engine costs, not a product.
 *
 * Latency: offers at 50 jobs/s through another connection, offer → handler start, p50/p99, each consumer idle
 * at its default settings.
 *
 *   npx tsx bench/distributed.ts [--quick] [--jobs 20000] [--rounds 5] [--samples 200] [--skip-latency]
 */
import { Queue as BullQueue, Worker as BullWorker } from "bullmq"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as os from "node:os"
import * as DurableQueue from "../src/redis/DurableQueue.js"
import * as RedisClient from "../src/redis/RedisClient.js"
import * as RedisResultCache from "../src/redis/ResultCache.js"
import * as RedisWorkerQueue from "../src/redis/WorkerQueue.js"
import {
  arg,
  batches,
  cleanup,
  compare,
  type Contender,
  counter,
  drainTimed,
  flag,
  latencyLine,
  latencyRun,
  machine,
  offerAllOf,
  pool,
  PROCESS_GRID,
  processScenarios,
  type Scenario,
  sleep,
  timed
} from "./_shared.js"

const QUICK = flag("quick")
const JOBS = arg("jobs", QUICK ? 5_000 : 20_000)
const ROUNDS = arg("rounds", QUICK ? 3 : 5)
const SAMPLES = arg("samples", QUICK ? 60 : 200)
const BULK = 1_000
const connection = { host: "127.0.0.1", port: 6379 }
const schema = Schema.Struct({ n: Schema.Number })

/** The handler's work: none, or `ms` of waiting (an I/O call). */
const work = (ms: number): Promise<void> | undefined => ms === 0 ? undefined : sleep(ms)

// ---------------------------------------------------------------- BullMQ

const bullProcess = (raw: Redis, jobs: number, concurrency: number, ms: number): Contender => ({
  name: `BullMQ 6, concurrency ${concurrency}`,
  run: async () => {
    const name = `bench-bull-${randomUUID()}`
    const queue = new BullQueue(name, { connection })
    try {
      for (const batch of batches(jobs, BULK)) {
        await queue.addBulk(
          batch.map((n) => ({ name: "job", data: { n }, opts: { removeOnComplete: true, removeOnFail: true } }))
        )
      }
      const acked = counter(jobs)
      const worker = new BullWorker(name, async () => {
        await work(ms)
      }, {
        connection: { ...connection, maxRetriesPerRequest: null },
        concurrency,
        autorun: false
      })
      worker.on("completed", acked.hit)
      await worker.waitUntilReady()
      const sample = await timed(jobs, async () => {
        void worker.run()
        await acked.all
      })
      await worker.close()
      return sample
    } finally {
      await queue.obliterate({ force: true }).catch(() => undefined)
      await queue.close()
      await cleanup(raw, `bull:${name}*`)
    }
  }
})

const bullBulk = (raw: Redis, jobs: number): Contender => ({
  name: `BullMQ 6 addBulk (${BULK} a call, 4 calls in flight)`,
  run: async () => {
    const name = `bench-bull-${randomUUID()}`
    const queue = new BullQueue(name, { connection })
    await queue.waitUntilReady()
    try {
      const all = batches(jobs, BULK)
      return await timed(
        jobs,
        () =>
          pool(
            all.length,
            4,
            (b) => queue.addBulk(all[b]!.map((n) => ({ name: "job", data: { n }, opts: { removeOnComplete: true } })))
          )
      )
    } finally {
      await queue.obliterate({ force: true }).catch(() => undefined)
      await queue.close()
      await cleanup(raw, `bull:${name}*`)
    }
  }
})

const bullSingle = (raw: Redis, jobs: number): Contender => ({
  name: "BullMQ 6 add, 16 in flight",
  run: async () => {
    const name = `bench-bull-${randomUUID()}`
    const queue = new BullQueue(name, { connection })
    await queue.waitUntilReady()
    try {
      return await timed(jobs, () => pool(jobs, 16, (n) => queue.add("job", { n }, { removeOnComplete: true })))
    } finally {
      await queue.obliterate({ force: true }).catch(() => undefined)
      await queue.close()
      await cleanup(raw, `bull:${name}*`)
    }
  }
})

// ---------------------------------------------------------------- ours

/** Runs `body` with a fresh queue (default settings) under a unique prefix, deleted afterwards. */
const withOurs = <X>(
  raw: Redis,
  body: (queue: DurableQueue.DurableQueue<{ readonly n: number }>) => Promise<X>
): Promise<X> => {
  const prefix = `bench-dq-${randomUUID()}:`
  return Effect.gen(function*() {
    const queue = yield* DurableQueue.make({ name: "jobs", prefix, schema })
    return yield* Effect.promise(() => body(queue))
  }).pipe(
    Effect.scoped,
    Effect.provide(RedisClient.layer()),
    Effect.ensuring(Effect.promise(() => cleanup(raw, `${prefix}*`))),
    Effect.runPromise
  )
}

const oursProcess = (raw: Redis, jobs: number, concurrency: number, ms: number): Contender => ({
  name: `ours, concurrency ${concurrency} (default settings)`,
  run: () => withOurs(raw, (queue) => drainTimed(queue, jobs, BULK, concurrency, ms))
})

const oursBulk = (raw: Redis, jobs: number): Contender => ({
  name: `ours offerAll (${BULK} a call, 4 calls in flight)`,
  run: () =>
    withOurs(raw, (queue) => {
      const all = batches(jobs, BULK)
      return timed(jobs, () => pool(all.length, 4, (b) => offerAllOf(queue, all[b]!)))
    })
})

const oursSingle = (raw: Redis, jobs: number): Contender => ({
  name: "ours offer, 16 in flight",
  // As an Effect program offers: 16 fibers in one `Effect.forEach` (not a `runPromise` per offer, a fiber each).
  run: () =>
    withOurs(
      raw,
      (queue) =>
        timed(jobs, () =>
          Effect.runPromise(Effect.forEach(
            Array.from({ length: jobs }, (_, n) => n),
            (n) => queue.offer({ n }),
            { concurrency: 16, discard: true }
          )))
    )
})

// ---------------------------------------------------------------- floor

const floorLease = `
local ids = redis.call('LPOP', KEYS[1], ARGV[1])
if not ids then return {} end
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + 30000
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[3], deadline, id) end
return { ids, redis.call('HMGET', KEYS[2], unpack(ids)) }`
const floorAck = `
redis.call('ZREM', KEYS[3], unpack(ARGV))
redis.call('HDEL', KEYS[2], unpack(ARGV))
return 1`
const floorOffer = `
redis.call('HSET', KEYS[2], unpack(ARGV))
for i = 1, #ARGV, 2 do redis.call('RPUSH', KEYS[1], ARGV[i]) end
return 1`

/** The floor's own connection (auto-pipelined, as ours) and keys. */
const withFloor = async <X>(body: (redis: Redis, keys: [string, string, string]) => Promise<X>): Promise<X> => {
  const prefix = `bench-floor-${randomUUID()}:`
  const redis = new Redis({ ...connection, enableAutoPipelining: true })
  try {
    return await body(redis, [`${prefix}{q}:w`, `${prefix}{q}:p`, `${prefix}{q}:l`])
  } finally {
    await cleanup(redis, `${prefix}*`)
    redis.disconnect()
  }
}

const floorFill = (redis: Redis, keys: Array<string>, ns: ReadonlyArray<number>) =>
  redis.eval(floorOffer, 3, ...keys, ...ns.flatMap((n) => [randomUUID(), JSON.stringify({ n })]))

const floorProcess = (jobs: number, concurrency: number, ms: number): Contender => ({
  name: `FLOOR (lease 100 + ack 100, 2 loops × ${concurrency / 2})`,
  run: () =>
    withFloor(async (redis, keys) => {
      for (const batch of batches(jobs, BULK)) await floorFill(redis, keys, batch)
      let handled = 0
      const loop = async () => {
        while (true) {
          const [ids, payloads] = await redis.eval(floorLease, 3, ...keys, 100) as [Array<string>, Array<string>] | []
          if (ids === undefined || ids.length === 0) return
          await pool(ids.length, concurrency / 2, async (i) => {
            JSON.parse(payloads![i]!)
            await work(ms)
            handled++
          })
          await redis.eval(floorAck, 3, ...keys, ...ids)
        }
      }
      const sample = await timed(jobs, () => Promise.all([loop(), loop()]))
      if (handled !== jobs) throw new Error(`floor handled ${handled} of ${jobs}`)
      return sample
    })
})

const floorBulk = (jobs: number): Contender => ({
  name: `FLOOR (one script of ${BULK} HSET + RPUSH, 4 in flight)`,
  run: () =>
    withFloor((redis, keys) => {
      const all = batches(jobs, BULK)
      return timed(jobs, () => pool(all.length, 4, (b) => floorFill(redis, keys, all[b]!)))
    })
})

// ---------------------------------------------------------------- latency

const oursLatency = (raw: Redis): Promise<Array<number>> => {
  const prefix = `bench-lat-${randomUUID()}:`
  return Effect.gen(function*() {
    const consumer = yield* DurableQueue.make({ name: "jobs", prefix, schema })
    const producer = yield* DurableQueue.make({ name: "jobs", prefix, schema })
    let started: (i: number) => void = () => {}
    yield* Effect.forkScoped(consumer.run(({ n }) => Effect.sync(() => started(n)), { concurrency: 16 }))
    yield* Effect.sleep("500 millis")
    return yield* Effect.promise(() =>
      latencyRun(SAMPLES, 50, (n) => Effect.runPromise(producer.offer({ n })), (f) => (started = f))
    )
  }).pipe(
    Effect.scoped,
    Effect.provide(RedisClient.layer()),
    Effect.ensuring(Effect.promise(() => cleanup(raw, `${prefix}*`))),
    Effect.runPromise
  )
}

const bullLatency = async (raw: Redis): Promise<Array<number>> => {
  const name = `bench-bull-lat-${randomUUID()}`
  const queue = new BullQueue(name, { connection })
  let started: (i: number) => void = () => {}
  const worker = new BullWorker(name, async (job) => started(job.data.n), {
    connection: { ...connection, maxRetriesPerRequest: null },
    concurrency: 16
  })
  try {
    await worker.waitUntilReady()
    await queue.waitUntilReady()
    await sleep(500)
    return await latencyRun(
      SAMPLES,
      50,
      (n) => queue.add("job", { n }, { removeOnComplete: true }),
      (f) => (started = f)
    )
  } finally {
    await worker.close()
    await queue.obliterate({ force: true }).catch(() => undefined)
    await queue.close()
    await cleanup(raw, `bull:${name}*`)
  }
}

// ---------------------------------------------------------------- single-flight (ours only; not in --quick)

const singleFlight = (raw: Redis) => {
  const prefix = `bench-wq-${randomUUID()}:`
  return Effect.gen(function*() {
    const cache = yield* RedisResultCache.make<number, number, number>({ schema: Schema.Number, prefix: `${prefix}r:` })
    const queue = yield* RedisWorkerQueue.make({
      cache,
      concurrency: 16,
      lockPrefix: `${prefix}lock:`,
      worker: (n: number) => Effect.succeed(n * 2)
    })
    const items = Array.from({ length: JOBS }, (_, n) => n)
    let t = performance.now()
    yield* Effect.forEach(items, (n) => queue.require(n), { concurrency: 64, discard: true })
    const misses = JOBS / ((performance.now() - t) / 1000)
    t = performance.now()
    yield* Effect.forEach(items, (n) => queue.require(n), { concurrency: 64, discard: true })
    return { misses, hits: JOBS / ((performance.now() - t) / 1000) }
  }).pipe(
    Effect.scoped,
    Effect.provide(RedisClient.layer()),
    Effect.ensuring(Effect.promise(() => cleanup(raw, `${prefix}*`))),
    Effect.runPromise
  )
}

const main = async () => {
  const raw = new Redis(connection)
  const fmt = (x: number) => Math.round(x).toLocaleString("en-US")
  console.log(
    `Redis durable queues: ${fmt(JOBS)} jobs per measurement, ${ROUNDS} rounds interleaved${QUICK ? " (--quick)" : ""}`
  )
  console.log(machine())
  const scenarios: Array<Scenario> = processScenarios("", JOBS, PROCESS_GRID, (jobs, concurrency, ms) => [
    oursProcess(raw, jobs, concurrency, ms),
    bullProcess(raw, jobs, concurrency, ms),
    floorProcess(jobs, concurrency, ms)
  ])
  scenarios.push({ label: "bulk offer", contenders: [oursBulk(raw, JOBS), bullBulk(raw, JOBS), floorBulk(JOBS)] })
  const single = Math.ceil(JOBS / 4)
  scenarios.push({
    label: `offer one by one (${fmt(single)} jobs)`,
    contenders: [oursSingle(raw, single), bullSingle(raw, single)]
  })
  await compare(scenarios, ROUNDS)

  if (!flag("skip-latency")) {
    console.log(
      `\nLatency, offer (another connection) → handler start, ${SAMPLES} offers at 50 jobs/s, idle consumers at default settings:\n`
    )
    console.log("| consumer | p50 ms | p99 ms | max ms | samples |")
    console.log("|---|---:|---:|---:|---:|")
    console.log(latencyLine("ours (DurableQueue on Redis)", await oursLatency(raw)))
    console.log(latencyLine("BullMQ 6", await bullLatency(raw)))
  }
  if (!QUICK) {
    const sf = await singleFlight(raw)
    console.log(`\nRedisWorkerQueue (cross-process single-flight), ${fmt(JOBS)} distinct keys, 16 workers:`)
    console.log(
      `  first requires (lock + run + result + notify): ${fmt(sf.misses)} requires/s; again (Redis hits): ${
        fmt(sf.hits)
      } requires/s`
    )
  }
  console.log(`\nload average after: ${os.loadavg().map((x) => x.toFixed(2)).join(", ")}`)
  await raw.quit()
}

main().then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
