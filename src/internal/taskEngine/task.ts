/**
 * The records every part of the engine shares: a `Task` (also the `TaskInfo` the handler sees) and the `Call`
 * that owns it and receives its result (an `applyToAll`, an `apply`, an `applyToEach` or a round of the manual
 * flow).
 */
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Tracer from "effect/Tracer"
import type * as TaskEngine from "../../TaskEngine.js"
import type * as TaskResult from "../../TaskResult.js"
import type { TaskEngineError } from "../taskEngineError.js"

/** @internal */
export type Failure<E> = E | TaskEngineError

/** @internal */
export type Result<I, A, E> = TaskResult.TaskResult<I, A, Failure<E>>

/**
 * The owner of a set of tasks. `deliver` receives each final result; it returns `undefined` when it delivered at
 * once, or an effect to run (the manual flow waits for room in the result buffer). `queued` counts its tasks in
 * the input queue, so cancelling it takes them out of the queue's size and capacity at once.
 *
 * @internal
 */
export interface Call<I, A, E> {
  cancelled: boolean
  queued: number
  readonly deliver: (task: Task<I>, exit: Exit.Exit<A, Failure<E>>) => Effect.Effect<void> | undefined
  /** The engine is closing: settle the caller (interrupted). */
  readonly settle: () => void
  /** The caller's span when it made the call: the parent of its tasks' `TaskEngine.task` spans. */
  span?: Tracer.AnySpan | undefined
}

/** A call as tasks hold it: the engine knows its result types, the task does not need to. @internal */
export type AnyCall<I> = Call<I, never, never>

const noProgress = (): Effect.Effect<void> => Effect.void

/** @internal */
export class Task<I> implements TaskEngine.TaskEngine.TaskInfo {
  attempt = 0
  workerId = -1
  scheduleState: unknown = undefined
  /** Set by `runDurable` to the job's progress; nothing elsewhere. */
  progress: (value: unknown) => Effect.Effect<void> = noProgress
  constructor(
    readonly id: string,
    readonly input: I,
    /** Its place in an `applyToAll` batch (0 elsewhere). */
    readonly index: number,
    readonly call: AnyCall<I>,
    /** Higher runs first; equal priorities in arrival order. */
    readonly priority: number,
    /** Milliseconds one attempt may run, or `undefined` for no limit. */
    readonly timeout: number | undefined
  ) {}
}
