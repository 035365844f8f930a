/**
 * What spans and metrics cost on trivial work (issue 13), in one process, interleaved rounds, medians. Three
 * variants of the same three workloads:
 *
 * - `base`: the library from another checkout (`--base`, e.g. a worktree of the commit before telemetry);
 * - `no tracer`: this checkout with Effect's built-in tracer (spans are not made: metrics only);
 * - `tracer`: this checkout under `Effect.withTracer` of a tracer that delegates to the built-in one, so every
 *   span is made as an OpenTelemetry layer would have it made (the cost before spans were gated).
 *
 * Workloads: `requireAll` of 100k distinct keys (a fresh queue, trivial worker), `applyToAll` of 100k tasks on
 * 16 workers (`Effect.succeed`), a TreeQueue of 111,111 items (fan-out 10, 8 workers, `Progress.layerNone`).
 * Both checkouts must resolve the same `effect` (a symlinked `node_modules` does).
 *
 *   npx tsx bench/telemetry-cost.ts --base /work/wt/lib13-base [--rounds 5] [--scale 1]
 */
import * as Effect from "effect/Effect"
import * as Tracer from "effect/Tracer"
import * as os from "node:os"
import * as path from "node:path"
import type * as Progress from "../src/Progress.js"
import type * as TaskEngine from "../src/TaskEngine.js"
import type * as TreeQueue from "../src/TreeQueue.js"
import type * as WorkerQueue from "../src/WorkerQueue.js"
import { arg, median } from "./_shared.js"

type Lib = {
  readonly WorkerQueue: typeof WorkerQueue
  readonly TaskEngine: typeof TaskEngine
  readonly TreeQueue: typeof TreeQueue
  readonly Progress: typeof Progress
}
type Run = Effect.Effect<unknown, unknown>

// Without --base (as `npm run bench` runs it) there is nothing to compare with: it says so and exits.
const baseIndex = process.argv.indexOf("--base")
const baseDir = baseIndex < 0 ? undefined : path.resolve(process.argv[baseIndex + 1]!)
const ROUNDS = arg("rounds", 5)
const SCALE = arg("scale", 1)
const KEYS = Math.round(100_000 * SCALE)
const TASKS = Math.round(100_000 * SCALE)
const ITEMS = Math.round(111_111 * SCALE)

const load = async (dir: string): Promise<Lib> => ({
  WorkerQueue: await import(path.join(dir, "src/WorkerQueue.ts")),
  TaskEngine: await import(path.join(dir, "src/TaskEngine.ts")),
  TreeQueue: await import(path.join(dir, "src/TreeQueue.ts")),
  Progress: await import(path.join(dir, "src/Progress.ts"))
})

// A tracer other than the built-in one (so spans are made) with the built-in one's spans behind it.
const builtIn = Effect.runSync(Effect.tracer)
const delegating = Tracer.make({ span: (...args) => builtIn.span(...args), context: builtIn.context })

const requireAll = (lib: Lib) =>
  Effect.scoped(Effect.gen(function*() {
    const queue = yield* lib.WorkerQueue.make({ worker: (n: number) => Effect.succeed(n), concurrency: 16 })
    yield* queue.requireAll(Array.from({ length: KEYS }, (_, i) => i))
  }))

const applyToAll = (lib: Lib) =>
  Effect.scoped(Effect.gen(function*() {
    const engine = yield* lib.TaskEngine.make({ workers: 16, handler: (n: number) => Effect.succeed(n + 1) })
    yield* engine.applyToAll(Array.from({ length: TASKS }, (_, i) => i))
  }))

const treeQueue = (lib: Lib) => {
  let created = 1
  const item: TreeQueue.Item<never, never> = {
    process: (ctx) => {
      const n = Math.max(0, Math.min(10, ITEMS - created))
      created += n
      return n === 0 ? Effect.void : ctx.enqueue(...Array.from({ length: n }, () => item))
    }
  }
  return Effect.provide(lib.TreeQueue.run({ initial: [item], workers: 8 }), lib.Progress.layerNone)
}

const gc = () => (globalThis as { gc?: () => void }).gc?.()

const main = async (baseDir: string) => {
  const ours = await load(path.resolve(import.meta.dirname, ".."))
  const base = await load(baseDir)
  const variants: Array<[string, (e: Run) => Run, Lib]> = [
    ["base", (e) => e, base],
    ["no tracer", (e) => e, ours],
    ["tracer", (e) => Effect.withTracer(e, delegating), ours]
  ]
  const workloads: Array<[string, (lib: Lib) => Run]> = [
    [`requireAll ${KEYS / 1000}k keys`, requireAll],
    [`applyToAll ${TASKS / 1000}k tasks`, applyToAll],
    [`TreeQueue ${ITEMS} items`, treeQueue]
  ]
  const times = new Map<string, Array<number>>()
  for (let round = 0; round <= ROUNDS; round++) { // round 0 is a warm-up
    for (const [work, make] of workloads) {
      for (const [variant, wrap, lib] of variants) {
        gc()
        const t0 = performance.now()
        await Effect.runPromise(wrap(make(lib)))
        const ms = performance.now() - t0
        if (round > 0) times.set(`${work}|${variant}`, [...(times.get(`${work}|${variant}`) ?? []), ms])
      }
    }
  }
  console.log(
    `# Telemetry cost — ${
      new Date().toISOString().slice(0, 16)
    } UTC, nproc ${os.cpus().length}, node ${process.version}, load ${
      os.loadavg()[0]!.toFixed(1)
    } at end, median of ${ROUNDS}`
  )
  console.log("| workload | base ms | no tracer ms | vs base | tracer ms | vs base |")
  console.log("|---|---:|---:|---:|---:|---:|")
  for (const [work] of workloads) {
    const [b, n, t] = ["base", "no tracer", "tracer"].map((v) => median(times.get(`${work}|${v}`)!))
    console.log(
      `| ${work} | ${b!.toFixed(0)} | ${n!.toFixed(0)} | ${(n! / b!).toFixed(2)}× | ${t!.toFixed(0)} | ${
        (t! / b!).toFixed(2)
      }× |`
    )
  }
}

if (baseDir === undefined) {
  console.log("telemetry-cost: skipped, needs --base <checkout of the library before telemetry>")
} else await main(baseDir)
