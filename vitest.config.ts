import { defineConfig } from "vitest/config"

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
    // The machine has two cores; more forks only fight for them.
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 30_000,
    hookTimeout: 30_000,
    sequence: { concurrent: false },
    projects: [
      { extends: true, test: { name: "unit", include: ["test/**/*.test.ts"], exclude: proofs } },
      { extends: true, test: { name: "proofs", include: proofs, poolOptions: { forks: { singleFork: true } } } }
    ]
  }
})
