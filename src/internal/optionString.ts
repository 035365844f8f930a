/**
 * An optional string option (a name, a title) with its default, checked through the module's checker: a
 * non-string (a number from a config file, say) is an `OptionError` naming the field. Kept beside `options.ts`,
 * which other modules own.
 */
import type * as Effect from "effect/Effect"
import type { OptionError } from "../OptionError.js"
import type { Checker } from "./options.js"

/** @internal */
export const optionalString = (
  check: Checker,
  field: string,
  value: string | undefined,
  fallback: string
): Effect.Effect<string, OptionError> =>
  check.require(field, value ?? fallback, value === undefined || typeof value === "string", "a string")
