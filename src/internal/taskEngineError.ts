/**
 * The typed error of the task engine, kept apart from the engine so both the public module and the internals can
 * import it without a cycle.
 */
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"

/** @internal */
export class TaskEngineError extends Schema.TaggedError<TaskEngineError>("effect-workers/TaskEngineError")(
  "TaskEngineError",
  {
    reason: Schema.Literal("TaskTimeout", "StartTimeout"),
    timeout: Schema.DurationFromSelf,
    taskId: Schema.optional(Schema.String)
  }
) {
  override get message(): string {
    return this.reason === "TaskTimeout"
      ? `Task ${this.taskId ?? "?"} did not finish within ${Duration.format(this.timeout)}`
      : `No task was added within ${Duration.format(this.timeout)}`
  }
}
