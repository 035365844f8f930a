// `npm test`: the type check (tsc --noEmit), the lint (eslint), the format check (dprint) and the test suite
// (vitest run) at once; a failure of any of them fails the run. They ran one after another before: 20 s of tsc
// and eslint, then vitest, whose forks spend much of their time waiting (leases, child processes starting), so
// the two cores had room. vitest's output streams as it comes; the others' is printed at the end, after vitest's
// summary, with their times. Arguments go to vitest (`npm test -- test/WorkerQueue.test.ts`); `--no-static` runs
// vitest alone.
import { spawn } from "node:child_process"
import { createRequire } from "node:module"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const root = Path.resolve(fileURLToPath(import.meta.url), "../..")
const require = createRequire(import.meta.url)
const args = process.argv.slice(2)
const withStatic = !args.includes("--no-static")
const vitestArgs = args.filter((a) => a !== "--no-static")

const children = new Set()

/**
 * Runs `node <script> ...args`; resolves with its exit code, its output (when captured) and its time. A `niceness`
 * lowers the child's CPU priority: the static checks only need to end before vitest does, while vitest's files
 * measure leases and delays in real time, so on 2 cores they get the CPU first and the checks fill their waits.
 */
const run = (name, script, scriptArgs, capture, niceness = 0) =>
  new Promise((resolve) => {
    const started = performance.now()
    const child = spawn(process.execPath, [script, ...scriptArgs], {
      cwd: root,
      stdio: capture ? ["ignore", "pipe", "pipe"] : "inherit"
    })
    children.add(child)
    if (niceness > 0 && child.pid !== undefined) {
      try {
        Os.setPriority(child.pid, niceness)
      } catch {
        // Not allowed here (some containers): the check runs at normal priority.
      }
    }
    let output = ""
    if (capture) {
      child.stdout.setEncoding("utf8").on("data", (chunk) => (output += chunk))
      child.stderr.setEncoding("utf8").on("data", (chunk) => (output += chunk))
    }
    const done = (code) => {
      children.delete(child)
      resolve({ name, code, output, seconds: (performance.now() - started) / 1000 })
    }
    child.on("error", (error) => {
      output += String(error)
      done(1)
    })
    child.on("close", (code, signal) => done(code ?? (signal === null ? 1 : 128)))
  })

// Ctrl-C reaches every child through the terminal's process group; a SIGTERM sent to this process alone is passed on.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    for (const child of children) child.kill(signal)
  })
}

const checks = withStatic
  ? [
    run("typecheck (tsc --noEmit)", require.resolve("typescript/bin/tsc"), ["--noEmit"], true, 10),
    run(
      "lint (eslint .)",
      Path.join(Path.dirname(require.resolve("eslint/package.json")), "bin/eslint.js"),
      ["."],
      true,
      10
    ),
    run(
      "format (dprint check)",
      Path.join(Path.dirname(require.resolve("dprint/package.json")), "bin.cjs"),
      ["check"],
      true,
      10
    )
  ]
  : []
const vitest = run("vitest run", Path.join(Path.dirname(require.resolve("vitest/package.json")), "vitest.mjs"), [
  "run",
  ...vitestArgs
], false)

const results = [await vitest, ...(await Promise.all(checks))]
for (const { name, code, output, seconds } of results.slice(1)) {
  console.log(
    `\n${code === 0 ? "✓" : "✗"} ${name}: ${code === 0 ? "passed" : `failed (exit ${code})`} in ${seconds.toFixed(1)} s`
  )
  if (code !== 0 || output.trim().length > 0) console.log(output.trimEnd())
}
const failed = results.filter((r) => r.code !== 0)
console.log(
  `\nnpm test: ${failed.length === 0 ? "passed" : `failed: ${failed.map((r) => r.name).join(", ")}`} (vitest ${
    results[0].seconds.toFixed(1)
  } s)`
)
process.exit(failed.length === 0 ? 0 : 1)
