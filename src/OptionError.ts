/**
 * The error every constructor of effect-workers fails with when an option is out of range: it names the module,
 * the field, what was expected and the value it got, so a bad setting is found from the message alone
 * ("WorkerQueue: expected `concurrency` to be an integer from 1 and up, got `0`").
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { typeIdGuard } from "./internal/errorTypeId.js"

/**
 * @since 0.1.0
 * @category errors
 */
export class OptionError extends Schema.TaggedError<OptionError>("effect-workers/OptionError/OptionError")(
  "OptionError",
  {
    module: Schema.String,
    field: Schema.String,
    expected: Schema.String,
    value: Schema.Unknown
  }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `${this.module}: expected \`${this.field}\` to be ${this.expected}, got \`${formatValue(this.value)}\``
  }
}

// TypeId-based: see internal/errorTypeId.ts.
const hasTypeId = typeIdGuard(OptionError, "effect-workers/OptionError/OptionError")

/**
 * @since 0.1.0
 * @category refinements
 */
export const isOptionError = (u: unknown): u is OptionError => hasTypeId(u)

const formatValue = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value)
  if (typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") return String(value)
  if (value === undefined) return "undefined"
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
