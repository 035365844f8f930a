/**
 * The dashboard without a browser: one sampler whatever the number of browsers (store reads counted), the
 * JobRunner and module panels in the snapshot, options checked.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Dashboard from "../src/Dashboard.js"
import * as DashboardNode from "../src/DashboardNode.js"
import * as DurableQueue from "../src/DurableQueue.js"
import { Sampler } from "../src/internal/dashboard/sampler.js"
import * as JobRunner from "../src/JobRunner.js"
import * as WorkerQueue from "../src/WorkerQueue.js"
import { eventually } from "./helpers/storePort.js"

interface Snapshot {
  readonly at: number
  readonly runners: ReadonlyArray<
    { readonly name: string; readonly writer: string; readonly processed: number; readonly slots: number }
  >
  readonly modules: ReadonlyArray<
    { readonly module: string; readonly name: string; readonly values: Record<string, number> }
  >
}

/** Opens `n` live streams and resolves once each has its first snapshot; `close` ends them. */
const connect = async (url: string, n: number) => {
  const abort = new AbortController()
  await Promise.all(Array.from({ length: n }, async () => {
    const response = await fetch(`${url}events`, { signal: abort.signal })
    const reader = response.body!.getReader()
    await reader.read()
    void (async () => {
      try {
        while (!(await reader.read()).done);
      } catch {
        // aborted
      }
    })()
  }))
  return { close: () => abort.abort() }
}

/** The sampler's watch of one queue, sampled by hand (no loop, no server): `read` the stores, `account` a sample. */
const watchOf = (queue: Dashboard.WatchedQueue) =>
  new Sampler([queue], {
    title: "t",
    actions: false,
    readOnly: false,
    intervalMillis: 1_000,
    modules: false,
    processMemory: undefined
  }).watches[0]!

describe("Dashboard", () => {
  it.live("one sampler: ten browsers read the store as often as one does", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({ name: "counted", schema: Schema.Number })
      let reads = 0
      let listings = 0
      const counted = {
        ...queue,
        counts: Effect.tap(queue.counts, () => Effect.sync(() => void reads++)),
        jobs: (state: DurableQueue.JobState, options?: DurableQueue.JobsOptions) =>
          Effect.tap(queue.jobs(state, options), () => Effect.sync(() => void listings++))
      }
      const { dashboard, url } = yield* DashboardNode.serve({ queues: [counted], interval: "100 millis" })
      const measure = (browsers: number) =>
        Effect.promise(async () => {
          const clients = await connect(url, browsers)
          const before = [reads, listings] as const
          const started = Date.now()
          // Ten sampling intervals, measured by the clock; the sampler runs on its own.
          while (Date.now() - started < 1_000) await new Promise((resolve) => setTimeout(resolve, 50))
          const n = [reads - before[0], listings - before[1]] as const
          const window = Date.now() - started
          clients.close()
          return [...n, window] as const
        })
      const [one, listedOne] = yield* measure(1)
      const [ten, listedTen, window] = yield* measure(10)
      // About 10 reads a second (one per 100 ms interval), never one per browser: at most one per interval of the
      // window as measured, plus one that started before it. Bounded by the first window's count (3 x + 3), a
      // starved first window (1 browser) against a normal second one failed the case on a loaded machine; a sampler
      // per browser reads 10 times as often, over 100 in a second.
      const most = Math.floor(window / 100) + 2
      // The job listings too (an empty queue: only "cancelled", which has no count, is read each sample).
      expect(listedOne).toBeGreaterThan(0)
      expect(listedTen).toBeLessThanOrEqual(most)
      expect(yield* dashboard.clients).toBeLessThanOrEqual(10)
      expect(one).toBeGreaterThan(0)
      expect(ten).toBeLessThanOrEqual(most)
    }).pipe(Effect.scoped))

  it.live("the stores are read once per interval however many jobs run and browsers watch; no job events followed", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({ name: "sampled-once", schema: Schema.Number })
      let reads = 0
      let subscriptions = 0
      const counted = {
        ...queue,
        counts: Effect.tap(queue.counts, () => Effect.sync(() => void reads++)),
        events: Stream.unwrap(Effect.sync(() => {
          subscriptions++
          return queue.events
        }))
      }
      const jobs = 3_000
      yield* queue.offerAll(Array.from({ length: jobs }, (_, n) => ({ value: n })))
      const { url } = yield* DashboardNode.serve({ queues: [counted], interval: "1 second" })
      const clients = yield* Effect.promise(() => connect(url, 3))
      // Jobs finish all along the window (a few thousand a second on this memory queue, each one event or more).
      yield* Effect.forkScoped(queue.run(() => Effect.sleep("1 millis"), { concurrency: 4 }))
      const before = reads
      const started = Date.now()
      yield* Effect.sleep("3 seconds")
      const window = Date.now() - started
      const read = reads - before
      clients.close()
      // One read per interval (and the first browser's): with the sampler woken by job events it was one per
      // 200 ms, 15 in this window.
      expect(read).toBeGreaterThan(0)
      expect(read).toBeLessThanOrEqual(Math.floor(window / 1000) + 2)
      expect(subscriptions).toBe(0)
      // The rates still count every job: this process's counters and the store's done count, once per sample.
      interface Rates {
        readonly queues: ReadonlyArray<
          {
            readonly counts: DurableQueue.Counts
            readonly perMinute: { readonly completed: number }
            readonly chart: ReadonlyArray<number>
          }
        >
      }
      const state = () =>
        Effect.promise(async () => ((await (await fetch(`${url}api/state`)).json()) as Rates).queues[0]!)
      let q = yield* state()
      for (let i = 0; i < 100 && !(q.counts.done === jobs && q.perMinute.completed === jobs); i++) {
        yield* Effect.sleep("100 millis")
        q = yield* state()
      }
      expect(q.counts.done).toBe(jobs)
      expect(q.perMinute.completed).toBe(jobs)
      expect(Math.round(q.chart.reduce((a, b) => a + b, 0))).toBeGreaterThanOrEqual(jobs - 60)
    }).pipe(Effect.scoped))

  it.effect("a sample that read no counts (no browser for a tick) does not make the next one count jobs twice", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({ name: "gap-between-reads", schema: Schema.Number })
      const watch = watchOf(queue)
      const completed = () => watch.view(Date.now()).perMinute.completed
      // A browser watches: the stores are read with the sample.
      yield* watch.read
      watch.account(Date.now())
      yield* queue.offerAll(Array.from({ length: 100 }, (_, n) => ({ value: n })))
      for (let n = 0; n < 100; n++) yield* queue.take(() => Effect.void)
      // The browser went away for a tick: the sample counts this process's counters alone.
      watch.account(Date.now())
      expect(completed()).toBe(100)
      // It is back: the store's done count grew by 100 since its last read, all of them counted already (200 before).
      yield* watch.read
      watch.account(Date.now())
      expect(completed()).toBe(100)
    }).pipe(Effect.scoped))

  it.effect("a job finished between the store's counts and this process's counters is counted once", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({ name: "skewed-reads", schema: Schema.Number })
      yield* queue.offerAll(Array.from({ length: 10 }, (_, n) => ({ value: n })))
      // As under load: a job finishes after the store counted, before the counters are read.
      let finishAfterCounts = false
      const skewed = {
        ...queue,
        counts: Effect.tap(queue.counts, () => finishAfterCounts ? queue.take(() => Effect.void) : Effect.void)
      }
      const watch = watchOf(skewed)
      const sample = Effect.zipRight(watch.read, Effect.sync(() => watch.account(Date.now())))
      yield* sample
      for (let n = 0; n < 4; n++) yield* queue.take(() => Effect.void)
      finishAfterCounts = true
      yield* sample
      finishAfterCounts = false
      yield* sample
      // 5 done: the store saw the fifth one sample later than the counters did (6 shown before).
      expect((yield* queue.counts).done).toBe(5)
      expect(watch.view(Date.now()).perMinute.completed).toBe(5)
    }).pipe(Effect.scoped))

  it.live("jobs run by another process are counted in the rates from the store's counts", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({ name: "run-here", schema: Schema.Number, maxAttempts: 1 })
      // The dashboard's queue has a name no counter of this process carries: as if its jobs ran elsewhere.
      let reads = 0
      const elsewhere = {
        ...queue,
        name: "run-elsewhere",
        counts: Effect.tap(queue.counts, () => Effect.sync(() => void reads++))
      }
      const { url } = yield* DashboardNode.serve({ queues: [elsewhere], interval: "100 millis" })
      const clients = yield* Effect.promise(() => connect(url, 1))
      // The rates are what the counts grew by from one sample to the next: the jobs are offered once a sample with
      // the browser watching has read the empty queue (two reads: the first one's sample is accounted). Offered as
      // soon as the browser had its first snapshot, they all ran before the first read on a loaded machine, which
      // then saw no growth at all (every rate 0).
      yield* eventually(Effect.sync(() => reads), (n) => n >= 2)
      yield* queue.offerAll(Array.from({ length: 40 }, (_, n) => ({ value: n })))
      yield* Effect.forkScoped(queue.run((n) => n < 30 ? Effect.void : Effect.fail("no")))
      interface Rates {
        readonly queues: ReadonlyArray<{ readonly perMinute: Record<"offered" | "completed" | "dead", number> }>
      }
      const state = () =>
        Effect.promise(async () => ((await (await fetch(`${url}api/state`)).json()) as Rates).queues[0]!.perMinute)
      let rates = yield* state()
      for (let i = 0; i < 100 && !(rates.completed === 30 && rates.dead === 10); i++) {
        yield* Effect.sleep("50 millis")
        rates = yield* state()
      }
      clients.close()
      expect(rates).toMatchObject({ completed: 30, dead: 10 })
      // Offered: what the store's counts grew by, at least (the jobs offered between two samples and finished).
      expect(rates.offered).toBeGreaterThan(0)
      expect(rates.offered).toBeLessThanOrEqual(40)
    }).pipe(Effect.scoped))

  it.live("JobRunner runs of the process and modules with metrics appear in the snapshot", () =>
    Effect.gen(function*() {
      const runner = JobRunner.make({
        name: "panel-runner",
        item: Schema.Number,
        writer: () => [1, 2, 3],
        reader: () => Effect.void,
        settings: { numProcesses: 2, maxQueueSize: 10, stopWhenEmpty: false, emptyQueueSleepTime: "50 millis" }
      })
      const fiber = yield* Effect.fork(JobRunner.run(runner).pipe(Effect.provide(JobRunner.layerInline)))
      const cache = yield* WorkerQueue.make({ name: "panel-cache", worker: (n: number) => Effect.succeed(n * 2) })
      yield* cache.require(1)
      const { url } = yield* DashboardNode.serve({})
      const read = Effect.promise(async () => (await (await fetch(`${url}api/state`)).json()) as Snapshot)
      let state = yield* read
      for (let i = 0; i < 100 && !state.runners.some((r) => r.name === "panel-runner" && r.processed >= 3); i++) {
        yield* Effect.sleep("50 millis")
        state = yield* read
      }
      const run = state.runners.find((r) => r.name === "panel-runner")
      expect(run).toMatchObject({ slots: 2 })
      expect(run!.processed).toBeGreaterThanOrEqual(3)
      expect(["asking", "full", "idle"]).toContain(run!.writer)
      const module = state.modules.find((m) => m.module === "WorkerQueue" && m.name === "panel-cache")
      expect(module?.values.misses_total).toBeGreaterThanOrEqual(1)
      expect(module?.values.completed_total).toBeGreaterThanOrEqual(1)
      yield* Fiber.interrupt(fiber)
      // Gone from the next snapshot (the latest is served for up to one interval).
      for (let i = 0; i < 60 && state.runners.some((r) => r.name === "panel-runner"); i++) {
        yield* Effect.sleep("50 millis")
        state = yield* read
      }
      expect(state.runners.some((r) => r.name === "panel-runner")).toBe(false)
    }).pipe(Effect.scoped))

  it.live("the snapshot lists each state's jobs (a waiting job, then done) with the oldest waiting job's age", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({ name: "listed", schema: Schema.Number, maxAttempts: 1 })
      interface Listed {
        readonly queues: ReadonlyArray<{
          readonly counts: DurableQueue.Counts
          readonly lists: Partial<
            Record<
              DurableQueue.JobState,
              ReadonlyArray<{ readonly id: string; readonly age: number | null; readonly error?: string }>
            >
          >
        }>
      }
      const { url } = yield* DashboardNode.serve({ queues: [queue], interval: "50 millis" })
      const read = Effect.promise(async () => ((await (await fetch(`${url}api/state`)).json()) as Listed).queues[0]!)
      const until = (ok: (q: Listed["queues"][number]) => boolean) =>
        Effect.gen(function*() {
          let q = yield* read
          for (let i = 0; i < 200 && !ok(q); i++) {
            yield* Effect.sleep("25 millis")
            q = yield* read
          }
          expect(ok(q)).toBe(true)
          return q
        })
      yield* queue.offer(1, { id: "first" })
      yield* queue.offer(2, { id: "poison" })
      const waiting = yield* until((q) => q.lists.waiting?.length === 2)
      expect(waiting.lists.waiting!.map((job) => job.id)).toEqual(["first", "poison"])
      expect(waiting.counts.oldestWaitingMillis).toBeGreaterThanOrEqual(0)
      expect(waiting.lists.waiting![0]!.age).toBeGreaterThanOrEqual(0)
      yield* queue.take(() => Effect.void)
      yield* queue.take(() => Effect.fail("poisoned"))
      const after = yield* until((q) => q.lists.done?.length === 1 && q.lists.dead?.length === 1)
      expect(after.lists.done!.map((job) => job.id)).toEqual(["first"])
      expect(after.lists.dead![0]!.error).toContain("poisoned")
      expect(after.lists.waiting).toEqual([])
      expect(after.counts).toMatchObject({ waiting: 0, done: 1, dead: 1 })
      // None waits: the snapshot (JSON) has no age, and the page shows "–".
      expect(after.counts.oldestWaitingMillis).toBeUndefined()
    }).pipe(Effect.scoped))

  it.effect("bad options are OptionErrors naming the field", () =>
    Effect.gen(function*() {
      const interval = yield* Effect.flip(Dashboard.make({ interval: "1 millis" }))
      expect(interval.message).toContain("interval")
      const port = yield* Effect.flip(DashboardNode.serve({ port: 70_000 }))
      expect(port.message).toContain("port")
    }).pipe(Effect.scoped))
})
