/**
 * The retry policy: `times` extra attempts, `while` / `until` predicates ("do not retry" wins) and an optional
 * `Schedule` stepped by hand per task (its state lives on the task), so a task waiting for its backoff holds no
 * worker and no fiber of the schedule's own.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as Intervals from "effect/ScheduleIntervals"
import type { OptionError } from "../../OptionError.js"
import type * as TaskEngine from "../../TaskEngine.js"
import type { Checker } from "../options.js"
import type { Failure, Task } from "./task.js"

const retryKeys = ["times", "while", "until", "schedule"]

/** @internal */
export class RetryPolicy<E> {
  private constructor(
    readonly times: number,
    private readonly retryWhile: ((error: Failure<E>) => boolean) | undefined,
    private readonly retryUntil: ((error: Failure<E>) => boolean) | undefined,
    private readonly schedule: Schedule.Schedule<unknown, Failure<E>> | undefined
  ) {}

  /** The policy of `options.retry`, validated. */
  static make<E>(
    check: Checker,
    retry: TaskEngine.TaskEngine.RetryOptions<E> | undefined
  ): Effect.Effect<RetryPolicy<E>, OptionError> {
    if (retry === undefined) return Effect.succeed(new RetryPolicy<E>(0, undefined, undefined, undefined))
    return Effect.gen(function*() {
      yield* check.knownKeys(retry, retryKeys, "retry")
      const optionalFunction = (field: "while" | "until") =>
        check.require(
          `retry.${field}`,
          retry[field],
          retry[field] === undefined || typeof retry[field] === "function",
          "a function"
        )
      yield* optionalFunction("while")
      yield* optionalFunction("until")
      const schedule = retry.schedule
      yield* check.require(
        "retry.schedule",
        schedule,
        schedule === undefined || Schedule.isSchedule(schedule),
        "a Schedule"
      )
      const times = yield* check.integerOrInfinity("retry.times", retry.times, schedule === undefined ? 3 : Infinity, 0)
      return new RetryPolicy<E>(times, retry.while, retry.until, schedule)
    })
  }

  /**
   * The delay before the next attempt (0: at once), or `undefined` when the failure is final. A predicate or
   * schedule that throws makes the failure final, with the throw added to its cause as a defect (a worker must
   * never die of a user's predicate: its task would be lost).
   */
  delay<I, A>(
    task: Task<I>,
    exit: Exit.Exit<A, Failure<E>>
  ): Effect.Effect<number | Exit.Exit<A, Failure<E>>> | undefined {
    if (this.times === 0 || Exit.isSuccess(exit) || task.attempt > this.times || !Cause.isFailType(exit.cause)) {
      return undefined
    }
    const error = exit.cause.error
    try {
      // "Do not retry" wins: `until` stops even where `while` would go on.
      if (
        (this.retryUntil !== undefined && this.retryUntil(error)) ||
        (this.retryWhile !== undefined && !this.retryWhile(error))
      ) {
        return undefined
      }
    } catch (defect) {
      return Effect.succeed(Exit.failCause(Cause.sequential(exit.cause, Cause.die(defect))))
    }
    const schedule = this.schedule
    if (schedule === undefined) return Effect.succeed(0)
    return Effect.clockWith((clock) =>
      Effect.suspend(() =>
        schedule.step(
          clock.unsafeCurrentTimeMillis(),
          error,
          task.attempt === 1 ? schedule.initial : task.scheduleState
        )
      ).pipe(
        Effect.map(([state, , decision]): number | Exit.Exit<A, Failure<E>> => {
          if (ScheduleDecision.isDone(decision)) return exit
          task.scheduleState = state
          return Math.max(0, Intervals.start(decision.intervals) - clock.unsafeCurrentTimeMillis())
        }),
        Effect.catchAllCause((cause) => Effect.succeed(Exit.failCause(Cause.sequential(exit.cause, cause))))
      )
    )
  }
}
