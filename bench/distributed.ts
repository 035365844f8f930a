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
 * at its default settings. Lateness (issue #11): delayed jobs offered at 50 jobs/s, each due 200–1,000 ms later;
 * handler start − due time, p50/p99, ours vs BullMQ's `delay`, interleaved rounds.
 *
 * `--baseline <dir>`: another checkout of this repository (its own node_modules), whose DurableQueue runs as one
 * more contender of the processing and bulk-offer scenarios: a change measured against the code before it in one
 * run (same load), e.g. `git worktree add /tmp/base main && cp -r node_modules /tmp/base/`.
 *
 *   npx tsx bench/distributed.ts [--quick] [--jobs 20000] [--rounds 5] [--samples 200] [--skip-latency]
 *     [--only-latency] [--late-jobs 60] [--late-rounds 3] [--baseline <dir>] [--only-ours] [--only-offers]
 *     [--only-batch]
 */
import { Queue as BullQueue, Worker as BullWorker } from "bullmq"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
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
  compareLateness,
  type Contender,
  counter,
  drainBatchTimed,
  drainTimed,
  flag,
  type IdleMeasure,
  latencyLine,
  latencyOf,
  latenessOf,
  machine,
  offerAllOf,
  pool,
  PROCESS_GRID,
  processScenarios,
  type Sample,
  type Scenario,
  sleep,
  timed,
  until
} from "./_shared.js"

const QUICK = flag("quick")
const JOBS = arg("jobs", QUICK ? 5_000 : 20_000)
const ROUNDS = arg("rounds", QUICK ? 3 : 5)
const SAMPLES = arg("samples", QUICK ? 60 : 200)
const LATE_JOBS = arg("late-jobs", 60)
const LATE_ROUNDS = arg("late-rounds", QUICK ? 2 : 3)
const ONLY_LATENCY = flag("only-latency")
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

/** `runBatch` (issue #16): 2 handler calls of up to 100 jobs at once, as the floor's 2 loops × 100. */
const oursRunBatch = (raw: Redis, jobs: number, ms: number): Contender => ({
  name: "ours runBatch (size 100, 2 at once)",
  run: () => withOurs(raw, (queue) => drainBatchTimed(queue, jobs, BULK, 100, 2, ms))
})

/** The baseline checkout's modules (`--baseline`), loaded from it: its own Effect, its own DurableQueue. */
interface Baseline {
  readonly dir: string
  readonly Effect: typeof Effect
  readonly Fiber: typeof Fiber
  readonly DurableQueue: typeof DurableQueue
  readonly RedisClient: typeof RedisClient
}

const loadBaseline = async (dir: string): Promise<Baseline> => ({
  dir,
  Effect: await import(`${dir}/node_modules/effect/dist/esm/Effect.js`),
  Fiber: await import(`${dir}/node_modules/effect/dist/esm/Fiber.js`),
  DurableQueue: await import(`${dir}/src/redis/DurableQueue.ts`),
  RedisClient: await import(`${dir}/src/redis/RedisClient.ts`)
})

/** `oursProcess` and `oursBulk` with the baseline's code. */
const baselineRun = (
  base: Baseline,
  raw: Redis,
  jobs: number,
  body: (queue: DurableQueue.DurableQueue<{ readonly n: number }>) => Promise<Sample>
): Promise<Sample> => {
  const E = base.Effect
  const prefix = `bench-dq-${randomUUID()}:`
  return E.gen(function*() {
    const queue = yield* base.DurableQueue.make({ name: "jobs", prefix, schema })
    return yield* E.promise(() => body(queue))
  }).pipe(
    E.scoped,
    E.provide(base.RedisClient.layer()),
    E.ensuring(E.promise(() => cleanup(raw, `${prefix}*`))),
    E.runPromise
  )
}

const baselineProcess = (base: Baseline, raw: Redis, jobs: number, concurrency: number, ms: number): Contender => ({
  name: `baseline (${base.dir}), concurrency ${concurrency}`,
  run: () =>
    baselineRun(base, raw, jobs, async (queue) => {
      const E = base.Effect
      for (const batch of batches(jobs, BULK)) await E.runPromise(queue.offerAll(batch.map((n) => ({ value: { n } }))))
      const handled = counter(jobs)
      const handler = ms === 0
        ? () => E.sync(handled.hit)
        : () => E.zipRight(E.sleep(ms), E.sync(handled.hit))
      let fiber: Fiber.RuntimeFiber<never, unknown> | undefined
      const sample = await timed(jobs, async () => {
        fiber = E.runFork(queue.run(handler, { concurrency }))
        await handled.all
        await until(async () => (await E.runPromise(queue.size)) === 0)
      })
      await E.runPromise(base.Fiber.interrupt(fiber!))
      return sample
    })
})

const baselineBulk = (base: Baseline, raw: Redis, jobs: number): Contender => ({
  name: `baseline (${base.dir}) offerAll`,
  run: () =>
    baselineRun(base, raw, jobs, (queue) => {
      const all = batches(jobs, BULK)
      return timed(
        jobs,
        () => pool(all.length, 4, (b) => base.Effect.runPromise(queue.offerAll(all[b]!.map((n) => ({ value: { n } })))))
      )
    })
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

// ---------------------------------------------------------------- latency and lateness (idle consumers)

/** Ours: consumer and producer are two instances (connections of their own), as two processes would have them. */
const oursIdle = <X>(raw: Redis, measure: IdleMeasure<X>): Promise<X> => {
  const prefix = `bench-idle-${randomUUID()}:`
  return Effect.gen(function*() {
    const consumer = yield* DurableQueue.make({ name: "jobs", prefix, schema })
    const producer = yield* DurableQueue.make({ name: "jobs", prefix, schema })
    let started: (i: number) => void = () => {}
    yield* Effect.forkScoped(consumer.run(({ n }) => Effect.sync(() => started(n)), { concurrency: 16 }))
    yield* Effect.sleep("500 millis")
    return yield* Effect.promise(() =>
      measure(
        (n, delay) => Effect.runPromise(delay === undefined ? producer.offer({ n }) : producer.offer({ n }, { delay })),
        (f) => (started = f)
      )
    )
  }).pipe(
    Effect.scoped,
    Effect.provide(RedisClient.layer()),
    Effect.ensuring(Effect.promise(() => cleanup(raw, `${prefix}*`))),
    Effect.runPromise
  )
}

/** BullMQ: `add` (with `delay` for a delayed job); its worker at default settings (it blocks on its marker until the next delayed job). */
const bullIdle = async <X>(raw: Redis, measure: IdleMeasure<X>): Promise<X> => {
  const name = `bench-bull-idle-${randomUUID()}`
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
    return await measure(
      (n, delay) =>
        queue.add("job", { n }, delay === undefined ? { removeOnComplete: true } : { delay, removeOnComplete: true }),
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
  const scenarios: Array<Scenario> = []
  const baseDir = process.argv.includes("--baseline") ? process.argv[process.argv.indexOf("--baseline") + 1] : undefined
  const base = baseDir === undefined ? undefined : await loadBaseline(baseDir)
  // --only-ours: ours and the baseline alone (the peers' ratios need them in the same run).
  const peers = (...contenders: Array<Contender>) => flag("only-ours") ? [] : contenders
  // --only-offers: the bulk and single offer rows alone (the offer path's own work, minutes shorter).
  if (!flag("only-offers")) {
    scenarios.push(...processScenarios("", JOBS, PROCESS_GRID, (jobs, concurrency, ms) => [
      oursProcess(raw, jobs, concurrency, ms),
      ...peers(bullProcess(raw, jobs, concurrency, ms), floorProcess(jobs, concurrency, ms)),
      ...(base === undefined ? [] : [baselineProcess(base, raw, jobs, concurrency, ms)])
    ]))
  }
  if (!flag("only-offers")) {
    // Batch handlers (issue #16): runBatch against the floor (both 2 × 100 leased) and ours `run` (BullMQ's batches
    // are in its paid Pro edition only).
    scenarios.push({
      label: `batch handlers, no-op (${fmt(JOBS)} jobs)`,
      contenders: [
        oursRunBatch(raw, JOBS, 0),
        ...peers(floorProcess(JOBS, 16, 0)),
        oursProcess(raw, JOBS, 16, 0)
      ]
    })
  }
  scenarios.push({
    label: "bulk offer",
    contenders: [
      oursBulk(raw, JOBS),
      ...peers(bullBulk(raw, JOBS), floorBulk(JOBS)),
      ...(base === undefined ? [] : [baselineBulk(base, raw, JOBS)])
    ]
  })
  const single = Math.ceil(JOBS / 4)
  if (!flag("only-ours")) {
    scenarios.push({
      label: `offer one by one (${fmt(single)} jobs)`,
      contenders: [oursSingle(raw, single), bullSingle(raw, single)]
    })
  }
  // --only-batch: the batch-handler scenarios alone (issue #16's runBatch rows).
  const picked = flag("only-batch") ? scenarios.filter((scenario) => scenario.label.includes("batch")) : scenarios
  if (!ONLY_LATENCY) await compare(picked, ROUNDS)

  if (!flag("skip-latency")) {
    console.log(
      `\nLatency, offer (another connection) → handler start, ${SAMPLES} offers at 50 jobs/s, idle consumers at default settings:\n`
    )
    console.log("| consumer | p50 ms | p99 ms | max ms | samples |")
    console.log("|---|---:|---:|---:|---:|")
    console.log(latencyLine("ours (DurableQueue on Redis)", await oursIdle(raw, latencyOf(SAMPLES))))
    console.log(latencyLine("BullMQ 6", await bullIdle(raw, latencyOf(SAMPLES))))
    console.log(
      `\nLateness of delayed jobs, handler start − due time: ${LATE_JOBS} jobs offered at 50 jobs/s (another connection), each due 200–1,000 ms after it is sent (spread, scrambled), ${LATE_ROUNDS} rounds interleaved, idle consumers at default settings, concurrency 16:\n`
    )
    await compareLateness([
      {
        name: "ours (DurableQueue on Redis; poll 100 ms, default; wakes at the next due time)",
        run: () => oursIdle(raw, latenessOf(LATE_JOBS))
      },
      {
        name: "BullMQ 6 `delay` (default worker: blocks on its marker until the next delayed job)",
        run: () => bullIdle(raw, latenessOf(LATE_JOBS))
      }
    ], LATE_ROUNDS)
  }
  if (!QUICK && !ONLY_LATENCY) {
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
