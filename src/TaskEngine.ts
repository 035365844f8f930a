/**
 * A task engine: a fixed pool of workers applies one handler to many inputs, with retries (a `Schedule` for the
 * backoff), an optional `RateLimiter` consulted before every attempt, per-attempt timeouts and bounded buffers.
 * Process a batch with `applyToAll` (results in input order) or `applyToEach` (a `Stream` in completion order),
 * or feed it by hand with `add`, `results`, `end` and `awaitEnd`. Every task yields a `TaskResult` whose `exit`
 * holds the value, the typed error or the defect: the handler's failures never escape as failures of the call,
 * and never kill a worker.
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { DurableQueue } from "./DurableQueue.js"
import { TaskEngineMetrics } from "./internal/metrics.js"
import * as internal from "./internal/taskEngine.js"
import * as internalError from "./internal/taskEngineError.js"
import { TaskEngineError } from "./internal/taskEngineError.js"
import type { OptionError } from "./OptionError.js"
import type { RateLimiter } from "./RateLimiter.js"
import type { TaskResult } from "./TaskResult.js"

/**
 * A typed failure of the engine: `TaskTimeout` (one attempt ran longer than `taskTimeout`; it lands in the task's
 * `exit` and is retryable) or `StartTimeout` (`awaitEnd` / `results` saw no task for `startTimeout`; the engine
 * stays usable).
 *
 * @since 0.1.0
 * @category errors
 */
export { TaskEngineError }

/**
 * @since 0.1.0
 * @category refinements
 */
export const isTaskEngineError = (u: unknown): u is TaskEngineError => internalError.isTaskEngineError(u)

/**
 * @since 0.1.0
 * @category models
 */
export interface TaskEngine<in out I, out A, out E = never> {
  /**
   * Runs every input and returns all results in input order, once all have finished. Interrupting the call stops
   * its tasks: queued ones leave the queue at once (they stop counting in `stats.queued` and free their room in a
   * bounded `inputCapacity`), running ones are interrupted; the engine stays usable. `options` (a priority and a
   * timeout for every task of the batch) are validated: a bad one fails the call with an `OptionError`.
   */
  readonly applyToAll: {
    (inputs: Iterable<I>): Effect.Effect<Array<TaskResult<I, A, E | TaskEngineError>>>
    (
      inputs: Iterable<I>,
      options: TaskEngine.BatchOptions
    ): Effect.Effect<Array<TaskResult<I, A, E | TaskEngineError>>, OptionError>
  }
  /**
   * Runs one input and returns its result; `options` give its id, priority and timeout (validated: a bad one is
   * an `OptionError`). Interrupting the call stops the task (a queued task leaves the queue at once).
   */
  readonly apply: {
    (input: I): Effect.Effect<TaskResult<I, A, E | TaskEngineError>>
    (input: I, options: TaskEngine.TaskOptions): Effect.Effect<TaskResult<I, A, E | TaskEngineError>, OptionError>
  }
  /**
   * Runs the engine on a `DurableQueue` (Redis, PostgreSQL, SQLite or memory) until interrupted: each job becomes
   * a task whose id is the job's id, with the engine's retries, rate limiter and timeout; the job is acknowledged
   * when its task succeeds. A task that fails for good (after the engine's retries) is one failed attempt of the
   * job: the queue puts it back, and after its `maxAttempts` it becomes a dead letter with the last error.
   * Interruption is graceful: no new job is taken and running ones finish and are acknowledged (see
   * `DurableQueue.run`). Close the engine's scope after this fiber, not before, or running jobs are put back.
   */
  readonly runDurable: (
    queue: DurableQueue<I>,
    options?: TaskEngine.DurableOptions | undefined
  ) => Effect.Effect<never, OptionError>
  /**
   * Runs every input and emits results as they finish. Inputs (an `Iterable` or a `Stream`) are read only as fast
   * as results are consumed; ending the stream early stops the remaining tasks. With `options`, a bad option fails
   * the stream with an `OptionError`.
   */
  readonly applyToEach: {
    <E2 = never, R2 = never>(
      inputs: Iterable<I> | Stream.Stream<I, E2, R2>
    ): Stream.Stream<TaskResult<I, A, E | TaskEngineError>, E2, R2>
    <E2 = never, R2 = never>(
      inputs: Iterable<I> | Stream.Stream<I, E2, R2>,
      options: TaskEngine.BatchOptions
    ): Stream.Stream<TaskResult<I, A, E | TaskEngineError>, E2 | OptionError, R2>
  }
  /**
   * Manual flow: queues one input (suspending while the input buffer is full) and returns its id. The id is
   * `options.id` if given, or one made by the engine, unique within it. Ids made by the engine are decimal
   * numbers ("1", "2", …): give your own ids another form ("user:42") so the two never meet.
   */
  readonly add: {
    (input: I): Effect.Effect<string>
    (input: I, options: TaskEngine.TaskOptions): Effect.Effect<string, OptionError>
  }
  /**
   * Manual flow: results of added tasks in completion order. Ends when the current round ends (after `end` /
   * `awaitEnd`, once its tasks have finished). Fails with `StartTimeout` as `awaitEnd` does.
   */
  readonly results: Stream.Stream<TaskResult<I, A, E | TaskEngineError>, TaskEngineError>
  /** Manual flow: no more tasks in this round; the next `add` opens a new one. */
  readonly end: Effect.Effect<void>
  /**
   * Manual flow: ends the round, waits for all its tasks and returns the results nobody took through `results`.
   * Returns at once if everything has already finished. With a `startTimeout`, fails with `StartTimeout` when the
   * round has had no task for that long; the engine stays usable.
   */
  readonly awaitEnd: Effect.Effect<Array<TaskResult<I, A, E | TaskEngineError>>, TaskEngineError>
  /**
   * Workers start no new task until `resume` (running ones finish; calls may still queue tasks). As p-queue's
   * `pause`.
   */
  readonly pause: Effect.Effect<void>
  /** Undoes `pause`: waiting workers take queued tasks at once. */
  readonly resume: Effect.Effect<void>
  /**
   * Changes the number of workers at run time (an integer from 1 to 1,000,000, else an `OptionError`): new ones
   * start at once; when it goes down, the workers above it finish their current task and stop. As p-queue's
   * `concurrency` setter.
   */
  readonly setWorkers: (workers: number) => Effect.Effect<void, OptionError>
  /**
   * Waits until nothing is queued, running or waiting for a retry (p-queue's `onIdle`); at once if so already.
   * Interrupted when the engine closes.
   */
  readonly awaitIdle: Effect.Effect<void>
  /**
   * Waits until fewer than `size` tasks are queued (p-queue's `onSizeLessThan`; `awaitSizeBelow(1)` is
   * `onEmpty`). `size` is an integer from 1 and up, else an `OptionError`.
   */
  readonly awaitSizeBelow: (size: number) => Effect.Effect<void, OptionError>
  /** Counts, read at the moment. */
  readonly stats: Effect.Effect<TaskEngine.Stats>
}

/**
 * @since 0.1.0
 */
export declare namespace TaskEngine {
  /**
   * What the handler learns about the task it runs.
   *
   * @since 0.1.0
   * @category models
   * @deprecated Use `TaskEngine.TaskInfo`: Options and Stats types live at the top of their module.
   */
  export interface TaskInfo {
    readonly id: string
    /** 1 for the first attempt. */
    readonly attempt: number
    /** The worker running it, `0` to `workers - 1`. */
    readonly workerId: number
    /**
     * Reports the task's progress (a small JSON value). Under `runDurable` it is the job's progress: readable by
     * id from any process with the queue's `status`, and a "Progress" event; a value that is not plain JSON, or a
     * store that is away, is logged and never fails the task (progress is advice, not the work). Elsewhere it does
     * nothing. (Since 0.2.0.)
     */
    readonly progress: (value: unknown) => Effect.Effect<void>
  }

  /**
   * @since 0.1.0
   * @category models
   * @deprecated Use `TaskEngine.RetryOptions`: Options and Stats types live at the top of their module.
   */
  export interface RetryOptions<E> {
    /**
     * Extra attempts after the first (so `times + 1` in all); an integer from 0 and up, or `Infinity`. Default: 3,
     * or `Infinity` when a `schedule` is given (the schedule decides).
     */
    readonly times?: number | undefined
    /** Retry only errors for which this holds (aqute's `specific_errors_to_retry`). */
    readonly while?: ((error: E | TaskEngineError) => boolean) | undefined
    /** Never retry errors for which this holds (aqute's `errors_to_not_retry`); wins over `while`. */
    readonly until?: ((error: E | TaskEngineError) => boolean) | undefined
    /** Backoff between attempts, fed the error; when it ends, so do the retries. Default: retry at once. */
    readonly schedule?: Schedule.Schedule<unknown, E | TaskEngineError> | undefined
  }

  /**
   * Options of one batch (`applyToAll`, `applyToEach`), for each of its tasks.
   *
   * @since 0.1.0
   * @category models
   * @deprecated Use `TaskEngine.BatchOptions`: Options and Stats types live at the top of their module.
   */
  export interface BatchOptions {
    /**
     * Higher runs first; equal priorities run in the order they were queued (p-queue's `priority`). A finite
     * number; default 0. Offers waiting for room in a full bounded queue keep their arrival order.
     */
    readonly priority?: number | undefined
    /**
     * Longest one attempt may run, instead of the engine's `taskTimeout`; `Infinity` lifts the engine's limit.
     */
    readonly timeout?: Duration.DurationInput | undefined
  }

  /**
   * Options of one task (`apply`, `add`).
   *
   * @since 0.1.0
   * @category models
   * @deprecated Use `TaskEngine.TaskOptions`: Options and Stats types live at the top of their module.
   */
  export interface TaskOptions extends BatchOptions {
    /** The task's id (a string); default: one made by the engine. */
    readonly id?: string | undefined
  }

  /**
   * @since 0.1.0
   * @category models
   * @deprecated Use `TaskEngine.Options`: Options and Stats types live at the top of their module.
   */
  export interface Options<I, A, E, R> {
    /**
     * Runs one attempt of one task. Its failures and defects become the task's `exit`. An `async` function (or one
     * returning a Promise) is accepted by the constructors' second signature: see `AsyncOptions`.
     */
    readonly handler: (input: I, task: TaskInfo) => Effect.Effect<A, E, R>
    /** Number of workers (tasks running at once): an integer from 1 to 1,000,000. Change it later with `setWorkers`. */
    readonly workers: number
    /**
     * Retries of typed failures (defects and interruptions are final). Default: none. A task waiting out its
     * backoff holds no worker; every attempt takes a rate-limit permit.
     */
    readonly retry?: RetryOptions<E> | undefined
    /**
     * Consulted before every attempt, with the worker and task ids. Default: `RateLimiter.unlimited`. If it fails
     * (a custom limiter's `acquire` may), the attempt fails with `TaskEngineError` reason `RateLimiter` (retryable).
     */
    readonly rateLimiter?: RateLimiter<unknown> | undefined
    /**
     * Tasks queued and not yet taken by a worker; `add` suspends when full (tasks of a cancelled call never hold
     * room). Default: `Infinity`.
     */
    readonly inputCapacity?: number | undefined
    /**
     * Results of the manual flow not yet taken; when full, workers pause. Also sets how far `applyToEach` reads
     * ahead (`workers + resultCapacity` tasks). Default: `Infinity` (read-ahead `workers + max(8 × workers, 4096)`).
     */
    readonly resultCapacity?: number | undefined
    /** How long `awaitEnd` / `results` wait for a first task before failing with `StartTimeout`. Default: forever. */
    readonly startTimeout?: Duration.DurationInput | undefined
    /** Longest one attempt may run; then it fails with `TaskTimeout` (retryable). Default: no limit. */
    readonly taskTimeout?: Duration.DurationInput | undefined
    /**
     * The title of the engine's `Progress` session. The engine reports to `Progress` (tasks known and done, queue
     * size, what each worker runs) whenever a `Progress` service is in its context. Default: "TaskEngine".
     */
    readonly title?: string | undefined
  }

  /**
   * The options of an engine whose handler is a plain function: an `async` function (or one returning a
   * Promise), or a synchronous one returning its value. A rejected Promise is the task's typed failure
   * `Cause.UnknownException` (the rejection reason is its `cause`), retryable like any typed failure; a
   * synchronous throw is a defect, as everywhere in Effect.
   *
   * @since 0.1.0
   * @category models
   * @deprecated Use `TaskEngine.AsyncOptions`: Options and Stats types live at the top of their module.
   */
  export interface AsyncOptions<I, A> extends Omit<Options<I, A, Cause.UnknownException, never>, "handler"> {
    readonly handler: (input: I, task: TaskInfo) => PromiseLike<A> | A
  }

  /**
   * @since 0.1.0
   * @category models
   * @deprecated Use `TaskEngine.DurableOptions`: Options and Stats types live at the top of their module.
   */
  export interface DurableOptions {
    /**
     * Jobs leased beyond those running, so a worker finding its next job never waits for the store. Default:
     * `workers`. Leased jobs keep their lease refreshed while they wait.
     */
    readonly prefetch?: number | undefined
    /** How long a shutdown waits for running jobs before leaving them to their lease. Default: 30 seconds. */
    readonly shutdownTimeout?: Duration.DurationInput | undefined
  }

  /**
   * @since 0.1.0
   * @category models
   * @deprecated Use `TaskEngine.Stats`: Options and Stats types live at the top of their module.
   */
  export interface Stats {
    readonly workers: number
    /** Attempts running now (including those waiting for a rate-limit permit). */
    readonly busy: number
    /** Tasks in the input queue. */
    readonly queued: number
    /** Tasks waiting out a retry backoff. */
    readonly waitingRetry: number
    readonly succeeded: number
    /** Tasks whose final attempt failed (typed error, defect or interruption). */
    readonly failed: number
    /** Retries started. */
    readonly retried: number
    /** Whether `pause` holds the workers. */
    readonly paused: boolean
  }
}

/**
 * See the `TaskEngine.TaskEngine.TaskInfo` it names (the namespaced name is deprecated).
 *
 * @since 0.1.0
 * @category models
 */
export type TaskInfo = TaskEngine.TaskInfo

/**
 * See the `TaskEngine.TaskEngine.RetryOptions` it names (the namespaced name is deprecated).
 *
 * @since 0.1.0
 * @category models
 */
export type RetryOptions<E> = TaskEngine.RetryOptions<E>

/**
 * See the `TaskEngine.TaskEngine.BatchOptions` it names (the namespaced name is deprecated).
 *
 * @since 0.1.0
 * @category models
 */
export type BatchOptions = TaskEngine.BatchOptions

/**
 * See the `TaskEngine.TaskEngine.TaskOptions` it names (the namespaced name is deprecated).
 *
 * @since 0.1.0
 * @category models
 */
export type TaskOptions = TaskEngine.TaskOptions

/**
 * See the `TaskEngine.TaskEngine.Options` it names (the namespaced name is deprecated).
 *
 * @since 0.1.0
 * @category models
 */
export type Options<I, A, E, R> = TaskEngine.Options<I, A, E, R>

/**
 * See the `TaskEngine.TaskEngine.AsyncOptions` it names (the namespaced name is deprecated).
 *
 * @since 0.1.0
 * @category models
 */
export type AsyncOptions<I, A> = TaskEngine.AsyncOptions<I, A>

/**
 * See the `TaskEngine.TaskEngine.DurableOptions` it names (the namespaced name is deprecated).
 *
 * @since 0.1.0
 * @category models
 */
export type DurableOptions = TaskEngine.DurableOptions

/**
 * See the `TaskEngine.TaskEngine.Stats` it names (the namespaced name is deprecated).
 *
 * @since 0.1.0
 * @category models
 */
export type Stats = TaskEngine.Stats

/**
 * Starts an engine whose workers live until the scope closes. Closing the scope interrupts running tasks and
 * settles every caller still waiting (they are interrupted).
 *
 * @example
 * ```ts
 * import { Effect, Schedule } from "effect"
 * import { RateLimiter, TaskEngine } from "effect-workers"
 *
 * const program = Effect.gen(function*() {
 *   const engine = yield* TaskEngine.make({
 *     handler: (n: number) => Effect.succeed(n * 2),
 *     workers: 4,
 *     retry: { times: 2, schedule: Schedule.exponential("100 millis") },
 *     rateLimiter: yield* RateLimiter.slidingWindow({ limit: 10, interval: "1 second" })
 *   })
 *   const results = yield* engine.applyToAll([1, 2, 3])
 *   return results.map((r) => r.exit)
 * })
 *
 * Effect.runPromise(Effect.scoped(program))
 * ```
 *
 * The handler may also be an `async` function (second signature): a rejected Promise is the task's typed failure
 * `Cause.UnknownException`, and the engine's error type says so.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TaskEngine } from "effect-workers"
 *
 * const program = Effect.gen(function*() {
 *   // TaskEngine<string, number, Cause.UnknownException>
 *   const engine = yield* TaskEngine.make({
 *     handler: async (url: string) => (await fetch(url)).status,
 *     workers: 4
 *   })
 *   return yield* engine.applyToAll(["http://127.0.0.1:8080/health"])
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: {
  <I, A, E = never, R = never>(
    options: TaskEngine.Options<I, A, E, R>
  ): Effect.Effect<TaskEngine<I, A, E>, OptionError, Scope.Scope | R>
  <I, A>(options: TaskEngine.AsyncOptions<I, A>): Effect.Effect<
    TaskEngine<I, A, Cause.UnknownException>,
    OptionError,
    Scope.Scope
  >
} = internal.make as never

/**
 * A layer providing an engine under `tag`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: {
  <Id, I, A, E, R>(
    tag: Context.Tag<Id, TaskEngine<I, A, E>>,
    options: TaskEngine.Options<I, A, E, R>
  ): Layer.Layer<Id, OptionError, R>
  <Id, I, A>(
    tag: Context.Tag<Id, TaskEngine<I, A, Cause.UnknownException>>,
    options: TaskEngine.AsyncOptions<I, A>
  ): Layer.Layer<Id, OptionError>
} = internal.layer as never

/**
 * One batch with a throwaway engine: all results in input order.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TaskEngine } from "effect-workers"
 *
 * const results = TaskEngine.applyToAll([1, 2, 3], (n) => Effect.succeed(n * 2), { workers: 2 })
 * ```
 *
 * @since 0.1.0
 * @category conveniences
 */
export const applyToAll: {
  <I, A, E, R>(
    inputs: Iterable<I>,
    handler: (input: I, task: TaskEngine.TaskInfo) => Effect.Effect<A, E, R>,
    options: Omit<TaskEngine.Options<I, A, E, R>, "handler">
  ): Effect.Effect<Array<TaskResult<I, A, E | TaskEngineError>>, OptionError, R>
  <I, A>(
    inputs: Iterable<I>,
    handler: TaskEngine.AsyncOptions<I, A>["handler"],
    options: Omit<TaskEngine.AsyncOptions<I, A>, "handler">
  ): Effect.Effect<Array<TaskResult<I, A, Cause.UnknownException | TaskEngineError>>, OptionError>
} = internal.applyToAll as never

/**
 * One stream of results in completion order with a throwaway engine, which lives as long as the stream.
 *
 * @since 0.1.0
 * @category conveniences
 */
export const applyToEach: {
  <I, A, E, R, E2 = never, R2 = never>(
    inputs: Iterable<I> | Stream.Stream<I, E2, R2>,
    handler: (input: I, task: TaskEngine.TaskInfo) => Effect.Effect<A, E, R>,
    options: Omit<TaskEngine.Options<I, A, E, R>, "handler">
  ): Stream.Stream<TaskResult<I, A, E | TaskEngineError>, OptionError | E2, R | R2>
  <I, A, E2 = never, R2 = never>(
    inputs: Iterable<I> | Stream.Stream<I, E2, R2>,
    handler: TaskEngine.AsyncOptions<I, A>["handler"],
    options: Omit<TaskEngine.AsyncOptions<I, A>, "handler">
  ): Stream.Stream<TaskResult<I, A, Cause.UnknownException | TaskEngineError>, OptionError | E2, R2>
} = internal.applyToEach as never

/**
 * Runs a throwaway engine on a `DurableQueue` until interrupted (see `TaskEngine.runDurable`): jobs become tasks
 * with the engine's retries, rate limiter and timeout, and are acknowledged when they succeed.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { DurableQueue, TaskEngine } from "effect-workers"
 *
 * const program = Effect.gen(function*() {
 *   const queue = yield* DurableQueue.memory({ name: "emails", schema: Schema.String })
 *   yield* queue.offer("a@example.com", { id: "welcome:42" })
 *   yield* TaskEngine.runDurable(queue, (to) => Effect.log(`sending to ${to}`), { workers: 4 }).pipe(
 *     Effect.timeout("1 second"),
 *     Effect.ignore
 *   )
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category conveniences
 */
export const runDurable: {
  <I, A, E, R>(
    queue: DurableQueue<I>,
    handler: (input: I, task: TaskEngine.TaskInfo) => Effect.Effect<A, E, R>,
    options: Omit<TaskEngine.Options<I, A, E, R>, "handler"> & TaskEngine.DurableOptions
  ): Effect.Effect<never, OptionError, R>
  <I, A>(
    queue: DurableQueue<I>,
    handler: TaskEngine.AsyncOptions<I, A>["handler"],
    options: Omit<TaskEngine.AsyncOptions<I, A>, "handler"> & TaskEngine.DurableOptions
  ): Effect.Effect<never, OptionError>
} = internal.runDurable as never

/**
 * The module's Effect `Metric`s, labelled `engine=<title>`: queued and running gauges, completed, failed, retries,
 * rate-limit waits, and the attempt-time histogram. Names follow `effect_workers_<module>_<what>` (README, "Tracing
 * and metrics"); read them with `Metric.value(Metric.tagged(Metrics.x, label, value))` or export them with
 * `@effect/opentelemetry`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const Metrics = TaskEngineMetrics
