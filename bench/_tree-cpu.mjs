// CPU per item of a TreeQueue run (111,111 items, fan-out 10, 8 workers, no display) of the checkout in the current
// directory (or argv[2]), so that bench/_ab.mjs can compare two checkouts with one copy of this file: the median of
// 9 rounds after 2 warm-ups, printed as "N jobs/s, X µs CPU per job" (an item for a job). Effect is loaded from the
// checkout's own node_modules (ESM build): a second copy of effect in the process runs everything slower.
//   node bench/_ab.mjs --a /work/wt/base --b . --runs 8 -- npx tsx "$PWD/bench/_tree-cpu.mjs"
import { pathToFileURL } from "node:url"

const dir = process.argv[2] ?? process.cwd()
const load = (path) => import(pathToFileURL(`${dir}/${path}`).href)
const Effect = await load("node_modules/effect/dist/esm/Effect.js")
const TreeQueue = await load("src/TreeQueue.ts")
const Progress = await load("src/Progress.ts")
const ITEMS = 111_111

const once = async () => {
  let created = 1
  let processed = 0
  const item = {
    process: (ctx) => {
      processed++
      const n = Math.max(0, Math.min(10, ITEMS - created))
      created += n
      if (n === 0) return Effect.void
      return ctx.enqueue(...Array.from({ length: n }, () => item))
    }
  }
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await Effect.runPromise(
    TreeQueue.run({ initial: [item], workers: 8, order: "fifo" }).pipe(Effect.provide(Progress.layerNone))
  )
  const cpu = process.cpuUsage(cpu0)
  const wall = performance.now() - t0
  if (processed !== ITEMS) throw new Error(`processed ${processed}`)
  return { cpu: (cpu.user + cpu.system) / 1000, wall }
}

await once()
await once()
const rounds = []
for (let i = 0; i < 9; i++) rounds.push(await once())
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const cpu = median(rounds.map((r) => r.cpu))
const wall = median(rounds.map((r) => r.wall))
console.log(`${Math.round(ITEMS / wall * 1000)} jobs/s, ${(cpu * 1000 / ITEMS).toFixed(3)} µs CPU per job`)
