import { describe, expect, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fixtureCommand } from "./helpers/compiled.js"
import { spawnFixture } from "./helpers/processes.js"

/**
 * Runs an example to its end, asynchronously: `spawnSync` blocked the vitest worker for as long as the example ran,
 * and one that took over a minute (durable-jobs, 94 s at load 20) made the worker miss its RPC to vitest
 * ("Timeout calling onTaskUpdate"), an unhandled error that fails the whole run. Past `timeoutMs` the example is
 * SIGKILLed and `timedOut` says so: with spawnSync's default SIGTERM, the runner stopped gracefully, exited 0 and
 * the test failed on a missing line instead of the time-out.
 */
const runExample = (
  command: string,
  args: ReadonlyArray<string>,
  env: Record<string, string | undefined>,
  timeoutMs: number
) =>
  new Promise<{ readonly status: number | null; readonly out: string; readonly timedOut: boolean }>((resolve) => {
    const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let timedOut = false
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (out += chunk))
    const timer = setTimeout(() => {
      timedOut = true
      child.kill("SIGKILL")
    }, timeoutMs)
    child.on("close", (status) => {
      clearTimeout(timer)
      resolve({ status, out, timedOut })
    })
  })

// The examples are documentation a newcomer runs first: each must run to its end and say what it promises.
describe("examples", () => {
  // `npm start` is this entry through tsx; its compiled form (the other process tests' way) printed the URL after
  // 1.1 s, tsx after 13 s (load 20). The dashboard is up before the crawl starts; the whole test took 3.8 s.
  it(
    "npm start -- --dashboard: the crawl demo prints its dashboard's 127.0.0.1 URL, serves the page, the snapshot and the live stream, and ends on SIGINT",
    async () => {
      const scripts =
        (JSON.parse(Fs.readFileSync("package.json", "utf8")) as { scripts: Record<string, string> }).scripts
      expect(scripts["start"]).toBe("node --import tsx examples/crawl/main.ts")
      const stateDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "crawl-dashboard-"))
      // A slow crawl (20 requests a second): a fast one kept the process busy enough that the three fetches below
      // took 3.3 s instead of 0.9 s (load 22).
      const args = [
        "--dashboard",
        "--pages",
        "40",
        "--rate",
        "20",
        "--workers",
        "2",
        "--fresh",
        "--state-dir",
        stateDir
      ]
      const child = spawnFixture("examples/crawl/main.ts", args, { env: { CI: "true" } })
      try {
        const line = await child.waitFor((text) => text.startsWith("Dashboard: "), 20_000)
        const url = new URL(line.slice("Dashboard: ".length).trim())
        expect(url.hostname).toBe("127.0.0.1")
        expect(Number(url.port)).toBeGreaterThan(0)
        const page = await fetch(url)
        expect(page.status).toBe(200)
        expect(await page.text()).toContain(`<script src="app.js" defer></script>`)
        const state = (await (await fetch(new URL("api/state", url))).json()) as {
          readonly title: string
          readonly actions: boolean
          readonly queues: ReadonlyArray<{ readonly name: string }>
        }
        expect(state).toMatchObject({ title: "crawl demo", actions: true })
        expect(state.queues.map((queue) => queue.name)).toEqual(["failed-urls"])
        const abort = new AbortController()
        const stream = await fetch(new URL("events", url), { signal: abort.signal })
        expect(stream.headers.get("content-type")).toContain("text/event-stream")
        const first = new TextDecoder().decode((await stream.body!.getReader().read()).value)
        expect(first).toMatch(/^event: state\ndata: \{/)
        abort.abort()
        child.kill("SIGINT")
        // Interrupted by Ctrl-C: NodeRuntime's exit code 130, the server closed with it.
        expect(await child.exited(15_000)).toBe(130)
        await expect(fetch(url)).rejects.toThrow()
      } finally {
        child.kill()
        Fs.rmSync(stateDir, { recursive: true, force: true })
      }
    },
    40_000
  )

  it("worker-queue-promise: 301 asks over 30 numbers reach the server 30 times", async () => {
    const example = fixtureCommand("examples/worker-queue-promise.ts")
    const { out, status, timedOut } = await runExample(example.command, example.args, {
      ...process.env,
      ...example.env
    }, 60_000)
    expect({ status, timedOut }, out).toEqual({ status: 0, timedOut: false })
    expect(out).toContain("server hits: 30")
    expect(out).toContain("stats: 30 runs")
  }, 90_000)

  // The one test of the tsx path (every other child process runs compiled, see test/helpers/fixtures.ts): the
  // README runs the examples with tsx, and this one forks reader processes that get the tsx loader too.
  it(
    "durable-advanced: on SQLite, backoff spaces a flaky job's attempts, a delayed job waits, a schedule ticks, progress is read back by id",
    async () => {
      const db = Path.join(Os.tmpdir(), `effect-workers-durable-advanced-${process.pid}.sqlite`)
      const example = fixtureCommand("examples/durable-advanced/main.ts")
      const { out, status, timedOut } = await runExample(example.command, example.args, {
        ...process.env,
        ...example.env,
        DURABLE_ADVANCED_DB: db
      }, 80_000)
      expect({ status, timedOut }, out).toEqual({ status: 0, timedOut: false })
      expect(Fs.existsSync(db), "the example removes its database").toBe(false)
      // Exponential backoff from 200 ms: the attempts start at least 200, then 400 ms apart (not at once).
      const [, first, second] = /attempts started (\d+) and (\d+) ms apart/.exec(out) ?? []
      expect(Number(first), out).toBeGreaterThanOrEqual(200)
      expect(Number(second), out).toBeGreaterThanOrEqual(400)
      const [, waited] = /delayed started (\d+) ms after its offer/.exec(out) ?? []
      expect(Number(waited), out).toBeGreaterThanOrEqual(1_500)
      // Two ticks at least: the example waits for the second, and reads the count once the flaky and the delayed
      // jobs are done too; a loaded machine may run a third meanwhile (it printed "ticks run: 3" at load 20).
      const [, ticks] = /ticks run: (\d+)/.exec(out) ?? []
      expect(Number(ticks), out).toBeGreaterThanOrEqual(2)
      expect(out).toContain(`status of flaky: done after 3 attempts, progress {"step":"done","percent":100}`)
      expect(out).toContain("event Retried flaky attempt 2")
      expect(out).toMatch(/event Offered schedule:tick:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z/)
    },
    90_000
  )

  it(
    "durable-jobs (through tsx): a JobRunner fed by a SQLite durable queue does every job once and dead-letters the broken one",
    async () => {
      const db = Path.join(Os.tmpdir(), `effect-workers-durable-jobs-${process.pid}.sqlite`)
      const example = fixtureCommand("examples/durable-jobs/main.ts", [], "tsx")
      const { out, status, timedOut } = await runExample(example.command, example.args, {
        ...process.env,
        JOBS: "40",
        DURABLE_JOBS_DB: db
      }, 150_000)
      for (const suffix of ["", "-wal", "-shm"]) Fs.rmSync(db + suffix, { force: true })
      expect({ status, timedOut }, out).toEqual({ status: 0, timedOut: false })
      expect(out).toContain("offered 41 jobs twice; 41 in the queue")
      expect(out).toContain("40 processed, 2 failed attempts")
      expect(out).toContain("dead letter thumb:broken.jpg after 2 attempts")
      expect(out).toContain("0 jobs left in the queue")
    },
    180_000
  )

  it(
    "durable-batch: runBatch inserts 1,000 events in batches of at most 100; a failed batch is retried, a refused row dead-letters alone; each event keeps its row's key",
    async () => {
      const example = fixtureCommand("examples/durable-batch.ts")
      const { out, status, timedOut } = await runExample(example.command, example.args, {
        ...process.env,
        ...example.env
      }, 80_000)
      expect({ status, timedOut }, out).toEqual({ status: 0, timedOut: false })
      expect(out).toContain("offered 1000 events, 1000 pending")
      // 1,000 events in calls of at most 100, one more for the outage (its batch retried), the broken event's retries
      // alone or with others: 11 to 13 calls at rest; a loaded machine may end a 50 ms maxWait before the next lease (a
      // few partial batches more), never near one call per event.
      const [, rows, inserts, largest] = /warehouse: (\d+) rows in (\d+) inserts \(at most (\d+) a call\)/.exec(out) ??
        []
      expect(Number(rows), out).toBe(999)
      expect(Number(inserts), out).toBeGreaterThanOrEqual(11)
      expect(Number(inserts), out).toBeLessThanOrEqual(30)
      expect(Number(largest), out).toBe(100)
      expect(out).toContain("dead letter: click:500 after 3 attempts, last error: Error: a click without a page")
      // Each event kept its own row's key (`result`): keys 1 to 999, one each; the dead letter none.
      const keys = [...out.matchAll(/click:(?:0|999): warehouse row (\d+)/g)].map((match) => Number(match[1]))
      expect(keys.length, out).toBe(2)
      for (const key of keys) expect(key >= 1 && key <= 999, out).toBe(true)
      expect(keys[0], out).not.toBe(keys[1])
      expect(out).toContain("click:500: no row")
    },
    90_000
  )
})
