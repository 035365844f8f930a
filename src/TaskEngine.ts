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
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as internal from "./internal/taskEngine.js"
import * as internalError from "./internal/taskEngineError.js"
import { TaskEngineError } from "./internal/taskEngineError.js"
import type { DurableQueue } from "./DurableQueue.js"
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
export const isTaskEngineError = (u: unknown): u is TaskEngineError => u instanceof internalError.TaskEngineError

/**
 * @since 0.1.0
 * @category models
 */
export interface TaskEngine<in out I, out A, out E = never> {
  /**
   * Runs every input and returns all results in input order, once all have finished. Interrupting the call stops
   * its tasks (queued ones are dropped, running ones interrupted); the engine stays usable.
   */
  readonly applyToAll: (inputs: Iterable<I>) => Effect.Effect<Array<TaskResult<I, A, E | TaskEngineError>>>
  /**
   * Runs one input (with `options.id` as its task id if given) and returns its result. Interrupting the call
   * stops the task.
   */
  readonly apply: (
    input: I,
    options?: { readonly id?: string | undefined }
  ) => Effect.Effect<TaskResult<I, A, E | TaskEngineError>>
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
   * as results are consumed; ending the stream early stops the remaining tasks.
   */
  readonly applyToEach: <E2 = never, R2 = never>(
    inputs: Iterable<I> | Stream.Stream<I, E2, R2>
  ) => Stream.Stream<TaskResult<I, A, E | TaskEngineError>, E2, R2>
  /**
   * Manual flow: queues one input (suspending while the input buffer is full) and returns its id. The id is
   * `options.id` if given, or one made by the engine, unique within it. Ids made by the engine are decimal
   * numbers ("1", "2", …): give your own ids another form ("user:42") so the two never meet.
   */
  readonly add: (input: I, options?: { readonly id?: string | undefined }) => Effect.Effect<string>
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
   */
  export interface TaskInfo {
    readonly id: string
    /** 1 for the first attempt. */
    readonly attempt: number
    /** The worker running it, `0` to `workers - 1`. */
    readonly workerId: number
  }

  /**
   * @since 0.1.0
   * @category models
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
   * @since 0.1.0
   * @category models
   */
  export interface Options<I, A, E, R> {
    /** Runs one attempt of one task. Its failures and defects become the task's `exit`. */
    readonly handler: (input: I, task: TaskInfo) => Effect.Effect<A, E, R>
    /** Number of workers (tasks running at once): an integer from 1 and up. */
    readonly workers: number
    /**
     * Retries of typed failures (defects and interruptions are final). Default: none. A task waiting out its
     * backoff holds no worker; every attempt takes a rate-limit permit.
     */
    readonly retry?: RetryOptions<E> | undefined
    /** Consulted before every attempt, with the worker and task ids. Default: `RateLimiter.unlimited`. */
    readonly rateLimiter?: RateLimiter | undefined
    /** Tasks queued and not yet taken by a worker; `add` suspends when full. Default: `Infinity`. */
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
   * @since 0.1.0
   * @category models
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
  }
}

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
 * @since 0.1.0
 * @category constructors
 */
export const make: <I, A, E = never, R = never>(
  options: TaskEngine.Options<I, A, E, R>
) => Effect.Effect<TaskEngine<I, A, E>, OptionError, Scope.Scope | R> = internal.make

/**
 * A layer providing an engine under `tag`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: <Id, I, A, E, R>(
  tag: Context.Tag<Id, TaskEngine<I, A, E>>,
  options: TaskEngine.Options<I, A, E, R>
) => Layer.Layer<Id, OptionError, R> = internal.layer

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
export const applyToAll: <I, A, E, R>(
  inputs: Iterable<I>,
  handler: (input: I, task: TaskEngine.TaskInfo) => Effect.Effect<A, E, R>,
  options: Omit<TaskEngine.Options<I, A, E, R>, "handler">
) => Effect.Effect<Array<TaskResult<I, A, E | TaskEngineError>>, OptionError, R> = internal.applyToAll

/**
 * One stream of results in completion order with a throwaway engine, which lives as long as the stream.
 *
 * @since 0.1.0
 * @category conveniences
 */
export const applyToEach: <I, A, E, R, E2 = never, R2 = never>(
  inputs: Iterable<I> | Stream.Stream<I, E2, R2>,
  handler: (input: I, task: TaskEngine.TaskInfo) => Effect.Effect<A, E, R>,
  options: Omit<TaskEngine.Options<I, A, E, R>, "handler">
) => Stream.Stream<TaskResult<I, A, E | TaskEngineError>, OptionError | E2, R | R2> = internal.applyToEach

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
export const runDurable: <I, A, E, R>(
  queue: DurableQueue<I>,
  handler: (input: I, task: TaskEngine.TaskInfo) => Effect.Effect<A, E, R>,
  options: Omit<TaskEngine.Options<I, A, E, R>, "handler"> & TaskEngine.DurableOptions
) => Effect.Effect<never, OptionError, R> = internal.runDurable
