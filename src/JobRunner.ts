/**
 * A long-running job runner: a writer fills a bounded queue, readers in separate OS processes (or worker threads)
 * take items from it, each running `concurrentTasksPerProcess` items at a time with a per-process context built
 * once. Settings come from the environment, prefixed with the runner's name (`THUMBNAILS_NUM_PROCESSES=4`), and can
 * be overridden in code. Processes are recycled after `maxJobsPerProcess` jobs (once their replacement is ready,
 * at most `maxJobsPerProcess` jobs later) without losing an item, a dead
 * process is replaced and its in-flight items are reported, and SIGTERM / SIGINT stop the runner gracefully.
 *
 * A rebuild of the Python library QuasiQueue on Effect.
 *
 * @since 0.1.0
 */
import type * as ConfigError from "effect/ConfigError"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { DurableQueue } from "./DurableQueue.js"
import * as metrics from "./internal/jobRunner/metrics.js"
import type { ReaderError } from "./internal/jobRunner/protocol.js"
import * as internal from "./internal/jobRunner/runner.js"
import { JobCancelled, JobRunnerError, JobTimedOut, ProcessDied, ReaderSpawner } from "./internal/jobRunner/runner.js"
import type { OptionError } from "./OptionError.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = internal.TypeId

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * The runner's settings after defaults, code and environment are applied. Names and defaults follow QuasiQueue.
 *
 * | setting | env suffix | default |
 * |---|---|---|
 * | `numProcesses` | `NUM_PROCESSES` | 2 |
 * | `maxQueueSize` | `MAX_QUEUE_SIZE` | 300 |
 * | `lookupBlockSize` | `LOOKUP_BLOCK_SIZE` | 10 |
 * | `concurrentTasksPerProcess` | `CONCURRENT_TASKS_PER_PROCESS` | 4 |
 * | `maxJobsPerProcess` (0 = never recycle; see `Settings`) | `MAX_JOBS_PER_PROCESS` | 200 |
 * | `preventRequeuingTime` (0 = off) | `PREVENT_REQUEUING_TIME` (seconds) | 300 s |
 * | `emptyQueueSleepTime` | `EMPTY_QUEUE_SLEEP_TIME` (seconds) | 1 s |
 * | `emptyQueueMaxSleepTime` (backoff cap) | `EMPTY_QUEUE_MAX_SLEEP_TIME` (seconds) | 30 s |
 * | `fullQueueSleepTime` | `FULL_QUEUE_SLEEP_TIME` (seconds) | 5 s |
 * | `queueInteractionTimeout` (accepted, unused) | `QUEUE_INTERACTION_TIMEOUT` (seconds) | 0.01 s |
 * | `gracefulShutdownTimeout` | `GRACEFUL_SHUTDOWN_TIMEOUT` (seconds) | 30 s |
 * | `jobTimeout` (0 = none) | `JOB_TIMEOUT` (seconds) | 0 |
 * | `metricsPort` (0 = off) | `METRICS_PORT` | 0 |
 * | `metricsHost` (the address the endpoint binds) | `METRICS_HOST` | `"127.0.0.1"` |
 * | `workerMode` | `WORKER_MODE` | `"process"` |
 * | `stopWhenEmpty` | `STOP_WHEN_EMPTY` | `false` |
 *
 * @since 0.1.0
 * @category models
 */
export interface Settings {
  readonly numProcesses: number
  readonly maxQueueSize: number
  readonly lookupBlockSize: number
  readonly concurrentTasksPerProcess: number
  /**
   * A process retires after `maxJobsPerProcess` jobs once its replacement is ready; until then it keeps working, at
   * most `maxJobsPerProcess` jobs more (then it retires even if the replacement never starts). 0 = never recycle.
   */
  readonly maxJobsPerProcess: number
  readonly preventRequeuingTime: Duration.Duration
  readonly emptyQueueSleepTime: Duration.Duration
  readonly emptyQueueMaxSleepTime: Duration.Duration
  readonly fullQueueSleepTime: Duration.Duration
  readonly queueInteractionTimeout: Duration.Duration
  readonly gracefulShutdownTimeout: Duration.Duration
  /**
   * A job running longer fails with `JobTimeout`; an `Effect` reader is interrupted, and its process is replaced
   * (the replacement starts at once; the old one closes when its other jobs end, killed after 5 s if it cannot,
   * as a reader stuck in a synchronous loop). 0: no limit.
   */
  readonly jobTimeout: Duration.Duration
  readonly metricsPort: number
  /**
   * The address the metrics endpoint binds: loopback by default; `"0.0.0.0"` (or the container's address) so that a
   * Prometheus outside the container can scrape it.
   */
  readonly metricsHost: string
  readonly workerMode: "process" | "thread"
  readonly stopWhenEmpty: boolean
}

/**
 * Settings given in code. Each field overrides the default; see {@link Settings} for meanings and defaults.
 *
 * @since 0.1.0
 * @category models
 */
export interface SettingsInput {
  readonly numProcesses?: number | undefined
  readonly maxQueueSize?: number | undefined
  readonly lookupBlockSize?: number | undefined
  readonly concurrentTasksPerProcess?: number | undefined
  readonly maxJobsPerProcess?: number | undefined
  readonly preventRequeuingTime?: Duration.DurationInput | undefined
  readonly emptyQueueSleepTime?: Duration.DurationInput | undefined
  readonly emptyQueueMaxSleepTime?: Duration.DurationInput | undefined
  readonly fullQueueSleepTime?: Duration.DurationInput | undefined
  readonly queueInteractionTimeout?: Duration.DurationInput | undefined
  readonly gracefulShutdownTimeout?: Duration.DurationInput | undefined
  readonly jobTimeout?: Duration.DurationInput | undefined
  readonly metricsPort?: number | undefined
  readonly metricsHost?: string | undefined
  readonly workerMode?: "process" | "thread" | undefined
  readonly stopWhenEmpty?: boolean | undefined
}

/**
 * What a writer may return: a `Stream`, an (async) iterable such as an (async) generator, or an `Effect` or a
 * `Promise` of an iterable.
 *
 * @since 0.1.0
 * @category models
 */
export type WriterOutput<Item, R = never> =
  | Stream.Stream<Item, unknown, R>
  | AsyncIterable<Item>
  | Iterable<Item>
  | Effect.Effect<Iterable<Item>, unknown, R>
  | PromiseLike<Iterable<Item>>

/**
 * A failed job, as reported to `onError`: the reader failed (threw, rejected or failed), its process died while
 * the job ran, the job was killed after `gracefulShutdownTimeout`, it ran longer than `jobTimeout`, or the item could not be sent to a reader
 * (`Unsendable`: structured clone cannot carry it, e.g. it holds a function or a Symbol; give the runner an item
 * `Schema`).
 *
 * @since 0.1.0
 * @category models
 */
export interface JobFailure {
  /**
   * `"Cancelled"`: with a durable source, the DurableQueue job was cancelled (`cancel(id)`) or timed out (its
   * `timeout`) while a reader held it; an `Effect` reader is interrupted, a sync or async one runs on but its
   * outcome is ignored.
   */
  readonly reason: "ReaderFailed" | "ProcessDied" | "ShutdownTimeout" | "Unsendable" | "JobTimeout" | "Cancelled"
  readonly jobId: number
  readonly item: unknown
  readonly processId: number
  readonly message: string
}

/**
 * What a reader gets about its job, as its fourth argument.
 *
 * @since 0.2.0
 * @category models
 */
export interface ReaderJob {
  /** The job's id in this run (`JobFailure.jobId`). */
  readonly id: number
  /**
   * Reports the job's progress. With a durable `source` it is recorded as the DurableQueue job's progress
   * (`Job.progress`: plain JSON of at most 64 KiB, readable with `status(id)`; a value it refuses is logged in the
   * writer); without one it is ignored. Fire and forget: values reported in the same tick are sent as one, the
   * last; a value structured clone cannot carry is dropped with a warning on stderr.
   */
  readonly progress: (value: unknown) => void
}

/**
 * A runner definition. Build one with {@link make}; the module that defines it is loaded again in every reader
 * process, so keep top-level side effects behind {@link runMain} (which does nothing in a reader process).
 *
 * @since 0.1.0
 * @category models
 */
export interface JobRunner<Item, Ctx = never, WCtx = never, C = Context.Context<Ctx>> {
  readonly [TypeId]: TypeId
  readonly name: string
  readonly module: string | undefined
  readonly item: Schema.Schema<Item, unknown>
  readonly key: (item: Item) => string
  readonly writer: ((desired: number, settings: Settings) => WriterOutput<Item, WCtx>) | undefined
  readonly source:
    | ((settings: Settings) => Effect.Effect<DurableQueue<Item>, unknown, WCtx | Scope.Scope>)
    | undefined
  readonly reader: (item: Item, context: C, settings: Settings, job: ReaderJob) => unknown
  readonly context: Layer.Layer<Ctx, unknown> | ContextFunction<C> | Effect.Effect<C, unknown, Scope.Scope> | undefined
  readonly writerContext: Layer.Layer<WCtx, unknown> | undefined
  readonly settings: SettingsInput
  readonly onError: ((failure: JobFailure) => unknown) | undefined
}

/**
 * A reader context given as a plain function, as QuasiQueue takes it: called once in every reader process, it
 * returns the context (or a Promise of it), which the reader receives as is. A throw or a rejection fails the
 * process's start with `JobRunnerError` reason `"ContextFailed"` ("context failed: …").
 *
 * @since 0.1.0
 * @category models
 */
export type ContextFunction<C> = () => C | PromiseLike<C>

/**
 * @since 0.1.0
 */
export declare namespace JobRunner {
  /**
   * Any runner, whatever its item and context types.
   *
   * @since 0.1.0
   */
  export interface Any {
    readonly [TypeId]: TypeId
    readonly name: string
    readonly module: string | undefined
  }

  /**
   * @since 0.1.0
   */
  export interface Options<Item, I, Ctx, WCtx> {
    /** The runner's name; upper-cased, it prefixes the env variables (`thumbnails` → `THUMBNAILS_NUM_PROCESSES`). */
    readonly name: string
    /** `import.meta.url` of the module that defines the runner, so reader processes can load it. */
    readonly module?: string | undefined
    /** How an item crosses the process boundary. Default: as is (structured clone). */
    readonly item?: Schema.Schema<Item, I> | undefined
    /** The prevent-requeue key of an item. Default: primitives by value, others by `JSON.stringify`. */
    readonly key?: ((item: Item) => string) | undefined
    /**
     * Called when the queue is low, with how many items it would like (a hint). Give either a `writer` or a
     * `source`.
     */
    readonly writer?: ((desired: number, settings: Settings) => WriterOutput<Item, WCtx>) | undefined
    /**
     * Instead of a writer: a `DurableQueue` (Redis, PostgreSQL, SQLite) built in the writer process, with the
     * `writerContext` provided (put the `RedisClient` or `SqlClient` layer there). Every reader slot holds a
     * leased job, plus a prefetch of `min(lookupBlockSize, maxQueueSize)`; a job is acknowledged once its reader
     * succeeded, and a failed one (reader failure, process death) is handed back to the queue as a failed
     * attempt: retried, then a dead letter after the queue's `maxAttempts`. On shutdown, leased jobs not yet
     * started go back untried. With `stopWhenEmpty`, the runner stops when it holds no job and the queue's `size`
     * is 0 (checked every `emptyQueueSleepTime`). Several runners (on several machines) can share one queue.
     */
    readonly source?:
      | ((settings: Settings) => Effect.Effect<DurableQueue<Item>, unknown, WCtx | Scope.Scope>)
      | undefined
    /**
     * Runs one item in a reader process: sync, async, or an `Effect` (which gets the context provided).
     * Its result is ignored; a throw, rejection or failure is reported and the process goes on. `job` carries
     * the job's id and a `progress` function (see {@link ReaderJob}).
     */
    readonly reader: (item: Item, context: Context.Context<Ctx>, settings: Settings, job: ReaderJob) => unknown
    /**
     * Built once in every reader process; the reader receives the built `Context`, and a reader that returns an
     * `Effect` gets it provided. For a plain value instead, see {@link JobRunner.PlainOptions}. A failure fails
     * the process's start with `JobRunnerError` reason `"ContextFailed"`.
     */
    readonly context?: Layer.Layer<Ctx, unknown> | undefined
    /** Built once in the writer process and provided to the writer. */
    readonly writerContext?: Layer.Layer<WCtx, unknown> | undefined
    /** Settings in code; the environment overrides them, `run`'s overrides win over both. */
    readonly settings?: SettingsInput | undefined
    /** Called in the writer process for every failed job. */
    readonly onError?: ((failure: JobFailure) => unknown) | undefined
  }

  /**
   * Options whose reader context is a plain value: built once in every reader process by a function (sync or
   * async, as QuasiQueue's `context()`) or by a scoped `Effect` (its finalizers run when the process closes), and
   * handed to the reader as is.
   *
   * @since 0.1.0
   */
  export interface PlainOptions<Item, I, C, WCtx> extends Omit<Options<Item, I, never, WCtx>, "context" | "reader"> {
    readonly context: ContextFunction<C> | Effect.Effect<C, unknown, Scope.Scope>
    /** Runs one item in a reader process, with the value `context` built. */
    readonly reader: (item: Item, context: C, settings: Settings, job: ReaderJob) => unknown
  }
}

/**
 * Defines a runner.
 *
 * @example
 * ```ts
 * import * as JobRunner from "effect-workers/JobRunner"
 *
 * export const runner = JobRunner.make({
 *   name: "thumbnails",
 *   module: import.meta.url,
 *   writer: async function*(desired) {
 *     for (let i = 0; i < desired; i++) yield i
 *   },
 *   reader: (item: number) => console.log("processing", item)
 * })
 *
 * JobRunner.runMain(runner)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: {
  <Item, I = Item, Ctx = never, WCtx = never>(
    options: JobRunner.Options<Item, I, Ctx, WCtx>
  ): JobRunner<Item, Ctx, WCtx>
  <Item, C, I = Item, WCtx = never>(options: JobRunner.PlainOptions<Item, I, C, WCtx>): JobRunner<Item, never, WCtx, C>
} = internal.make

/**
 * @since 0.1.0
 * @category refinements
 */
export const isJobRunner: (u: unknown) => u is JobRunner<unknown, unknown, unknown, unknown> = internal.isJobRunner

/**
 * Why a runner could not run. The class the runner itself throws, so `instanceof JobRunner.JobRunnerError` holds
 * for every error it makes.
 *
 * @since 0.1.0
 * @category errors
 */
export { JobRunnerError }

/**
 * @since 0.1.0
 * @category refinements
 */
export const isJobRunnerError = (u: unknown): u is JobRunnerError => internal.isJobRunnerError(u)

/**
 * Whether `u` is a `ReaderError` (a reader's failure, as a job's result reports it).
 *
 * @since 0.1.0
 * @category refinements
 */
export const isReaderError = (u: unknown): u is ReaderError => internal.isReaderError(u)

/**
 * Counts at the end of a run.
 *
 * @since 0.1.0
 * @category models
 */
export interface Summary {
  readonly processed: number
  readonly failed: number
  readonly processesStarted: number
  readonly restarts: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RunOptions {
  /** Overrides both the definition's settings and the environment. */
  readonly settings?: SettingsInput | undefined
}

/**
 * Resolves the settings: seed defaults, then the definition's, then the environment (`NAME_SETTING`), then
 * `overrides`. A bad env value fails with a `ConfigError` naming the variable; a bad code value with `OptionError`.
 *
 * @since 0.1.0
 * @category settings
 */
export const settings: (
  runner: JobRunner.Any,
  overrides?: SettingsInput | undefined
) => Effect.Effect<Settings, ConfigError.ConfigError | OptionError> = internal.resolveSettings

/**
 * Runs the runner until it is interrupted (SIGTERM / SIGINT under `runMain`), or, with `stopWhenEmpty`, until the
 * writer has nothing more and every item is done. Interruption is graceful: the writer stops, running items finish
 * (up to `gracefulShutdownTimeout`, then the reader processes are killed), and the run ends as soon as they are done.
 * Reader processes are spawned unless a `ReaderSpawner` (such as {@link layerTest}) is provided.
 *
 * @since 0.1.0
 * @category running
 */
export const run: <Item, Ctx, WCtx, C>(
  runner: JobRunner<Item, Ctx, WCtx, C>,
  options?: RunOptions | undefined
) => Effect.Effect<Summary, JobRunnerError | ConfigError.ConfigError | OptionError> = internal.run

/**
 * Runs the runner as the program's main (with `NodeRuntime.runMain`: SIGTERM and SIGINT stop it gracefully, exit
 * code 0 for a clean stop). Does nothing when the module is being loaded inside a reader process.
 *
 * @since 0.1.0
 * @category running
 */
export const runMain: <Item, Ctx, WCtx, C>(
  runner: JobRunner<Item, Ctx, WCtx, C>,
  options?: RunOptions | undefined
) => void = internal.runMain

/**
 * `true` inside a reader process or thread spawned by a runner.
 *
 * @since 0.1.0
 * @category running
 */
export const isReaderProcess: () => boolean = internal.isReaderProcess

/**
 * How reader processes are started. The default spawns OS processes (or worker threads with
 * `workerMode: "thread"`); {@link layerTest} runs readers in the current process, for tests.
 *
 * @since 0.1.0
 * @category services
 */
export { ReaderSpawner }

/**
 * What a `ReaderSpawner` works with: the request for one reader process, the handle it returns, the jobs it is
 * handed and how each one ends (`ReaderError` from the reader, `ProcessDied` when its process died).
 *
 * @since 0.1.0
 * @category services
 */
export type { Job, JobDone, ReaderHandle, SpawnRequest } from "./internal/jobRunner/spawner.js"

/**
 * How a job ends when it does not end in its reader: its reader process died (`ProcessDied`; `unstarted: true` when
 * the job was still waiting in that process's backlog and goes to another process), it ran longer than
 * `jobTimeout` (`JobTimedOut`), or its DurableQueue job was cancelled while a reader held it (`JobCancelled`). A
 * `ReaderSpawner` reports them through `JobDone`; each one's identifier is `effect-workers/JobRunner/<Error>`.
 *
 * @since 0.1.0
 * @category errors
 */
export { JobCancelled, JobTimedOut, ProcessDied }

/**
 * Whether `u` is a `ProcessDied` (also one made by another copy of effect-workers in the same program).
 *
 * @since 0.2.0
 * @category refinements
 */
export const isProcessDied = (u: unknown): u is ProcessDied => internal.isProcessDied(u)

/**
 * Whether `u` is a `JobTimedOut` (also one made by another copy of effect-workers in the same program).
 *
 * @since 0.2.0
 * @category refinements
 */
export const isJobTimedOut = (u: unknown): u is JobTimedOut => internal.isJobTimedOut(u)

/**
 * Whether `u` is a `JobCancelled` (also one made by another copy of effect-workers in the same program).
 *
 * @since 0.2.0
 * @category refinements
 */
export const isJobCancelled = (u: unknown): u is JobCancelled => internal.isJobCancelled(u)

/**
 * A runner of any item, context and error types, as a `ReaderSpawner` receives it in a `SpawnRequest`.
 *
 * @since 0.1.0
 * @category models
 */
export type { AnyRunner } from "./internal/jobRunner/definition.js"

/**
 * @since 0.1.0
 * @category errors
 */
export type { ReaderError } from "./internal/jobRunner/protocol.js"

/**
 * Runs every "reader process" inside the current process: the context layer is built once per simulated process,
 * items still go through the item `Schema`, recycling and metrics behave as with real processes. For tests of a
 * runner without spawning, and with `TestClock`.
 *
 * @since 0.1.0
 * @category testing
 */
export const layerTest: Layer.Layer<ReaderSpawner> = internal.layerInline

/**
 * The former name of `layerTest`.
 *
 * @deprecated Use `JobRunner.layerTest`: every module's test layer is named `layerTest`.
 * @since 0.1.0
 * @category testing
 */
export const layerInline: Layer.Layer<ReaderSpawner> = internal.layerInline

/**
 * Calls the writer once with `desired` and collects what it yields, in-process, with its `writerContext`.
 *
 * @since 0.1.0
 * @category testing
 */
export const testWriter: <Item, Ctx, WCtx, C>(
  runner: JobRunner<Item, Ctx, WCtx, C>,
  desired: number,
  settings?: SettingsInput | undefined
) => Effect.Effect<Array<Item>, unknown> = internal.testWriter

/**
 * Runs the reader once on `item`, in-process, with the context built for the call; fails with the reader's failure
 * message.
 *
 * @since 0.1.0
 * @category testing
 */
export const testReader: <Item, Ctx, WCtx, C>(
  runner: JobRunner<Item, Ctx, WCtx, C>,
  item: Item,
  settings?: SettingsInput | undefined
) => Effect.Effect<void, JobRunnerError> = internal.testReader

/**
 * The runner's metrics, tagged `runner=<name>`: queue depth, in flight, processed, failed, processes, restarts.
 *
 * @since 0.1.0
 * @category metrics
 */
export const Metrics = metrics.Metrics

/**
 * Renders the current metrics in the Prometheus text format (what the `metricsPort` endpoint serves).
 *
 * @since 0.1.0
 * @category metrics
 */
export const prometheusText: Effect.Effect<string> = metrics.prometheusText
