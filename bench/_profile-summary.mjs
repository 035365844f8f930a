// Summarises a .cpuprofile (the inspector's own "dispatch" counted as idle): self time by function (top 25), by
// category (GC, Effect runtime, ioredis, sql, ...) and by file of effect-workers' src. Drivers are matched by their
// node_modules folder: a path merely containing "/pg" (a worktree named pg, sqlStore's pgListen) is not PostgreSQL.
// Positions in effect-workers' src are mapped back to the .ts lines through tsx's cache (tsx minifies whitespace,
// so the profile's own positions read "line 1, column 4037"), when that cache holds the file.
import { readdirSync, readFileSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { SourceMapConsumer } from "source-map-js"
const tsxCache = join(tmpdir(), `tsx-${process.getuid?.() ?? 0}`)
const maps = new Map()
const mapOf = (path) => {
  if (maps.has(path)) return maps.get(path)
  let best
  try {
    for (const f of readdirSync(tsxCache)) {
      const full = join(tsxCache, f)
      const text = readFileSync(full, "utf8")
      if (!text.includes(path)) continue
      const entry = JSON.parse(text)
      if (entry.map?.sources?.[0] !== path) continue
      const mtime = statSync(full).mtimeMs
      if (best === undefined || mtime > best.mtime) best = { mtime, map: entry.map }
    }
  } catch {
    // No tsx cache here: positions stay as the profile has them.
  }
  const consumer = best === undefined ? undefined : new SourceMapConsumer(best.map)
  maps.set(path, consumer)
  return consumer
}
const original = (url, line, column) => {
  if (!url.includes("/src/")) return `${line + 1}:${column + 1}`
  const m = mapOf(url.replace(/^file:\/\//, ""))?.originalPositionFor({ line: line + 1, column })
  return m?.line == null ? `${line + 1}:${column + 1}` : `${m.line}:${m.column + 1}${m.name ? ` ${m.name}` : ""}`
}
const profile = JSON.parse(readFileSync(process.argv[2], "utf8"))
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const dt = new Map()
for (let i = 0; i < profile.samples.length; i++) dt.set(profile.samples[i], (dt.get(profile.samples[i]) ?? 0) + (profile.timeDeltas[i] ?? 0))
const self = new Map()
const cats = new Map()
const files = new Map()
let total = 0
const category = (url, name) =>
  name === "(garbage collector)" ? "garbage collection" : name === "(idle)" || name === "dispatch" || url.includes("inspector") ? "idle" : name === "(program)" ? "program (native)"
  : url.includes("node_modules/effect/") ? "effect runtime" : url.includes("ioredis") || url.includes("redis-parser") || url.includes("denque") ? "ioredis"
  : /node_modules\/(@effect\/sql[^/]*|better-sqlite3|pg|pg-[^/]+|postgres[^/]*)\//.test(url) ? "sql driver"
  : url.includes("/src/") ? "effect-workers src" : url === "" ? "native (socket writes, SQLite statements)" : url.startsWith("node:") ? "node internals" : "other"
for (const [id, us] of dt) {
  const n = byId.get(id)
  const { functionName, url, lineNumber } = n.callFrame
  const key = `${functionName || "(anonymous)"} ${url.split("/").slice(-2).join("/")}:${original(url, lineNumber, n.callFrame.columnNumber)}`
  const c = category(url, functionName)
  if (c !== "idle") self.set(key, (self.get(key) ?? 0) + us)
  cats.set(c, (cats.get(c) ?? 0) + us)
  if (c !== "idle") total += us
  if (c === "effect-workers src") {
    const file = url.slice(url.lastIndexOf("/src/") + 5)
    files.set(file, (files.get(file) ?? 0) + us)
  }
}
console.log(`busy ${(total / 1000).toFixed(0)} ms`)
for (const [c, us] of [...cats].sort((a, b) => b[1] - a[1])) if (c !== "idle") console.log(`${c.padEnd(22)} ${(100 * us / total).toFixed(1)} %`)
console.log("--- effect-workers src by file")
for (const [f, us] of [...files].sort((a, b) => b[1] - a[1]).slice(0, 10)) console.log(`${(100 * us / total).toFixed(1).padStart(5)} %  ${f}`)
console.log("--- top self time")
for (const [k, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`${(100 * us / total).toFixed(1).padStart(5)} %  ${k}`)
