import { describe, expect, it } from "@effect/vitest"
import { execFileSync, spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fixtureCommand } from "./helpers/compiled.js"

// The examples are documentation a newcomer runs first: each must run to its end and say what it promises.
describe("examples", () => {
  it("worker-queue-promise: 301 asks over 30 numbers reach the server 30 times", () => {
    const example = fixtureCommand("examples/worker-queue-promise.ts")
    const out = execFileSync(example.command, example.args, {
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, ...example.env }
    })
    expect(out).toContain("server hits: 30")
    expect(out).toContain("stats: 30 runs")
  })

  // The one test of the tsx path (every other child process runs compiled, see test/helpers/fixtures.ts): the
  // README runs the examples with tsx, and this one forks reader processes that get the tsx loader too.
  it(
    "durable-advanced: on SQLite, backoff spaces a flaky job's attempts, a delayed job waits, a schedule ticks, progress is read back by id",
    () => {
      const db = Path.join(Os.tmpdir(), `effect-workers-durable-advanced-${process.pid}.sqlite`)
      const example = fixtureCommand("examples/durable-advanced/main.ts")
      const run = spawnSync(example.command, example.args, {
        encoding: "utf8",
        timeout: 60_000,
        env: { ...process.env, ...example.env, DURABLE_ADVANCED_DB: db }
      })
      const out = run.stdout + run.stderr
      expect(run.status, out).toBe(0)
      expect(Fs.existsSync(db), "the example removes its database").toBe(false)
      // Exponential backoff from 200 ms: the attempts start at least 200, then 400 ms apart (not at once).
      const [, first, second] = /attempts started (\d+) and (\d+) ms apart/.exec(out) ?? []
      expect(Number(first), out).toBeGreaterThanOrEqual(200)
      expect(Number(second), out).toBeGreaterThanOrEqual(400)
      const [, waited] = /delayed started (\d+) ms after its offer/.exec(out) ?? []
      expect(Number(waited), out).toBeGreaterThanOrEqual(1_500)
      expect(out).toContain("ticks run: 2")
      expect(out).toContain(`status of flaky: done after 3 attempts, progress {"step":"done","percent":100}`)
      expect(out).toContain("event Retried flaky attempt 2")
      expect(out).toMatch(/event Offered schedule:tick:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z/)
    },
    90_000
  )

  it(
    "durable-jobs (through tsx): a JobRunner fed by a SQLite durable queue does every job once and dead-letters the broken one",
    () => {
      const db = Path.join(Os.tmpdir(), `effect-workers-durable-jobs-${process.pid}.sqlite`)
      const example = fixtureCommand("examples/durable-jobs/main.ts", [], "tsx")
      const run = spawnSync(example.command, example.args, {
        encoding: "utf8",
        timeout: 90_000,
        env: { ...process.env, JOBS: "40", DURABLE_JOBS_DB: db }
      })
      const out = run.stdout + run.stderr
      for (const suffix of ["", "-wal", "-shm"]) Fs.rmSync(db + suffix, { force: true })
      expect(run.status, out).toBe(0)
      expect(out).toContain("offered 41 jobs twice; 41 in the queue")
      expect(out).toContain("40 processed, 2 failed attempts")
      expect(out).toContain("dead letter thumb:broken.jpg after 2 attempts")
      expect(out).toContain("0 jobs left in the queue")
    },
    120_000
  )
})
