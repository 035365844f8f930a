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
  /** An integer `>= min`, or `fallback` when `value` is `undefined`. */
  readonly integer: (field: string, value: number | undefined, fallback: number, min: number) => Effect.Effect<number, OptionError>
  /** An integer `>= min` or `Infinity` (unbounded), or `fallback` when `value` is `undefined`. */
  readonly integerOrInfinity: (
    field: string,
    value: number | undefined,
    fallback: number,
    min: number
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
}

/** @internal */
export const checker = (module: string): Checker => {
  const fail = (field: string, value: unknown, expected: string) =>
    Effect.fail(new OptionError({ module, field, value, expected }))
  const integer: Checker["integer"] = (field, value, fallback, min) => {
    const n = value === undefined ? fallback : value
    return typeof n === "number" && Number.isInteger(n) && n >= min
      ? Effect.succeed(n)
      : fail(field, n, `an integer from ${min} and up`)
  }
  const integerOrInfinity: Checker["integerOrInfinity"] = (field, value, fallback, min) => {
    const n = value === undefined ? fallback : value
    return typeof n === "number" && ((Number.isInteger(n) && n >= min) || n === Number.POSITIVE_INFINITY)
      ? Effect.succeed(n)
      : fail(field, n, `an integer from ${min} and up, or Infinity`)
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
    require: (field, value, ok, expected) => (ok ? Effect.succeed(value) : fail(field, value, expected))
  }
}
