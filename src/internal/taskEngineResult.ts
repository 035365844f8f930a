/**
 * The one implementation of `TaskResult`: a small class, so the task engine's hot path allocates one plain object
 * per finished task.
 */
import * as Equal from "effect/Equal"
import * as Exit from "effect/Exit"
import * as Hash from "effect/Hash"
import { NodeInspectSymbol } from "effect/Inspectable"
import type * as TaskResult from "../TaskResult.js"

/** @internal */
export const TypeId: TaskResult.TypeId = Symbol.for("effect-workers/TaskResult") as TaskResult.TypeId

/** @internal */
export class TaskResultImpl<I, A, E> implements TaskResult.TaskResult<I, A, E> {
  declare readonly [TypeId]: TaskResult.TypeId
  constructor(
    readonly id: string,
    readonly input: I,
    readonly attempts: number,
    readonly exit: Exit.Exit<A, E>
  ) {}
  [Equal.symbol](that: unknown): boolean {
    return isTaskResult(that) && this.id === that.id && this.attempts === that.attempts &&
      Equal.equals(this.input, that.input) && Equal.equals(this.exit, that.exit)
  }
  [Hash.symbol](): number {
    return Hash.cached(this, Hash.combine(Hash.hash(this.exit))(Hash.string(this.id)))
  }
  toJSON() {
    return { _id: "TaskResult", id: this.id, input: this.input, attempts: this.attempts, exit: this.exit }
  }
  toString() {
    return `TaskResult(${this.id}, ${Exit.isSuccess(this.exit) ? "success" : "failure"}, attempts: ${this.attempts})`
  }
  [NodeInspectSymbol]() {
    return this.toJSON()
  }
} // On the prototype: one object per result is all the hot path allocates.

;(TaskResultImpl.prototype as { [TypeId]: TaskResult.TypeId })[TypeId] = TypeId

/** @internal */
export const isTaskResult = (u: unknown): u is TaskResult.TaskResult<unknown, unknown, unknown> =>
  typeof u === "object" && u !== null && TypeId in u
