/**
 * Validation of the engine's options and of per-call options (`apply`, `add`, `applyToAll`, `applyToEach`), with
 * the shared checker: every bad field is an `OptionError` naming the field and the value, every unknown key names
 * the nearest known one (`wokers` → `workers`), and counts are bounded (1e12 workers used to crash an array
 * allocation).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { OptionError } from "../../OptionError.js"
import type * as RateLimiter from "../../RateLimiter.js"
import type * as TaskEngine from "../../TaskEngine.js"
import { checker } from "../options.js"
import { isRateLimiter, unlimited } from "../rateLimiter.js"
import { defaultSettings, type TaskSettings } from "./engine.js"
import { RetryPolicy } from "./retry.js"

/** @internal */
export const check = checker("TaskEngine")

const engineKeys = [
  "handler",
  "workers",
  "retry",
  "rateLimiter",
  "inputCapacity",
  "resultCapacity",
  "startTimeout",
  "taskTimeout",
  "title"
]

/** The engine's options with defaults applied. @internal */
export interface Settings<E> {
  readonly handler: (input: never, task: TaskEngine.TaskEngine.TaskInfo) => unknown
  readonly workers: number
  readonly inputCapacity: number
  readonly resultCapacity: number
  readonly startTimeout: Option.Option<Duration.Duration>
  readonly taskTimeout: number | undefined
  readonly retry: RetryPolicy<E>
  readonly rateLimiter: RateLimiter.RateLimiter<unknown>
  readonly title: string
}

/** @internal */
export const engineSettings = <E>(
  options: TaskEngine.TaskEngine.Options<never, unknown, E, unknown>
): Effect.Effect<Settings<E>, OptionError> =>
  Effect.gen(function*() {
    // Also fails on a missing or non-object `options`.
    yield* check.require("options", options, typeof options === "object" && options !== null, "an object")
    yield* check.knownKeys(options, engineKeys)
    const handler = yield* check.require(
      "handler",
      options.handler,
      typeof options.handler === "function",
      "a function"
    )
    const workers = yield* check.integer("workers", options.workers, Number.NaN, 1)
    const inputCapacity = yield* check.integerOrInfinity("inputCapacity", options.inputCapacity, Infinity, 1)
    const resultCapacity = yield* check.integerOrInfinity("resultCapacity", options.resultCapacity, Infinity, 1)
    const startTimeout = yield* check.optionalDuration("startTimeout", options.startTimeout)
    const taskTimeout = yield* check.optionalDuration("taskTimeout", options.taskTimeout)
    const retry = yield* RetryPolicy.make(check, options.retry)
    const rateLimiter = options.rateLimiter ?? unlimited
    yield* check.require(
      "rateLimiter",
      options.rateLimiter,
      options.rateLimiter === undefined || isRateLimiter(options.rateLimiter),
      "a RateLimiter"
    )
    const title = yield* check.require(
      "title",
      options.title,
      options.title === undefined || typeof options.title === "string",
      "a string"
    )
    return {
      handler,
      workers,
      inputCapacity,
      resultCapacity,
      startTimeout,
      taskTimeout: Option.isSome(taskTimeout) ? Duration.toMillis(taskTimeout.value) : undefined,
      retry,
      rateLimiter,
      title: title ?? "TaskEngine"
    }
  })

const taskKeys = ["id", "priority", "timeout"]
const batchKeys = ["priority", "timeout"]

/** Per-task options, validated. */
const settings = (
  options: TaskEngine.TaskEngine.BatchOptions,
  known: ReadonlyArray<string>
): Effect.Effect<TaskSettings, OptionError> =>
  Effect.gen(function*() {
    yield* check.knownKeys(options, known)
    const priority = options.priority ?? 0
    yield* check.require(
      "priority",
      priority,
      typeof priority === "number" && Number.isFinite(priority),
      "a finite number"
    )
    const timeout = options.timeout
    if (timeout === undefined) return { priority, timeout: null }
    // `Infinity` (or `Duration.infinity`) lifts the engine's `taskTimeout` for this task.
    const decoded = Duration.decodeUnknown(timeout)
    if (Option.isSome(decoded) && !Duration.isFinite(decoded.value) && typeof timeout !== "string") {
      return { priority, timeout: undefined }
    }
    const duration = yield* check.duration("timeout", timeout, Duration.zero)
    return { priority, timeout: Duration.toMillis(duration) }
  })

/** The settings and id of `apply` / `add`. @internal */
export const taskSettings = (
  options: TaskEngine.TaskEngine.TaskOptions | undefined
): Effect.Effect<{ readonly settings: TaskSettings; readonly id: string | undefined }, OptionError> => {
  if (options === undefined) return Effect.succeed({ settings: defaultSettings, id: undefined })
  return Effect.gen(function*() {
    const result = yield* settings(options, taskKeys)
    const id = yield* check.require(
      "id",
      options.id,
      options.id === undefined || typeof options.id === "string",
      "a string"
    )
    return { settings: result, id }
  })
}

/** The settings of `applyToAll` / `applyToEach`. @internal */
export const batchSettings = (
  options: TaskEngine.TaskEngine.BatchOptions | undefined
): Effect.Effect<TaskSettings, OptionError> =>
  options === undefined ? Effect.succeed(defaultSettings) : settings(options, batchKeys)

/** @internal */
export const checkCount = (field: string, n: number, min: number): Effect.Effect<number, OptionError> =>
  check.integer(field, n, Number.NaN, min)

/**
 * A call's inputs that are not iterable (`applyToAll(null)` from plain JavaScript): the call dies with an
 * `OptionError` naming them (its error channel holds only option errors given with options), instead of a bare
 * "TypeError: object null is not iterable".
 *
 * @internal
 */
export const checkIterable = (inputs: unknown): Effect.Effect<void> =>
  typeof inputs === "string" || (typeof inputs === "object" && inputs !== null && Symbol.iterator in inputs)
    ? Effect.void
    : Effect.die(
      new OptionError({ module: "TaskEngine", field: "inputs", value: inputs, expected: "an Iterable or a Stream" })
    )
