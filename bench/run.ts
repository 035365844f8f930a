/**
 * Runs every benchmark in bench/, one after another, each in its own Node process (with --expose-gc, for the
 * heap figures), and prints their tables. `npm run bench` runs them all; `npm run bench -- worker-queue` only
 * the ones whose file name contains the given word.
 */
import { spawnSync } from "node:child_process"
import { readdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
const filters = process.argv.slice(2)
const files = readdirSync(here)
  .filter((f) => f.endsWith(".ts") && f !== "run.ts" && !f.startsWith("_"))
  .filter((f) => filters.length === 0 || filters.some((w) => f.includes(w)))
  .sort()

let failed = 0
for (const file of files) {
  console.log(`\n=== bench/${file}`)
  const result = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", join(here, file)], { stdio: "inherit" })
  if (result.status !== 0) {
    failed++
    console.error(`bench/${file} exited with ${result.status ?? result.signal}`)
  }
}
process.exitCode = failed === 0 ? 0 : 1
