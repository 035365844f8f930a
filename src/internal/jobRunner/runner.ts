/**
 * The writer side of a job runner: settings, the bounded queue, the writer loop with its refill rule, backoff and
 * prevent-requeue window, and one supervisor per reader process slot that feeds its process, recycles it and
 * replaces it when it dies. How a reader process is started is a service (`ReaderSpawner`): real processes by
 * default, in-process for tests.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Api from "../../JobRunner.js"
import type * as DurableQueue from "../../DurableQueue.js"
import type { OptionError } from "../../OptionError.js"
import { checker } from "../options.js"
import { Progress } from "../progress.js"
import { Metrics } from "./metrics.js"
import { encodeSettings, ReaderError } from "./protocol.js"

/** @internal */
export const TypeId: Api.TypeId = Symbol.for("effect-workers/JobRunner") as Api.TypeId

type AnyRunner = Api.JobRunner<unknown, unknown, unknown>

/** @internal */
export const READER_ENV = "EFFECT_WORKERS_JOB_RUNNER_READER"

const defaultKey = (item: unknown): string => {
  switch (typeof item) {
    case "string":
      return `s:${item}`
    case "number":
    case "bigint":
    case "boolean":
      return `${typeof item}:${String(item)}`
    default:
      return `j:${JSON.stringify(item)}`
  }
}

/** @internal */
export const make = <Item, I, Ctx, WCtx>(
  options: Api.JobRunner.Options<Item, I, Ctx, WCtx>
): Api.JobRunner<Item, Ctx, WCtx> => ({
  [TypeId]: TypeId,
  name: options.name,
  module: options.module,
  item: (options.item ?? Schema.Unknown) as unknown as Schema.Schema<Item, unknown>,
  key: (options.key ?? defaultKey) as (item: Item) => string,
  writer: options.writer,
  source: options.source,
  reader: options.reader,
  context: options.context,
  writerContext: options.writerContext,
  settings: options.settings ?? {},
  onError: options.onError
})

/** @internal */
export const isJobRunner = (u: unknown): u is Api.JobRunner<unknown, unknown, unknown> =>
  typeof u === "object" && u !== null && TypeId in u

/** @internal */
export class JobRunnerError extends Schema.TaggedError<JobRunnerError>("effect-workers/JobRunner/JobRunnerError")(
  "JobRunnerError",
  {
    reason: Schema.Literal("SpawnFailed", "ModuleUnknown", "ReaderFailed", "WriterContextFailed"),
    runner: Schema.String,
    detail: Schema.String
  }
) {
  override get message(): string {
    switch (this.reason) {
      case "SpawnFailed":
        return `JobRunner ${this.runner}: a reader process could not start: ${this.detail}`
      case "ModuleUnknown":
        return `JobRunner ${this.runner}: reader processes need the runner's module; ${this.detail}`
      case "WriterContextFailed":
        return `JobRunner ${this.runner}: the writer context could not be built: ${this.detail}`
      case "ReaderFailed":
        return `JobRunner ${this.runner}: the reader failed: ${this.detail}`
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------------------------

/** @internal */
export const envPrefix = (name: string): string =>
  name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/[^A-Za-z0-9]+/g, "_").replace(/^_+|_+$/g, "").toUpperCase()

const seedDefaults: Api.Settings = {
  numProcesses: 2,
  maxQueueSize: 300,
  lookupBlockSize: 10,
  concurrentTasksPerProcess: 4,
  maxJobsPerProcess: 200,
  preventRequeuingTime: Duration.seconds(300),
  emptyQueueSleepTime: Duration.seconds(1),
  emptyQueueMaxSleepTime: Duration.seconds(30),
  fullQueueSleepTime: Duration.seconds(5),
  queueInteractionTimeout: Duration.millis(10),
  gracefulShutdownTimeout: Duration.seconds(30),
  metricsPort: 0,
  workerMode: "process",
  stopWhenEmpty: false
}

const validateInput = (input: Api.SettingsInput, base: Api.Settings): Effect.Effect<Api.Settings, OptionError> => {
  const c = checker("JobRunner")
  return Effect.all({
    numProcesses: c.integer("numProcesses", input.numProcesses, base.numProcesses, 1),
    maxQueueSize: c.integer("maxQueueSize", input.maxQueueSize, base.maxQueueSize, 1),
    lookupBlockSize: c.integer("lookupBlockSize", input.lookupBlockSize, base.lookupBlockSize, 1),
    concurrentTasksPerProcess: c.integer(
      "concurrentTasksPerProcess",
      input.concurrentTasksPerProcess,
      base.concurrentTasksPerProcess,
      1
    ),
    maxJobsPerProcess: c.integer("maxJobsPerProcess", input.maxJobsPerProcess, base.maxJobsPerProcess, 0),
    preventRequeuingTime: c.duration("preventRequeuingTime", input.preventRequeuingTime, base.preventRequeuingTime),
    emptyQueueSleepTime: c.duration("emptyQueueSleepTime", input.emptyQueueSleepTime, base.emptyQueueSleepTime),
    emptyQueueMaxSleepTime: c.duration(
      "emptyQueueMaxSleepTime",
      input.emptyQueueMaxSleepTime,
      base.emptyQueueMaxSleepTime
    ),
    fullQueueSleepTime: c.duration("fullQueueSleepTime", input.fullQueueSleepTime, base.fullQueueSleepTime),
    queueInteractionTimeout: c.duration(
      "queueInteractionTimeout",
      input.queueInteractionTimeout,
      base.queueInteractionTimeout
    ),
    gracefulShutdownTimeout: c.duration(
      "gracefulShutdownTimeout",
      input.gracefulShutdownTimeout,
      base.gracefulShutdownTimeout
    ),
    metricsPort: c.integer("metricsPort", input.metricsPort, base.metricsPort, 0).pipe(
      Effect.flatMap((p) => c.require("metricsPort", p, p <= 65535, "a port from 0 (off) to 65535"))
    ),
    workerMode: c.require(
      "workerMode",
      input.workerMode ?? base.workerMode,
      input.workerMode === undefined || input.workerMode === "process" || input.workerMode === "thread",
      "\"process\" or \"thread\""
    ),
    stopWhenEmpty: Effect.succeed(input.stopWhenEmpty ?? base.stopWhenEmpty)
  })
}

const envConfig = (prefix: string, base: Api.Settings): Config.Config<Api.Settings> => {
  const v = (suffix: string) => `${prefix}_${suffix}`
  const int = (suffix: string, fallback: number, min: number) =>
    Config.integer(v(suffix)).pipe(
      Config.validate({ message: `Expected an integer from ${min} and up`, validation: (n) => n >= min }),
      Config.withDefault(fallback)
    )
  const seconds = (suffix: string, fallback: Duration.Duration) =>
    Config.number(v(suffix)).pipe(
      Config.validate({
        message: "Expected a finite, non-negative number of seconds",
        validation: (n) => Number.isFinite(n) && n >= 0
      }),
      Config.map((n) => Duration.millis(Math.round(n * 1000))),
      Config.withDefault(fallback)
    )
  return Config.all({
    numProcesses: int("NUM_PROCESSES", base.numProcesses, 1),
    maxQueueSize: int("MAX_QUEUE_SIZE", base.maxQueueSize, 1),
    lookupBlockSize: int("LOOKUP_BLOCK_SIZE", base.lookupBlockSize, 1),
    concurrentTasksPerProcess: int("CONCURRENT_TASKS_PER_PROCESS", base.concurrentTasksPerProcess, 1),
    maxJobsPerProcess: int("MAX_JOBS_PER_PROCESS", base.maxJobsPerProcess, 0),
    preventRequeuingTime: seconds("PREVENT_REQUEUING_TIME", base.preventRequeuingTime),
    emptyQueueSleepTime: seconds("EMPTY_QUEUE_SLEEP_TIME", base.emptyQueueSleepTime),
    emptyQueueMaxSleepTime: seconds("EMPTY_QUEUE_MAX_SLEEP_TIME", base.emptyQueueMaxSleepTime),
    fullQueueSleepTime: seconds("FULL_QUEUE_SLEEP_TIME", base.fullQueueSleepTime),
    queueInteractionTimeout: seconds("QUEUE_INTERACTION_TIMEOUT", base.queueInteractionTimeout),
    gracefulShutdownTimeout: seconds("GRACEFUL_SHUTDOWN_TIMEOUT", base.gracefulShutdownTimeout),
    metricsPort: Config.integer(v("METRICS_PORT")).pipe(
      Config.validate({
        message: "Expected a port from 0 (off) to 65535",
        validation: (n) => n >= 0 && n <= 65535
      }),
      Config.withDefault(base.metricsPort)
    ),
    workerMode: Config.literal("process", "thread")(v("WORKER_MODE")).pipe(Config.withDefault(base.workerMode)),
    stopWhenEmpty: Config.boolean(v("STOP_WHEN_EMPTY")).pipe(Config.withDefault(base.stopWhenEmpty))
  })
}

/** @internal */
export const resolveSettings = (
  runner: Api.JobRunner.Any,
  overrides?: Api.SettingsInput | undefined
): Effect.Effect<Api.Settings, ConfigError.ConfigError | OptionError> =>
  Effect.gen(function*() {
    const definition = isJobRunner(runner) ? runner.settings : {}
    const fromCode = yield* validateInput(definition, seedDefaults)
    const fromEnv = yield* envConfig(envPrefix(runner.name), fromCode)
    return yield* validateInput(overrides ?? {}, fromEnv)
  })

// ---------------------------------------------------------------------------------------------------------------
// Reader side, shared by real processes and the inline spawner
// ---------------------------------------------------------------------------------------------------------------

const isPromiseLike = (u: unknown): u is PromiseLike<unknown> =>
  typeof u === "object" && u !== null && "then" in u && typeof (u as { then: unknown }).then === "function"

/** @internal */
export const failureDetail = (cause: Cause.Cause<unknown>): string => {
  let squashed = Cause.squash(cause)
  if (Cause.isUnknownException(squashed) && squashed.cause !== undefined) squashed = squashed.cause
  if (typeof squashed === "string") return squashed
  if (typeof squashed === "object" && squashed !== null && "message" in squashed) {
    const message = String((squashed as { message: unknown }).message)
    if (message.length > 0) return message
  }
  if (typeof squashed === "object" && squashed !== null && "_tag" in squashed) {
    const { _tag, ...rest } = squashed as Record<string, unknown>
    return `${String(_tag)} ${JSON.stringify(rest)}`
  }
  return Cause.pretty(cause).split("\n")[0] ?? "unknown failure"
}

/**
 * Runs the reader on an encoded item. Every way a reader can fail (throw, rejection, typed failure, defect)
 * becomes a `ReaderError`; the process goes on.
 *
 * @internal
 */
export const runReader = (
  runner: AnyRunner,
  context: Context.Context<unknown>,
  settings: Api.Settings,
  encoded: unknown
): Effect.Effect<void, ReaderError> =>
  Schema.decodeUnknown(runner.item)(encoded).pipe(
    Effect.mapError((e) => new ReaderError({ reason: "Decode", detail: e.message })),
    Effect.flatMap((item) =>
      Effect.suspend(() => {
        const out = runner.reader(item, context, settings)
        if (Effect.isEffect(out)) {
          return Effect.provide(out as Effect.Effect<unknown, unknown, unknown>, context)
        }
        if (isPromiseLike(out)) return Effect.tryPromise(() => out)
        return Effect.void
      }).pipe(
        Effect.asVoid,
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.failCause(cause as Cause.Cause<never>)
            : Effect.fail(new ReaderError({ reason: "Failed", detail: failureDetail(cause) }))
        )
      )
    )
  )

const toStream = (out: Api.WriterOutput<unknown, unknown>): Stream.Stream<unknown, unknown, unknown> => {
  if (Stream.StreamTypeId in (out as object)) return out as Stream.Stream<unknown, unknown, unknown>
  if (Effect.isEffect(out)) {
    return Stream.unwrap(Effect.map(out as Effect.Effect<Iterable<unknown>, unknown, unknown>, Stream.fromIterable))
  }
  if (isPromiseLike(out)) {
    return Stream.unwrap(Effect.map(Effect.tryPromise(() => out as PromiseLike<Iterable<unknown>>), Stream.fromIterable))
  }
  if (Symbol.asyncIterator in (out as object)) {
    return Stream.fromAsyncIterable(out as AsyncIterable<unknown>, (e) => e)
  }
  return Stream.fromIterable(out as Iterable<unknown>)
}

// ---------------------------------------------------------------------------------------------------------------
// Spawning
// ---------------------------------------------------------------------------------------------------------------

/** @internal */
export class ProcessDied extends Data.TaggedError("ProcessDied")<{ readonly detail: string }> {}

/** @internal */
export type JobDone = (job: Job, failure: ReaderError | ProcessDied | undefined) => void

/** @internal */
export interface ReaderHandle {
  readonly processId: number
  /**
   * Hands a job to the process. `done` is called once with its outcome (`undefined`: success), possibly at once;
   * `false` (and no `done`) means the process is already gone and did not take the job.
   */
  readonly submit: (job: Job, done: JobDone) => boolean
  /** Completes when the process ends on its own (died). */
  readonly exited: Effect.Effect<void>
  /** Kills the process at once. */
  readonly kill: Effect.Effect<void>
}

/** @internal */
export interface SpawnRequest {
  readonly runner: AnyRunner
  readonly settings: Api.Settings
  readonly slot: number
}

/** @internal */
export class ReaderSpawner extends Context.Tag("effect-workers/JobRunner/ReaderSpawner")<
  ReaderSpawner,
  { readonly spawn: (request: SpawnRequest) => Effect.Effect<ReaderHandle, JobRunnerError, Scope.Scope> }
>() {}

let inlineIds = 0

/** @internal */
export const layerInline: Layer.Layer<ReaderSpawner> = Layer.succeed(ReaderSpawner, {
  spawn: ({ runner, settings }) =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const context = yield* Layer.buildWithScope(runner.context ?? Layer.empty, scope).pipe(
        Effect.catchAllCause((cause) =>
          Effect.fail(new JobRunnerError({ reason: "SpawnFailed", runner: runner.name, detail: failureDetail(cause) }))
        )
      )
      const encodeItem = Schema.encodeUnknown(runner.item)
      const processId = -++inlineIds
      const runFork = yield* FiberSet.runtime(yield* FiberSet.make<void, ReaderError>())<never>()
      return {
        processId,
        submit: (job, done) => {
          runFork(
            encodeItem(job.item).pipe(
              Effect.mapError((e) => new ReaderError({ reason: "Decode", detail: e.message })),
              Effect.flatMap((encoded) => runReader(runner, context as Context.Context<unknown>, settings, encoded))
            )
          ).addObserver((exit) => {
            if (Exit.isSuccess(exit)) return done(job, undefined)
            const error = Cause.failureOption(exit.cause)
            done(job, Option.isSome(error) ? error.value : new ProcessDied({ detail: Cause.pretty(exit.cause) }))
          })
          return true
        },
        exited: Effect.never,
        kill: Effect.void
      } satisfies ReaderHandle
    })
})

/** @internal */
export const isReaderProcess = (): boolean => process.env[READER_ENV] === "1"

const cliFlag = Symbol.for("effect-workers/JobRunner/cli")

/**
 * Set by the CLI before it loads a runner module, so the module's own `runMain` does not start a second run.
 *
 * @internal
 */
export const markLoadedByCli = (): void => {
  ;(globalThis as Record<symbol, unknown>)[cliFlag] = true
}

const loadedByCli = (): boolean => (globalThis as Record<symbol, unknown>)[cliFlag] === true

/** @internal */

// The process spawner lives in its own file (it imports node modules and @effect/platform-node); it is loaded only
// when no ReaderSpawner is provided.
const defaultSpawner = Effect.promise(() => import("./process.js")).pipe(Effect.map((m) => m.processSpawner))

// ---------------------------------------------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------------------------------------------

/**
 * How many items the writer is asked for: `min(lookupBlockSize, floor(0.8 × maxQueueSize) − size)`, and at least 1,
 * so a queue of 1 (where `floor(0.8)` is 0) is still filled.
 *
 * @internal
 */
export const desiredCount = (maxQueueSize: number, lookupBlockSize: number, size: number): number =>
  Math.max(1, Math.min(lookupBlockSize, Math.floor(0.8 * maxQueueSize) - size))

/**
 * The writer is called only while the queue is under 30 % of its maximum.
 *
 * @internal
 */
export const needsRefill = (maxQueueSize: number, size: number): boolean => size < 0.3 * maxQueueSize

/**
 * Wakes every waiting fiber. `waitOr` registers the waiter in the calling fiber, synchronously, before racing it
 * with the other wake-ups: a waiter registered inside a forked race arm could miss a notification sent before the
 * arm starts.
 */
class Notifier {
  private waiters: Array<Deferred.Deferred<void>> = []
  waitOr(...others: ReadonlyArray<Effect.Effect<unknown>>): Effect.Effect<void> {
    return Effect.suspend(() => {
      const d = Deferred.unsafeMake<void>(FiberId.none)
      this.waiters.push(d)
      return Effect.asVoid(Effect.raceAll([Deferred.await(d), ...others]))
    })
  }
  get wait(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const d = Deferred.unsafeMake<void>(FiberId.none)
      this.waiters.push(d)
      return Deferred.await(d)
    })
  }
  notify(): void {
    if (this.waiters.length === 0) return
    const ws = this.waiters
    this.waiters = []
    for (const d of ws) Deferred.unsafeDone(d, Exit.void)
  }
}

/** @internal */
export interface Job {
  readonly id: number
  readonly item: unknown
  /** With a durable source: settles the job's lease (undefined: success; a failure; "back": put it back untried). */
  readonly settle?: ((outcome: Api.JobFailure | undefined | "back") => void) | undefined
}

/** @internal */
export const run = <Item, Ctx, WCtx>(
  runnerIn: Api.JobRunner<Item, Ctx, WCtx>,
  options?: Api.RunOptions | undefined
): Effect.Effect<Api.Summary, JobRunnerError | ConfigError.ConfigError | OptionError> =>
  Effect.scoped(Effect.gen(function*() {
    const runner = runnerIn as unknown as AnyRunner
    const settings = yield* resolveSettings(runner, options?.settings)
    const writerFn = runner.writer ?? (() => [])
    yield* checker("JobRunner").require(
      "writer",
      runner.writer,
      (runner.writer === undefined) !== (runner.source === undefined),
      "a function, or a `source` instead (one of the two)"
    )
    const spawner = yield* Effect.serviceOption(ReaderSpawner).pipe(
      Effect.flatMap(Option.match({ onNone: () => defaultSpawner, onSome: Effect.succeed }))
    )
    const m = {
      queueDepth: Metric.tagged(Metrics.queueDepth, "runner", runner.name),
      inFlight: Metric.tagged(Metrics.inFlight, "runner", runner.name),
      processed: Metric.tagged(Metrics.processed, "runner", runner.name),
      failed: Metric.tagged(Metrics.failed, "runner", runner.name),
      processes: Metric.tagged(Metrics.processes, "runner", runner.name),
      restarts: Metric.tagged(Metrics.restarts, "runner", runner.name)
    }
    const writerContext = yield* Layer.build(runner.writerContext ?? Layer.empty).pipe(
      Effect.catchAllCause((cause) =>
        Effect.fail(
          new JobRunnerError({ reason: "WriterContextFailed", runner: runner.name, detail: failureDetail(cause) })
        )
      )
    )
    if (settings.metricsPort > 0) {
      const server = yield* Effect.promise(() => import("./metricsServer.js"))
      yield* server.serve(settings.metricsPort)
    }

    // State. JavaScript runs one fiber at a time, so the synchronous updates below cannot interleave.
    const queue: Array<Job> = []
    const max = settings.maxQueueSize
    const threshold = 0.3 * max
    let nextJobId = 0
    let inFlight = 0
    let processed = 0
    let failed = 0
    let processesStarted = 0
    let restarts = 0
    let stopping = false
    let shutdownTimedOut = false
    const stop = yield* Deferred.make<void>()
    const done = yield* Deferred.make<void>()
    const itemAvailable = new Notifier()
    const spaceAvailable = new Notifier()
    const belowThreshold = new Notifier()
    const idle = new Notifier()
    const handles = new Set<ReaderHandle>()
    const seen = new Map<string, number>()

    let liveProcesses = 0
    let queuedTotal = 0
    // What each process slot is doing, for the Progress display.
    const slotRows: Array<{ processId: number; running: number; taken: number } | undefined> = []
    const progress = yield* Effect.serviceOption(Progress)
    const session = Option.isSome(progress)
      ? yield* progress.value.session({ title: `JobRunner ${runner.name}`, workers: settings.numProcesses })
      : undefined
    let reported = { total: 0, completed: 0 }
    const reportProgress = Effect.suspend(() => {
      if (session === undefined) return Effect.void
      const total = queuedTotal - reported.total
      const completed = processed + failed - reported.completed
      reported = { total: queuedTotal, completed: processed + failed }
      return Effect.all([
        session.setQueueSize(queue.length),
        total > 0 ? session.addTotal(total) : Effect.void,
        completed > 0 ? session.addCompleted(completed) : Effect.void,
        Effect.forEach(slotRows.slice(0, settings.numProcesses), (row, i) =>
          row === undefined || row.running === 0
            ? session.workerWaiting(i + 1)
            : session.setWorker(i + 1, `process ${row.processId}: ${row.running} running, ${row.taken} taken`), {
          discard: true
        })
      ], { discard: true })
    })
    // Metrics are published from the counters above every 250 ms and at the end, not per item: a tagged metric
    // update costs about as much as a trivial job.
    let flushed = { processed: 0, failed: 0, restarts: 0 }
    const flushMetrics = Effect.suspend(() => {
      const delta = {
        processed: processed - flushed.processed,
        failed: failed - flushed.failed,
        restarts: restarts - flushed.restarts
      }
      flushed = { processed, failed, restarts }
      return Effect.all([
        Metric.set(m.queueDepth, queue.length),
        Metric.set(m.inFlight, inFlight),
        Metric.set(m.processes, liveProcesses),
        Metric.incrementBy(m.processed, delta.processed),
        Metric.incrementBy(m.failed, delta.failed),
        Metric.incrementBy(m.restarts, delta.restarts),
        reportProgress
      ], { discard: true })
    })

    const takeJob = (): Job | undefined => {
      const job = queue.shift()
      if (job === undefined) return undefined
      spaceAvailable.notify()
      if (queue.length < threshold) belowThreshold.notify()
      return job
    }

    // ---- writer -------------------------------------------------------------------------------------------

    const windowMillis = Duration.toMillis(settings.preventRequeuingTime)

    const prune = (now: number) => {
      for (const [key, at] of seen) {
        if (now - at < windowMillis) break
        seen.delete(key)
      }
    }

    // Offers one item: skipped if seen within the window; recorded only once it is really queued.
    const offer = (item: unknown): Effect.Effect<boolean> =>
      Effect.gen(function*() {
        const key = runner.key(item)
        if (windowMillis > 0) {
          const now = yield* Clock.currentTimeMillis
          const at = seen.get(key)
          if (at !== undefined && now - at < windowMillis) return false
        }
        while (queue.length >= max) {
          if (stopping) return false
          yield* spaceAvailable.waitOr(Deferred.await(stop))
        }
        if (stopping) return false
        queue.push({ id: nextJobId++, item })
        queuedTotal++
        if (windowMillis > 0) {
          const now = yield* Clock.currentTimeMillis
          seen.delete(key)
          seen.set(key, now)
        }
        itemAvailable.notify()
        return true
      })

    // The writer's usual output, an array or another sync iterable, is offered without an Effect per item while the
    // queue has room; the Clock (the fiber's, so TestClock drives it) is read once per batch, as no fiber can run
    // between two items. An item that finds the queue full goes through `offer`, which waits for room, and the
    // rest of the batch carries on here. Streams, async iterables, Effects and Promises take the Stream path.
    const clock = yield* Effect.clock

    const offerBatch = (iterator: Iterator<unknown>): Effect.Effect<number> => {
      let queued = 0
      const loop = (): Effect.Effect<number> => {
        const now = windowMillis > 0 ? clock.unsafeCurrentTimeMillis() : 0
        for (;;) {
          if (stopping) return Effect.succeed(queued)
          const next = iterator.next()
          if (next.done === true) return Effect.succeed(queued)
          const item: unknown = next.value
          if (queue.length >= max) {
            return Effect.flatMap(offer(item), (ok) => {
              if (ok) queued++
              return loop()
            })
          }
          const key = runner.key(item)
          if (windowMillis > 0) {
            const at = seen.get(key)
            if (at !== undefined && now - at < windowMillis) continue
          }
          queue.push({ id: nextJobId++, item })
          queuedTotal++
          queued++
          if (windowMillis > 0) {
            seen.delete(key)
            seen.set(key, now)
          }
          itemAvailable.notify()
        }
      }
      return Effect.suspend(loop)
    }

    const syncIterator = (out: unknown): Iterator<unknown> | undefined => {
      if (Array.isArray(out)) return out[Symbol.iterator]()
      if (
        typeof out !== "object" || out === null || Stream.StreamTypeId in out || Effect.isEffect(out) ||
        isPromiseLike(out) || Symbol.asyncIterator in out || !(Symbol.iterator in out)
      ) return undefined
      return (out as Iterable<unknown>)[Symbol.iterator]()
    }

    const pull = (desired: number): Effect.Effect<number> =>
      Effect.gen(function*() {
        if (windowMillis > 0) prune(yield* Clock.currentTimeMillis)
        const out = yield* Effect.try(() => writerFn(desired, settings))
        const iterator = syncIterator(out)
        if (iterator !== undefined) return yield* offerBatch(iterator)
        let queued = 0
        yield* (toStream(out).pipe(
          Stream.runForEach((item) => Effect.map(offer(item), (ok) => { if (ok) queued++ })),
          Effect.provide(writerContext as Context.Context<unknown>)
        ) as Effect.Effect<void, unknown>)
        return queued
      }).pipe(
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.failCause(cause as Cause.Cause<never>)
            : Effect.as(Effect.logWarning(`JobRunner ${runner.name}: the writer failed`, cause), 0)
        )
      )

    const writerLoop = Effect.gen(function*() {
      const base = settings.emptyQueueSleepTime
      let backoff = base
      let emptyWhileIdle = false
      while (!stopping) {
        if (!needsRefill(max, queue.length)) {
          // Woken early as soon as readers take the queue under the threshold.
          yield* belowThreshold.waitOr(Effect.sleep(settings.fullQueueSleepTime), Deferred.await(stop))
          continue
        }
        const desired = desiredCount(max, settings.lookupBlockSize, queue.length)
        const queued = yield* pull(desired)
        if (queued > 0) {
          backoff = base
          emptyWhileIdle = false
          continue
        }
        if (settings.stopWhenEmpty) {
          // Nothing more for now: wait until every queued item is done, then ask once more before stopping.
          if (emptyWhileIdle && queue.length === 0 && inFlight === 0) {
            yield* Deferred.succeed(done, undefined)
            return
          }
          while (!stopping && (inFlight > 0 || queue.length > 0)) yield* idle.waitOr(Deferred.await(stop))
          emptyWhileIdle = true
          continue
        }
        yield* Effect.raceFirst(Effect.sleep(backoff), Deferred.await(stop))
        backoff = Duration.min(Duration.times(backoff, 2), Duration.max(settings.emptyQueueMaxSleepTime, base))
      }
    })

    // ---- durable source -------------------------------------------------------------------------------------

    // Instead of a writer: jobs leased from a DurableQueue (built in this process with the writer context), each
    // held by a taker of `queue.run` until a reader has run it, then acknowledged (success) or handed back to the
    // queue as a failed attempt. Takers: every reader slot plus a prefetch of min(lookupBlockSize, maxQueueSize).
    const sourceLoop = (source: NonNullable<AnyRunner["source"]>) =>
      Effect.gen(function*() {
        const durable = yield* (Effect.suspend(() => source(settings)).pipe(
          Effect.provide(writerContext as Context.Context<unknown>)
        ) as Effect.Effect<DurableQueue.DurableQueue<unknown>, unknown, Scope.Scope>).pipe(
          Effect.catchAllCause((cause) =>
            Effect.fail(
              new JobRunnerError({ reason: "WriterContextFailed", runner: runner.name, detail: failureDetail(cause) })
            )
          )
        )
        let waiting = 0
        const takers = settings.numProcesses * settings.concurrentTasksPerProcess +
          Math.min(settings.lookupBlockSize, max)
        const handler = (item: unknown) =>
          Effect.async<void, JobRunnerError>((resume) => {
            if (stopping) return resume(Effect.interrupt)
            waiting++
            queue.push({
              id: nextJobId++,
              item,
              settle: (outcome) => {
                waiting--
                if (waiting === 0) idle.notify()
                resume(
                  outcome === undefined
                    ? Effect.void
                    : outcome === "back"
                    ? Effect.interrupt
                    : Effect.fail(new JobRunnerError({ reason: "ReaderFailed", runner: runner.name, detail: outcome.reason === "ReaderFailed" ? outcome.message : `${outcome.reason}: ${outcome.message}` }))
                )
              }
            })
            queuedTotal++
            itemAvailable.notify()
          })
        const loop = durable.run(handler, { concurrency: takers, shutdownTimeout: settings.gracefulShutdownTimeout })
        if (!settings.stopWhenEmpty) return loop
        // Stops once this runner holds no job and the queue reports none waiting or leased anywhere (a failed
        // attempt being handed back is still leased until it is queued again, so nothing slips between the two).
        const watch = Effect.gen(function*() {
          for (;;) {
            yield* Effect.sleep(settings.emptyQueueSleepTime)
            if (waiting > 0 || inFlight > 0 || queue.length > 0) continue
            const size = yield* durable.size.pipe(
              Effect.catchAll((error) => Effect.as(Effect.logWarning("JobRunner: reading the queue size failed", error), -1))
            )
            if (size === 0) break
          }
          yield* Deferred.succeed(done, undefined)
        })
        return Effect.raceFirst(loop, watch)
      })

    // ---- readers ------------------------------------------------------------------------------------------

    const report = (failure: Api.JobFailure) =>
      Effect.gen(function*() {
        yield* Effect.logWarning(
          `JobRunner ${runner.name}: job ${failure.jobId} failed (${failure.reason}) in process ${failure.processId}: ${failure.message}`
        )
        if (runner.onError !== undefined) {
          const onError = runner.onError
          yield* Effect.suspend(() => {
            const out = onError(failure)
            return Effect.isEffect(out)
              ? (out as Effect.Effect<unknown, unknown>)
              : isPromiseLike(out)
              ? Effect.tryPromise(() => out)
              : Effect.void
          }).pipe(Effect.catchAllCause((cause) => Effect.logWarning("JobRunner onError failed", cause)))
        }
      })

    // Feeds one process until it has taken maxJobsPerProcess jobs, dies, or the runner stops; then waits for the
    // jobs it is running. Jobs are handed over synchronously, as many as the process has free slots, and settle
    // through a callback: no fiber per job (a failure's report gets one).
    const feed = (handle: ReaderHandle, index: number) =>
      Effect.scoped(Effect.gen(function*() {
        const row = { processId: handle.processId, running: 0, taken: 0 }
        slotRows[index] = row
        yield* Effect.addFinalizer(() => Effect.sync(() => { slotRows[index] = undefined }))
        const reports = yield* FiberSet.make<void, never>()
        const runReport = yield* FiberSet.runtime(reports)<never>()
        const slotFree = new Notifier()
        let died = false
        const diedSignal = yield* Deferred.make<void>()
        const markDied = () => {
          died = true
          Deferred.unsafeDone(diedSignal, Exit.void)
        }
        yield* Effect.forkScoped(Effect.andThen(handle.exited, Effect.sync(markDied)))
        const settle: JobDone = (job, error) => {
          row.running--
          inFlight--
          if (error === undefined) {
            processed++
            job.settle?.(undefined)
          } else {
            failed++
            const processDied = error._tag === "ProcessDied"
            if (processDied) markDied()
            const failure: Api.JobFailure = {
              reason: processDied ? (shutdownTimedOut ? "ShutdownTimeout" : "ProcessDied") : "ReaderFailed",
              jobId: job.id,
              item: job.item,
              processId: handle.processId,
              message: processDied ? error.detail : error.message
            }
            runReport(Effect.zipRight(report(failure), Effect.sync(() => job.settle?.(failure))))
          }
          if (inFlight === 0) idle.notify()
          slotFree.notify()
        }
        const limit = settings.concurrentTasksPerProcess
        const maxJobs = settings.maxJobsPerProcess
        let taken = 0
        while (!stopping && !died && (maxJobs === 0 || taken < maxJobs)) {
          if (row.running >= limit) {
            yield* slotFree.wait
            continue
          }
          if (queue.length === 0) {
            yield* itemAvailable.waitOr(Deferred.await(stop), Deferred.await(diedSignal))
            continue
          }
          while (row.running < limit && (maxJobs === 0 || taken < maxJobs) && !died) {
            const job = takeJob()
            if (job === undefined) break
            taken++
            inFlight++
            row.running++
            row.taken++
            if (!handle.submit(job, settle)) {
              // The process is gone and did not take it: the job goes back to the head of the queue.
              taken--
              inFlight--
              row.running--
              row.taken--
              queue.unshift(job)
              itemAvailable.notify()
              markDied()
            }
          }
        }
        while (row.running > 0) yield* slotFree.wait
        yield* FiberSet.awaitEmpty(reports)
        return died
      }))

    const slot = (index: number) =>
      Effect.gen(function*() {
        let failures = 0
        while (!stopping) {
          const scope = yield* Scope.make()
          const spawned = yield* spawner.spawn({ runner, settings, slot: index }).pipe(
            Scope.extend(scope),
            Effect.either
          )
          if (spawned._tag === "Left") {
            yield* Scope.close(scope, Exit.void)
            if (processesStarted === 0) return yield* spawned.left
            failures++
            yield* Effect.logWarning(spawned.left.message)
            yield* Effect.raceFirst(Effect.sleep(Duration.seconds(Math.min(30, 2 ** failures))), Deferred.await(stop))
            continue
          }
          failures = 0
          const handle = spawned.right
          handles.add(handle)
          if (processesStarted >= settings.numProcesses) {
            restarts++
          }
          processesStarted++
          liveProcesses++
          yield* feed(handle, index).pipe(
            Effect.ensuring(Effect.suspend(() => {
              handles.delete(handle)
              liveProcesses--
              return Scope.close(scope, Exit.void)
            }))
          )
        }
      })

    yield* flushMetrics
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Effect.sleep("250 millis"), flushMetrics)))
    const slots = yield* Effect.forEach(
      Array.from({ length: settings.numProcesses }, (_, i) => i),
      (i) => Effect.forkScoped(slot(i))
    )
    const writer = yield* Effect.forkScoped(runner.source === undefined ? writerLoop : yield* sourceLoop(runner.source))

    // Added after the fibers above, so it runs before the scope interrupts them: stop the writer, let the
    // running items finish, and kill what is left after the grace period.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        stopping = true
        yield* Deferred.succeed(stop, undefined)
        // Jobs of a durable source not yet given to a reader go back to their queue untried.
        for (const job of queue.splice(0)) job.settle?.("back")
        yield* Fiber.interrupt(writer)
        // Finalizers run uninterruptibly; the wait must be interruptible for the timeouts to apply.
        const all = Effect.interruptible(Fiber.awaitAll(slots))
        const finished = yield* Effect.timeout(all, settings.gracefulShutdownTimeout).pipe(Effect.option)
        if (Option.isNone(finished)) {
          shutdownTimedOut = true
          yield* Effect.logWarning(
            `JobRunner ${runner.name}: ${inFlight} job(s) still running after ${
              Duration.format(settings.gracefulShutdownTimeout)
            }; killing the reader processes`
          )
          yield* Effect.forEach(handles, (h) => h.kill, { discard: true })
          yield* Effect.timeout(all, Duration.seconds(5)).pipe(Effect.ignore)
        }
        yield* flushMetrics
      })
    )

    yield* Effect.raceFirst(Deferred.await(done), Fiber.joinAll(slots))
    return { processed, failed, processesStarted, restarts }
  }))

/** @internal */
export const runMain = <Item, Ctx, WCtx>(
  runner: Api.JobRunner<Item, Ctx, WCtx>,
  options?: Api.RunOptions | undefined
): void => {
  if (isReaderProcess() || loadedByCli()) return
  void import("@effect/platform-node/NodeRuntime").then(({ runMain }) =>
    runMain(Effect.asVoid(run(runner, options)))
  )
}

/** @internal */
export const testWriter = <Item, Ctx, WCtx>(
  runner: Api.JobRunner<Item, Ctx, WCtx>,
  desired: number,
  overrides?: Api.SettingsInput | undefined
): Effect.Effect<Array<Item>, unknown> =>
  Effect.scoped(Effect.gen(function*() {
    const settings = yield* resolveSettings(runner, overrides)
    const ctx = yield* Layer.build((runner.writerContext ?? Layer.empty) as Layer.Layer<unknown, unknown>)
    if (runner.writer === undefined) return []
    const out = runner.writer(desired, settings) as Api.WriterOutput<unknown, unknown>
    const items = yield* (Stream.runCollect(toStream(out)).pipe(
      Effect.provide(ctx as Context.Context<unknown>)
    ) as Effect.Effect<Iterable<unknown>, unknown>)
    return Array.from(items as Iterable<Item>)
  }))

/** @internal */
export const testReader = <Item, Ctx, WCtx>(
  runnerIn: Api.JobRunner<Item, Ctx, WCtx>,
  item: Item,
  overrides?: Api.SettingsInput | undefined
): Effect.Effect<void, JobRunnerError> =>
  Effect.scoped(Effect.gen(function*() {
    const runner = runnerIn as unknown as AnyRunner
    const fail = (detail: string) => new JobRunnerError({ reason: "ReaderFailed", runner: runner.name, detail })
    const settings = yield* resolveSettings(runner, overrides).pipe(Effect.mapError((e) => fail(e.message)))
    const ctx = yield* Layer.build((runner.context ?? Layer.empty) as Layer.Layer<unknown, unknown>).pipe(
      Effect.catchAllCause((cause) => Effect.fail(fail(failureDetail(cause))))
    )
    const encoded = yield* Schema.encodeUnknown(runner.item)(item).pipe(Effect.mapError((e) => fail(e.message)))
    yield* runReader(runner, ctx as Context.Context<unknown>, settings, encoded).pipe(
      Effect.mapError((e) => fail(e.message))
    )
  }))

/** @internal */
export const settingsForChild = (settings: Api.Settings) => encodeSettings(settings)
