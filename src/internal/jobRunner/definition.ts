/**
 * A runner's definition and what every other part shares: the type id, `make`, the public error, the death of a
 * reader process, and the rendering of a failure's cause as one line. It imports no other part of the runner, so
 * the spawners, the reader host and the supervisor can all depend on it without a cycle.
 */
import * as Cause from "effect/Cause"
import * as Schema from "effect/Schema"
import type * as Api from "../../JobRunner.js"
import { errorDetail } from "../causeDetail.js"
import { typeIdGuard } from "../errorTypeId.js"

/** @internal */
export const TypeId: Api.TypeId = Symbol.for("effect-workers/JobRunner") as Api.TypeId

/** @internal */
export type AnyRunner = Api.JobRunner<unknown, unknown, unknown, unknown>

/** Set in the environment of every reader process or thread. @internal */
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
export const make = <Item, I, Ctx, WCtx, C>(
  options: Api.JobRunner.Options<Item, I, Ctx, WCtx> | Api.JobRunner.PlainOptions<Item, I, C, WCtx>
): Api.JobRunner<Item, Ctx, WCtx, C> => ({
  [TypeId]: TypeId,
  name: options.name,
  module: options.module,
  item: (options.item ?? Schema.Unknown) as unknown as Schema.Schema<Item, unknown>,
  key: (options.key ?? defaultKey) as (item: Item) => string,
  writer: options.writer,
  source: options.source,
  reader: options.reader as Api.JobRunner<Item, Ctx, WCtx, C>["reader"],
  context: options.context as Api.JobRunner<Item, Ctx, WCtx, C>["context"],
  writerContext: options.writerContext,
  settings: options.settings ?? {},
  onError: options.onError
})

/** @internal */
export const isJobRunner = (u: unknown): u is AnyRunner => typeof u === "object" && u !== null && TypeId in u

/** @internal */
export class JobRunnerError extends Schema.TaggedError<JobRunnerError>("effect-workers/JobRunner/JobRunnerError")(
  "JobRunnerError",
  {
    reason: Schema.Literal("SpawnFailed", "ContextFailed", "ModuleUnknown", "ReaderFailed", "WriterContextFailed"),
    runner: Schema.String,
    detail: Schema.String
  }
) {
  override get message(): string {
    switch (this.reason) {
      case "SpawnFailed":
        return `JobRunner ${this.runner}: a reader process could not start: ${this.detail}`
      case "ContextFailed":
        return `JobRunner ${this.runner}: the reader's context failed: ${this.detail}`
      case "ModuleUnknown":
        return `JobRunner ${this.runner}: reader processes need the runner's module; ${this.detail}`
      case "WriterContextFailed":
        return `JobRunner ${this.runner}: the writer context could not be built: ${this.detail}`
      case "ReaderFailed":
        return `JobRunner ${this.runner}: the reader failed: ${this.detail}`
    }
  }
}

/** TypeId-based: see errorTypeId.ts. @internal */
export const isJobRunnerError = typeIdGuard(JobRunnerError, "effect-workers/JobRunner/JobRunnerError")

/**
 * A reader process (or thread, or inline reader) ended while it held the job; `unstarted`: the job was still
 * waiting in the reader's backlog, so it never ran and goes to another process. @internal
 */
export class ProcessDied extends Schema.TaggedError<ProcessDied>("effect-workers/JobRunner/ProcessDied")(
  "ProcessDied",
  { detail: Schema.String, unstarted: Schema.optional(Schema.Boolean) }
) {
  override get message(): string {
    return `reader process died${this.unstarted === true ? " before the job started" : ""}: ${this.detail}`
  }
}

/** TypeId-based: see errorTypeId.ts. @internal */
export const isProcessDied = typeIdGuard(ProcessDied, "effect-workers/JobRunner/ProcessDied")

/** The job ran longer than `jobTimeout`. @internal */
export class JobTimedOut extends Schema.TaggedError<JobTimedOut>("effect-workers/JobRunner/JobTimedOut")(
  "JobTimedOut",
  { detail: Schema.String }
) {
  override get message(): string {
    return `job timed out: ${this.detail}`
  }
}

/** TypeId-based: see errorTypeId.ts. @internal */
export const isJobTimedOut = typeIdGuard(JobTimedOut, "effect-workers/JobRunner/JobTimedOut")

/** A durable source's job was cancelled or timed out in its DurableQueue while a reader held it. @internal */
export class JobCancelled extends Schema.TaggedError<JobCancelled>("effect-workers/JobRunner/JobCancelled")(
  "JobCancelled",
  { detail: Schema.String }
) {
  override get message(): string {
    return `job cancelled: ${this.detail}`
  }
}

/** TypeId-based: see errorTypeId.ts. @internal */
export const isJobCancelled = typeIdGuard(JobCancelled, "effect-workers/JobRunner/JobCancelled")

/** @internal */
export { isPromiseLike } from "../promise.js"

/** One line for a failure: `errorDetail` (src/internal/causeDetail.ts) of the squashed cause. @internal */
export const failureDetail = (cause: Cause.Cause<unknown>): string => errorDetail(Cause.squash(cause))
