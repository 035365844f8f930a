/**
 * Where the SQLite store's statement time goes in a drain (issue 16): better-sqlite3's `prepare`, `all` and `run`
 * wrapped (before the client loads) to count prepares and time each execution by its SQL text's shape (numbers and
 * `?` lists folded), then `--jobs` offered with offerAll and drained by `run` (no-op, concurrency 16) as
 * bench/_profile.ts does. Prints, per shape: prepares, executions, rows, µs per execution and per job.
 *
 *   npx tsx bench/_sqlite-trace.ts [--jobs 20000]
 */
import { createRequire } from "node:module"
import { arg } from "./_shared.js"

interface Entry {
  prepares: number
  runs: number
  rows: number
  ms: number
}
const shapes = new Map<string, Entry>()
const shapeOf = (sql: string) =>
  sql.replace(/\s+/g, " ").replace(/\?(, ?\?)+/g, "?…").replace(/\b\d+\b/g, "N").slice(0, 110)
const entry = (sql: string) => {
  const key = shapeOf(sql)
  let e = shapes.get(key)
  if (e === undefined) shapes.set(key, e = { prepares: 0, runs: 0, rows: 0, ms: 0 })
  return e
}
// better-sqlite3's Database and Statement classes, patched before @effect/sql-sqlite-node loads them.
const Database = createRequire(import.meta.url)("better-sqlite3") as {
  prototype: { prepare: (sql: string) => { all: () => unknown; run: () => unknown } }
}
const prepare = Database.prototype.prepare
let Statement: { prototype: Record<"all" | "run", (...args: Array<unknown>) => unknown> } | undefined
const texts = new WeakMap<object, string>()
Database.prototype.prepare = function(this: unknown, sql: string) {
  entry(sql).prepares++
  const s = prepare.call(this, sql)
  texts.set(s, sql)
  if (Statement === undefined) {
    Statement = Object.getPrototypeOf(s).constructor
    for (const m of ["all", "run"] as const) {
      const original = Statement!.prototype[m]
      Statement!.prototype[m] = function(this: object, ...args: Array<unknown>) {
        const t = performance.now()
        const out = original.apply(this, args)
        const e = entry(texts.get(this) ?? "?")
        e.ms += performance.now() - t
        e.runs++
        e.rows += Array.isArray(out) ? out.length : Number((out as { changes?: number }).changes ?? 0)
        return out
      }
    }
  }
  return s
}

const JOBS = arg("jobs", 20_000)
const main = async () => {
  process.argv.push("--store", "sqlite")
  const t0 = performance.now()
  await import("./_profile.js")
  void t0
}
process.on("exit", () => {
  const total = [...shapes.values()].reduce((s, e) => s + e.ms, 0)
  console.log(
    `statements ${total.toFixed(0)} ms in all, ${(total * 1000 / JOBS / 2).toFixed(2)} µs per job (fill and drain)`
  )
  for (const [k, e] of [...shapes].sort((a, b) => b[1].ms - a[1].ms)) {
    if (e.runs === 0 && e.prepares < 2) continue
    console.log(
      `${String(e.prepares).padStart(5)} prep ${String(e.runs).padStart(6)} runs ${String(e.rows).padStart(7)} rows ${
        (e.ms * 1000 / Math.max(1, e.runs)).toFixed(0).padStart(6)
      } µs/run ${(e.ms * 1000 / JOBS).toFixed(2).padStart(6)} µs/job  ${k}`
    )
  }
})
main()
