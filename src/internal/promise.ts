/**
 * User functions may return an Effect, a Promise (an `async` function) or, where it makes sense, a plain value.
 * These helpers tell them apart once, in one place, and turn a Promise into an Effect whose rejection is a typed
 * `Cause.UnknownException` (the rejection reason is its `cause`), as `Effect.tryPromise` does.
 */
import type * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"

/** @internal */
export const isPromiseLike = (u: unknown): u is PromiseLike<unknown> =>
  typeof u === "object" && u !== null && "then" in u && typeof (u as { then: unknown }).then === "function"

/** @internal */
export const fromPromiseLike = <A>(promise: PromiseLike<A>): Effect.Effect<A, Cause.UnknownException> =>
  Effect.tryPromise(() => promise)

/**
 * What a user function returned, as an Effect: an Effect as it is, a Promise through `fromPromiseLike`, anything
 * else as a success.
 *
 * @internal
 */
export const fromUserResult = <A, E, R>(
  out: Effect.Effect<A, E, R> | PromiseLike<A> | A
): Effect.Effect<A, E | Cause.UnknownException, R> =>
  Effect.isEffect(out)
    ? out as Effect.Effect<A, E, R>
    : isPromiseLike(out)
    ? fromPromiseLike(out as PromiseLike<A>)
    : Effect.succeed(out as A)
