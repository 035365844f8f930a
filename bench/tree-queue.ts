/**
 * TreeQueue benchmark: a 100k-item tree (fan-out 10) of trivial items on 8 workers, TreeQueue against the same
 * crawl written by hand on p-queue, in one process, interleaved, median of several rounds. Also the cost of the
 * live display: TreeQueue with `Progress.layerTerminal` drawing (to a discarding 100×30 "terminal") against
 * `Progress.layerNone`.
 *
 *   npx tsx bench/tree-queue.ts [--items 100000] [--rounds 11]
 */
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as os from "node:os"
import PQueue from "p-queue"
import type { OptionError } from "../src/OptionError.js"
import * as Progress from "../src/Progress.js"
import * as TreeQueue from "../src/TreeQueue.js"
import { arg, median } from "./_shared.js"

const ITEMS = arg("items", 100_000)
const ROUNDS = arg("rounds", 11)
const FANOUT = 10
const WORKERS = 8

/** The tree: every item makes up to FANOUT children until ITEMS items exist (breadth-first, same in both). */
const makeCounter = () => {
  let created = 1
  return () => {
    const n = Math.min(FANOUT, ITEMS - created)
    created += Math.max(0, n)
    return Math.max(0, n)
  }
}

const treeQueueRun = (layer: Layer.Layer<Progress.Progress, OptionError>) => {
  const children = makeCounter()
  let processed = 0
  const item: TreeQueue.Item = {
    process: (ctx) => {
      processed++
      const n = children()
      if (n === 0) return Effect.void
      const kids: Array<TreeQueue.Item> = []
      for (let i = 0; i < n; i++) kids.push(item)
      return ctx.enqueue(...kids)
    }
  }
  return Effect.runPromise(
    TreeQueue.run({ initial: [item], workers: WORKERS, order: "fifo" }).pipe(Effect.provide(layer))
  ).then((summary) => {
    if (summary.processed !== ITEMS || processed !== ITEMS) throw new Error(`TreeQueue processed ${processed}`)
  })
}

const pQueueRun = async () => {
  const children = makeCounter()
  let processed = 0
  const queue = new PQueue({ concurrency: WORKERS })
  const task = async (): Promise<void> => {
    processed++
    const n = children()
    for (let i = 0; i < n; i++) void queue.add(task)
  }
  void queue.add(task)
  await queue.onIdle()
  if (processed !== ITEMS) throw new Error(`p-queue processed ${processed}`)
}

const sink: Progress.Output = { write: () => true, isTTY: true, columns: 100, rows: 30 }
let frames = 0
const countingSink: Progress.Output = {
  ...sink,
  write: () => {
    frames++
    return true
  }
}
const display = Progress.layerTerminal({ output: countingSink })

const time = async (f: () => Promise<void>) => {
  const t0 = performance.now()
  await f()
  return performance.now() - t0
}

const main = async () => {
  const cases: Array<[string, () => Promise<void>]> = [
    ["p-queue (by hand)", pQueueRun],
    ["TreeQueue, no display", () => treeQueueRun(Progress.layerNone)],
    ["TreeQueue, live display", () => treeQueueRun(display)]
  ]
  const results = new Map<string, Array<number>>(cases.map(([name]) => [name, []]))
  for (const [, f] of cases) await f() // warm-up
  frames = 0
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, f] of cases) results.get(name)!.push(await time(f))
  }
  const m = (name: string) => median(results.get(name)!)
  const lines = [
    `TreeQueue benchmark: ${ITEMS.toLocaleString("en-US")} items, fan-out ${FANOUT}, ${WORKERS} workers, ` +
    `median of ${ROUNDS} rounds`,
    `node ${process.version}, ${os.cpus().length} CPUs (nproc), ${new Date().toISOString().slice(0, 10)}`,
    "",
    "| run | median | min | per item (median) |",
    "|---|---:|---:|---:|",
    ...cases.map(([name]) =>
      `| ${name} | ${m(name).toFixed(0)} ms | ${Math.min(...results.get(name)!).toFixed(0)} ms | ${
        (m(name) * 1000 / ITEMS).toFixed(2)
      } µs |`
    ),
    "",
    `TreeQueue / p-queue: ${(m("TreeQueue, no display") / m("p-queue (by hand)")).toFixed(2)}x (target <= 1.0x)`,
    `display on / off: ${(m("TreeQueue, live display") / m("TreeQueue, no display")).toFixed(2)}x (target <= 1.1x; ` +
    `${frames} frames drawn in ${ROUNDS} rounds)`
  ]
  console.log(lines.join("\n"))
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
