/**
 * JobRunner benchmark, one run, side by side:
 *
 * 1. CPU-bound work (iterated SHA-256): 2 reader processes against the same work inline in one process.
 *    Reported end to end (spawning included) and in steady state (from the first finished item to the last).
 * 2. Trivial tasks per second: JobRunner with 2 reader processes and with 2 worker threads (tuned: queue
 *    4000/2000, 64 per process), against piscina and tinypool with 2 threads, steady state.
 * 3. The seed's default settings (maxQueueSize 300, lookupBlockSize 10, 4 tasks per process), what users run,
 *    interleaved with piscina (piscina, JobRunner, piscina, JobRunner, …: each ratio against the piscina runs
 *    beside it); recycling (4 000 trivial jobs with the default maxJobsPerProcess 200 against none); start-up
 *    (start → first job done against piscina's new pool → first task, interleaved), with its phases.
 *
 * Readers start from compiled JavaScript, as a user's build does: the runners live in bench/_job-runner-readers.ts,
 * which this file compiles with esbuild (with the reader entry) into .tmp/ once per run. One start-up row runs the
 * TypeScript through tsx instead, for comparison.
 *
 *   npx tsx bench/job-runner.ts [--cpu-items 80] [--rounds 20000] [--trivial 100000] [--rounds-interleaved 3]
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Piscina } from "piscina"
import Tinypool from "tinypool"
import { ENTRY_ENV, processSpawner } from "../src/internal/jobRunner/process.js"
import * as JobRunner from "../src/JobRunner.js"
import * as Readers from "./_job-runner-readers.js"
import { counter, hash, writers } from "./_job-runner-readers.js"
import { arg, median } from "./_shared.js"

const CPU_ITEMS = arg("cpu-items", 80)
const ROUNDS = arg("rounds", 20_000)
const TRIVIAL = arg("trivial", 100_000)
const INTERLEAVED = arg("rounds-interleaved", 3)
/** `--only-recycling 1`: just the recycling row, `--rounds-interleaved` times (none, recycling, none, …). */
const ONLY_RECYCLING = arg("only-recycling", 0) === 1

const root = Path.resolve(fileURLToPath(new URL("..", import.meta.url)))

/** Compiles the runners module and the reader entry; returns the compiled module's URL and entry path. */
const compileReaders = async (dir: string) => {
  const esbuild = await import("esbuild")
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: ["bench/_job-runner-readers.ts", "src/node/readerProcess.ts"],
    outdir: dir,
    outbase: ".",
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    outExtension: { ".js": ".mjs" },
    logLevel: "error"
  })
  return {
    module: pathToFileURL(Path.join(dir, "bench/_job-runner-readers.mjs")).href,
    entry: Path.join(dir, "src/node/readerProcess.mjs")
  }
}

/** The runners with their readers loaded from `module` (compiled), or as they are (tsx). */
let compiledModule = ""
const compiled = <R extends JobRunner.JobRunner.Any>(runner: R): R => ({ ...runner, module: compiledModule })

/**
 * The process spawner, noting when the first job is done: the start-up figure (the metrics are published every
 * 250 ms, too coarse for it).
 */
const firstDone = { at: 0 }
const timingSpawner = Layer.succeed(JobRunner.ReaderSpawner, {
  spawn: (request) =>
    Effect.map(processSpawner.spawn(request), (handle) => ({
      ...handle,
      submit: (job, done, onStart) =>
        handle.submit(job, (j, failure) => {
          if (firstDone.at === 0) firstDone.at = performance.now()
          done(j, failure)
        }, onStart)
    }))
})

/** Start → first job done (2 reader processes), from compiled readers or through tsx. */
const startUp = (mode: "compiled" | "tsx", entry: string) =>
  Effect.gen(function*() {
    firstDone.at = 0
    writers.defaults = counter(1)
    if (mode === "tsx") delete process.env[ENTRY_ENV]
    const runner = mode === "compiled" ? compiled(Readers.defaultsRunner) : Readers.defaultsRunner
    const start = performance.now()
    yield* JobRunner.run(runner, { settings: { maxJobsPerProcess: 0 } }).pipe(
      Effect.provide(timingSpawner),
      Effect.ensuring(Effect.sync(() => (process.env[ENTRY_ENV] = entry)))
    )
    return firstDone.at - start
  })

/** Piscina's start-up: new pool → first task done. */
const piscinaStartUp = (workerFile: string) =>
  Effect.promise(async () => {
    const t0 = performance.now()
    const pool = new Piscina({ filename: workerFile, minThreads: 2, maxThreads: 2 })
    await pool.run(1)
    const t = performance.now() - t0
    await pool.destroy()
    return t
  })

/** Spawn → exit of `node args`: the phases of a reader's start. */
const nodeRun = (args: ReadonlyArray<string>) =>
  Effect.async<number>((resume) => {
    const t0 = performance.now()
    ChildProcess.spawn(process.execPath, args as Array<string>, { stdio: "ignore" }).on("exit", () =>
      resume(Effect.succeed(performance.now() - t0)))
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

/** Piscina's steady rate, 1 task per thread, over `n` tasks (after 2 000 to warm up). */
const piscinaRate = (workerFile: string, n: number) =>
  Effect.promise(async () => {
    const pool = new Piscina({ filename: workerFile, minThreads: 2, maxThreads: 2 })
    await Promise.all(Array.from({ length: 2000 }, (_, i) => pool.run(i)))
    const start = performance.now()
    await Promise.all(Array.from({ length: n }, (_, i) => pool.run(i)))
    const rate = n / ((performance.now() - start) / 1000)
    await pool.destroy()
    return rate
  })

/** 4,000 trivial jobs end to end with the default maxJobsPerProcess (200) against none, one after the other. */
const recyclingRow = (out: (line: string) => void, load: () => string) =>
  Effect.gen(function*() {
    const RECYCLE = 4000
    writers.defaults = counter(RECYCLE)
    const noRecycling = yield* timed(compiled(Readers.defaultsRunner), RECYCLE, RECYCLE, { maxJobsPerProcess: 0 })
    writers.defaults = counter(RECYCLE)
    const recycling = yield* timed(compiled(Readers.defaultsRunner), RECYCLE, RECYCLE)
    out(
      `Recycling: ${RECYCLE} trivial tasks end to end, maxJobsPerProcess 200 / none: ${
        (recycling.endToEnd / 1000).toFixed(2)
      } s / ${(noRecycling.endToEnd / 1000).toFixed(2)} s = **${
        (recycling.endToEnd / noRecycling.endToEnd).toFixed(2)
      }×**; load ${load()}`
    )
  })

const main = Effect.gen(function*() {
  const dir = Fs.mkdtempSync(Path.join(root, ".tmp", "job-runner-bench-"))
  const workerFile = Path.join(dir, "worker.mjs")
  Fs.writeFileSync(workerFile, "export default (n) => n + 1\n")
  const built = yield* Effect.promise(() => compileReaders(dir))
  compiledModule = built.module
  process.env[ENTRY_ENV] = built.entry
  // Reader processes read the rounds from here (their own argv is not the benchmark's).
  process.env.BENCH_ROUNDS = String(ROUNDS)
  const out = (line: string) => console.log(line)
  const load = () => Os.loadavg().map((l) => l.toFixed(1)).join(" ")
  out(
    `JobRunner benchmark — ${
      new Date().toISOString().slice(0, 16)
    }Z, node ${process.version}, nproc ${Os.availableParallelism()}, load ${load()}`
  )
  out("")

  if (ONLY_RECYCLING) {
    for (let round = 1; round <= INTERLEAVED; round++) yield* recyclingRow(out, load)
    Fs.rmSync(dir, { recursive: true, force: true })
    return
  }

  // 1. CPU-bound
  const inlineStart = performance.now()
  for (let i = 0; i < CPU_ITEMS; i++) hash(`payload-${i}`, ROUNDS)
  const inline = performance.now() - inlineStart
  writers.cpu = counter(CPU_ITEMS)
  const cpu = yield* timed(compiled(Readers.cpuRunner), CPU_ITEMS, 2, {})
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

  // 2. Trivial tasks, tuned
  const { piscinaRate: piscina1, tinypoolRate } = yield* Effect.promise(() => pools(workerFile, 1))
  const wide = yield* Effect.promise(() =>
    pools(workerFile, Readers.trivialRunner.settings.concurrentTasksPerProcess ?? 1)
  )
  const from = Math.floor(TRIVIAL / 10)
  writers.trivial = counter(TRIVIAL)
  const procs = yield* timed(compiled(Readers.trivialRunner), TRIVIAL, from)
  writers.trivial = counter(TRIVIAL)
  const threads = yield* timed(compiled(Readers.trivialRunner), TRIVIAL, from, { workerMode: "thread" })
  const procRate = procs.steadyItems / (procs.steady / 1000)
  const threadRate = threads.steadyItems / (threads.steady / 1000)
  const endToEnd = (r: { readonly endToEnd: number }) => (TRIVIAL / (r.endToEnd / 1000)).toFixed(0)
  const perThread = Readers.trivialRunner.settings.concurrentTasksPerProcess
  out(
    `Trivial tasks (n => n + 1), ${TRIVIAL} tasks, 2 workers each, steady state; JobRunner tuned (queue 4000/2000, ${perThread} per process)`
  )
  out("")
  out("| | tasks/s | vs piscina | end to end, spawning included |")
  out("|---|---|---|---|")
  out(`| piscina (2 threads) | ${piscina1.toFixed(0)} | 1.00× | |`)
  out(`| tinypool (2 threads) | ${tinypoolRate.toFixed(0)} | ${(tinypoolRate / piscina1).toFixed(2)}× | |`)
  out(
    `| piscina (2 threads, ${perThread} tasks per thread) | ${wide.piscinaRate.toFixed(0)} | ${
      (wide.piscinaRate / piscina1).toFixed(2)
    }× | |`
  )
  out(
    `| tinypool (2 threads, ${perThread} tasks per thread) | ${wide.tinypoolRate.toFixed(0)} | ${
      (wide.tinypoolRate / piscina1).toFixed(2)
    }× | |`
  )
  out(
    `| JobRunner, 2 reader processes | ${procRate.toFixed(0)} | ${(procRate / piscina1).toFixed(2)}× | ${
      endToEnd(procs)
    } tasks/s |`
  )
  out(
    `| JobRunner, 2 worker threads | ${threadRate.toFixed(0)} | ${(threadRate / piscina1).toFixed(2)}× | ${
      endToEnd(threads)
    } tasks/s |`
  )
  out("")
  out(
    `Writer process CPU (2 reader processes): whole run ${(procs.cpuMicros / 1000).toFixed(0)} ms, ${
      (procs.cpuMicros / TRIVIAL).toFixed(2)
    } µs per task; steady state ${(procs.steadyCpuMicros / procs.steadyItems).toFixed(2)} µs per task`
  )
  out("")

  // 3. Seed defaults interleaved with piscina; recycling; start-up
  out(`Seed defaults (maxQueueSize 300, lookupBlockSize 10, 4 tasks per process), 2 reader processes; load ${load()}`)
  out("")
  out("| round | piscina before | JobRunner defaults, steady | piscina after | ratio |")
  out("|---|---|---|---|---|")
  const ratios: Array<number> = []
  let before = yield* piscinaRate(workerFile, TRIVIAL)
  for (let round = 1; round <= INTERLEAVED; round++) {
    writers.defaults = counter(TRIVIAL)
    const run = yield* timed(compiled(Readers.defaultsRunner), TRIVIAL, from, { maxJobsPerProcess: 0 })
    const rate = run.steadyItems / (run.steady / 1000)
    const after = yield* piscinaRate(workerFile, TRIVIAL)
    const ratio = rate / ((before + after) / 2)
    ratios.push(ratio)
    out(`| ${round} | ${before.toFixed(0)}/s | ${rate.toFixed(0)}/s | ${after.toFixed(0)}/s | ${ratio.toFixed(2)}× |`)
    before = after
  }
  out(`| median | | | | **${median(ratios).toFixed(2)}×** |`)
  out("")

  yield* recyclingRow(out, load)
  out("")

  out("Start → first job done, interleaved with piscina's new pool → first task")
  out("")
  out("| round | piscina | JobRunner, compiled readers | ratio | JobRunner through tsx | ratio |")
  out("|---|---|---|---|---|---|")
  const startRatios: Array<number> = []
  for (let round = 1; round <= INTERLEAVED; round++) {
    const p = yield* piscinaStartUp(workerFile)
    const c = yield* startUp("compiled", built.entry)
    const t = yield* startUp("tsx", built.entry)
    startRatios.push(c / p)
    out(
      `| ${round} | ${p.toFixed(0)} ms | ${c.toFixed(0)} ms | ${(c / p).toFixed(2)}× | ${t.toFixed(0)} ms | ${
        (t / p).toFixed(2)
      }× |`
    )
  }
  out(`| median | | | **${median(startRatios).toFixed(2)}×** | | |`)
  out("")
  // Where a compiled reader's start goes: a bare node process, then loading the runner module (effect and the
  // runner's code), against the whole start → first job.
  const bare = yield* Effect.forEach([1, 2, 3], () => nodeRun(["-e", "0"]))
  const imported = yield* Effect.forEach(
    [1, 2, 3],
    () => nodeRun(["--input-type=module", "-e", `await import(${JSON.stringify(built.module)})`])
  )
  out(
    `Start-up phases (median of 3): node spawn → exit ${
      median(bare).toFixed(0)
    } ms; spawn + import of the compiled runner module → exit ${median(imported).toFixed(0)} ms; load ${load()}`
  )
  Fs.rmSync(dir, { recursive: true, force: true })
})

if (!JobRunner.isReaderProcess()) {
  Effect.runPromise(main).then(() => process.exit(0), (e) => {
    console.error(e)
    process.exit(1)
  })
}
