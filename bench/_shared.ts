/**
 * Helpers shared by the benchmarks (bench/run.ts skips files starting with "_").
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import type { Redis } from "ioredis"
import * as os from "node:os"
import type { DurableQueue } from "../src/DurableQueue.js"

/** `--name value` from the command line as a number, or `fallback`. */
export const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}

/** Whether `--name` is on the command line. */
export const flag = (name: string): boolean => process.argv.includes(`--${name}`)

/** The middle value (the upper one of an even count). */
export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

/** The `p` quantile (0..1) of `xs`, nearest rank. */
export const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(s.length * p) - 1))]!
}

/** Runs `task` for 0..count-1, at most `limit` at a time. */
export const pool = async (count: number, limit: number, task: (i: number) => Promise<unknown>): Promise<void> => {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, count) }, async () => {
    while (next < count) await task(next++)
  }))
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls `check` every `everyMs` until it holds. */
export const until = async (check: () => Promise<boolean>, everyMs = 2): Promise<void> => {
  while (!(await check())) await sleep(everyMs)
}

/** `[0, size)`, `[size, 2 size)`, …: the batches of `count` items. */
export const batches = (count: number, size: number): Array<Array<number>> => {
  const out: Array<Array<number>> = []
  for (let i = 0; i < count; i += size) out.push(Array.from({ length: Math.min(size, count - i) }, (_, k) => i + k))
  return out
}

/** Resolves `all` on the `jobs`-th `hit`. */
export const counter = (jobs: number) => {
  let done = 0
  let resolve!: () => void
  const all = new Promise<void>((r) => (resolve = r))
  return {
    hit: () => {
      if (++done === jobs) resolve()
    },
    all,
    get done() {
      return done
    }
  }
}

/** One timed measurement: jobs per second and this process's CPU (user + system) per job, in microseconds. */
export interface Sample {
  readonly rate: number
  readonly cpu: number
  /** The database server's CPU µs per job in the window, where the bench measures it (bench/distributed-sql.ts). */
  readonly server?: number | undefined
}

/**
 * Times `body`, which must resolve once the last job is ACKNOWLEDGED (not merely handled): jobs/s and CPU µs per
 * job of this whole process (everything it runs in the window: client, driver, peer library, bench glue).
 */
export const timed = async (jobs: number, body: () => Promise<unknown>): Promise<Sample> => {
  const cpu = process.cpuUsage()
  const t = performance.now()
  await body()
  const seconds = (performance.now() - t) / 1000
  const used = process.cpuUsage(cpu)
  return { rate: jobs / seconds, cpu: (used.user + used.system) / jobs }
}

/** A contender in a scenario: set-up and tear-down happen inside `run`, outside its timed window. */
export interface Contender {
  readonly name: string
  readonly run: () => Promise<Sample>
}

export interface Scenario {
  readonly label: string
  readonly contenders: ReadonlyArray<Contender>
}

const fmt = (x: number) => Math.round(x).toLocaleString("en-US")

/**
 * Runs every scenario `rounds` times, the contenders of a scenario interleaved and their order rotated each round
 * (so none always runs first, on a cold cache or after a peer's garbage). The first contender is the reference
 * ("ours"): its ratio to each other one is taken WITHIN a round (same load) and the median of those is printed
 * with the spread, so a load spike moves one round's pair, not the ratio. Prints one markdown table.
 */
export const compare = async (scenarios: ReadonlyArray<Scenario>, rounds: number): Promise<void> => {
  const samples = scenarios.map((s) => s.contenders.map(() => [] as Array<Sample>))
  for (let r = 0; r < rounds; r++) {
    for (const [i, scenario] of scenarios.entries()) {
      const n = scenario.contenders.length
      for (let k = 0; k < n; k++) {
        const c = (k + r) % n
        samples[i]![c]!.push(await scenario.contenders[c]!.run())
      }
    }
    process.stderr.write(`round ${r + 1}/${rounds} done, load ${os.loadavg()[0]!.toFixed(1)}\n`)
  }
  console.log(
    "\n| scenario | contender | jobs/s | CPU µs/job | ours ÷ it, jobs/s (min–max over rounds) | ours ÷ it, CPU/job |"
  )
  console.log("|---|---|---:|---:|---:|---:|")
  for (const [i, scenario] of scenarios.entries()) {
    const ours = samples[i]![0]!
    for (const [c, contender] of scenario.contenders.entries()) {
      const xs = samples[i]![c]!
      const rate = median(xs.map((x) => x.rate))
      const cpu = median(xs.map((x) => x.cpu))
      const ratios = xs.map((x, r) => ours[r]!.rate / x.rate)
      const cell = c === 0
        ? ""
        : `${median(ratios).toFixed(2)}× (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`
      const cpuCell = c === 0 ? "" : `${(median(ours.map((x) => x.cpu)) / cpu).toFixed(2)}×`
      console.log(
        `| ${c === 0 ? scenario.label : ""} | ${contender.name} | ${fmt(rate)} | ${
          cpu.toFixed(1)
        } | ${cell} | ${cpuCell} |`
      )
    }
  }
  serverTable(scenarios, samples)
}

/** The server's CPU per job of the scenarios whose samples carry it (`Sample.server`), after `compare`'s table. */
const serverTable = (scenarios: ReadonlyArray<Scenario>, samples: ReadonlyArray<ReadonlyArray<Array<Sample>>>) => {
  const measured = scenarios.flatMap((scenario, i) =>
    samples[i]!.every((xs) => xs.every((x) => x.server !== undefined)) ? [[scenario, samples[i]!] as const] : []
  )
  if (measured.length === 0) return
  console.log("\n| scenario | contender | server CPU µs/job (min–max over rounds) | ours ÷ it, server CPU/job |")
  console.log("|---|---|---:|---:|")
  for (const [scenario, xss] of measured) {
    const ours = median(xss[0]!.map((x) => x.server!))
    for (const [c, contender] of scenario.contenders.entries()) {
      const xs = xss[c]!.map((x) => x.server!)
      const server = median(xs)
      console.log(
        `| ${c === 0 ? scenario.label : ""} | ${contender.name} | ${server.toFixed(2)} (${Math.min(...xs).toFixed(2)}–${
          Math.max(...xs).toFixed(2)
        }) | ${c === 0 ? "" : `${(ours / server).toFixed(2)}×`} |`
      )
    }
  }
}

/** Latency figures of one contender: offer → handler start, ms. */
export const latencyLine = (name: string, xs: ReadonlyArray<number>) =>
  `| ${name} | ${percentile(xs, 0.5).toFixed(1)} | ${percentile(xs, 0.99).toFixed(1)} | ${
    Math.max(...xs).toFixed(1)
  } | ${xs.length} |`

/**
 * Offers `samples` jobs at `perSecond` (one every 1/perSecond s) through `offer(i, sentAt)`; the contender's handler
 * calls `started(i)`. Returns offer → start in ms for each (same process, `performance.now()`).
 */
export const latencyRun = async (
  samples: number,
  perSecond: number,
  offer: (i: number) => Promise<unknown>,
  register: (started: (i: number) => void) => void
): Promise<Array<number>> => {
  const sent = new Array<number>(samples)
  const out = new Array<number>(samples)
  const seen = counter(samples)
  register((i) => {
    out[i] = performance.now() - sent[i]!
    seen.hit()
  })
  const start = performance.now()
  for (let i = 0; i < samples; i++) {
    const due = start + (i * 1000) / perSecond
    const wait = due - performance.now()
    if (wait > 0) await sleep(wait)
    sent[i] = performance.now()
    void offer(i)
  }
  await Promise.race([seen.all, sleep(10_000)])
  return out.filter((x) => x !== undefined)
}

/** The machine line printed at the top of each benchmark. */
export const machine = () =>
  `node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}), ${
    new Date().toISOString()
  }, load ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}`

/** One round of a queue benchmark: jobs per second adding, and processing (bench/events.ts). */
export interface Round {
  readonly add: number
  readonly process: number
}

/**
 * One add-then-drain round of a queue benchmark: offers `jobs` values `{ n }`, `concurrency` at a time, then starts
 * `consume` (given the handler that counts a job done; forked in the caller's scope) and waits until every job is
 * done. Returns jobs per second for each phase. (bench/events.ts; the distributed benchmarks have their own rounds.)
 */
export const queueRound = <E, R>(
  jobs: number,
  concurrency: number,
  offer: (value: { readonly n: number }) => Effect.Effect<unknown, E, R>,
  consume: (handler: () => Effect.Effect<void>) => Effect.Effect<unknown, E, R | Scope.Scope>
): Effect.Effect<Round, E, R | Scope.Scope> =>
  Effect.gen(function*() {
    let t = performance.now()
    yield* Effect.forEach(Array.from({ length: jobs }, (_, n) => n), (n) => offer({ n }), {
      concurrency,
      discard: true
    })
    const add = jobs / ((performance.now() - t) / 1000)
    let done = 0
    const finished = yield* Deferred.make<void>()
    t = performance.now()
    yield* consume(() => Effect.suspend(() => ++done === jobs ? Deferred.succeed(finished, undefined) : Effect.void))
    yield* Deferred.await(finished)
    return { add, process: jobs / ((performance.now() - t) / 1000) }
  })

/** Deletes every Redis key matching `pattern` (SCAN in pages of 1,000): a round's keys, once it is measured. */
export const cleanup = async (raw: Redis, pattern: string): Promise<void> => {
  let cursor = "0"
  do {
    const [next, keys] = await raw.scan(cursor, "MATCH", pattern, "COUNT", 1000)
    cursor = next
    if (keys.length > 0) await raw.del(...keys)
  } while (cursor !== "0")
}

/**
 * Drops a SQL queue's tables (the jobs table, `<table>_paused`, `<table>_marks`): a bench's queue once measured. The
 * benches left theirs before (session 7 found 739 tables, 2.9 GB, in the test database, and 900 MB of Redis keys,
 * which slowed the test suite run beside them).
 */
export const dropSqlQueue = (sql: SqlClient.SqlClient, tableName: string): Effect.Effect<void> =>
  Effect.ignore(Effect.forEach(
    [tableName, `${tableName}_paused`, `${tableName}_marks`],
    (table) => sql`DROP TABLE IF EXISTS ${sql(table)}`,
    { discard: true }
  ))

/** The delay of delayed job `i` of `count` (issue #11's lateness rows): spread over 200–1,000 ms, in scrambled order. */
export const delayOf = (i: number, count: number): number =>
  200 + Math.round(((i * 23) % count) * 800 / Math.max(1, count - 1))

/**
 * Lateness of delayed jobs: offers `count` jobs at `perSecond`, job i due `delayOf(i)` ms after it is sent
 * (`offer(i, delayMs)`); the contender's handler calls `started(i)`. Returns handler start − due time in ms for each
 * (same process, `performance.now()`; the due time counted from before the offer call, so an offer's own time
 * counts as lateness, for every contender alike). Negative: started early. Also each offer call's time (ms).
 */
export const latenessRun = async (
  count: number,
  perSecond: number,
  offer: (i: number, delayMs: number) => Promise<unknown>,
  register: (started: (i: number) => void) => void
): Promise<{ readonly lateness: Array<number>; readonly offers: Array<number> }> => {
  const due = new Array<number>(count)
  const out = new Array<number>(count)
  const offers: Array<number> = []
  const seen = counter(count)
  register((i) => {
    if (out[i] !== undefined) return
    out[i] = performance.now() - due[i]!
    seen.hit()
  })
  const start = performance.now()
  for (let i = 0; i < count; i++) {
    const wait = start + (i * 1000) / perSecond - performance.now()
    if (wait > 0) await sleep(wait)
    const delay = delayOf(i, count)
    const sent = performance.now()
    due[i] = sent + delay
    void offer(i, delay).then(() => offers.push(performance.now() - sent))
  }
  await Promise.race([seen.all, sleep(15_000)])
  return { lateness: out.filter((x) => x !== undefined), offers }
}

/** Offers job `n` through a contender's producer; due `delayMs` later when given (a delayed job). */
export type IdleOffer = (n: number, delayMs?: number) => Promise<unknown>

/**
 * One measurement on a contender's idle consumer (the latency and lateness rows): it offers through `offer`, and the
 * consumer's handler calls the function handed to `register` with the job's `n`.
 */
export type IdleMeasure<X> = (offer: IdleOffer, register: (started: (i: number) => void) => void) => Promise<X>

/** Offer → start latency of `count` offers at 50 jobs/s (`latencyRun`). */
export const latencyOf = (count: number): IdleMeasure<Array<number>> => (offer, register) =>
  latencyRun(count, 50, (n) => offer(n), register)

/** Lateness of `count` delayed jobs offered at 50 jobs/s (`latenessRun`). */
export const latenessOf = (count: number): IdleMeasure<Awaited<ReturnType<typeof latenessRun>>> => (offer, register) =>
  latenessRun(count, 50, offer, register)

/**
 * Runs each contender's `lateness` `rounds` times, interleaved (order rotated each round), and prints one markdown
 * row per contender over all its samples: p50, p99, max and min lateness (ms), samples, the p99 of each round, and
 * the median offer call (ours counts it in its lateness: a delay is added to the store's clock when the job is written).
 */
export const compareLateness = async (
  contenders: ReadonlyArray<{ readonly name: string; readonly run: () => ReturnType<typeof latenessRun> }>,
  rounds: number
): Promise<void> => {
  const samples = contenders.map(() => [] as Array<Array<number>>)
  const offers = contenders.map(() => [] as Array<number>)
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < contenders.length; k++) {
      const c = (k + r) % contenders.length
      const run = await contenders[c]!.run()
      samples[c]!.push(run.lateness)
      offers[c]!.push(...run.offers)
    }
    process.stderr.write(`lateness round ${r + 1}/${rounds} done, load ${os.loadavg()[0]!.toFixed(1)}\n`)
  }
  console.log(
    "| consumer (setting) | p50 ms | p99 ms | max ms | min ms | samples | p99 per round | offer call p50 ms |"
  )
  console.log("|---|---:|---:|---:|---:|---:|---|---:|")
  for (const [c, contender] of contenders.entries()) {
    const all = samples[c]!.flat()
    console.log(
      `| ${contender.name} | ${percentile(all, 0.5).toFixed(1)} | ${percentile(all, 0.99).toFixed(1)} | ${
        Math.max(...all).toFixed(1)
      } | ${Math.min(...all).toFixed(1)} | ${all.length} | ${
        samples[c]!.map((xs) => percentile(xs, 0.99).toFixed(0)).join(", ")
      } | ${percentile(offers[c]!, 0.5).toFixed(1)} |`
    )
  }
}

// ---------------------------------------------------------------- durable-queue benches (distributed*.ts)

/** A durable queue of `{ n }` jobs, as both durable-queue benches make it (Redis, PostgreSQL, SQLite). */
export type NumberQueue = DurableQueue<{ readonly n: number }>

/** Offers `ns` as `{ n }` jobs in one `offerAll`. */
export const offerAllOf = (queue: NumberQueue, ns: ReadonlyArray<number>) =>
  Effect.runPromise(queue.offerAll(ns.map((n) => ({ value: { n } }))))

/**
 * Times a `run` (or `runBatch`) forked by `start` until every one of `count` was handled and the queue is empty (the
 * clock stops at "all acknowledged", issue #16), then interrupts it.
 */
const untilDrained = async (
  count: number,
  handled: Promise<void>,
  queue: { readonly size: Effect.Effect<number, unknown> },
  start: () => Effect.Effect<never, unknown>
): Promise<Sample> => {
  let fiber: Fiber.RuntimeFiber<never, unknown> | undefined
  const sample = await timed(count, async () => {
    fiber = Effect.runFork(start())
    await handled
    await until(async () => (await Effect.runPromise(queue.size)) === 0)
  })
  await Effect.runPromise(Fiber.interrupt(fiber!))
  return sample
}

/**
 * Offers `jobs` jobs (in `offerAll`s of `bulk`, untimed), then times `queue.run` at `concurrency` until every job
 * was handled and the queue is empty; each handler sleeps `ms` first (0: none).
 */
export const drainTimed = async (
  queue: NumberQueue,
  jobs: number,
  bulk: number,
  concurrency: number,
  ms: number
): Promise<Sample> => {
  for (const batch of batches(jobs, bulk)) await offerAllOf(queue, batch)
  const handled = counter(jobs)
  const handler = ms === 0
    ? () => Effect.sync(handled.hit)
    : () => Effect.zipRight(Effect.sleep(ms), Effect.sync(handled.hit))
  return untilDrained(jobs, handled.all, queue, () => queue.run(handler, { concurrency }))
}

/**
 * The process scenarios of the durable-queue benches, one per `[concurrency, handler ms]` of `grid`: a no-op
 * handler over `jobs` jobs, a 1 ms handler over half as many (so a round stays short). `store` starts the label
 * ("PostgreSQL ", or "" for Redis); `contenders` gives each scenario's, ours first.
 */
export const processScenarios = (
  store: string,
  jobs: number,
  grid: ReadonlyArray<readonly [concurrency: number, ms: number]>,
  contenders: (jobs: number, concurrency: number, ms: number) => ReadonlyArray<Contender>
): Array<Scenario> =>
  grid.map(([concurrency, ms]) => {
    const n = ms === 0 ? jobs : Math.ceil(jobs / 2)
    return {
      label: `${store}process, ${ms === 0 ? "no-op" : `${ms} ms`} handler, concurrency ${concurrency}${
        ms === 0 ? "" : ` (${fmt(n)} jobs)`
      }`,
      contenders: contenders(n, concurrency, ms)
    }
  })

/** The grid both durable-queue benches run on every store: [concurrency, handler ms]. */
export const PROCESS_GRID = [[16, 0], [64, 0], [16, 1], [64, 1]] as const

/**
 * `drainTimed` with `queue.runBatch` (issue #16's batch handlers): `batchesAtOnce` handler calls of up to `size` jobs;
 * each call sleeps `ms` once for its whole batch (as pg-boss's handler runs its batch's items side by side).
 */
export const drainBatchTimed = async (
  queue: NumberQueue,
  jobs: number,
  bulk: number,
  size: number,
  batchesAtOnce: number,
  ms: number
): Promise<Sample> => {
  for (const batch of batches(jobs, bulk)) await offerAllOf(queue, batch)
  const handled = counter(jobs)
  const hitAll = (values: ReadonlyArray<unknown>) => {
    for (let i = 0; i < values.length; i++) handled.hit()
  }
  const handler = ms === 0
    ? (values: ReadonlyArray<unknown>) => Effect.sync(() => hitAll(values))
    : (values: ReadonlyArray<unknown>) => Effect.zipRight(Effect.sleep(ms), Effect.sync(() => hitAll(values)))
  return untilDrained(jobs, handled.all, queue, () => queue.runBatch(handler, { size, concurrency: batchesAtOnce }))
}

/**
 * `drainTimed` on a queue of BATCH JOBS, as graphile-worker's (a job's payload an array of `perJob` items, handed
 * to `run`'s handler at once, one lease and one acknowledgement per job; the items share one attempt): `items`
 * items offered in jobs of `perJob`, counted per item; each item waits `ms` (side by side within its job).
 */
export const drainItemsTimed = async (
  queue: DurableQueue<ReadonlyArray<{ readonly n: number }>>,
  items: number,
  perJob: number,
  concurrency: number,
  ms: number
): Promise<Sample> => {
  const jobs = batches(items, perJob).map((ns) => ({ value: ns.map((n) => ({ n })) }))
  for (let i = 0; i < jobs.length; i += 100) await Effect.runPromise(queue.offerAll(jobs.slice(i, i + 100)))
  const handled = counter(items)
  const handler = (values: ReadonlyArray<unknown>) =>
    ms === 0
      ? Effect.sync(() => {
        for (let i = 0; i < values.length; i++) handled.hit()
      })
      : Effect.forEach(values, () => Effect.zipRight(Effect.sleep(ms), Effect.sync(handled.hit)), {
        concurrency: "unbounded",
        discard: true
      })
  return untilDrained(items, handled.all, queue, () => queue.run(handler, { concurrency }))
}
