import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Child-process fixtures are compiled once per run (test/helpers/fixtures.ts), not started through tsx.
    globalSetup: ["test/globalSetup.ts"],
    // The machine has two cores; more forks only fight for them.
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 30_000,
    hookTimeout: 30_000,
    sequence: { concurrent: false }
  }
})
