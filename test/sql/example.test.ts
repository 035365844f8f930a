/**
 * Smoke test of examples/sql-durable-queue.ts: it runs on its own (embedded SQLite), finishes within seconds and
 * reports the duplicate id, the retry and the dead letter.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { spawnFixture } from "../helpers/processes.js"

describe("examples/sql-durable-queue.ts", () => {
  it.live("runs to the end on SQLite and prints what it did", () =>
    Effect.gen(function*() {
      const child = spawnFixture("examples/sql-durable-queue.ts", [])
      yield* Effect.addFinalizer(() => Effect.sync(() => child.kill()))
      expect(yield* Effect.promise(() => child.exited(30_000))).toBe(0)
      const out = child.lines.join("\n")
      expect(out).toContain("offered 101 jobs, 100 pending")
      expect(out).toMatch(/done: 99 jobs in \d+ ms \(worker-a \d+, worker-b \d+\)/)
      expect(out).toContain("retried after a failure: resize:photo-13")
      expect(out).toContain(
        "dead letter: resize:photo-42 after 3 attempts, last error: Error: photo-42.jpg: not a JPEG file (attempt 3)"
      )
    }).pipe(Effect.scoped), 40_000)
})
