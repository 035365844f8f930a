/**
 * The error of every `DurableQueue` store: a store that failed (its cause attached), or a job that cannot be
 * encoded (named by id, with why).
 */
import * as Schema from "effect/Schema"
import { typeIdGuard } from "../errorTypeId.js"

/** @internal */
export class DurableQueueError extends Schema.TaggedError<DurableQueueError>("effect-workers/DurableQueue/DurableQueueError")(
  "DurableQueueError",
  {
    reason: Schema.Literal("StoreFailed", "EncodeFailed"),
    /** Which store: "redis", "sql" or "memory". */
    backend: Schema.String,
    queue: Schema.String,
    /** The job concerned, where there is one. */
    id: Schema.optional(Schema.String),
    cause: Schema.optional(Schema.Defect)
  }
) {
  override get message(): string {
    const cause = this.cause === undefined ? "" : `: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
    const job = this.id === undefined ? "a job" : `job ${JSON.stringify(this.id)}`
    return `DurableQueue ${this.queue}: ${
      this.reason === "StoreFailed" ? `the ${this.backend} store failed` : `cannot encode ${job}`
    }${cause}`
  }
}

/** TypeId-based: see errorTypeId.ts. @internal */
export const isDurableQueueError = typeIdGuard(DurableQueueError, "effect-workers/DurableQueue/DurableQueueError")
