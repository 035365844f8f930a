/**
 * Vitest global setup: compiles every child-process fixture once per run (test/helpers/fixtures.ts) into
 * `.tmp/fixtures/<pid>/` and gives the folder to the test files through `provide`; removes it at the end, with any
 * folder left by an earlier run whose process is gone.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import type { TestProject } from "vitest/node"
import { buildFixtures, buildRoot } from "./helpers/fixtures.js"

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

export default async function setup(project: TestProject) {
  const dir = Path.join(buildRoot, String(process.pid))
  if (Fs.existsSync(buildRoot)) {
    for (const name of Fs.readdirSync(buildRoot)) {
      const pid = Number(name)
      if (Number.isInteger(pid) && pid !== process.pid && !alive(pid)) {
        Fs.rmSync(Path.join(buildRoot, name), { recursive: true, force: true })
      }
    }
  }
  Fs.rmSync(dir, { recursive: true, force: true })
  const ms = await buildFixtures(dir)
  if (process.env.EFFECT_WORKERS_TEST_TIMINGS !== undefined) console.log(`fixtures compiled in ${Math.round(ms)} ms`)
  project.provide("compiledFixturesDir", dir)
  return () => Fs.rmSync(dir, { recursive: true, force: true })
}
