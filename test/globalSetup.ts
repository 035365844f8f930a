/**
 * Vitest global setup: compiles every child-process fixture once per run (test/helpers/fixtures.ts) into
 * `.tmp/fixtures/<pid>/` and gives the folder to the test files through `provide`; removes it at the end, with any
 * folder left by an earlier run whose process is gone. Every project of vitest.config.ts runs this setup; the
 * first starts the build and the others share it (kept on `globalThis`, since each project may load this module
 * anew), and the last teardown removes the folder.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import type { TestProject } from "vitest/node"
import { buildFixtures, buildRoot } from "./helpers/fixtures.js"

interface Shared {
  readonly dir: string
  readonly built: Promise<number>
  users: number
}
const KEY = Symbol.for("effect-workers/test/compiledFixtures")
const registry = globalThis as { [KEY]?: Shared }

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

const start = (): Shared => {
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
  return { dir, built: buildFixtures(dir), users: 0 }
}

export default async function setup(project: TestProject) {
  const shared = (registry[KEY] ??= start())
  shared.users++
  const ms = await shared.built
  if (process.env.EFFECT_WORKERS_TEST_TIMINGS !== undefined) console.log(`fixtures compiled in ${Math.round(ms)} ms`)
  project.provide("compiledFixturesDir", shared.dir)
  return () => {
    if (--shared.users > 0) return
    delete registry[KEY]
    Fs.rmSync(shared.dir, { recursive: true, force: true })
  }
}
