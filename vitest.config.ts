import { defineConfig } from "vitest/config"
import { BaseSequencer, type TestSpecification } from "vitest/node"

/**
 * Files that take longest go first, so the forks end together. Vitest orders by the durations it cached in an
 * earlier run, and without them (a fresh clone, CI) by file size: the packaging test then started sixth and ran
 * alone at the end for half a minute. Seconds of each file in one whole `CI=true npm test` (this branch, load 7-11
 * from others' work; vitest's JSON report, plus what it leaves out: packaging's 31 s beforeAll, `npm pack`). Files
 * under 2 s keep vitest's order after these. Only the order matters: update the figures when a file's time changes
 * by half. The `shared` projects' files run in threads of their own, the proofs after the others.
 */
const slowFirst: Record<string, number> = {
  "test/packaging.test.ts": 74,
  "test/JobRunner.test.ts": 61,
  "test/JobRunner.faults.test.ts": 53,
  "test/DurableQueue.contract.pg.test.ts": 43,
  "test/sql/DurableQueue.events.test.ts": 33,
  "test/redis/Restart.test.ts": 32,
  "test/docs.test.ts": 27,
  "test/sql/DurableQueue.test.ts": 26,
  "test/examples.test.ts": 23,
  "test/sql/DurableQueue.store.test.ts": 21,
  "test/TreeQueue.test.ts": 18,
  "test/DurableQueue.contract.sqlite.test.ts": 15,
  "test/DurableQueue.contract.redis.test.ts": 14,
  "test/DurableQueue.events.test.ts": 13.5,
  "test/Dashboard.browser.test.ts": 13.3,
  "test/JobRunner.durableJob.test.ts": 13,
  "test/DurableQueue.lookahead.test.ts": 11.2,
  "test/redis/WorkerQueue.test.ts": 11,
  "test/sql/Restart.test.ts": 6.6,
  "test/redis/RateLimiter.test.ts": 6.4,
  "test/DurableQueue.offerAll.test.ts": 6.1,
  "test/Progress.test.ts": 5.3,
  "test/redis/DurableQueue.test.ts": 5.1,
  "test/sql/example.test.ts": 4.8,
  "test/redis/DurableQueue.store.test.ts": 3.8,
  "test/ResultCache.test.ts": 3.3,
  "test/sql/SqlPersistedQueue.upstream.test.ts": 3.1,
  "test/TaskEngine.durable.test.ts": 2.7,
  // The `shared` project.
  "test/RateLimiter.test.ts": 12.7,
  "test/DurableQueue.contract.memory.test.ts": 10.4,
  "test/Dashboard.test.ts": 9.3,
  "test/WorkerQueue.test.ts": 6.8,
  "test/DurableQueue.memory.test.ts": 5,
  "test/DurableQueue.putBack.test.ts": 4.1,
  "test/TaskEngine.test.ts": 2.5,
  // The proofs (a project of their own, one fork, after the others): their order alone.
  "test/sql/DurableQueue.processes.test.ts": 10.9,
  "test/redis/DurableQueue.processes.test.ts": 8.9,
  "test/DurableQueue.schedule.processes.test.ts": 8.3,
  "test/JobRunner.durable.test.ts": 4.4
}

/** Fisher-Yates with a seeded generator (mulberry32): the same seed gives the same order. */
const shuffled = <A>(items: Array<A>, seed: number): Array<A> => {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

class SlowFirst extends BaseSequencer {
  override async sort(files: Array<TestSpecification>): Promise<Array<TestSpecification>> {
    // `--sequence.shuffle --sequence.seed=<n>` shuffles the files too: vitest leaves a custom sequencer's order alone
    // (its own RandomSequencer only replaces the default one), so the `shared` files always ran in one order.
    const { seed, shuffle } = this.ctx.config.sequence
    if (shuffle) return shuffled(files, seed ?? Date.now())
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
 * Files on Redis, PostgreSQL or SQLite that, read for the same rules as `shared`, run wholly in this process: the
 * store ports and the core over the real servers, each file under its own key prefix or table (as they did in 4
 * forks at once). A worker thread loads effect, ioredis and @effect/sql once for them; they follow the `shared` files
 * in the threads (vitest runs one project's files, then recycles the threads for the next).
 */
const sharedBackends = [
  "test/DurableQueue.events.test.ts",
  "test/DurableQueue.lookahead.test.ts",
  "test/DurableQueue.offerAll.test.ts",
  "test/TaskEngine.durable.test.ts",
  "test/redis/DurableQueue.store.test.ts",
  "test/redis/DurableQueue.wake.test.ts",
  "test/redis/ResultCache.test.ts",
  "test/redis/silentServer.test.ts",
  "test/sql/DurableQueue.bigOffer.test.ts",
  "test/sql/DurableQueue.store.test.ts",
  "test/sql/DurableQueue.test.ts",
  "test/sql/SqlPersistedQueue.upstream.test.ts"
]

/**
 * The cross-process proofs: each starts several runner processes that share Redis or PostgreSQL and keep both
 * cores busy. Run side by side they starve each other's runners (leases missed, timeouts), so they have a project
 * of their own that runs its files one after another in a single fork, after the other files. A new proof named
 * `*.processes.test.ts` joins it by the glob. `groupOrder: 1` holds them until the threads are done as well: the
 * forks pool only runs its single fork after its other forks, and the `shared` threads run beside it (the PostgreSQL
 * proof redid 47 and 51 jobs of its killed runner, over its 32, in 2 of 5 whole runs before this; main 0 of 5).
 */
const proofs = ["test/**/*.processes.test.ts", "test/JobRunner.durable.test.ts"]

/**
 * Files that run wholly in this process and need no process of their own: no process.exit, no signal sent or
 * handler of their own, no change to process.env or other global state, no module mocks, no child process, no
 * Redis/PostgreSQL/SQLite (each file was read for these). They run one after another in two worker threads that
 * load effect and src/ once each for all of them (`isolate: false`), where a fork per file loaded them anew each time. Listed
 * by name: a new file goes to `unit` until someone has read it for the above. Each passed in two shuffled orders
 * (`npx vitest run --project shared --sequence.shuffle --sequence.seed=<n>`). Global registries they share (Effect's
 * metrics, JobRunner's live runs) are read by name or label that a file gives its own instances.
 */
const shared = [
  "test/Dashboard.test.ts",
  "test/DurableQueue.batchWorker.test.ts",
  "test/DurableQueue.close.test.ts",
  "test/DurableQueue.contract.memory.test.ts",
  "test/DurableQueue.feed.test.ts",
  "test/DurableQueue.memory.test.ts",
  "test/DurableQueue.putBack.test.ts",
  "test/DurableQueue.runTakers.test.ts",
  "test/RateLimiter.test.ts",
  "test/TaskEngine.async.test.ts",
  "test/TaskEngine.control.test.ts",
  "test/TaskEngine.test.ts",
  "test/WorkerQueue.test.ts",
  "test/conventions.test.ts",
  "test/guards.test.ts",
  "test/opentelemetry.test.ts",
  "test/options.test.ts",
  "test/telemetry.test.ts"
]

export default defineConfig({
  test: {
    // Child-process fixtures are compiled once per run (test/helpers/fixtures.ts), not started through tsx. Each
    // project runs the global setup; the build inside is shared (test/globalSetup.ts).
    globalSetup: ["test/globalSetup.ts"],
    pool: "forks",
    // Four forks on the two cores: the files spend much of their time waiting (leases to lapse, child processes
    // to start, a server to answer), and the extra forks fill those waits (the contract file on PostgreSQL: 20 s of
    // CPU in 61 s). Measured on one checkout at load 4-5, one run after the other: 2 forks 263 s, 3 forks 169 s for
    // the same 574 tests; for 612 tests at load 8-12 (others' work), 3 forks 288 s, then 4 forks (with the CLI
    // compiled and tsc/eslint niced) 233 s, all green.
    // The threads are the `shared` projects' alone (the others use forks); vitest reads their options here, not
    // from the project. Two threads: the backend files took 70 s one after another in one (idle, against 35 s in the
    // 4 forks), 47-55 s in two, beside the forks' 160-250 s.
    poolOptions: { forks: { maxForks: 4, minForks: 1 }, threads: { isolate: false, maxThreads: 2, minThreads: 1 } },
    testTimeout: 30_000,
    hookTimeout: 30_000,
    sequence: { concurrent: false, sequencer: SlowFirst },
    projects: [
      {
        extends: true,
        test: { name: "unit", include: ["test/**/*.test.ts"], exclude: [...proofs, ...shared, ...sharedBackends] }
      },
      { extends: true, test: { name: "shared", include: shared, pool: "threads", isolate: false } },
      {
        extends: true,
        test: { name: "shared-backends", include: sharedBackends, pool: "threads", isolate: false }
      },
      {
        extends: true,
        test: {
          name: "proofs",
          include: proofs,
          poolOptions: { forks: { singleFork: true } },
          sequence: { groupOrder: 1 }
        }
      }
    ]
  }
})
