/**
 * One line saying what went wrong, for messages: the error's message, with an `UnknownException` (a rejected
 * Promise, a throw caught by `Effect.try`) unwrapped to the reason it carries, or a tagged error's tag and fields.
 * JobRunner's `failureDetail` is `errorDetail` of the squashed cause.
 */
import * as Cause from "effect/Cause"

/** @internal */
export const errorDetail = (error: unknown): string => {
  const u = Cause.isUnknownException(error) && error.cause !== undefined ? error.cause : error
  if (typeof u === "string") return u
  if (typeof u === "object" && u !== null && "message" in u) {
    const message = String((u as { message: unknown }).message)
    if (message.length > 0) return message
  }
  if (typeof u === "object" && u !== null && "_tag" in u) {
    const { _tag, ...rest } = u as Record<string, unknown>
    try {
      return `${String(_tag)} ${JSON.stringify(rest)}`
    } catch {
      return String(_tag)
    }
  }
  return String(u)
}

/** The detail of a cause's first failure or defect (`Cause.pretty`'s first line when there is neither). @internal */
export const causeDetail = (cause: Cause.Cause<unknown>): string =>
  Cause.isEmpty(cause) || Cause.isInterruptedOnly(cause)
    ? Cause.pretty(cause).split("\n")[0] ?? "interrupted"
    : errorDetail(Cause.squash(cause))
