/**
 * TaskEngine and RateLimiter against their peers, in one process run:
 *
 * 1. Throughput: 200,000 trivial tasks at concurrency 16 and 256 — `TaskEngine` `applyToAll` and `applyToEach`
 *    beside `Effect.forEach`, `Stream.mapEffect`, p-limit, fastq (promise API) and p-queue. Contestants take turns
 *    over several rounds (the first is a warm-up); the median time of each is reported, with ratios.
 * 2. Rate-limit precision with the real clock: 1,000 concurrent callers for 10 s at a limit of 200 per second —
 *    our exact sliding window beside bottleneck (reservoir refreshed every second) and p-queue (`strict` mode).
 *    Counted: windows of one second that hold more than the limit (target 0) and starts as a share of the limit.
 *
 *   npx tsx bench/task-engine.ts            (about 2 minutes)
 *   npx tsx bench/task-engine.ts --quick    (fewer rounds, 3 s of rate limiting)
 *   npx tsx bench/task-engine.ts --quick --no-rate   (throughput only: for before/after runs taken in turns)
 */
import Bottleneck from "bottleneck"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import fastq from "fastq"
import { cpus, loadavg } from "node:os"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import pLimit from "p-limit"
import PQueue from "p-queue"
import * as RateLimiter from "../src/RateLimiter.js"
import * as TaskEngine from "../src/TaskEngine.js"

const quick = process.argv.includes("--quick")
const noRate = process.argv.includes("--no-rate")
// A full collection before each timed run, so no contestant pays for the garbage of the one before.
setFlagsFromString("--expose-gc")
const gc = runInNewContext("gc") as () => void
const TASKS = 200_000
// Stream.mapEffect with concurrency costs far more per element (about a millisecond here); it runs 2,000 tasks and
// its time is scaled up, or this benchmark would take many minutes.
const STREAM_TASKS = 2_000
const ROUNDS = quick ? 3 : 6
const inputs = Array.from({ length: TASKS }, (_, i) => i)

const effectHandler = (n: number) => Effect.succeed(n + 1)
const promiseHandler = async (n: number) => n + 1

type Contestant = readonly [name: string, run: (concurrency: number) => Promise<unknown>, scale: number]

const contestants: ReadonlyArray<Contestant> = [
  ["Effect.forEach", (c) => Effect.runPromise(Effect.forEach(inputs, effectHandler, { concurrency: c })), 1],
  [
    "TaskEngine.applyToAll",
    (c) =>
      Effect.runPromise(
        Effect.scoped(
          Effect.flatMap(TaskEngine.make({ handler: effectHandler, workers: c }), (e) => e.applyToAll(inputs))
        )
      ),
    1
  ],
  [
    "TaskEngine.applyToEach",
    (c) =>
      Effect.runPromise(
        Effect.scoped(
          Effect.flatMap(
            TaskEngine.make({ handler: effectHandler, workers: c }),
            (e) => Stream.runDrain(e.applyToEach(inputs))
          )
        )
      ),
    1
  ],
  [
    "Stream.mapEffect",
    (c) =>
      Effect.runPromise(
        Stream.runDrain(
          Stream.mapEffect(Stream.fromIterable(inputs.slice(0, STREAM_TASKS)), effectHandler, { concurrency: c })
        )
      ),
    TASKS / STREAM_TASKS
  ],
  [
    "p-limit",
    (c) => {
      const limit = pLimit(c)
      return Promise.all(inputs.map((n) => limit(() => promiseHandler(n))))
    },
    1
  ],
  [
    "fastq (promise)",
    (c) => {
      const queue = fastq.promise(promiseHandler, c)
      return Promise.all(inputs.map((n) => queue.push(n)))
    },
    1
  ],
  [
    "p-queue",
    (c) => {
      const queue = new PQueue({ concurrency: c })
      return Promise.all(inputs.map((n) => queue.add(() => promiseHandler(n))))
    },
    1
  ]
]

const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

interface Timing {
  readonly wall: number
  readonly cpu: number
}

const throughput = async (concurrency: number) => {
  const times = new Map<string, Array<Timing>>(contestants.map(([name]) => [name, []]))
  for (let round = 0; round < ROUNDS; round++) {
    // Rotate the order so no contestant always runs right after the same neighbour (JIT state, timers).
    for (let k = 0; k < contestants.length; k++) {
      const [name, run, scale] = contestants[(k + round) % contestants.length]!
      gc()
      const cpu = process.cpuUsage()
      const start = performance.now()
      await run(concurrency)
      const wall = (performance.now() - start) * scale
      const used = process.cpuUsage(cpu)
      if (round > 0) times.get(name)!.push({ wall, cpu: ((used.user + used.system) / 1000) * scale })
    }
  }
  return new Map(
    [...times].map(([name, xs]) => [name, { wall: median(xs.map((x) => x.wall)), cpu: median(xs.map((x) => x.cpu)) }])
  )
}

// ---- rate limiting ---------------------------------------------------------------------------------------------

const LIMIT = 200
const CALLERS = 1_000
const SECONDS = quick ? 3 : 10

interface Precision {
  readonly starts: number
  readonly share: number
  readonly slidingOver: number
  readonly worstSliding: number
  readonly bucketsOver: number
}

// `starts` are milliseconds since the run began, as each caller observed its own start.
const precision = (starts: ReadonlyArray<number>): Precision => {
  const inRun = starts.filter((t) => t < SECONDS * 1000).sort((a, b) => a - b)
  // Every window [t, t + 1 s) that begins at a start: how many hold more than the limit, and the fullest.
  let slidingOver = 0
  let worst = 0
  for (let i = 0, j = 0; i < inRun.length; i++) {
    while (j < inRun.length && inRun[j]! < inRun[i]! + 1000) j++
    const count = j - i
    worst = Math.max(worst, count)
    if (count > LIMIT) slidingOver++
  }
  const buckets = new Array<number>(SECONDS).fill(0)
  for (const t of inRun) buckets[Math.floor(t / 1000)]!++
  return {
    starts: inRun.length,
    share: inRun.length / (LIMIT * SECONDS),
    slidingOver,
    worstSliding: worst,
    bucketsOver: buckets.filter((n) => n > LIMIT).length
  }
}

const rateOurs = () =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const limiter = yield* RateLimiter.slidingWindow({ limit: LIMIT, interval: "1 second" })
    const starts: Array<number> = []
    const t0 = performance.now()
    const caller: Effect.Effect<void> = Effect.flatMap(limiter.take(), () => {
      const t = performance.now() - t0
      starts.push(t)
      return t < SECONDS * 1000 ? caller : Effect.void
    })
    yield* Effect.forEach(Array.from({ length: CALLERS }), () => caller, { concurrency: "unbounded", discard: true })
    return starts
  })))

const rateBottleneck = async () => {
  const limiter = new Bottleneck({ reservoir: LIMIT, reservoirRefreshAmount: LIMIT, reservoirRefreshInterval: 1000 })
  const starts: Array<number> = []
  const t0 = performance.now()
  let stop = false
  const caller = async () => {
    try {
      while (!stop) {
        await limiter.schedule(async () => {
          const t = performance.now() - t0
          starts.push(t)
          if (t >= SECONDS * 1000) stop = true
        })
      }
    } catch {
      // dropped when the limiter stops
    }
  }
  const callers = Array.from({ length: CALLERS }, caller)
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000 + 1100))
  stop = true
  await limiter.stop({ dropWaitingJobs: true })
  await Promise.allSettled(callers)
  return starts
}

const ratePQueue = async () => {
  const queue = new PQueue({ intervalCap: LIMIT, interval: 1000, strict: true })
  const starts: Array<number> = []
  const t0 = performance.now()
  let stop = false
  const caller = async () => {
    try {
      while (!stop) {
        await queue.add(() => {
          const t = performance.now() - t0
          starts.push(t)
          if (t >= SECONDS * 1000) stop = true
        })
      }
    } catch {
      // dropped when the queue is cleared
    }
  }
  const callers = Array.from({ length: CALLERS }, caller)
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000 + 1100))
  stop = true
  queue.clear()
  await Promise.race([Promise.allSettled(callers), new Promise((resolve) => setTimeout(resolve, 2000))])
  return starts
}

// ---- report -----------------------------------------------------------------------------------------------------

const fmt = (ms: number) => `${ms.toFixed(0)} ms`
const lines: Array<string> = []
const out = (line = "") => {
  lines.push(line)
  console.log(line)
}

out(`# TaskEngine and RateLimiter benchmark`)
out()
out(
  `${new Date().toISOString().slice(0, 10)} · node ${process.version} · nproc ${cpus().length} · ` +
    `load average ${loadavg()[0]!.toFixed(1)} at start · ` +
    `${ROUNDS - 1} measured rounds (median), after one warm-up${quick ? " · --quick" : ""}`
)
out()
out(`## Throughput: ${TASKS.toLocaleString("en")} trivial tasks`)
out()
out(
  "Effect contestants run `Effect.succeed(n + 1)`; promise contestants `async (n) => n + 1`. " +
    `Stream.mapEffect ran ${STREAM_TASKS.toLocaleString("en")} tasks, scaled ×${TASKS / STREAM_TASKS}. ` +
    "TaskEngine times include making and closing the engine."
)
const ratios: Array<string> = []
for (const concurrency of [16, 256]) {
  const medians = await throughput(concurrency)
  const all = medians.get("TaskEngine.applyToAll")!
  out()
  out(`### concurrency ${concurrency}`)
  out()
  out("| contestant | wall time | vs applyToAll | CPU time | vs applyToAll |")
  out("|---|---:|---:|---:|---:|")
  for (const [name, t] of medians) {
    out(
      `| ${name} | ${fmt(t.wall)} | ${(t.wall / all.wall).toFixed(2)}× | ${fmt(t.cpu)} | ${
        (t.cpu / all.cpu).toFixed(2)
      }× |`
    )
  }
  const ratio = (a: Timing, b: Timing, digits: number) =>
    `${(a.wall / b.wall).toFixed(digits)}× / ${(a.cpu / b.cpu).toFixed(digits)}×`
  ratios.push(
    `| ${concurrency} | ${ratio(all, medians.get("Effect.forEach")!, 2)} (≤ 1.0) | ` +
      `${ratio(medians.get("p-queue")!, all, 1)} (≥ 4) | ${ratio(medians.get("fastq (promise)")!, all, 1)} (≥ 2) | ` +
      `${ratio(medians.get("TaskEngine.applyToEach")!, all, 2)} (≤ 1.5) |`
  )
}
out()
out("### Targets (wall / CPU)")
out()
out(
  "| concurrency | applyToAll / Effect.forEach | p-queue / applyToAll | fastq / applyToAll | applyToEach / applyToAll |"
)
out("|---|---:|---:|---:|---:|")
for (const line of ratios) out(line)

if (noRate) process.exit(0)
out()
out(`## Rate limiting: ${CALLERS.toLocaleString("en")} callers, ${SECONDS} s at ${LIMIT} per second, real clock`)
out()
out(
  "Each caller loops: wait for a permit, note the time (`performance.now()`), repeat. Over the limit: windows " +
    "[t, t + 1 s) starting at any start that hold more than the limit; fixed seconds: the run cut in whole seconds."
)
out()
out("| limiter | starts | share of limit | sliding windows over | fullest window | fixed seconds over |")
out("|---|---:|---:|---:|---:|---:|")
for (
  const [name, run] of [
    ["RateLimiter.slidingWindow", rateOurs],
    ["bottleneck (reservoir)", rateBottleneck],
    ["p-queue (strict)", ratePQueue]
  ] as const
) {
  const p = precision(await run())
  out(
    `| ${name} | ${p.starts} | ${(p.share * 100).toFixed(1)} % | ${p.slidingOver} | ${p.worstSliding} | ` +
      `${p.bucketsOver} of ${SECONDS} |`
  )
}
process.exit(0)
