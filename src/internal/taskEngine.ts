/**
 * The task engine, assembled from its parts in `./taskEngine/`: the input queue (`queue.ts`: priority lanes, a
 * cancelled call's tasks leave it at once), the workers (`worker.ts`: long-lived fibers running the handler inline),
 * the retry policy (`retry.ts`), the calls that own tasks (`calls.ts`), the manual flow's rounds (`rounds.ts`) and
 * the shared state with its one `shutdown` (`engine.ts`). This file validates options, wires the parts, reports to
 * `Progress` and binds the public methods.
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as DurableQueue from "../DurableQueue.js"
import type { OptionError } from "../OptionError.js"
import type * as TaskEngine from "../TaskEngine.js"
import { Progress } from "./progress.js"
import { deltaReporter } from "./progressSampler.js"
import { unlimited } from "./rateLimiter.js"
import * as calls from "./taskEngine/calls.js"
import { EngineCore } from "./taskEngine/engine.js"
import { batchSettings, check, checkCount, checkIterable, engineSettings, taskSettings } from "./taskEngine/options.js"
import { TaskQueue } from "./taskEngine/queue.js"
import { makeBuffer, Rounds } from "./taskEngine/rounds.js"
import type { Result, Task } from "./taskEngine/task.js"

type Options<I, A, E, R> = TaskEngine.TaskEngine.Options<I, A, E, R>

/** @internal */
export const make = <I, A, E, R>(
  options: Options<I, A, E, R>
): Effect.Effect<TaskEngine.TaskEngine<I, A, E>, OptionError, Scope.Scope | R> =>
  Effect.gen(function*() {
    const settings = yield* engineSettings<E>(options as unknown as Options<never, unknown, E, unknown>)
    const { workers, resultCapacity } = settings

    const fibers = yield* FiberSet.make<unknown, unknown>()
    const fork = yield* FiberSet.runtime(fibers)<R>()
    const core = new EngineCore<I, A, E>(
      new TaskQueue<Task<I>>(settings.inputCapacity),
      settings.handler as (input: I, task: TaskEngine.TaskEngine.TaskInfo) => unknown,
      settings.retry,
      settings.rateLimiter,
      unlimited,
      settings.taskTimeout,
      fibers,
      (effect) => fork(effect),
      workers,
      settings.title
    )
    const clock = yield* Effect.clock
    const rounds = new Rounds<I, A, E>(
      core,
      yield* makeBuffer<I, A, E>(),
      resultCapacity === Infinity ? undefined : yield* Effect.makeSemaphore(resultCapacity),
      settings.startTimeout,
      () => clock.unsafeCurrentTimeMillis()
    )
    yield* core.pool.start()

    // Progress, when a `Progress` service is provided: sampled every 100 ms (and once at the end) from the
    // counters the workers keep anyway, so the hot path pays nothing for it.
    const progress = yield* Effect.serviceOption(Progress)
    let finalReport: Effect.Effect<void> = Effect.void
    if (Option.isSome(progress)) {
      const session = yield* progress.value.session({ title: settings.title, workers })
      const c = core.counters
      finalReport = deltaReporter(session, () => ({
        total: c.succeeded + c.failed + c.busy + c.waitingRetry + core.input.size,
        completed: c.succeeded + c.failed,
        queueSize: core.input.size,
        rows: core.pool.rows()
      }))
      yield* finalReport.pipe(
        Effect.zipRight(Effect.sleep("100 millis")),
        Effect.forever,
        Effect.interruptible,
        Effect.forkScoped
      )
    }

    // The one shutdown (see `EngineCore.shutdown`), then the last progress report.
    yield* Effect.addFinalizer(() => Effect.zipRight(core.shutdown(() => rounds.shutdown()), finalReport))

    // How far one `applyToEach` reads ahead of its consumer.
    const window = workers + (resultCapacity === Infinity ? Math.max(8 * workers, 4096) : resultCapacity)

    const apply = (input: I, options?: TaskEngine.TaskEngine.TaskOptions) =>
      Effect.flatMap(taskSettings(options), ({ id, settings }) => calls.apply(core, input, settings, id))

    // Jobs of a durable queue: leased by `queue.run`, run as tasks (with the engine's retries, rate limit and
    // timeout), acknowledged when the task succeeded, handed back to the queue (its attempts, its dead letters)
    // when it failed.
    const runDurable = (
      queue: DurableQueue.DurableQueue<I>,
      durableOptions?: TaskEngine.TaskEngine.DurableOptions
    ): Effect.Effect<never, OptionError> =>
      Effect.gen(function*() {
        yield* check.knownKeys(durableOptions, ["prefetch", "shutdownTimeout"])
        const prefetch = yield* check.integer("prefetch", durableOptions?.prefetch, workers, 0)
        const shutdownTimeout = yield* check.duration("shutdownTimeout", durableOptions?.shutdownTimeout, "30 seconds")
        // The job's progress is the task's; the job's timeout and cancel interrupt this handler, and with it the
        // call, which cancels the task (a running attempt is interrupted, a queued one dropped).
        const progressOf = (job: DurableQueue.Job) => (value: unknown) =>
          job.progress(value).pipe(
            Effect.catchAll((error) =>
              Effect.logWarning(`TaskEngine.runDurable: progress of job ${job.id} not recorded`, error)
            )
          )
        return yield* queue.run(
          (value, job) =>
            Effect.flatMap(
              calls.apply(
                core,
                value,
                { priority: 0, timeout: null },
                job.id,
                (task) => task.progress = progressOf(job)
              ),
              (result) => result.exit
            ),
          { concurrency: core.pool.target + prefetch, shutdownTimeout }
        )
      })

    const engine: TaskEngine.TaskEngine<I, A, E> = {
      apply: apply as TaskEngine.TaskEngine<I, A, E>["apply"],
      applyToAll: ((inputs: Iterable<I>, options?: TaskEngine.TaskEngine.BatchOptions) =>
        checkIterable(inputs).pipe(
          Effect.zipRight(batchSettings(options)),
          Effect.flatMap((settings) => calls.applyToAll(core, inputs, settings))
        )) as TaskEngine.TaskEngine<I, A, E>["applyToAll"],
      applyToEach: <E2, R2>(
        inputs: Iterable<I> | Stream.Stream<I, E2, R2>,
        options?: TaskEngine.TaskEngine.BatchOptions
      ) =>
        Stream.unwrap(
          checkIterable(Array.isArray(inputs) || Stream.StreamTypeId in Object(inputs) ? [] : inputs).pipe(
            Effect.zipRight(batchSettings(options)),
            Effect.map((settings) => calls.applyToEach(core, inputs, settings, window))
          )
        ),
      runDurable,
      add: ((input: I, options?: TaskEngine.TaskEngine.TaskOptions) =>
        Effect.flatMap(
          taskSettings(options),
          ({ id, settings }) => rounds.add(input, settings, id)
        )) as TaskEngine.TaskEngine<I, A, E>["add"],
      end: rounds.end,
      awaitEnd: rounds.awaitEnd,
      results: rounds.results,
      pause: Effect.sync(() => core.input.pause()),
      resume: Effect.sync(() => {
        core.input.resume()
        if (core.watchers > 0) core.notify()
      }),
      setWorkers: (n) => Effect.flatMap(checkCount("workers", n, 1), (n) => Effect.sync(() => core.pool.setTarget(n))),
      awaitIdle: core.waitFor(() => core.isIdle),
      awaitSizeBelow: (n) =>
        Effect.flatMap(checkCount("awaitSizeBelow", n, 1), (n) => core.waitFor(() => core.input.size < n)),
      stats: Effect.sync(() => core.stats())
    }
    return engine
  })

/** @internal */
export const layer = <Id, I, A, E, R>(
  tag: Context.Tag<Id, TaskEngine.TaskEngine<I, A, E>>,
  options: Options<I, A, E, R>
): Layer.Layer<Id, OptionError, R> => Layer.scoped(tag, make(options))

type BatchOptions<I, A, E, R> = Omit<Options<I, A, E, R>, "handler">

/** @internal */
export const applyToAll = <I, A, E, R>(
  inputs: Iterable<I>,
  handler: Options<I, A, E, R>["handler"],
  options: BatchOptions<I, A, E, R>
): Effect.Effect<Array<Result<I, A, E>>, OptionError, R> =>
  Effect.scoped(Effect.flatMap(make({ ...options, handler }), (engine) => engine.applyToAll(inputs)))

/** @internal */
export const applyToEach = <I, A, E, R, E2 = never, R2 = never>(
  inputs: Iterable<I> | Stream.Stream<I, E2, R2>,
  handler: Options<I, A, E, R>["handler"],
  options: BatchOptions<I, A, E, R>
): Stream.Stream<Result<I, A, E>, OptionError | E2, R | R2> =>
  Stream.unwrapScoped(Effect.map(make({ ...options, handler }), (engine) => engine.applyToEach(inputs)))

/** @internal */
export const runDurable = <I, A, E, R>(
  queue: DurableQueue.DurableQueue<I>,
  handler: Options<I, A, E, R>["handler"],
  options: BatchOptions<I, A, E, R> & TaskEngine.TaskEngine.DurableOptions
): Effect.Effect<never, OptionError, R> =>
  Effect.suspend(() => {
    // The durable options go to `runDurable`, the rest to the engine (whose unknown-key check would refuse them).
    const { prefetch, shutdownTimeout, ...engineOptions } = options
    return Effect.scoped(
      Effect.flatMap(make({ ...engineOptions, handler }), (engine) =>
        engine.runDurable(queue, { prefetch, shutdownTimeout }))
    )
  })
