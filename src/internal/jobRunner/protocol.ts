/**
 * What crosses the boundary between the writer process and a reader process or thread (the reader's side is
 * `readerHost.ts`, the writer's `channel.ts`). Messages are plain arrays sent over the raw channel (a child's IPC
 * channel with `advanced` serialization, or a worker thread's port: structured clone both ways) and carry batches: every job handed to a
 * process in the same tick goes in one message, and every result finished in the same tick comes back in one.
 * Items cross in their encoded form (the runner's item `Schema`); a failure comes back as a `ReaderError`'s reason
 * and detail.
 *
 * This replaces `@effect/platform`'s `Worker` / `WorkerRunner`, which sent one Schema-serialized request per job
 * and ran a fiber per job on each side: that capped trivial jobs at about 5 000 per second (0.2–0.4× piscina);
 * batched, they run at several times piscina's rate (see `process.ts`).
 */
import * as Duration from "effect/Duration"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { typeIdGuard } from "../errorTypeId.js"

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
  jobTimeout: Schema.DurationFromMillis,
  metricsPort: Schema.Number,
  metricsHost: Schema.String,
  workerMode: Schema.Literal("process", "thread"),
  stopWhenEmpty: Schema.Boolean
})

/** @internal */
export type SettingsData = typeof SettingsSchema.Type

/** @internal */
export class ReaderError extends Schema.TaggedError<ReaderError>("effect-workers/JobRunner/ReaderError")(
  "ReaderError",
  {
    reason: Schema.Literal("Failed", "Decode", "Unsendable"),
    detail: Schema.String
  }
) {
  override get message(): string {
    switch (this.reason) {
      case "Decode":
        return `the item could not be decoded: ${this.detail}`
      case "Unsendable":
        return `the item could not be sent to the reader (give the runner an item Schema): ${this.detail}`
      case "Failed":
        return this.detail
    }
  }
}

/** TypeId-based: see errorTypeId.ts. @internal */
export const isReaderError = typeIdGuard(ReaderError, "effect-workers/JobRunner/ReaderError")

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
 * The protocol's version, in the reader's `READY`: a writer refuses a reader that speaks another (a stale build of
 * the reader entry beside a newer writer) with `SpawnFailed`, instead of misreading its messages.
 *
 * - 1: `[READY]`; `RESULTS` with 4 elements.
 * - 2: `[READY, 2]`; `RESULTS` may carry a 5th, the jobs' progress (`ReaderJob.progress`); `CANCEL` also drops a
 *   job still waiting in the reader's backlog (a durable job cancelled or timed out).
 *
 * @internal
 */
export const PROTOCOL_VERSION = 2

/**
 * Writer → reader. `Run` is flat: `[RUN, id0, item0, id1, item1, …]` (items encoded); it may carry more jobs than
 * the reader has slots (the prefetch, see supervisor.ts), which the reader starts in order as slots free up.
 * `Close` asks the reader to release its context and exit; it is sent only once the process runs nothing.
 *
 * @internal
 */
export type ToReader = ReadonlyArray<unknown>

/** @internal */
export const RUN = 0
/** @internal */
export const CLOSE = 1
/**
 * `[CANCEL, id]`: the writer gave up on the job (`jobTimeout`, or its durable job was cancelled or timed out): an
 * `Effect` reader running it is interrupted, and a job still waiting in the backlog is dropped unstarted.
 * @internal
 */
export const CANCEL = 2

/** @internal */
export const isToReader = (message: unknown): message is ToReader =>
  Array.isArray(message) && (message[0] === RUN || message[0] === CLOSE || message[0] === CANCEL)

/**
 * Reader → writer: `[READY, PROTOCOL_VERSION]` once the context is built (or `[START_FAILED, detail, "context"]` when the reader's
 * context failed, `[START_FAILED, detail]` for any other reason it could not start), then
 * `[RESULTS, okIds, failures, startedIds]` where a failure is `[id, reason, detail]` and `startedIds` are the jobs
 * started since the last message (a reader runs `concurrentTasksPerProcess` at once and keeps the rest of what it
 * was sent waiting; a job that started and ended in the same burst is in both), and, when any was reported, a 5th
element `progress`: `[id, value]` pairs, the last value per job in the burst, before its result. The tags are strings no user message is
 * likely to start with: user code in a reader may `process.send` / `parentPort.postMessage` on the same channel,
 * and such a message is ignored (and logged) rather than read as ours.
 *
 * @internal
 */
export type FromReader =
  | readonly [typeof READY, number?]
  | readonly [typeof START_FAILED, string, typeof CONTEXT_FAILED?]
  | readonly [
    typeof RESULTS,
    ReadonlyArray<number>,
    ReadonlyArray<Failure>,
    ReadonlyArray<number>,
    ReadonlyArray<JobProgress>?
  ]

/** @internal */
export type JobProgress = readonly [id: number, value: unknown]

/** @internal */
export type Failure = readonly [id: number, reason: ReaderError["reason"], detail: string]

/** @internal */
export const READY = "effect-workers/JobRunner/ready"
/** @internal */
export const START_FAILED = "effect-workers/JobRunner/startFailed"
/** @internal */
export const RESULTS = "effect-workers/JobRunner/results"
/** The third element of a `START_FAILED` whose cause is the reader's context. @internal */
export const CONTEXT_FAILED = "context"

/** @internal */
export const isFromReader = (message: unknown): message is FromReader => {
  if (!Array.isArray(message)) return false
  switch (message[0]) {
    case READY:
      return true
    case START_FAILED:
      return typeof message[1] === "string" && (message.length === 2 || message[2] === CONTEXT_FAILED)
    case RESULTS:
      return Array.isArray(message[1]) && Array.isArray(message[2]) && Array.isArray(message[3]) &&
        (message.length === 4 || Array.isArray(message[4]))
    default:
      return false
  }
}

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
      return Array.isArray(issue.issues)
        ? issue.issues.some(needsAsync)
        : needsAsync(issue.issues as ParseResult.ParseIssue)
    default:
      return false
  }
}
