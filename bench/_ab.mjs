// A/B of two checkouts, each in its own process (two copies of effect in one process share its global singletons
// and the second runs slower): runs `command` in dir A, then B, alternately (order swapped every run), `--runs`
// times; parses the last "N jobs/s, X µs CPU per job" of each output; prints each run, the medians and the median
// of the per-run ratios B ÷ A, with the load average before and after.
//   node bench/_ab.mjs --a /tmp/base --b . --runs 6 -- npx tsx bench/_core-cpu.ts --jobs 5000 --rounds 5
import { execFileSync } from "node:child_process"
import { loadavg } from "node:os"
const argv = process.argv.slice(2)
const sep = argv.indexOf("--")
const opt = (name, fallback) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 && i < sep ? argv[i + 1] : fallback
}
const [cmd, ...args] = argv.slice(sep + 1)
const dirs = { A: opt("a"), B: opt("b", ".") }
const runs = Number(opt("runs", 6))
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const measure = (dir) => {
  const out = execFileSync(cmd, args, { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] })
  const all = [...out.matchAll(/([\d,]+) jobs\/s, ([\d.]+) µs CPU per job/g)]
  const last = all[all.length - 1]
  if (last === undefined) throw new Error(`no figures in: ${out}`)
  // bench/_redis-server-cpu.ts also prints the redis-server's CPU per job: compared too when both print it.
  const server = [...out.matchAll(/([\d.]+) µs redis CPU per job/g)].pop()
  return { rate: Number(last[1].replace(/,/g, "")), cpu: Number(last[2]), redis: server ? Number(server[1]) : NaN }
}
const before = loadavg()[0].toFixed(1)
const res = { A: [], B: [] }
for (let r = 0; r < runs; r++) {
  for (const k of r % 2 === 0 ? ["A", "B"] : ["B", "A"]) res[k].push(measure(dirs[k]))
  const srv = (s) => Number.isNaN(s.redis) ? "" : ` (redis ${s.redis} µs)`
  console.log(
    `run ${r + 1}: A ${res.A[r].rate} jobs/s ${res.A[r].cpu} µs${srv(res.A[r])} | B ${res.B[r].rate} jobs/s ${res.B[r].cpu} µs${srv(res.B[r])}`
  )
}
for (const k of ["A", "B"]) {
  console.log(`${k} (${dirs[k]}): ${median(res[k].map((s) => s.rate))} jobs/s, ${median(res[k].map((s) => s.cpu))} µs CPU per job`)
}
const ratio = (f) => median(res.B.map((s, i) => f(s) / f(res.A[i]))).toFixed(2)
const redis = Number.isNaN(res.B[0].redis) ? "" : `, redis CPU per job ${ratio((s) => s.redis)}×`
console.log(`B ÷ A (median of per-run ratios): CPU per job ${ratio((s) => s.cpu)}×, jobs/s ${ratio((s) => s.rate)}×${redis}; load ${before} → ${loadavg()[0].toFixed(1)}`)
