/**
 * Validation of constructor options, shared by every module: each check names the module, the field and the
 * value it rejects, through `OptionError`.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { OptionError } from "../OptionError.js"

/** @internal */
export interface Checker {
  /**
   * An integer from `min` to `max` (default `MAX_COUNT`), or `fallback` when `value` is `undefined`. The upper
   * bound exists because a count such as `1e12` workers used to reach `new Array(n)` ("Invalid array length").
   */
  readonly integer: (
    field: string,
    value: number | undefined,
    fallback: number,
    min: number,
    max?: number
  ) => Effect.Effect<number, OptionError>
  /** An integer from `min` to `max` (default `Number.MAX_SAFE_INTEGER`) or `Infinity` (unbounded), or `fallback`. */
  readonly integerOrInfinity: (
    field: string,
    value: number | undefined,
    fallback: number,
    min: number,
    max?: number
  ) => Effect.Effect<number, OptionError>
  /** A finite, non-negative duration, or `fallback` when `value` is `undefined`. */
  readonly duration: (
    field: string,
    value: Duration.DurationInput | undefined,
    fallback: Duration.DurationInput
  ) => Effect.Effect<Duration.Duration, OptionError>
  /** A finite, non-negative duration, or none when `value` is `undefined`. */
  readonly optionalDuration: (
    field: string,
    value: Duration.DurationInput | undefined
  ) => Effect.Effect<Option.Option<Duration.Duration>, OptionError>
  /** Fails with `OptionError` unless `ok`. */
  readonly require: <A>(field: string, value: A, ok: boolean, expected: string) => Effect.Effect<A, OptionError>
  /**
   * Fails with `OptionError` on the first own key of `options` that is not in `known`, naming the nearest known key
   * (`concurency` → "a known option (did you mean `concurrency`?)"). A typo is otherwise silently a default.
   * A non-object `options` (other than `undefined`) fails too.
   */
  readonly knownKeys: (
    options: unknown,
    known: ReadonlyArray<string>,
    path?: string
  ) => Effect.Effect<void, OptionError>
}

/**
 * The largest worker, process or concurrency count accepted by default: far above what one process can run (each
 * is at least a fiber, ~1 KB), far below what crashes an array allocation (2^32 - 1).
 *
 * @internal
 */
export const MAX_COUNT = 1_000_000

/** Levenshtein distance, for "did you mean" suggestions on a handful of short option names. @internal */
export const editDistance = (a: string, b: string): number => {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]!
}

/** The known name nearest to `name` (case-insensitive edit distance at most 3), if any. @internal */
export const nearest = (name: string, known: ReadonlyArray<string>): string | undefined => {
  let best: string | undefined
  let bestDistance = 4
  for (const candidate of known) {
    const d = editDistance(name.toLowerCase(), candidate.toLowerCase())
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return best
}

/** @internal */
export const checker = (module: string): Checker => {
  const fail = (field: string, value: unknown, expected: string) =>
    Effect.fail(new OptionError({ module, field, value, expected }))
  const integer: Checker["integer"] = (field, value, fallback, min, max = MAX_COUNT) => {
    const n = value === undefined ? fallback : value
    return typeof n === "number" && Number.isInteger(n) && n >= min && n <= max
      ? Effect.succeed(n)
      : fail(field, n, `an integer from ${min} to ${max}`)
  }
  const integerOrInfinity: Checker["integerOrInfinity"] = (field, value, fallback, min, max) => {
    const n = value === undefined ? fallback : value
    const top = max ?? Number.MAX_SAFE_INTEGER
    return typeof n === "number" &&
        ((Number.isInteger(n) && n >= min && n <= top) || n === Number.POSITIVE_INFINITY)
      ? Effect.succeed(n)
      : fail(
        field,
        n,
        max === undefined
          ? `an integer from ${min} and up, or Infinity`
          : `an integer from ${min} to ${max}, or Infinity`
      )
  }
  const knownKeys: Checker["knownKeys"] = (options, known, path) => {
    if (options === undefined) return Effect.void
    if (options === null || typeof options !== "object") return fail(path ?? "options", options, "an object")
    for (const key of Object.keys(options)) {
      if (!known.includes(key)) {
        const guess = nearest(key, known)
        const field = path === undefined ? key : `${path}.${key}`
        return fail(
          field,
          (options as Record<string, unknown>)[key],
          guess === undefined
            ? `a known option (one of ${known.map((k) => `\`${k}\``).join(", ")})`
            : `a known option (did you mean \`${guess}\`?)`
        )
      }
    }
    return Effect.void
  }
  const decode = (field: string, input: Duration.DurationInput) => {
    // Effect clamps negative and NaN inputs to zero, so they are caught before decoding.
    const negative = (typeof input === "number" && !(input >= 0)) || (typeof input === "bigint" && input < 0n) ||
      (typeof input === "string" && input.trim().startsWith("-")) ||
      (Array.isArray(input) && input.some((n) => !(n >= 0)))
    const decoded = negative ? Option.none() : Duration.decodeUnknown(input)
    return Option.isSome(decoded) && Duration.isFinite(decoded.value)
      ? Effect.succeed(decoded.value)
      : fail(field, input, "a finite, non-negative duration")
  }
  return {
    integer,
    integerOrInfinity,
    duration: (field, value, fallback) => decode(field, value === undefined ? fallback : value),
    optionalDuration: (field, value) =>
      value === undefined ? Effect.succeed(Option.none()) : Effect.map(decode(field, value), Option.some),
    require: (field, value, ok, expected) => (ok ? Effect.succeed(value) : fail(field, value, expected)),
    knownKeys
  }
}
