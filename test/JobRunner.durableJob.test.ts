/**
 * JobRunner's durable source passes the DurableQueue job through (issue 17): a reader's `progress` is recorded as
 * the job's progress, and a job cancelled or timed out in its queue interrupts the reader running it, inline
 * (`layerInline`) and in a real reader process. The queue is `DurableQueue.memory`, in the test process.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import * as DurableQueue from "../src/DurableQueue.js"
import { ReaderChannel } from "../src/internal/jobRunner/channel.js"
import { CANCEL, PROTOCOL_VERSION, READY, RESULTS, RUN } from "../src/internal/jobRunner/protocol.js"
import { startReaderHost } from "../src/internal/jobRunner/readerHost.js"
import { resolveSettings } from "../src/internal/jobRunner/settings.js"
import * as JobRunner from "../src/JobRunner.js"
import { compiledFixture } from "./helpers/compiled.js"
import { isAlive, readJsonLines } from "./helpers/processes.js"

const inline = <A, E>(self: Effect.Effect<A, E>) => Effect.provide(self, JobRunner.layerInline)

/** Polls `check` until it holds (a state to reach, not a delay standing in for an event). */
const until = <E>(check: Effect.Effect<boolean, E>) =>
  Effect.repeat(check, { schedule: Schedule.spaced("20 millis"), until: (ok) => ok })

const stateOf = <A>(queue: DurableQueue.DurableQueue<A>, id: string) =>
  Effect.map(queue.status(id), (s) => Option.getOrUndefined(s))

const settings = {
  numProcesses: 1,
  concurrentTasksPerProcess: 4,
  stopWhenEmpty: true,
  emptyQueueSleepTime: "50 millis"
} as const

describe("JobRunner with a DurableQueue source: the job's progress, cancel and timeout (layerInline)", {
  timeout: 30_000
}, () => {
  it.scopedLive("a reader's progress is the durable job's progress, sync and Effect readers alike; a value the queue refuses is logged, the job still succeeds", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({ name: "progress", schema: Schema.Number })
      for (let i = 0; i < 6; i++) yield* queue.offer(i, { id: `p${i}` })
      const runner = JobRunner.make({
        name: "progressInline",
        source: () => Effect.succeed(queue),
        reader: (item: number, _ctx, _settings, job) => {
          job.progress({ step: 1, item })
          if (item === 5) job.progress({ bad: 10n })
          if (item % 2 === 0) return Effect.sync(() => job.progress({ step: 2, item }))
          job.progress({ step: 2, item })
        },
        settings
      })
      const summary = yield* inline(JobRunner.run(runner))
      expect(summary).toMatchObject({ processed: 6, failed: 0 })
      for (let i = 0; i < 5; i++) {
        expect(yield* stateOf(queue, `p${i}`)).toMatchObject({ state: "done", progress: { step: 2, item: i } })
      }
      // A BigInt is not JSON: the last progress of item 5 was refused and logged; the one before it stands.
      expect(yield* stateOf(queue, "p5")).toMatchObject({ state: "done", progress: { step: 2, item: 5 } })
    }))

  it.scopedLive("cancel(id) interrupts the Effect reader running the job: Cancelled in onError, state cancelled, the others done", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({ name: "cancel", schema: Schema.String })
      for (const id of ["a", "hang", "b"]) yield* queue.offer(id, { id })
      const interrupted = yield* Deferred.make<string>()
      const failures: Array<JobRunner.JobFailure> = []
      const runner = JobRunner.make({
        name: "cancelInline",
        source: () => Effect.succeed(queue),
        reader: (item: string, _ctx, _settings, job) => {
          job.progress("started")
          return item === "hang"
            ? Effect.onInterrupt(Effect.never, () => Deferred.succeed(interrupted, item))
            : Effect.void
        },
        onError: (failure) => {
          failures.push(failure)
        },
        settings
      })
      const run = yield* Effect.fork(inline(JobRunner.run(runner)))
      yield* until(Effect.map(stateOf(queue, "hang"), (s) => s?.progress === "started"))
      expect(yield* queue.cancel("hang")).toBe(true)
      expect(yield* Deferred.await(interrupted)).toBe("hang")
      const summary = yield* run.await.pipe(Effect.flatten)
      expect(summary).toMatchObject({ processed: 2, failed: 1 })
      expect(failures.map((f) => [f.item, f.reason])).toEqual([["hang", "Cancelled"]])
      expect(yield* stateOf(queue, "hang")).toMatchObject({ state: "cancelled" })
      expect((yield* stateOf(queue, "a"))?.state).toBe("done")
      expect((yield* stateOf(queue, "b"))?.state).toBe("done")
    }))

  it.scopedLive("a job's timeout interrupts its reader; a cancelled job still waiting in the runner never runs", () =>
    Effect.gen(function*() {
      const queue = yield* DurableQueue.memory({ name: "timeout", schema: Schema.String, maxAttempts: 1 })
      // Two jobs that never end on their own, and one slot: whichever starts first blocks the other, which is
      // leased (the source's prefetch) and waits in the runner. The timeout is long enough for the cancel to come
      // first on a loaded machine (the cancel is issued as soon as both are leased).
      for (const id of ["x", "y"]) yield* queue.offer(id, { id, timeout: "2 seconds" })
      const ran: Array<string> = []
      const interrupted: Array<string> = []
      const runner = JobRunner.make({
        name: "timeoutInline",
        source: () => Effect.succeed(queue),
        reader: (item: string) => {
          ran.push(item)
          return Effect.onInterrupt(Effect.never, () => Effect.sync(() => interrupted.push(item)))
        },
        settings: { ...settings, concurrentTasksPerProcess: 1 }
      })
      const run = yield* Effect.fork(inline(JobRunner.run(runner)))
      const bothLeased = Effect.all([stateOf(queue, "x"), stateOf(queue, "y")]).pipe(
        Effect.map((states) => ran.length === 1 && states.every((s) => s?.state === "running"))
      )
      yield* until(bothLeased)
      const first = ran[0]!
      const waiting = first === "x" ? "y" : "x"
      expect(yield* queue.cancel(waiting)).toBe(true)
      const summary = yield* run.await.pipe(Effect.flatten)
      expect(ran).toEqual([first])
      expect(interrupted).toEqual([first])
      expect(summary.failed).toBe(1)
      const timedOut = yield* stateOf(queue, first)
      expect(timedOut?.state).toBe("dead")
      expect(timedOut?.lastError).toContain("timed out")
      expect((yield* stateOf(queue, waiting))?.state).toBe("cancelled")
    }))
})

/** Reader processes load the compiled fixture and log to a fresh file (env inherited); restored afterwards. */
const readerEnv = Effect.gen(function*() {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "jobrunner-durable-job-"))
  const logFile = Path.join(dir, "log.jsonl")
  const before = { entry: process.env.EFFECT_WORKERS_JOB_RUNNER_ENTRY, log: process.env.FIXTURE_LOG }
  process.env.EFFECT_WORKERS_JOB_RUNNER_ENTRY = compiledFixture("src/node/readerProcess.ts")
  process.env.FIXTURE_LOG = logFile
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      for (
        const [key, value] of [["EFFECT_WORKERS_JOB_RUNNER_ENTRY", before.entry], ["FIXTURE_LOG", before.log]] as const
      ) {
        if (value === undefined) delete process.env[key]
        else process.env[key] = value
      }
      Fs.rmSync(dir, { recursive: true, force: true })
    })
  )
  return logFile
})

type ReaderEvent = { e: string; item: string; pid: number }

/**
 * Runs, in a fiber, a runner over `queue` whose reader is the compiled fixture's (found by name in the module; the
 * writer side is defined here), in processes never recycled; its failures are collected.
 */
const runFixtureReader = (queue: DurableQueue.DurableQueue<string>, overrides: JobRunner.SettingsInput) =>
  Effect.gen(function*() {
    const failures: Array<JobRunner.JobFailure> = []
    const runner = JobRunner.make({
      name: "durableReader",
      module: pathToFileURL(compiledFixture("test/fixtures/jobRunner-durableReader.ts")).href,
      item: Schema.String,
      source: () => Effect.succeed(queue),
      reader: () => undefined,
      onError: (failure) => {
        failures.push(failure)
      },
      settings: { ...settings, maxJobsPerProcess: 0, ...overrides }
    })
    return { failures, run: yield* Effect.fork(JobRunner.run(runner)) }
  })

describe(
  "JobRunner with a DurableQueue source: cancel and timeout in a real reader process",
  { timeout: 60_000 },
  () => {
    it.scopedLive("a cancelled job stuck in a synchronous loop keeps its slot until jobTimeout replaces its process; the next job runs elsewhere", () =>
      Effect.gen(function*() {
        const logFile = yield* readerEnv
        const queue = yield* DurableQueue.memory({ name: "spin", schema: Schema.String, maxAttempts: 1 })
        yield* queue.offer("spin", { id: "spin" })
        const { failures, run } = yield* runFixtureReader(queue, {
          concurrentTasksPerProcess: 1,
          jobTimeout: "2 seconds"
        })
        yield* until(
          Effect.sync(() =>
            Fs.existsSync(logFile) && readJsonLines<ReaderEvent>(logFile).some((e) => e.item === "spin")
          )
        )
        expect(yield* queue.cancel("spin")).toBe(true)
        // Offered once "spin" holds the process's only slot: it must not be handed to that process.
        yield* queue.offer("a", { id: "a" })
        const summary = yield* run.await.pipe(Effect.flatten)
        const starts = readJsonLines<ReaderEvent>(logFile).filter((e) => e.e === "start")
        const spinPid = starts.find((e) => e.item === "spin")!.pid
        expect(starts.map((e) => e.item)).toEqual(["spin", "a"])
        expect(starts[1]!.pid).not.toBe(spinPid)
        expect(isAlive(spinPid)).toBe(false)
        expect(failures.map((f) => [f.item, f.reason])).toEqual([["spin", "Cancelled"]])
        expect(summary).toMatchObject({ processed: 1, failed: 1 })
        expect((yield* stateOf(queue, "spin"))?.state).toBe("cancelled")
        expect((yield* stateOf(queue, "a"))?.state).toBe("done")
      }))

    it.scopedLive("progress recorded from the reader process; cancel and a timeout interrupt the reader there; the rest done once", () =>
      Effect.gen(function*() {
        const logFile = yield* readerEnv
        const queue = yield* DurableQueue.memory({ name: "process", schema: Schema.String, maxAttempts: 1 })
        for (const id of ["a", "b", "c", "unsendable", "hang-cancel"]) yield* queue.offer(id, { id })
        const { failures, run } = yield* runFixtureReader(queue, { concurrentTasksPerProcess: 6 })
        yield* until(Effect.map(stateOf(queue, "hang-cancel"), (s) => s?.progress !== undefined))
        // Offered once the reader runs jobs: its 2 s count from its handler's start, and a reader process took up to
        // 1.9 s to start at load 15 (the job then timed out before it reached the reader).
        yield* queue.offer("hang-timeout", { id: "hang-timeout", timeout: "2 seconds" })
        expect(yield* queue.cancel("hang-cancel")).toBe(true)
        const summary = yield* run.await.pipe(Effect.flatten)
        const events = readJsonLines<ReaderEvent>(logFile)
        expect(events.filter((e) => e.e === "interrupted").map((e) => e.item).sort()).toEqual([
          "hang-cancel",
          "hang-timeout"
        ])
        expect(events.every((e) => e.pid !== process.pid)).toBe(true)
        expect(events.filter((e) => e.e === "start").map((e) => e.item).sort()).toEqual([
          "a",
          "b",
          "c",
          "hang-cancel",
          "hang-timeout",
          "unsendable"
        ])
        expect(summary).toMatchObject({ processed: 4, failed: 2 })
        // Its progress could not cross (a function): dropped, the job done all the same.
        expect(yield* stateOf(queue, "unsendable")).toMatchObject({ state: "done", progress: undefined })
        expect(failures.map((f) => f.reason)).toEqual(["Cancelled", "Cancelled"])
        for (const id of ["a", "b", "c"]) {
          expect(yield* stateOf(queue, id)).toMatchObject({ state: "done", progress: { item: id, step: 1 } })
        }
        expect((yield* stateOf(queue, "hang-cancel"))?.state).toBe("cancelled")
        const timedOut = yield* stateOf(queue, "hang-timeout")
        expect(timedOut?.state).toBe("dead")
        expect(timedOut?.lastError).toContain("timed out")
      }))
  }
)

describe("JobRunner reader protocol, version 2", () => {
  it.effect("a reader that speaks another protocol version fails its start with SpawnFailed naming both", () =>
    Effect.gen(function*() {
      const runner = JobRunner.make({ name: "versioned", writer: () => [], reader: () => undefined }) as never
      for (const ready of [[READY], [READY, 1], [READY, "2"]]) {
        const channel = new ReaderChannel(runner, "reader process 1", () => {}, 1)
        channel.receive(ready)
        const error = yield* Effect.flip(channel.ready)
        expect(error.reason).toBe("SpawnFailed")
        expect(error.message).toContain(`this writer ${PROTOCOL_VERSION}`)
      }
      const current = new ReaderChannel(runner, "reader process 2", () => {}, 1)
      current.receive([READY, PROTOCOL_VERSION])
      yield* current.ready
    }))

  it.live("CANCEL drops a job still waiting in the reader's backlog: it never starts; the running one is interrupted", () =>
    Effect.gen(function*() {
      const started: Array<string> = []
      const runner = JobRunner.make({
        name: "backlog",
        item: Schema.String,
        writer: () => [],
        reader: (item: string): Effect.Effect<void> => {
          started.push(item)
          return item === "first" ? Effect.never : Effect.void
        }
      })
      const sent: Array<ReadonlyArray<unknown>> = []
      const settings = yield* resolveSettings(runner as never, { concurrentTasksPerProcess: 1 })
      const host = (yield* startReaderHost(runner as never, settings, {
        send: (message) => sent.push(message),
        later: queueMicrotask,
        exit: () => {}
      }))!
      // One slot: "first" runs (forever), "second" and "third" wait in the backlog.
      host.receive([RUN, 0, "first", 1, "second", 2, "third"])
      host.receive([CANCEL, 1])
      host.receive([CANCEL, 0])
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      expect(started).toEqual(["first", "third"])
      const results = sent.filter((m) => m[0] === RESULTS)
      expect(results.flatMap((m) => m[3] as Array<number>)).toEqual([0, 2])
      expect(results.flatMap((m) => m[2] as Array<ReadonlyArray<unknown>>).map((f) => [f[0], f[2]])).toEqual([[
        0,
        "interrupted"
      ]])
      expect(results.flatMap((m) => m[1] as Array<number>)).toEqual([2])
    }))
})
