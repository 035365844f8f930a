import { describe, expect, it } from "@effect/vitest"
import { execFileSync, spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

// The examples are documentation a newcomer runs first: each must run to its end and say what it promises.
describe("examples", () => {
  it("worker-queue-promise: 301 asks over 30 numbers reach the server 30 times", () => {
    const out = execFileSync(process.execPath, ["--import", "tsx", "examples/worker-queue-promise.ts"], {
      encoding: "utf8",
      timeout: 60_000
    })
    expect(out).toContain("server hits: 30")
    expect(out).toContain("stats: 30 runs")
  })

  it("durable-jobs: a JobRunner fed by a SQLite durable queue does every job once and dead-letters the broken one", () => {
    const db = Path.join(Os.tmpdir(), `effect-workers-durable-jobs-${process.pid}.sqlite`)
    const run = spawnSync(process.execPath, ["--import", "tsx", "examples/durable-jobs/main.ts"], {
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
  }, 120_000)
})
