import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"

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
})
