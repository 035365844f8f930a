/**
 * JobRunner under faults (issue 17): one reader path for processes, threads and layerInline; items structured
 * clone cannot carry; foreign messages on the channel; a reader that dies after finishing jobs in its last tick;
 * readers that outlive a SIGKILLed writer; stops during a context build; recycling that overlaps the replacement's
 * start-up; the bounded prevent-requeue window. In-process parts run under TestClock; the rest in real processes.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { RequeueWindow } from "../src/internal/jobRunner/jobQueue.js"
import * as JobRunner from "../src/JobRunner.js"
import { OptionError } from "../src/OptionError.js"
import { compiledFixture } from "./helpers/compiled.js"
import { isAlive, readJsonLines } from "./helpers/processes.js"

const inline = <A, E>(self: Effect.Effect<A, E>) => Effect.provide(self, JobRunner.layerInline)
const settle = Effect.repeatN(Effect.yieldNow(), 50)

describe("JobRunner: one reader path (layerInline)", () => {
  it.effect("kill interrupts a stuck inline reader and its exit completes: a stop ends after the grace, under TestClock", () =>
    Effect.gen(function*() {
      const failures: Array<JobRunner.JobFailure> = []
      let interrupted = 0
      const runner = JobRunner.make({
        name: "stuckInline",
        writer: () => [1, 2],
        reader: () => Effect.onInterrupt(Effect.never, () => Effect.sync(() => interrupted++)),
        onError: (failure) => {
          failures.push(failure)
        },
        settings: {
          numProcesses: 1,
          concurrentTasksPerProcess: 2,
          gracefulShutdownTimeout: "1 second",
          preventRequeuingTime: 0
        }
      })
      const run = yield* Effect.fork(inline(JobRunner.run(runner)))
      yield* settle
      const stopping = yield* Effect.fork(Fiber.interrupt(run))
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* settle
      // Ended after the grace alone (the old inline kill did nothing and its exit never completed: +5 s, hung).
      expect(Option.isSome(yield* Fiber.poll(stopping))).toBe(true)
      expect(interrupted).toBe(2)
      expect(failures.map((f) => f.reason)).toEqual(["ShutdownTimeout", "ShutdownTimeout"])
    }))

  it.effect("a reader that interrupts itself is ReaderFailed with no restart, as in a process", () =>
    Effect.gen(function*() {
      const failures: Array<JobRunner.JobFailure> = []
      const runner = JobRunner.make({
        name: "selfInterrupt",
        writer: (() => {
          let done = false
          return () => (done ? [] : ((done = true), [1, 2, 3]))
        })(),
        reader: (item: number) => (item === 2 ? Effect.interrupt : Effect.void),
        onError: (failure) => {
          failures.push(failure)
        },
        settings: { numProcesses: 1, stopWhenEmpty: true }
      })
      const summary = yield* inline(JobRunner.run(runner))
      expect(summary).toEqual({ processed: 2, failed: 1, processesStarted: 1, restarts: 0 })
      expect(failures.map((f) => [f.item, f.reason, f.message])).toEqual([[2, "ReaderFailed", "interrupted"]])
    }))

  it.effect("an item structured clone cannot carry (a function, a Symbol) fails alone as Unsendable; the run goes on", () =>
    Effect.gen(function*() {
      const failures: Array<JobRunner.JobFailure> = []
      const seen: Array<unknown> = []
      const fn = () => 1
      const symbol = Symbol("s")
      const runner = JobRunner.make<unknown>({
        name: "unclonableInline",
        key: (item) => String(typeof item === "symbol" ? "symbol" : item),
        writer: (() => {
          let done = false
          return () => (done ? [] : ((done = true), [1, fn, 2, symbol, 3]))
        })(),
        reader: (item) => {
          seen.push(item)
        },
        onError: (failure) => {
          failures.push(failure)
        },
        settings: { numProcesses: 1, concurrentTasksPerProcess: 8, stopWhenEmpty: true }
      })
      const summary = yield* inline(JobRunner.run(runner))
      expect(summary).toMatchObject({ processed: 3, failed: 2, restarts: 0 })
      expect(seen).toEqual([1, 2, 3])
      expect(failures.map((f) => [f.item, f.reason])).toEqual([[fn, "Unsendable"], [symbol, "Unsendable"]])
      expect(failures[0]!.message).toContain("could not be sent")
    }))

  it.effect("prefetch: a fast reader's process holds more jobs than its slots, and never runs more than its slots", () =>
    Effect.gen(function*() {
      let active = 0
      let maxActive = 0
      let held = 0
      let maxHeld = 0
      // The inline spawner, counting the jobs each process holds (handed over, not yet done).
      const counting = Layer.effect(
        JobRunner.ReaderSpawner,
        Effect.map(Effect.provide(JobRunner.ReaderSpawner, JobRunner.layerInline), (inner) => ({
          spawn: (request) =>
            Effect.map(inner.spawn(request), (handle) => ({
              ...handle,
              submit: (job, done, onStart) => {
                maxHeld = Math.max(maxHeld, ++held)
                return handle.submit(job, (j, failure) => {
                  held--
                  done(j, failure)
                }, onStart)
              }
            }))
        }))
      )
      let next = 0
      const runner = JobRunner.make({
        name: "prefetch",
        writer: (desired) => Array.from({ length: Math.max(0, Math.min(desired, 2000 - next)) }, () => next++),
        reader: async () => {
          maxActive = Math.max(maxActive, ++active)
          await Promise.resolve()
          active--
        },
        settings: { numProcesses: 1, concurrentTasksPerProcess: 4, stopWhenEmpty: true, preventRequeuingTime: 0 }
      })
      const summary = yield* JobRunner.run(runner).pipe(Effect.provide(counting))
      expect(summary).toMatchObject({ processed: 2000, failed: 0 })
      // Without the prefetch a process held at most its 4 slots' worth: one round trip per 4 jobs.
      expect(maxHeld).toBeGreaterThan(4)
      expect(maxHeld).toBeLessThanOrEqual(4 + Math.floor(0.3 * 300))
      // The reader host runs 4 at a time, whatever the process holds.
      expect(maxActive).toBe(4)
    }))

  it.effect("a stop while a reader's context is still being built ends at once, not after the grace", () =>
    Effect.gen(function*() {
      class Slow extends Context.Tag("Slow")<Slow, number>() {}
      const runner = JobRunner.make({
        name: "slowContext",
        context: Layer.effect(Slow, Effect.never),
        writer: () => [1],
        reader: () => {},
        settings: { numProcesses: 2, gracefulShutdownTimeout: "30 seconds" }
      })
      const run = yield* Effect.fork(inline(JobRunner.run(runner)))
      yield* settle
      const stopping = yield* Effect.fork(Fiber.interrupt(run))
      yield* settle
      expect(Option.isSome(yield* Fiber.poll(stopping))).toBe(true)
    }))

  it.effect("recycling: the replacement is started while the old process still runs its last job", () =>
    Effect.gen(function*() {
      class Ctx extends Context.Tag("Ctx")<Ctx, number>() {}
      let builds = 0
      const gate = Deferred.unsafeMake<void>(FiberId.none)
      const first = Deferred.unsafeMake<void>(FiberId.none)
      const runner = JobRunner.make({
        name: "overlap",
        context: Layer.sync(Ctx, () => ++builds),
        writer: (() => {
          let done = false
          return () => (done ? [] : ((done = true), [1, 2, 3, 4]))
        })(),
        reader: (
          item: number
        ) => (item === 1 ? Deferred.await(first) : item === 2 ? Deferred.await(gate) : Effect.void),
        settings: { numProcesses: 1, concurrentTasksPerProcess: 1, maxJobsPerProcess: 2, stopWhenEmpty: true }
      })
      const run = yield* Effect.fork(inline(JobRunner.run(runner)))
      yield* settle
      // Item 1 held the first process until its replacement was ready (spawned at half its 2 jobs): past its 2 it
      // takes no more (with the replacement still starting it would take up to 2 more).
      expect(builds).toBe(2)
      yield* Deferred.succeed(first, undefined)
      yield* settle
      // Item 2, the first process's last job, is still running, yet the second process is up, ran 3 and 4, and was
      // replaced in turn (without the overlap: 1 build, items 3 and 4 waiting for item 2).
      const whileBlocked = builds
      yield* TestClock.adjust("250 millis")
      yield* settle
      const metric = (m: typeof JobRunner.Metrics.processes) => Metric.value(Metric.tagged(m, "runner", "overlap"))
      // The draining process and its replacement's replacement are both live; two replacements counted.
      const gauge = (yield* metric(JobRunner.Metrics.processes)).value
      const restarts = (yield* Metric.value(Metric.tagged(JobRunner.Metrics.restarts, "runner", "overlap"))).count
      yield* Deferred.succeed(gate, undefined)
      const summary = yield* Fiber.join(run)
      expect(whileBlocked).toBe(3)
      expect([gauge, restarts]).toEqual([2, 2])
      expect(summary).toEqual({ processed: 4, failed: 0, processesStarted: 3, restarts: 2 })
    }))

  it.effect("jobTimeout: a job running longer fails with JobTimeout and an Effect reader is interrupted (TestClock)", () =>
    Effect.gen(function*() {
      const failures: Array<JobRunner.JobFailure> = []
      let interrupted = 0
      const runner = JobRunner.make({
        name: "timeoutInline",
        writer: (() => {
          let done = false
          return () => (done ? [] : ((done = true), [1, 2, 3]))
        })(),
        reader: (item: number) =>
          item === 1
            ? Effect.onInterrupt(Effect.never, () => Effect.sync(() => interrupted++))
            : Effect.sleep("1 second"),
        onError: (failure) => {
          failures.push(failure)
        },
        settings: { numProcesses: 1, concurrentTasksPerProcess: 2, jobTimeout: "5 seconds", stopWhenEmpty: true }
      })
      const run = yield* Effect.fork(inline(JobRunner.run(runner)))
      for (let i = 0; i < 8; i++) {
        yield* settle
        yield* TestClock.adjust("1 second")
      }
      yield* settle
      // Without a job timeout the hung reader held its slot forever and stopWhenEmpty never ended.
      const summary = yield* Fiber.poll(run)
      expect(Option.isSome(summary)).toBe(true)
      expect(yield* Fiber.join(run)).toMatchObject({ processed: 2, failed: 1 })
      expect(failures.map((f) => [f.item, f.reason])).toEqual([[1, "JobTimeout"]])
      expect(failures[0]!.message).toContain("still running after 5s")
      expect(interrupted).toBe(1)
    }))

  it.effect("JobRunner.JobRunnerError is the class of the errors the runner makes", () =>
    Effect.gen(function*() {
      const runner = JobRunner.make({ name: "noModule", writer: () => [1], reader: () => {} })
      const error = yield* Effect.flip(JobRunner.run(runner, { settings: { numProcesses: 1 } }))
      expect(error).toBeInstanceOf(JobRunner.JobRunnerError)
      expect(error._tag).toBe("JobRunnerError")
    }))

  it.effect("a misspelt setting and an absurd count are OptionErrors naming the field", () =>
    Effect.gen(function*() {
      const typo = JobRunner.make({
        name: "typo",
        writer: () => [],
        reader: () => {},
        settings: { numProceses: 4 } as JobRunner.SettingsInput
      })
      const error = yield* Effect.flip(JobRunner.settings(typo))
      expect(error).toBeInstanceOf(OptionError)
      expect(error.message).toContain("numProcesses")
      const plain = JobRunner.make({ name: "huge", writer: () => [], reader: () => {} })
      const huge = yield* Effect.flip(JobRunner.settings(plain, { numProcesses: 1e12 }))
      expect(huge).toBeInstanceOf(OptionError)
      expect(huge.message).toContain("numProcesses")
    }))
})

describe("JobRunner context as a plain value (layerInline)", () => {
  const twoItems = () => {
    let done = false
    return () => (done ? [] : ((done = true), [1, 2, 3, 4]))
  }
  const settings = { numProcesses: 2, concurrentTasksPerProcess: 1, stopWhenEmpty: true } as const

  it.effect("a sync function: built once per process, the reader receives its value", () =>
    Effect.gen(function*() {
      let builds = 0
      const seen: Array<number> = []
      const runner = JobRunner.make({
        name: "plainSync",
        context: () => ({ build: ++builds }),
        writer: twoItems(),
        // `context` is typed { build: number }: no Context.get.
        reader: (item: number, context) => {
          seen.push(context.build)
        },
        settings
      })
      const summary = yield* inline(JobRunner.run(runner))
      expect(summary).toMatchObject({ processed: 4, failed: 0 })
      expect(builds).toBe(2)
      expect(new Set(seen)).toEqual(new Set([1, 2]))
    }))

  it.effect("an async function and a scoped Effect: the value reaches the reader, the Effect's finalizer runs at close", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const asyncRunner = JobRunner.make({
        name: "plainAsync",
        context: async () => ({ url: await Promise.resolve("postgres://x") }),
        writer: twoItems(),
        reader: (_: number, context) => {
          seen.push(context.url)
        },
        settings
      })
      yield* inline(JobRunner.run(asyncRunner))
      expect(seen).toEqual(Array(4).fill("postgres://x"))

      let released = 0
      const ports: Array<number> = []
      const scopedRunner = JobRunner.make({
        name: "plainEffect",
        context: Effect.acquireRelease(Effect.succeed({ port: 5432 }), () => Effect.sync(() => released++)),
        writer: twoItems(),
        // Annotated: TypeScript does not infer through the generic call inside the options object.
        reader: (_: number, context: { readonly port: number }) => Effect.sync(() => ports.push(context.port)),
        settings
      })
      yield* inline(JobRunner.run(scopedRunner))
      expect(ports).toEqual([5432, 5432, 5432, 5432])
      expect(released).toBe(2)
    }))

  it.effect("a context that throws, rejects or fails is a ContextFailed JobRunnerError with its message", () =>
    Effect.gen(function*() {
      class Db extends Context.Tag("Db")<Db, number>() {}
      const contexts = {
        throws: () => {
          throw new Error("boom: no token")
        },
        rejects: () => Promise.reject(new Error("boom: refused")),
        layer: Layer.effect(Db, Effect.fail(new Error("boom: layer")))
      }
      for (const [name, context] of Object.entries(contexts)) {
        const runner = JobRunner.make({
          name,
          context: context as () => number,
          writer: twoItems(),
          reader: () => {},
          settings
        })
        const error = yield* Effect.flip(inline(JobRunner.run(runner)))
        expect(error).toBeInstanceOf(JobRunner.JobRunnerError)
        expect(error).toMatchObject({ reason: "ContextFailed" })
        expect(error.message).toMatch(new RegExp(`^JobRunner ${name}: the reader's context failed: .*boom`))
        const once = yield* Effect.flip(JobRunner.testReader(runner, 1))
        expect(once).toMatchObject({ reason: "ContextFailed" })
      }
    }))

  it.effect("a context that is neither a Layer, an Effect nor a function (from JavaScript) is an OptionError naming it", () =>
    Effect.gen(function*() {
      const runner = JobRunner.make({
        name: "badKind",
        context: 42 as unknown as () => number,
        writer: () => [],
        reader: () => {}
      })
      const error = yield* Effect.flip(inline(JobRunner.run(runner)))
      expect(error).toBeInstanceOf(OptionError)
      expect(error.message).toContain("context")
      expect(error.message).toContain("42")
    }))

  it.effect("testReader hands the plain value to the reader", () =>
    Effect.gen(function*() {
      const runner = JobRunner.make({
        name: "plainTest",
        context: () => ({ limit: 3 }),
        writer: () => [],
        reader: (item: number, context) => {
          if (item > context.limit) throw new Error(`${item} is over ${context.limit}`)
        }
      })
      yield* JobRunner.testReader(runner, 2)
      const error = yield* Effect.flip(JobRunner.testReader(runner, 5))
      expect(error.message).toContain("5 is over 3")
    }))
})

describe("JobRunner prevent-requeue window", () => {
  it("is bounded: past the cap the oldest key goes, and the cap is reported once", () => {
    const caps: Array<number> = []
    const window = new RequeueWindow(1000, 3, (max) => caps.push(max))
    for (const [key, at] of [["a", 0], ["b", 1], ["c", 2], ["d", 3], ["e", 4]] as const) window.record(key, at)
    expect(window.size).toBe(3)
    expect([window.has("a", 5), window.has("b", 5), window.has("c", 5), window.has("e", 5)]).toEqual([
      false,
      false,
      true,
      true
    ])
    expect(caps).toEqual([3])
  })
})

// ---------------------------------------------------------------------------------------------------------------
// Real processes
// ---------------------------------------------------------------------------------------------------------------

// Compiled once per run by the global setup (test/helpers/fixtures.ts), with the reader entry beside them.
const built = {
  faults: compiledFixture("test/fixtures/jobRunner-faults.ts"),
  entry: compiledFixture("src/node/readerProcess.ts"),
  /** The executable beside the compiled CLI: it starts without tsx (the sources' path is test/JobRunner.test.ts's CLI case). */
  bin: compiledFixture("src/node/bin.mjs")
}

interface Event {
  readonly e: string
  readonly pid: number
  readonly item?: number | string
  readonly reason?: string
  readonly message?: string
}

const readLog = (file: string): Array<Event> => readJsonLines<Event>(file)

/**
 * Runs the faults fixture; `act` runs once when `when` first holds on the log, then `then` once when its output
 * contains `thenOn`.
 */
const runFaults = (env: Record<string, string>, options: {
  readonly when?: (events: Array<Event>) => boolean
  readonly act?: (runnerPid: number, events: Array<Event>) => void
  readonly thenOn?: string
  readonly then?: (runnerPid: number) => void
} = {}) =>
  Effect.async<
    {
      code: number | null
      signal: string | null
      events: Array<Event>
      output: string
      runnerPid: number
      afterAct: number | undefined
    }
  >((resume) => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "jobrunner-faults-"))
    const log = Path.join(dir, "log.jsonl")
    const child = ChildProcess.spawn(process.execPath, [built.faults], {
      env: { ...process.env, FIXTURE_LOG: log, EFFECT_WORKERS_JOB_RUNNER_ENTRY: built.entry, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    child.stdout!.on("data", (d) => (output += String(d)))
    child.stderr!.on("data", (d) => (output += String(d)))
    let actedAt: number | undefined
    let thenDone = false
    const poll = setInterval(() => {
      if (actedAt !== undefined) {
        if (!thenDone && options.thenOn !== undefined && output.includes(options.thenOn)) {
          thenDone = true
          options.then?.(child.pid!)
        }
        return
      }
      if (options.when === undefined) return
      const events = readLog(log)
      if (options.when(events)) {
        actedAt = performance.now()
        options.act?.(child.pid!, events)
      }
    }, 25)
    const timer = setTimeout(() => child.kill("SIGKILL"), 40_000)
    child.on("exit", (code, signal) => {
      clearInterval(poll)
      clearTimeout(timer)
      const events = readLog(log)
      Fs.rmSync(dir, { recursive: true, force: true })
      const afterAct = actedAt === undefined ? undefined : performance.now() - actedAt
      resume(Effect.succeed({ code, signal, events, output, runnerPid: child.pid!, afterAct }))
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

const base = { FAULT_NUM_PROCESSES: "1", FAULTS_NUM_PROCESSES: "1", FAULTS_STOP_WHEN_EMPTY: "true" }
const errorsOf = (events: Array<Event>) => events.filter((e) => e.e === "error")
const endedOf = (events: Array<Event>) => events.filter((e) => e.e === "end").map((e) => e.item)

describe("JobRunner faults in real processes and threads", { timeout: 60_000 }, () => {
  for (const mode of ["process", "thread"] as const) {
    it.live(`${mode}: a function or a Symbol among the items fails alone (Unsendable); the writer does not crash`, () =>
      Effect.gen(function*() {
        const outcome = yield* runFaults({ ...base, FAULT: "unclonable", FIXTURE_ITEMS: "8", FAULTS_WORKER_MODE: mode })
        expect(outcome.code).toBe(0)
        expect(errorsOf(outcome.events).map((e) => e.reason)).toEqual(["Unsendable", "Unsendable"])
        expect(endedOf(outcome.events).sort()).toEqual([0, 1, 2, 4, 6, 7])
      }))

    it.live(`${mode}: messages of the reader's own on the channel are ignored and logged`, () =>
      Effect.gen(function*() {
        const outcome = yield* runFaults({ ...base, FAULT: "foreign", FIXTURE_ITEMS: "6", FAULTS_WORKER_MODE: mode })
        expect(outcome.code).toBe(0)
        expect(errorsOf(outcome.events)).toEqual([])
        expect(endedOf(outcome.events).sort()).toEqual([0, 1, 2, 3, 4, 5])
        expect(outcome.output).toContain("that is not the runner's")
      }))
  }

  it.live("a reader process that exits reports the jobs it finished in its last tick: only the unfinished is ProcessDied", () =>
    Effect.gen(function*() {
      const outcome = yield* runFaults({
        ...base,
        FAULT: "lastTick",
        FIXTURE_ITEMS: "8",
        FAULTS_CONCURRENT_TASKS_PER_PROCESS: "8"
      })
      expect(outcome.code).toBe(0)
      const errors = errorsOf(outcome.events)
      const ended = endedOf(outcome.events)
      // Items 0–3 ran in the same batch as 4, just before it exited the process (5–7 never started).
      expect(ended).toEqual(expect.arrayContaining([0, 1, 2, 3]))
      expect(errors.map((e) => e.item)).toContain(4)
      expect(errors.every((e) => e.reason === "ProcessDied")).toBe(true)
      for (const e of errors) expect(ended).not.toContain(e.item)
      expect([...ended, ...errors.map((e) => e.item)].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    }))

  it.live("prefetch: a process that dies holding jobs it had not started hands them to its replacement, unfailed", () =>
    Effect.gen(function*() {
      const outcome = yield* runFaults({
        ...base,
        FAULT: "exitLate",
        FIXTURE_ITEMS: "80",
        FIXTURE_EXIT_ITEM: "30",
        FAULTS_CONCURRENT_TASKS_PER_PROCESS: "1"
      })
      expect(outcome.code).toBe(0)
      // Only the job that exited the process failed; the jobs sent after it, waiting in its backlog, ran elsewhere
      // (before the reader reported its starts, they all failed with ProcessDied).
      expect(errorsOf(outcome.events).map((e) => [e.item, e.reason])).toEqual([[30, "ProcessDied"]])
      const ended = endedOf(outcome.events)
      expect(new Set(ended).size).toBe(ended.length)
      expect(ended.sort((a, b) => Number(a) - Number(b))).toEqual(
        Array.from({ length: 80 }, (_, i) => i).filter((i) => i !== 30)
      )
    }))

  it.live("the writer SIGKILLed while its readers spin in a synchronous loop: the readers die too", () =>
    Effect.gen(function*() {
      const outcome = yield* runFaults(
        { FAULT: "spin", FIXTURE_ITEMS: "100", FAULTS_NUM_PROCESSES: "2" },
        {
          when: (events) => new Set(events.filter((e) => e.e === "start").map((e) => e.pid)).size >= 2,
          act: (pid) => process.kill(pid, "SIGKILL")
        }
      )
      expect(outcome.code).toBe(null)
      const readers = [...new Set(outcome.events.filter((e) => e.e === "start").map((e) => e.pid))]
      expect(readers.length).toBe(2)
      // The watchdog checks every 250 ms; 10 s is room for a loaded machine, not a sleep standing in for an event.
      const deadline = performance.now() + 10_000
      while (readers.some(isAlive) && performance.now() < deadline) yield* Effect.sleep("50 millis")
      const left = readers.filter(isAlive)
      for (const pid of left) process.kill(pid, "SIGKILL")
      expect(left).toEqual([])
    }))

  it.live("jobTimeout (env JOB_TIMEOUT): a reader stuck in a synchronous loop fails with JobTimeout and its process is killed and replaced", () =>
    Effect.gen(function*() {
      const outcome = yield* runFaults({
        ...base,
        FAULT: "spinOne",
        FIXTURE_ITEMS: "6",
        FAULTS_CONCURRENT_TASKS_PER_PROCESS: "1",
        FAULTS_JOB_TIMEOUT: "1"
      })
      expect(outcome.code).toBe(0)
      expect(errorsOf(outcome.events).map((e) => [e.item, e.reason])).toEqual([[2, "JobTimeout"]])
      expect(endedOf(outcome.events).sort()).toEqual([0, 1, 3, 4, 5])
      const readers = [...new Set(outcome.events.filter((e) => e.e === "start").map((e) => e.pid))]
      expect(readers.length).toBe(2)
      expect(readers.filter(isAlive)).toEqual([])
    }))

  it.live("SIGTERM while a reader is still building its context: exit at once, not after the grace", () =>
    Effect.gen(function*() {
      const outcome = yield* runFaults(
        { ...base, FAULT: "slowContext", FAULTS_STOP_WHEN_EMPTY: "false", FAULTS_GRACEFUL_SHUTDOWN_TIMEOUT: "20" },
        { when: (events) => events.some((e) => e.e === "building"), act: (pid) => process.kill(pid, "SIGTERM") }
      )
      expect(outcome.code).toBe(0)
      // The grace is 20 s; the old supervisor waited it out (and 5 s more) with nothing running.
      expect(outcome.afterAct!).toBeLessThan(10_000)
      const readers = [...new Set(outcome.events.filter((e) => e.e === "building").map((e) => e.pid))]
      expect(readers.filter(isAlive)).toEqual([])
    }))

  it.live("first SIGTERM says what is running and the grace, and the summary at the end", () =>
    Effect.gen(function*() {
      const outcome = yield* runFaults(
        {
          ...base,
          FAULT: "sleep",
          FIXTURE_SLEEP_MS: "1500",
          FIXTURE_ITEMS: "100",
          FAULTS_STOP_WHEN_EMPTY: "false",
          FAULTS_CONCURRENT_TASKS_PER_PROCESS: "2",
          FAULTS_GRACEFUL_SHUTDOWN_TIMEOUT: "20"
        },
        {
          when: (events) => events.filter((e) => e.e === "start").length >= 2,
          act: (pid) => process.kill(pid, "SIGTERM")
        }
      )
      expect(outcome.code).toBe(0)
      expect(outcome.output).toContain("SIGTERM: stopping: 2 running, grace 20 s; signal again to force")
      expect(outcome.output).toContain("stopped: 2 processed, 0 failed")
    }))

  it.live("a second SIGTERM kills the readers, reports what it abandons, and exits 130", () =>
    Effect.gen(function*() {
      const outcome = yield* runFaults(
        {
          ...base,
          FAULT: "sleep",
          FIXTURE_ITEMS: "100",
          FAULTS_STOP_WHEN_EMPTY: "false",
          FAULTS_CONCURRENT_TASKS_PER_PROCESS: "2",
          FAULTS_GRACEFUL_SHUTDOWN_TIMEOUT: "20"
        },
        {
          when: (events) => events.filter((e) => e.e === "start").length >= 2,
          act: (pid) => process.kill(pid, "SIGTERM"),
          thenOn: "signal again to force",
          then: (pid) => process.kill(pid, "SIGTERM")
        }
      )
      // Before: the second signal killed the writer silently (no exit code, readers left to the watchdog).
      expect(outcome.code).toBe(130)
      expect(outcome.output).toMatch(/SIGTERM again: forced stop; abandoning 2 running job\(s\) \(process \d+: 2\)/)
      const readers = [...new Set(outcome.events.filter((e) => e.e === "start").map((e) => e.pid))]
      const deadline = performance.now() + 5_000
      while (readers.some(isAlive) && performance.now() < deadline) yield* Effect.sleep("50 millis")
      expect(readers.filter(isAlive)).toEqual([])
    }))
})

/** Runs node with `args`; resolves with its exit code and output. */
const runNode = (args: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.async<{ code: number | null; output: string; events: Array<Event> }>((resume) => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "jobrunner-node-"))
    const log = Path.join(dir, "log.jsonl")
    const child = ChildProcess.spawn(process.execPath, args as Array<string>, {
      env: { ...process.env, FIXTURE_LOG: log, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    child.stdout!.on("data", (d) => (output += String(d)))
    child.stderr!.on("data", (d) => (output += String(d)))
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000)
    child.on("exit", (code) => {
      clearTimeout(timer)
      const events = readLog(log)
      Fs.rmSync(dir, { recursive: true, force: true })
      resume(Effect.succeed({ code, output, events }))
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

describe("JobRunner runMain and the CLI", { timeout: 60_000 }, () => {
  it.live("runMain does nothing when its module is imported by another module (a test importing jobs.ts)", () =>
    Effect.gen(function*() {
      const url = pathToFileURL(built.faults).href
      const outcome = yield* runNode(
        ["--input-type=module", "-e", `await import(${JSON.stringify(url)}); console.log("imported")`],
        { ...base, FIXTURE_ITEMS: "2", EFFECT_WORKERS_JOB_RUNNER_ENTRY: built.entry }
      )
      expect(outcome.code).toBe(0)
      expect(outcome.output).toContain("imported")
      // Before: the import started the runner, which spawned a reader and ran both items.
      expect(outcome.events).toEqual([])
    }))

  it.live(
    "the CLI names the flag in a bad flag's error, reports a missing module once, and shows why a context failed",
    () =>
      Effect.gen(function*() {
        // Compiled, not through tsx: the three starts took 6.5 s on the idle machine, 23 s at load 12.
        const { bin } = built
        const entry = { EFFECT_WORKERS_JOB_RUNNER_ENTRY: built.entry }
        const flag = yield* runNode([bin, "run", built.faults, "--processes", "0"], entry)
        expect(flag.code).toBe(1)
        expect(flag.output).toContain("--processes: expected an integer from 1")
        expect(flag.output).not.toContain("numProcesses")

        const missing = yield* runNode([bin, "run", "./no-such-jobs.ts"], {})
        expect(missing.code).toBe(1)
        expect(missing.output.match(/no-such-jobs/g)?.length).toBe(2)
        expect(missing.output.split("\n").filter((l) => l.length > 0)).toHaveLength(1)

        const context = yield* runNode([bin, "run", built.faults, "--processes", "1"], {
          ...entry,
          FAULT: "badContext"
        })
        expect(context.code).toBe(1)
        expect(context.output).toContain("the reader's context failed: the database is unreachable")
        expect(context.output).not.toContain("while starting")
      }),
    400_000
  )
})

describe("JobRunner context as a plain async function, in reader processes", { timeout: 60_000 }, () => {
  const plain = compiledFixture("test/fixtures/jobRunner-plainContext.ts")
  const env = { EFFECT_WORKERS_JOB_RUNNER_ENTRY: built.entry }

  it.live("each reader process receives the value its own call returned", () =>
    Effect.gen(function*() {
      const outcome = yield* runNode([plain], { ...env, PLAIN_NUM_PROCESSES: "2" })
      expect(outcome.code).toBe(0)
      const ends = outcome.events as Array<Event & { db: string }>
      expect(ends.map((e) => e.item).sort()).toEqual([0, 1, 2, 3, 4, 5])
      for (const e of ends) expect(e.db).toBe(`db of ${e.pid}`)
    }))

  it.live("a context function that throws or rejects fails the run with its message, not \"exited with code 1\"", () =>
    Effect.gen(function*() {
      for (
        const [mode, message] of [["throw", "the token file is missing"], ["reject", "the database said no"]] as const
      ) {
        const outcome = yield* runNode([plain], { ...env, PLAIN_NUM_PROCESSES: "1", CONTEXT: mode })
        expect(outcome.code).toBe(1)
        expect(outcome.output).toContain(`JobRunner plain: the reader's context failed: ${message}`)
        expect(outcome.output).not.toContain("while starting")
        expect(outcome.events).toEqual([])
      }
    }))
})

describe("JobRunner readers start from compiled JavaScript when it exists", { timeout: 120_000 }, () => {
  // A `.ts` runner module placed beside the compiled fixture: loading it would fail at once, so a run that
  // processes every item proves the reader loaded the compiled sibling instead (and without tsx).
  const compiled = compiledFixture("test/fixtures/jobRunner-plainContext.ts")
  const tsModule = compiled.replace(/\.mjs$/, ".ts")
  let runs = 0
  const runWith = (moduleUrl: string) =>
    Effect.gen(function*() {
      // A fresh instance of the module each time (its writer's cursor is module state).
      const mod = yield* Effect.promise(() =>
        import(`${pathToFileURL(compiled).href}?run=${++runs}`) as Promise<
          { runner: JobRunner.JobRunner<number, never, never, { db: string }> }
        >
      )
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "jobrunner-compiled-"))
      const log = Path.join(dir, "log.jsonl")
      const saved = { ...process.env }
      process.env.FIXTURE_LOG = log
      process.env.EFFECT_WORKERS_JOB_RUNNER_ENTRY = built.entry
      const exit = yield* JobRunner.run({ ...mod.runner, module: moduleUrl }, { settings: { numProcesses: 1 } }).pipe(
        Effect.exit,
        Effect.ensuring(Effect.sync(() => {
          for (const key of ["FIXTURE_LOG", "EFFECT_WORKERS_JOB_RUNNER_ENTRY"]) {
            if (saved[key] === undefined) delete process.env[key]
            else process.env[key] = saved[key]
          }
        }))
      )
      const events = readJsonLines<Event & { tsx: boolean }>(log)
      Fs.rmSync(dir, { recursive: true, force: true })
      return { exit, events }
    })

  it.live("a .ts runner module with an up-to-date compiled sibling is loaded as the sibling, without tsx; a stale one is not", () =>
    Effect.gen(function*() {
      Fs.writeFileSync(tsModule, "throw new Error(\"the .ts module was loaded\")\n")
      try {
        // Times relative to the build's, which the global setup made at the start of the run.
        const built = Fs.statSync(compiled).mtimeMs
        const old = new Date(built - 60_000)
        Fs.utimesSync(tsModule, old, old)
        const fresh = yield* runWith(pathToFileURL(tsModule).href)
        expect(fresh.exit._tag).toBe("Success")
        expect(fresh.events.map((e) => e.item).sort()).toEqual([0, 1, 2, 3, 4, 5])
        expect(fresh.events.every((e) => !e.tsx)).toBe(true)

        // The .ts edited after the build: the build is stale, so the .ts is loaded, through tsx (the tsx path).
        const now = new Date(built + 60_000)
        Fs.utimesSync(tsModule, now, now)
        const stale = yield* runWith(pathToFileURL(tsModule).href)
        expect(stale.exit._tag).toBe("Failure")
        expect(String(stale.exit._tag === "Failure" ? Cause.squash(stale.exit.cause) : "")).toContain(
          "the .ts module was loaded"
        )
        expect(stale.events).toEqual([])
      } finally {
        Fs.rmSync(tsModule, { force: true })
      }
    }))
})
