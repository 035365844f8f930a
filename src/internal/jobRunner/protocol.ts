/**
 * What crosses the process boundary between the writer process and a reader process: the settings, one request
 * per job (the item in its encoded form) and the reader's failure. Everything is a `Schema`, so the same messages
 * work over a child process's IPC channel and a worker thread's port.
 */
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"

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
export class RunJob extends Schema.TaggedRequest<RunJob>("effect-workers/JobRunner/RunJob")("RunJob", {
  failure: ReaderError,
  success: Schema.Void,
  payload: { id: Schema.Number, item: Schema.Unknown }
}) {}

/** @internal */
export const encodeSettings = Schema.encodeSync(SettingsSchema)
/** @internal */
export const decodeSettings = Schema.decodeUnknownSync(SettingsSchema)

/** @internal */
export const durationMillis = (d: Duration.Duration): number => Duration.toMillis(d)
