/**
 * The core's own CPU per job, with no I/O: `DurableQueue.memory`, `--jobs` offered with offerAll, drained by `run`
 * at `--concurrency` with a no-op handler; prints jobs/s and CPU µs per job (median of `--rounds`).
 *
 *   npx tsx bench/_core-cpu.ts --jobs 50000 --rounds 5
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as DurableQueue from "../src/DurableQueue.js"
import { arg, batches, counter, median, timed, until } from "./_shared.js"

const JOBS = arg("jobs", 50_000)
const CONCURRENCY = arg("concurrency", 16)
const ROUNDS = arg("rounds", 5)

const round = Effect.gen(function*() {
  const queue = yield* DurableQueue.memory({ name: "jobs", schema: Schema.Struct({ n: Schema.Number }) })
  for (const batch of batches(JOBS, 1_000)) yield* queue.offerAll(batch.map((n) => ({ value: { n } })))
  const handled = counter(JOBS)
  let fiber: Fiber.RuntimeFiber<never, unknown> | undefined
  const sample = yield* Effect.promise(() =>
    timed(JOBS, async () => {
      fiber = Effect.runFork(queue.run(() => Effect.sync(handled.hit), { concurrency: CONCURRENCY }))
      await handled.all
      await until(async () => (await Effect.runPromise(queue.size)) === 0)
    })
  )
  yield* Fiber.interrupt(fiber!)
  return sample
}).pipe(Effect.scoped)

const main = async () => {
  const samples = []
  for (let r = 0; r < ROUNDS; r++) samples.push(await Effect.runPromise(round))
  console.log(
    `memory core: ${Math.round(median(samples.map((s) => s.rate)))} jobs/s, ${
      median(samples.map((s) => s.cpu)).toFixed(1)
    } µs CPU per job`
  )
}
void main()
