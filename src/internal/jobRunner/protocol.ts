/**
 * What crosses the boundary between the writer process and a reader process or thread, and how a reader runs the
 * jobs it receives. Messages are plain arrays sent over the raw channel (a child's IPC channel with `advanced`
 * serialization, or a worker thread's port: structured clone both ways) and carry batches: every job handed to a
 * process in the same tick goes in one message, and every result finished in the same tick comes back in one.
 * Items cross in their encoded form (the runner's item `Schema`); a failure comes back as a `ReaderError`'s reason
 * and detail.
 *
 * This replaces `@effect/platform`'s `Worker` / `WorkerRunner`, which sent one Schema-serialized request per job
 * and ran a fiber per job on each side: that capped trivial jobs at about 5 000 per second (0.2–0.4× piscina);
 * batched, they run at several times piscina's rate (see `process.ts`).
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as ParseResult from "effect/ParseResult"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import type * as Api from "../../JobRunner.js"

/** @internal */
export const SettingsSchema = Schema.Struct({
  numProcesses: Schema.Number,
  maxQueueSize: Schema.Number,
  lookupBlockSize: Schema.Number,
  concurrentTasksPerProcess: Schema.Number,
  maxJobsPerProcess: Schema.Number,
  preventRequeuingTime: Schema.DurationFromMillis,
  emptyQueueSleepTime: Schema.DurationFromMillis,
  emptyQueueMaxSleepTime: Schema.DurationFromMillis,
  fullQueueSleepTime: Schema.DurationFromMillis,
  queueInteractionTimeout: Schema.DurationFromMillis,
  gracefulShutdownTimeout: Schema.DurationFromMillis,
  metricsPort: Schema.Number,
  workerMode: Schema.Literal("process", "thread"),
  stopWhenEmpty: Schema.Boolean
})

/** @internal */
export type SettingsData = typeof SettingsSchema.Type

/** @internal */
export class ReaderError extends Schema.TaggedError<ReaderError>("effect-workers/JobRunner/ReaderError")(
  "ReaderError",
  {
    reason: Schema.Literal("Failed", "Decode"),
    detail: Schema.String
  }
) {
  override get message(): string {
    return this.reason === "Decode" ? `the item could not be decoded: ${this.detail}` : this.detail
  }
}

/** @internal */
export const encodeSettings = Schema.encodeSync(SettingsSchema)
/** @internal */
export const decodeSettings = Schema.decodeUnknownSync(SettingsSchema)

/** @internal */
export const durationMillis = (d: Duration.Duration): number => Duration.toMillis(d)

// ---------------------------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------------------------

/**
 * Writer → reader. `Run` is flat: `[RUN, id0, item0, id1, item1, …]` (items encoded). `Close` asks the reader to
 * release its context and exit; it is sent only once the process runs nothing.
 *
 * @internal
 */
export type ToReader = ReadonlyArray<unknown>

/** @internal */
export const RUN = 0
/** @internal */
export const CLOSE = 1

/**
 * Reader → writer: `[READY]` once the context is built, then `[RESULTS, okIds, failures]` where a failure is
 * `[id, reason, detail]`.
 *
 * @internal
 */
export type FromReader =
  | readonly [typeof READY]
  | readonly [typeof RESULTS, ReadonlyArray<number>, ReadonlyArray<Failure>]

/** @internal */
export type Failure = readonly [id: number, reason: ReaderError["reason"], detail: string]

/** @internal */
export const READY = 0
/** @internal */
export const RESULTS = 1

// ---------------------------------------------------------------------------------------------------------------
// Reader side
// ---------------------------------------------------------------------------------------------------------------

/**
 * Whether a synchronous parse failed only because the Schema is asynchronous somewhere (a `Forbidden` issue,
 * possibly nested): then the Effect parser is needed.
 *
 * @internal
 */
export const needsAsync = (issue: ParseResult.ParseIssue): boolean => {
  switch (issue._tag) {
    case "Forbidden":
      return true
    case "Pointer":
    case "Refinement":
    case "Transformation":
      return needsAsync(issue.issue)
    case "Composite":
      return Array.isArray(issue.issues) ? issue.issues.some(needsAsync) : needsAsync(issue.issues as ParseResult.ParseIssue)
    default:
      return false
  }
}

const isPromiseLike = (u: unknown): u is PromiseLike<unknown> =>
  typeof u === "object" && u !== null && "then" in u && typeof (u as { then: unknown }).then === "function"

/**
 * How a job ended: `undefined` for success, else the failure's reason and detail.
 *
 * @internal
 */
export type Settle = (id: number, reason?: ReaderError["reason"], detail?: string) => void

/**
 * Returns a function that runs one job on its encoded item and calls `settle` once with the outcome, as
 * `runReader` does (every way a reader can fail — throw, rejection, typed failure, defect — becomes a failure with
 * the same detail), but without an Effect step for what is synchronous: the item is decoded synchronously (an
 * asynchronous `Schema` falls back to the Effect decoder), a plain function's result settles at once, a Promise
 * when it settles, and only a reader that returns an `Effect` gets a fiber.
 *
 * @internal
 */
export const makeJobStarter = (
  runner: Api.JobRunner<unknown, unknown, unknown>,
  context: Context.Context<unknown>,
  settings: Api.Settings,
  failureDetail: (cause: Cause.Cause<unknown>) => string,
  settle: Settle
): (id: number, encoded: unknown) => void => {
  const decodeSync = Schema.decodeUnknownEither(runner.item)
  const decode = Schema.decodeUnknown(runner.item)
  const runtime = Runtime.make({
    context,
    runtimeFlags: Runtime.defaultRuntime.runtimeFlags,
    fiberRefs: Runtime.defaultRuntime.fiberRefs
  })
  const runFork = Runtime.runFork(runtime)
  const failed = (id: number, cause: Cause.Cause<unknown>) => settle(id, "Failed", failureDetail(cause))

  const runItem = (id: number, item: unknown) => {
    let out: unknown
    try {
      out = runner.reader(item, context, settings)
    } catch (e) {
      return failed(id, Cause.die(e))
    }
    if (Effect.isEffect(out)) {
      const fiber = runFork(out as Effect.Effect<unknown, unknown>)
      fiber.addObserver((exit) =>
        exit._tag === "Success"
          ? settle(id)
          : Cause.isInterruptedOnly(exit.cause)
          ? settle(id, "Failed", "interrupted")
          : failed(id, exit.cause)
      )
      return
    }
    if (isPromiseLike(out)) {
      out.then(() => settle(id), (e) => failed(id, Cause.fail(new Cause.UnknownException(e))))
      return
    }
    settle(id)
  }

  return (id, encoded) => {
    const decoded = decodeSync(encoded)
    if (Either.isRight(decoded)) return runItem(id, decoded.right)
    if (!needsAsync(decoded.left.issue)) return settle(id, "Decode", decoded.left.message)
    // An asynchronous item Schema.
    runFork(decode(encoded)).addObserver((exit) =>
      exit._tag === "Success"
        ? runItem(id, exit.value)
        : settle(id, "Decode", Cause.isFailType(exit.cause) ? exit.cause.error.message : Cause.pretty(exit.cause))
    )
  }
}
