import { defineConfig } from "vitest/config"
import { BaseSequencer, type TestSpecification } from "vitest/node"

/**
 * Files that take longest go first, so the two forks end together. Vitest orders by the durations it cached in an
 * earlier run, and without them (a fresh clone, CI) by file size: the packaging test (53 s, 442 lines) then started
 * sixth and ran alone at the end for half a minute. Seconds measured in one run at load 3-5; files not listed keep
 * vitest's order after these. A rough figure is enough: only the order matters.
 */
const slowFirst: Record<string, number> = {
  "test/packaging.test.ts": 53,
  "test/DurableQueue.contract.test.ts": 42,
  "test/JobRunner.test.ts": 32,
  "test/JobRunner.faults.test.ts": 31,
  "test/docs.test.ts": 18,
  "test/redis/Restart.test.ts": 12,
  "test/TreeQueue.test.ts": 11,
  "test/examples.test.ts": 10
}

class SlowFirst extends BaseSequencer {
  override async sort(files: Array<TestSpecification>): Promise<Array<TestSpecification>> {
    const sorted = await super.sort(files)
    const seconds = (spec: TestSpecification) => {
      const file = spec.moduleId.replace(/\\/g, "/")
      const key = Object.keys(slowFirst).find((name) => file.endsWith(name))
      return key === undefined ? 0 : slowFirst[key]!
    }
    // Array.prototype.sort is stable: equal weights keep vitest's order.
    return sorted.sort((a, b) => seconds(b) - seconds(a))
  }
}

/**
 * The cross-process proofs: each starts several runner processes that share Redis or PostgreSQL and keep both
 * cores busy. Run side by side they starve each other's runners (leases missed, timeouts), so they have a project
 * of their own that runs its files one after another in a single fork, after the other files. A new proof named
 * `*.processes.test.ts` joins it by the glob.
 */
const proofs = ["test/**/*.processes.test.ts", "test/JobRunner.durable.test.ts"]

export default defineConfig({
  test: {
    // Child-process fixtures are compiled once per run (test/helpers/fixtures.ts), not started through tsx. Each
    // project runs the global setup; the build inside is shared (test/globalSetup.ts).
    globalSetup: ["test/globalSetup.ts"],
    pool: "forks",
    // Three forks on the two cores: the files spend much of their time waiting (leases to lapse, child processes
    // to start, a server to answer), and a third fork fills those waits. Measured on one checkout at load 4-5, one
    // run after the other: 2 forks 263 s, 3 forks 169 s for the same 574 tests.
    poolOptions: { forks: { maxForks: 3, minForks: 1 } },
    testTimeout: 30_000,
    hookTimeout: 30_000,
    sequence: { concurrent: false, sequencer: SlowFirst },
    projects: [
      { extends: true, test: { name: "unit", include: ["test/**/*.test.ts"], exclude: proofs } },
      { extends: true, test: { name: "proofs", include: proofs, poolOptions: { forks: { singleFork: true } } } }
    ]
  }
})
