/**
 * The core's own CPU per job, with no I/O: `DurableQueue.memory`, `--jobs` offered with offerAll, drained by `run`
 * at `--concurrency` with a no-op handler; prints jobs/s and CPU µs per job (median of `--rounds`). With
 * `--profile <file>`, the drains alone (not the fills, nor start-up) are profiled with the inspector's CPU profiler
 * into <file> (summarise it with `node bench/_profile-summary.mjs <file>`). To compare two checkouts, run this in
 * each, alternately (`node bench/_ab.mjs`): two copies of effect 3.22 in one process share its global singletons
 * (fiber refs, scheduler), and the copy loaded second ran 1.6–2.4× the CPU per job of the same code loaded first.
 *
 *   npx tsx bench/_core-cpu.ts --jobs 50000 --rounds 5
 *   npx tsx bench/_core-cpu.ts --jobs 20000 --rounds 1 --warmup 2 --profile /tmp/core.cpuprofile
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import { writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import * as os from "node:os"
import * as DurableQueue from "../src/DurableQueue.js"
import { arg, batches, counter, median, timed, until } from "./_shared.js"

const JOBS = arg("jobs", 50_000)
const CONCURRENCY = arg("concurrency", 16)
const ROUNDS = arg("rounds", 5)
/** Rounds run first and dropped: the JIT warms up over the first ~3 (77.9, 45.9, 19.0 µs/job at load 4). */
const WARMUP = arg("warmup", 3)
const profileTo = process.argv.includes("--profile") ? process.argv[process.argv.indexOf("--profile") + 1] : undefined
const session = new Session()

const round = Effect.gen(function*() {
  const queue = yield* DurableQueue.memory({ name: "jobs", schema: Schema.Struct({ n: Schema.Number }) })
  for (const batch of batches(JOBS, 1_000)) yield* queue.offerAll(batch.map((n) => ({ value: { n } })))
  const handled = counter(JOBS)
  let fiber: Fiber.RuntimeFiber<never, unknown> | undefined
  if (profileTo !== undefined) yield* Effect.promise(() => session.post("Profiler.start"))
  const sample = yield* Effect.promise(() =>
    timed(JOBS, async () => {
      fiber = Effect.runFork(queue.run(() => Effect.sync(handled.hit), { concurrency: CONCURRENCY }))
      await handled.all
      await until(async () => (await Effect.runPromise(queue.size)) === 0)
    })
  )
  if (profileTo !== undefined) {
    const { profile } = yield* Effect.promise(() => session.post("Profiler.stop"))
    writeFileSync(profileTo, JSON.stringify(profile))
  }
  yield* Fiber.interrupt(fiber!)
  return sample
}).pipe(Effect.scoped)

const main = async () => {
  if (profileTo !== undefined) {
    session.connect()
    await session.post("Profiler.enable")
  }
  for (let r = 0; r < WARMUP; r++) await Effect.runPromise(round)
  const samples = []
  for (let r = 0; r < ROUNDS; r++) samples.push(await Effect.runPromise(round))
  console.log(
    `memory core: ${Math.round(median(samples.map((s) => s.rate)))} jobs/s, ${
      median(samples.map((s) => s.cpu)).toFixed(1)
    } µs CPU per job (rounds: ${samples.map((s) => s.cpu.toFixed(1)).join(", ")}), load ${os.loadavg()[0]!.toFixed(1)}`
  )
}
void main()
