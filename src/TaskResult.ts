/**
 * What the `TaskEngine` hands back for every task: its id, its input, how many attempts it took and how the last
 * attempt ended, as an `Exit`. The handler's typed failures and defects (a thrown exception, a die) are values
 * here, never thrown at the caller, so one bad task cannot sink a batch.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as internal from "./internal/taskEngineResult.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = internal.TypeId as TypeId

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * @since 0.1.0
 * @category models
 */
export interface TaskResult<out I, out A, out E = never> {
  readonly [TypeId]: TypeId
  /** The task id: given to `add`, or made by the engine (unique within the engine). */
  readonly id: string
  readonly input: I
  /** Attempts made, retries included (1 when the first attempt settled it). */
  readonly attempts: number
  /** How the last attempt ended: `Exit.succeed(value)`, or a failure whose cause holds the error or defect. */
  readonly exit: Exit.Exit<A, E>
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = <I, A, E>(options: {
  readonly id: string
  readonly input: I
  readonly attempts: number
  readonly exit: Exit.Exit<A, E>
}): TaskResult<I, A, E> => new internal.TaskResultImpl(options.id, options.input, options.attempts, options.exit)

/**
 * @since 0.1.0
 * @category refinements
 */
export const isTaskResult: (u: unknown) => u is TaskResult<unknown, unknown, unknown> = internal.isTaskResult

/**
 * @since 0.1.0
 * @category getters
 */
export const isSuccess = <I, A, E>(self: TaskResult<I, A, E>): boolean => Exit.isSuccess(self.exit)

/**
 * @since 0.1.0
 * @category getters
 */
export const isFailure = <I, A, E>(self: TaskResult<I, A, E>): boolean => Exit.isFailure(self.exit)

/**
 * The value of a successful task.
 *
 * @since 0.1.0
 * @category getters
 */
export const getSuccess = <I, A, E>(self: TaskResult<I, A, E>): Option.Option<A> =>
  Exit.isSuccess(self.exit) ? Option.some(self.exit.value) : Option.none()

/**
 * The typed error of a failed task (none for a success, a defect or an interruption).
 *
 * @since 0.1.0
 * @category getters
 */
export const getFailure = <I, A, E>(self: TaskResult<I, A, E>): Option.Option<E> =>
  Exit.isFailure(self.exit) ? Cause.failureOption(self.exit.cause) : Option.none()
