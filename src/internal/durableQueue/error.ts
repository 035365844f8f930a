/**
 * The error of every `DurableQueue` store: a store that failed (its cause attached), a job that cannot be encoded
 * (named by id, with why), an attempt that ran past its timeout, progress that cannot be stored, a stored
 * result that does not decode, or a `runBatch` handler whose results are not one per job of its batch.
 */
import * as Schema from "effect/Schema"
import { typeIdGuard } from "../errorTypeId.js"

/** @internal */
export class DurableQueueError
  extends Schema.TaggedError<DurableQueueError>("effect-workers/DurableQueue/DurableQueueError")(
    "DurableQueueError",
    {
      reason: Schema.Literal(
        "StoreFailed",
        "EncodeFailed",
        "TimedOut",
        "ProgressRejected",
        "DecodeFailed",
        "ResultsMismatch"
      ),
      /** Which store: "redis", "sql" or "memory". */
      backend: Schema.String,
      queue: Schema.String,
      /** The job concerned, where there is one. */
      id: Schema.optional(Schema.String),
      /** "TimedOut": the attempt that ran past its timeout. */
      attempt: Schema.optional(Schema.Number),
      /** "TimedOut": the timeout, in milliseconds. */
      timeoutMillis: Schema.optional(Schema.Number),
      cause: Schema.optional(Schema.Defect)
    }
  )
{
  override get message(): string {
    const cause = this.cause === undefined
      ? ""
      : `: ${thrownMessage(this.cause)}`
    const job = this.id === undefined ? "a job" : `job ${JSON.stringify(this.id)}`
    return `DurableQueue ${this.queue}: ${what(this, job)}${cause}`
  }
}

const what = (error: DurableQueueError, job: string): string => {
  switch (error.reason) {
    case "StoreFailed":
      return `the ${error.backend} store failed${error.id === undefined ? "" : ` (${job})`}`
    case "EncodeFailed":
      return `cannot encode ${job}`
    case "TimedOut":
      return `${job} attempt ${error.attempt} timed out after ${error.timeoutMillis} ms`
    case "ProgressRejected":
      return `cannot record the progress of ${job}`
    case "DecodeFailed":
      return `cannot decode the result of ${job}`
    case "ResultsMismatch":
      return "the batch's results are not one per job"
  }
}

/** TypeId-based: see errorTypeId.ts. @internal */
export const isDurableQueueError = typeIdGuard(DurableQueueError, "effect-workers/DurableQueue/DurableQueueError")

/**
 * What was thrown (or given as a cause), as text: an Error's message, else `String` of it, which itself throws for
 * some values (a null-prototype object, a revoked Proxy): then its type. @internal
 */
export const thrownMessage = (thrown: unknown): string => {
  try {
    return thrown instanceof Error ? thrown.message : String(thrown)
  } catch {
    return `a ${typeof thrown} that cannot be printed`
  }
}
