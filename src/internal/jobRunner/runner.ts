/**
 * A run, composed from its parts: settings (`settings.ts`), the job queue and prevent-requeue window
 * (`jobQueue.ts`), the writer loop (`writer.ts`) or a durable source (`source.ts`), the supervisor of the reader
 * process slots (`supervisor.ts`) and the spawner that starts readers (`process.ts` by default, `inline.ts` for
 * tests); plus `runMain` and the single-shot helpers `testWriter` / `testReader`.
 */
import type * as ConfigError from "effect/ConfigError"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as Api from "../../JobRunner.js"
import type { OptionError } from "../../OptionError.js"
import { checker } from "../options.js"
import { Progress } from "../progress.js"
import { type AnyRunner, failureDetail, JobRunnerError, READER_ENV } from "./definition.js"
import { JobQueue, MAX_WINDOW_KEYS, RequeueWindow } from "./jobQueue.js"
import { CLOSE, CONTEXT_FAILED, ReaderError, RESULTS, RUN, START_FAILED } from "./protocol.js"
import { startReaderHost } from "./readerHost.js"
import { resolveSettings } from "./settings.js"
import { reportSignals, type RunControl } from "./signals.js"
import { sourceLoop } from "./source.js"
import { ReaderSpawner } from "./spawner.js"
import { liveRuns, RunStats } from "./stats.js"
import { Supervisor } from "./supervisor.js"
import { toStream, Writer } from "./writer.js"

export {
  isJobCancelled,
  isJobRunner,
  isJobRunnerError,
  isJobTimedOut,
  isProcessDied,
  JobCancelled,
  JobRunnerError,
  JobTimedOut,
  make,
  ProcessDied,
  TypeId
} from "./definition.js"
export { layerInline } from "./inline.js"
export { isReaderError } from "./protocol.js"
export { resolveSettings } from "./settings.js"
export { ReaderSpawner } from "./spawner.js"

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

// The process spawner lives in its own file (it imports node modules); it is loaded only when no ReaderSpawner is
// provided.
const defaultSpawner = Effect.promise(() => import("./process.js")).pipe(Effect.map((m) => m.processSpawner))

const buildWriterContext = (runner: AnyRunner) =>
  Layer.build(runner.writerContext ?? Layer.empty).pipe(
    Effect.catchAllCause((cause) =>
      Effect.fail(
        new JobRunnerError({ reason: "WriterContextFailed", runner: runner.name, detail: failureDetail(cause) })
      )
    )
  )

/** @internal */
export const run = <Item, Ctx, WCtx, C>(
  runnerIn: Api.JobRunner<Item, Ctx, WCtx, C>,
  options?: Api.RunOptions | undefined,
  control?: RunControl | undefined
): Effect.Effect<Api.Summary, JobRunnerError | ConfigError.ConfigError | OptionError> =>
  Effect.scoped(Effect.gen(function*() {
    const runner = runnerIn as unknown as AnyRunner
    const settings = yield* resolveSettings(runner, options?.settings)
    yield* checker("JobRunner").require(
      "writer",
      runner.writer,
      (runner.writer === undefined) !== (runner.source === undefined),
      "a function, or a `source` instead (one of the two)"
    )
    yield* checker("JobRunner").require(
      "context",
      runner.context,
      runner.context === undefined || Layer.isLayer(runner.context) || Effect.isEffect(runner.context) ||
        typeof runner.context === "function",
      "a Layer, an Effect, or a function returning the context (or a Promise of it)"
    )
    const spawner = yield* Effect.serviceOption(ReaderSpawner).pipe(
      Effect.flatMap(Option.match({ onNone: () => defaultSpawner, onSome: Effect.succeed }))
    )
    const writerContext = (yield* buildWriterContext(runner)) as Context.Context<unknown>
    if (settings.metricsPort > 0) {
      const server = yield* Effect.promise(() => import("./metricsServer.js"))
      yield* server.serve(settings.metricsPort, settings.metricsHost)
    }
    const queue = new JobQueue(settings.maxQueueSize)
    const progress = yield* Effect.serviceOption(Progress)
    const session = Option.isSome(progress)
      ? yield* progress.value.session({ title: `JobRunner ${runner.name}`, workers: settings.numProcesses })
      : undefined
    const stats = new RunStats(runner.name, settings.numProcesses, queue, session)
    yield* Effect.acquireRelease(
      Effect.sync(() => liveRuns.add(stats)),
      () => Effect.sync(() => liveRuns.delete(stats))
    )
    const done = yield* Deferred.make<void>()
    const supervisor = new Supervisor({ runner, settings, queue, stats, spawner })

    yield* stats.flush
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Effect.sleep("250 millis"), stats.flush)))
    const slots = yield* Effect.forEach(
      Array.from({ length: settings.numProcesses }, (_, i) => i),
      (i) => Effect.forkScoped(supervisor.slot(i))
    )
    const feeder = runner.source === undefined
      ? new Writer({
        runner,
        settings,
        queue,
        window: requeueWindow(runner, settings),
        writerContext,
        clock: yield* Effect.clock,
        done,
        stats
      }).loop
      : yield* sourceLoop({ runner, source: runner.source, settings, queue, writerContext, done })
    if (runner.source !== undefined) stats.writerState = "source"
    const writer = yield* Effect.forkScoped(feeder)
    if (control !== undefined) {
      control.status = () => ({ inFlight: queue.inFlight, perProcess: supervisor.running(), queued: queue.length })
      control.forceKill = () => supervisor.killAllNow()
      yield* reportSignals(runner.name, settings.gracefulShutdownTimeout, control)
    }
    // Added after the fibers above, so it runs before the scope interrupts them.
    yield* Effect.addFinalizer(() =>
      Effect.andThen(supervisor.shutdown(slots, writer), Effect.sync(() => control?.stopped?.(stats.summary())))
    )
    yield* Effect.raceFirst(Deferred.await(done), Effect.andThen(Effect.all(slots.map(Effect.fromFiber)), Effect.void))
    return stats.summary()
  }))

const requeueWindow = (runner: AnyRunner, settings: Api.Settings) =>
  new RequeueWindow(Duration.toMillis(settings.preventRequeuingTime), MAX_WINDOW_KEYS, (max) => {
    Effect.runFork(Effect.logWarning(
      `JobRunner ${runner.name}: the prevent-requeue window is full at ${max} keys (about ${
        Math.round(max * 150 / 1e6)
      } MB); the oldest keys are dropped before preventRequeuingTime, so their items may be queued again early`
    ))
  })

/**
 * Whether the runner's module is the program's entry point (`node jobs.js`, `tsx jobs.ts`): a test that imports
 * the module, or another module that imports it for its runner, must not start real processes. Without `module`
 * the runner cannot tell, and runs as before.
 */
const isEntryPoint = async (module: string | undefined): Promise<boolean> => {
  if (module === undefined || !module.startsWith("file:")) return true
  const main = process.argv[1]
  if (main === undefined) return false
  const [{ realpathSync }, { fileURLToPath }, Path] = await Promise.all([
    import("node:fs"),
    import("node:url"),
    import("node:path")
  ])
  const real = (path: string) => {
    try {
      return realpathSync(path)
    } catch {
      return Path.resolve(path)
    }
  }
  return real(fileURLToPath(module)) === real(main)
}

/** @internal */
export const runMain = <Item, Ctx, WCtx, C>(
  runner: Api.JobRunner<Item, Ctx, WCtx, C>,
  options?: Api.RunOptions | undefined
): void => {
  if (isReaderProcess() || loadedByCli()) return
  void isEntryPoint(runner.module).then(async (entry) => {
    if (!entry) return
    const { runMain } = await import("@effect/platform-node/NodeRuntime")
    runMain(Effect.asVoid(run(runner, options, {})))
  })
}

/** @internal */
export const testWriter = <Item, Ctx, WCtx, C>(
  runner: Api.JobRunner<Item, Ctx, WCtx, C>,
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

/**
 * Runs the reader once through the reader host (the path every reader takes), with the context built for the call.
 *
 * @internal
 */
export const testReader = <Item, Ctx, WCtx, C>(
  runnerIn: Api.JobRunner<Item, Ctx, WCtx, C>,
  item: Item,
  overrides?: Api.SettingsInput | undefined
): Effect.Effect<void, JobRunnerError> =>
  Effect.gen(function*() {
    const runner = runnerIn as unknown as AnyRunner
    const fail = (detail: string) => new JobRunnerError({ reason: "ReaderFailed", runner: runner.name, detail })
    const settings = yield* resolveSettings(runner, overrides).pipe(Effect.mapError((e) => fail(e.message)))
    const encoded = yield* Schema.encodeUnknown(runner.item)(item).pipe(Effect.mapError((e) => fail(e.message)))
    const outcome = yield* Deferred.make<string | undefined, JobRunnerError>()
    const host = yield* startReaderHost(runner, settings, {
      send: (message) => {
        if (message[0] === START_FAILED) {
          const reason = message[2] === CONTEXT_FAILED ? "ContextFailed" : "SpawnFailed"
          Deferred.unsafeDone(
            outcome,
            Exit.fail(new JobRunnerError({ reason, runner: runner.name, detail: message[1] }))
          )
        }
        if (message[0] !== RESULTS) return
        const failure = message[2][0]
        Deferred.unsafeDone(
          outcome,
          Exit.succeed(
            failure === undefined ? undefined : new ReaderError({ reason: failure[1], detail: failure[2] }).message
          )
        )
      },
      later: queueMicrotask,
      exit: () => {}
    })
    if (host !== undefined) host.receive([RUN, 0, encoded])
    const detail = yield* Deferred.await(outcome).pipe(
      Effect.ensuring(Effect.sync(() => host?.receive([CLOSE])))
    )
    if (detail !== undefined) return yield* fail(detail)
  })
