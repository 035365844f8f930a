/**
 * JobRunner benchmark, one run, side by side:
 *
 * 1. CPU-bound work (iterated SHA-256): 2 reader processes against the same work inline in one process.
 *    Reported end to end (spawning included) and in steady state (from the first finished item to the last).
 * 2. Trivial tasks per second: JobRunner with 2 reader processes and with 2 worker threads, against piscina and
 *    tinypool with 2 threads, steady state (pools warmed up; the runner measured from the first publication of its
 *    processed counter past 10 % of the items, with the count published then). The runner's end-to-end rate
 *    (spawning the readers through tsx included) is printed too.
 * 3. The same at the seed's default settings (maxQueueSize 300, lookupBlockSize 10, 4 tasks per process), what
 *    users run; recycling (4 000 trivial jobs with the default maxJobsPerProcess 200 against no recycling, end to
 *    end); and start-up (start → first job done, against piscina's new pool → first task done).
 *
 * This module is also the runner module the reader processes load, so the benchmark itself only runs outside a
 * reader process.
 *
 *   npx tsx bench/job-runner.ts [--cpu-items 80] [--rounds 20000] [--trivial 100000]
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import { createHash } from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Piscina } from "piscina"
import Tinypool from "tinypool"
import * as Layer from "effect/Layer"
import * as JobRunner from "../src/JobRunner.js"
import { processSpawner } from "../src/internal/jobRunner/process.js"
import { arg } from "./_shared.js"

const CPU_ITEMS = arg("cpu-items", 80)
const ROUNDS = arg("rounds", 20_000)
const TRIVIAL = arg("trivial", 100_000)

const hash = (payload: string, rounds: number): string => {
  let digest = payload
  for (let i = 0; i < rounds; i++) digest = createHash("sha256").update(digest).digest("hex")
  return digest
}

// Items: [kind, n]. "cpu" hashes, "trivial" does nothing. Both runners are defined here for the reader processes.
const counter = (total: number) => {
  let next = 0
  return (desired: number) => {
    const n = Math.min(desired, total - next)
    const out = Array.from({ length: Math.max(0, n) }, () => next++)
    return out
  }
}

let cpuWriter = counter(0)
export const cpuRunner = JobRunner.make({
  name: "benchCpu",
  module: import.meta.url,
  writer: (desired) => cpuWriter(desired),
  reader: (n: number) => {
    hash(`payload-${n}`, Number(process.env.BENCH_ROUNDS ?? ROUNDS))
  },
  settings: {
    numProcesses: 2,
    concurrentTasksPerProcess: 1,
    maxJobsPerProcess: 0,
    preventRequeuingTime: 0,
    stopWhenEmpty: true
  }
})

let trivialWriter = counter(0)
export const trivialRunner = JobRunner.make({
  name: "benchTrivial",
  module: import.meta.url,
  writer: (desired) => trivialWriter(desired),
  reader: (n: number) => n + 1,
  settings: {
    numProcesses: 2,
    concurrentTasksPerProcess: 64,
    maxQueueSize: 4000,
    lookupBlockSize: 2000,
    maxJobsPerProcess: 0,
    preventRequeuingTime: 0,
    stopWhenEmpty: true
  }
})

let defaultsWriter = counter(0)
export const defaultsRunner = JobRunner.make({
  name: "benchDefaults",
  module: import.meta.url,
  writer: (desired) => defaultsWriter(desired),
  reader: (n: number) => n + 1,
  // The seed's defaults but for the end: the run stops when the writer is empty.
  settings: { stopWhenEmpty: true }
})

/**
 * The process spawner, noting when the first job is done: the start-up figure (the metrics are published every
 * 250 ms, too coarse for it).
 */
const firstDone = { at: 0 }
const timingSpawner = Layer.succeed(JobRunner.ReaderSpawner, {
  spawn: (request) =>
    Effect.map(processSpawner.spawn(request), (handle) => ({
      ...handle,
      submit: (job, done) =>
        handle.submit(job, (j, failure) => {
          if (firstDone.at === 0) firstDone.at = performance.now()
          done(j, failure)
        })
    }))
})

/** Start → first job done, for the runner (2 reader processes) and piscina (new pool → first task). */
const startUp = (workerFile: string) =>
  Effect.gen(function*() {
    firstDone.at = 0
    defaultsWriter = counter(1)
    const start = performance.now()
    yield* JobRunner.run(defaultsRunner, { settings: { maxJobsPerProcess: 0 } }).pipe(Effect.provide(timingSpawner))
    const runner = firstDone.at - start
    const piscina = yield* Effect.promise(async () => {
      const t0 = performance.now()
      const pool = new Piscina({ filename: workerFile, minThreads: 2, maxThreads: 2 })
      await pool.run(1)
      const t = performance.now() - t0
      await pool.destroy()
      return t
    })
    return { runner, piscina }
  })

/** Runs a runner and times it end to end, and from `fromItem` processed items to the end. */
const timed = <Item, Ctx, WCtx>(
  runner: JobRunner.JobRunner<Item, Ctx, WCtx>,
  total: number,
  fromItem: number,
  settings?: JobRunner.SettingsInput
) =>
  Effect.gen(function*() {
    const processed = Metric.tagged(JobRunner.Metrics.processed, "runner", runner.name)
    const before = (yield* Metric.value(processed)).count
    // The processed counter is published every 250 ms: the mark is taken at the first publication past
    // `fromItem`, with the count published then (not `fromItem`), so the steady rate is not inflated.
    let markAt = 0
    let markCount = 0
    let markCpu = process.cpuUsage()
    const watcher = yield* Effect.fork(Effect.gen(function*() {
      while (true) {
        const count = (yield* Metric.value(processed)).count - before
        if (count >= fromItem) {
          markAt = performance.now()
          markCount = count
          markCpu = process.cpuUsage()
          return
        }
        yield* Effect.sleep("2 millis")
      }
    }))
    const start = performance.now()
    const cpuStart = process.cpuUsage()
    const summary = yield* JobRunner.run(runner, { settings })
    const cpu = process.cpuUsage(cpuStart)
    const end = performance.now()
    // CPU time of this (the writer's) process; with worker threads it includes the readers' threads.
    const cpuMicros = cpu.user + cpu.system
    const steadyCpu = process.cpuUsage(markCpu)
    const steadyCpuMicros = steadyCpu.user + steadyCpu.system
    yield* Fiber.interrupt(watcher)
    if (summary.processed !== total) throw new Error(`${runner.name}: processed ${summary.processed} of ${total}`)
    // Too few items for a publication before the end: the steady state is the whole run.
    if (markAt === 0 || markCount >= total) {
      return { endToEnd: end - start, steady: end - start, steadyItems: total, cpuMicros, steadyCpuMicros: cpuMicros }
    }
    return { endToEnd: end - start, steady: end - markAt, steadyItems: total - markCount, cpuMicros, steadyCpuMicros }
  })

// Each pool with its default of one task at a time per thread (the target's baseline), and with as many in flight
// per thread as the runner's readers get (64), the like-for-like setting.
const pools = async (workerFile: string, perThread: number) => {
  const options = { filename: workerFile, minThreads: 2, maxThreads: 2, concurrentTasksPerWorker: perThread }
  const piscina = new Piscina(options)
  const tinypool = new Tinypool(options)
  const measure = async (run: (n: number) => Promise<unknown>) => {
    await Promise.all(Array.from({ length: 2000 }, (_, i) => run(i)))
    const start = performance.now()
    await Promise.all(Array.from({ length: TRIVIAL }, (_, i) => run(i)))
    return TRIVIAL / ((performance.now() - start) / 1000)
  }
  const piscinaRate = await measure((n) => piscina.run(n))
  const tinypoolRate = await measure((n) => tinypool.run(n))
  await piscina.destroy()
  await tinypool.destroy()
  return { piscinaRate, tinypoolRate }
}

const main = Effect.gen(function*() {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "job-runner-bench-"))
  const workerFile = Path.join(dir, "worker.mjs")
  Fs.writeFileSync(workerFile, "export default (n) => n + 1\n")
  const lines: Array<string> = []
  const out = (line: string) => {
    lines.push(line)
    console.log(line)
  }
  out(`JobRunner benchmark — ${new Date().toISOString().slice(0, 10)}, node ${process.version}, nproc ${Os.availableParallelism()}`)
  out("")

  // 1. CPU-bound
  const inlineStart = performance.now()
  for (let i = 0; i < CPU_ITEMS; i++) hash(`payload-${i}`, ROUNDS)
  const inline = performance.now() - inlineStart
  cpuWriter = counter(CPU_ITEMS)
  const cpu = yield* timed(cpuRunner, CPU_ITEMS, 2, { })
  const inlinePerItem = inline / CPU_ITEMS
  const steadyPerItem = cpu.steady / cpu.steadyItems
  out(`CPU-bound: ${CPU_ITEMS} items × ${ROUNDS} SHA-256 rounds`)
  out("")
  out("| | time | per item | speed-up vs inline |")
  out("|---|---|---|---|")
  out(`| inline, one process | ${(inline / 1000).toFixed(2)} s | ${inlinePerItem.toFixed(1)} ms | 1.00× |`)
  out(
    `| JobRunner, 2 reader processes, end to end (spawning included) | ${(cpu.endToEnd / 1000).toFixed(2)} s | ${
      (cpu.endToEnd / CPU_ITEMS).toFixed(1)
    } ms | ${(inline / cpu.endToEnd).toFixed(2)}× |`
  )
  out(
    `| JobRunner, 2 reader processes, steady state | ${(cpu.steady / 1000).toFixed(2)} s for ${cpu.steadyItems} | ${
      steadyPerItem.toFixed(1)
    } ms | ${(inlinePerItem / steadyPerItem).toFixed(2)}× |`
  )
  out("")

  // 2. Trivial tasks
  const { piscinaRate, tinypoolRate } = yield* Effect.promise(() => pools(workerFile, 1))
  const wide = yield* Effect.promise(() => pools(workerFile, trivialRunner.settings.concurrentTasksPerProcess ?? 1))
  const from = Math.floor(TRIVIAL / 10)
  trivialWriter = counter(TRIVIAL)
  const procs = yield* timed(trivialRunner, TRIVIAL, from)
  trivialWriter = counter(TRIVIAL)
  const threads = yield* timed(trivialRunner, TRIVIAL, from, { workerMode: "thread" })
  const procRate = procs.steadyItems / (procs.steady / 1000)
  const threadRate = threads.steadyItems / (threads.steady / 1000)
  const endToEnd = (r: { readonly endToEnd: number }) => (TRIVIAL / (r.endToEnd / 1000)).toFixed(0)
  out(`Trivial tasks (n => n + 1), ${TRIVIAL} tasks, 2 workers each, steady state`)
  out("")
  out("| | tasks/s | vs piscina | end to end, spawning included |")
  out("|---|---|---|---|")
  out(`| piscina ${"5"} (2 threads) | ${piscinaRate.toFixed(0)} | 1.00× | |`)
  out(`| tinypool (2 threads) | ${tinypoolRate.toFixed(0)} | ${(tinypoolRate / piscinaRate).toFixed(2)}× | |`)
  const perThread = trivialRunner.settings.concurrentTasksPerProcess
  out(
    `| piscina (2 threads, ${perThread} tasks per thread) | ${wide.piscinaRate.toFixed(0)} | ${
      (wide.piscinaRate / piscinaRate).toFixed(2)
    }× | |`
  )
  out(
    `| tinypool (2 threads, ${perThread} tasks per thread) | ${wide.tinypoolRate.toFixed(0)} | ${
      (wide.tinypoolRate / piscinaRate).toFixed(2)
    }× | |`
  )
  out(
    `| JobRunner, 2 reader processes | ${procRate.toFixed(0)} | ${(procRate / piscinaRate).toFixed(2)}× | ${
      endToEnd(procs)
    } tasks/s |`
  )
  out(
    `| JobRunner, 2 worker threads | ${threadRate.toFixed(0)} | ${(threadRate / piscinaRate).toFixed(2)}× | ${
      endToEnd(threads)
    } tasks/s |`
  )
  out("")
  out(
    `Writer process CPU (2 reader processes): whole run ${(procs.cpuMicros / 1000).toFixed(0)} ms, ${
      (procs.cpuMicros / TRIVIAL).toFixed(2)
    } µs per task; steady state ${(procs.steadyCpuMicros / procs.steadyItems).toFixed(2)} µs per task`
  )

  // 3. Seed defaults, recycling, start-up
  defaultsWriter = counter(TRIVIAL)
  const defaults = yield* timed(defaultsRunner, TRIVIAL, from, { maxJobsPerProcess: 0 })
  const defaultsRate = defaults.steadyItems / (defaults.steady / 1000)
  const RECYCLE = 4000
  defaultsWriter = counter(RECYCLE)
  const noRecycling = yield* timed(defaultsRunner, RECYCLE, RECYCLE, { maxJobsPerProcess: 0 })
  defaultsWriter = counter(RECYCLE)
  const recycling = yield* timed(defaultsRunner, RECYCLE, RECYCLE)
  const startups: Array<{ runner: number; piscina: number }> = []
  for (let i = 0; i < 3; i++) startups.push(yield* startUp(workerFile))
  const mid = <A>(xs: Array<A>, f: (a: A) => number) => xs.map(f).sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const startRunner = mid(startups, (s) => s.runner)
  const startPiscina = mid(startups, (s) => s.piscina)
  out("Seed defaults (maxQueueSize 300, lookupBlockSize 10, 4 tasks per process), 2 reader processes")
  out("")
  out("| | figure | vs piscina / baseline |")
  out("|---|---|---|")
  out(`| trivial tasks, steady state, no recycling | ${defaultsRate.toFixed(0)}/s | ${(defaultsRate / piscinaRate).toFixed(2)}× piscina |`)
  out(
    `| ${RECYCLE} trivial tasks, end to end: maxJobsPerProcess 200 / no recycling | ${(recycling.endToEnd / 1000).toFixed(2)} s / ${
      (noRecycling.endToEnd / 1000).toFixed(2)
    } s | ${(recycling.endToEnd / noRecycling.endToEnd).toFixed(2)}× |`
  )
  out(
    `| start → first job done (median of 3): JobRunner / piscina | ${startRunner.toFixed(0)} ms / ${startPiscina.toFixed(0)} ms | ${
      (startRunner / startPiscina).toFixed(2)
    }× |`
  )
  Fs.rmSync(dir, { recursive: true, force: true })
})

if (!JobRunner.isReaderProcess()) {
  Effect.runPromise(main).then(() => process.exit(0), (e) => {
    console.error(e)
    process.exit(1)
  })
}
