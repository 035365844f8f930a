/**
 * The typed error of the task engine, kept apart from the engine so both the public module and the internals can
 * import it without a cycle.
 */
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"
import { errorDetail } from "./causeDetail.js"
import { typeIdGuard } from "./errorTypeId.js"

/** @internal */
export class TaskEngineError extends Schema.TaggedError<TaskEngineError>("effect-workers/TaskEngine/TaskEngineError")(
  "TaskEngineError",
  {
    reason: Schema.Literal("TaskTimeout", "StartTimeout", "RateLimiter"),
    timeout: Schema.optional(Schema.DurationFromSelf),
    taskId: Schema.optional(Schema.String),
    cause: Schema.optional(Schema.Defect)
  }
) {
  override get message(): string {
    const timeout = this.timeout === undefined ? "?" : Duration.format(this.timeout)
    switch (this.reason) {
      case "TaskTimeout":
        return `Task ${this.taskId ?? "?"} did not finish within ${timeout}`
      case "StartTimeout":
        return `No task was added within ${timeout}`
      case "RateLimiter":
        return `The rate limiter failed before task ${this.taskId ?? "?"}: ${errorDetail(this.cause)}`
    }
  }
}

/** TypeId-based: see errorTypeId.ts. @internal */
export const isTaskEngineError = typeIdGuard(TaskEngineError, "effect-workers/TaskEngine/TaskEngineError")
