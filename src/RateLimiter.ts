/**
 * Rate limiters for task starts. A `RateLimiter` has one operation, `take`, which suspends until the caller may
 * start; the `TaskEngine` calls it before every attempt with the worker id and task id. `slidingWindow` is exact
 * (no span of length `interval` ever holds more than `limit` starts) and serves waiters first come, first served;
 * `tokenBucket` and `fixedWindow` wrap `effect/RateLimiter`; `make` takes your own algorithm. All of them read
 * time through `Clock`, so `TestClock` drives them in tests.
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { RateLimiterMetrics } from "./internal/metrics.js"
import * as internal from "./internal/rateLimiter.js"
import type { OptionError } from "./OptionError.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface RateLimiter<out E = never> {
  /**
   * Suspends until one more start is allowed, then takes it. Interrupting a waiting caller gives up its place.
   * The built-in limiters never fail (`E = never`); one made by `make` fails as its `acquire` does.
   */
  readonly take: (ticket?: RateLimiter.Ticket) => Effect.Effect<void, E>
}

/**
 * @since 0.1.0
 */
export declare namespace RateLimiter {
  /**
   * Who is asking: the `TaskEngine` fills both fields; ad-hoc callers may leave them out.
   *
   * @since 0.1.0
   * @category models
   * @deprecated Use `RateLimiter.Ticket`: Options and Stats types live at the top of their module.
   */
  export interface Ticket {
    readonly workerId?: number | undefined
    readonly taskId?: string | undefined
  }

  /**
   * At most `limit` starts (an integer from 1 and up) per `interval` (a positive duration).
   *
   * @since 0.1.0
   * @category models
   * @deprecated Use `RateLimiter.WindowOptions`: Options and Stats types live at the top of their module.
   */
  export interface WindowOptions {
    readonly limit: number
    readonly interval: Duration.DurationInput
  }
}

/**
 * See `RateLimiter.RateLimiter.Ticket` (the namespaced name is deprecated).
 *
 * @since 0.1.0
 * @category models
 */
export type Ticket = RateLimiter.Ticket

/**
 * See `RateLimiter.RateLimiter.WindowOptions` (the namespaced name is deprecated).
 *
 * @since 0.1.0
 * @category models
 */
export type WindowOptions = RateLimiter.WindowOptions

/**
 * An exact sliding window: no span of time of length `interval` ever contains more than `limit` starts, waiters
 * are served in arrival order, a permit is never held back while the window has room, and an interrupted waiter
 * frees its place. A dispatcher fiber lives in the scope; closing the scope interrupts whoever still waits.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RateLimiter } from "effect-workers"
 *
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RateLimiter.slidingWindow({ limit: 5, interval: "1 second" })
 *   for (let i = 0; i < 10; i++) {
 *     yield* limiter.take()
 *     yield* Effect.log(`call ${i}`) // at most 5 in any second
 *   }
 * })
 *
 * Effect.runPromise(Effect.scoped(program))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const slidingWindow: (
  options: RateLimiter.WindowOptions
) => Effect.Effect<RateLimiter, OptionError, Scope.Scope> = internal.slidingWindow

/**
 * A token bucket from `effect/RateLimiter`: `limit` tokens, one refilled every `interval / limit`; allows bursts
 * of up to `limit`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const tokenBucket: (
  options: RateLimiter.WindowOptions
) => Effect.Effect<RateLimiter, OptionError, Scope.Scope> = internal.tokenBucket

/**
 * A fixed window from `effect/RateLimiter`: `limit` permits per `interval`, all renewed at once when the window
 * that began with the first take ends (so up to `2 × limit` may start within one `interval` across a boundary).
 *
 * @since 0.1.0
 * @category constructors
 */
export const fixedWindow: (
  options: RateLimiter.WindowOptions
) => Effect.Effect<RateLimiter, OptionError, Scope.Scope> = internal.fixedWindow

/**
 * Your own algorithm: `acquire` is called for every `take` with the ticket (worker id and task id when the
 * `TaskEngine` asks, an empty ticket otherwise) and should succeed when the caller may start. It may return an
 * Effect (its failure is the limiter's, typed `E`), a Promise (an `async` function: it resolves when the caller
 * may start, and a rejection is a typed `Cause.UnknownException` whose `cause` is the rejection reason) or nothing
 * (a synchronous check: go at once; a throw is a defect). A `TaskEngine` turns a limiter failure into the attempt's
 * failure, `TaskEngineError` with reason `RateLimiter`. A non-function `acquire` is an `OptionError`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RateLimiter } from "effect-workers"
 *
 * // A Promise-based quota service (a stand-in here) decides when each call may start.
 * const quota = { wait: async (_taskId: string | undefined) => {} }
 *
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RateLimiter.make(async (ticket) => quota.wait(ticket.taskId))
 *   yield* limiter.take() // fails with Cause.UnknownException if quota.wait rejects
 * })
 *
 * Effect.runPromise(Effect.scoped(program))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: {
  <E = never>(
    acquire: (ticket: RateLimiter.Ticket) => Effect.Effect<void, E>
  ): Effect.Effect<RateLimiter<E>, OptionError, Scope.Scope>
  (
    acquire: (ticket: RateLimiter.Ticket) => PromiseLike<unknown> | void
  ): Effect.Effect<RateLimiter<Cause.UnknownException>, OptionError, Scope.Scope>
} = internal.make

/**
 * No limit: `take` succeeds at once. The default of `TaskEngine`, and handy in tests.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unlimited: RateLimiter = internal.unlimited

/**
 * The module's Effect `Metric`s, labelled `limiter=<kind>` (`sliding_window`, `token_bucket`, `fixed_window`,
 * `custom`): takes that waited for a permit. Names follow `effect_workers_<module>_<what>` (README, "Tracing and
 * metrics"); read them with `Metric.value(Metric.tagged(Metrics.x, label, value))` or export them with
 * `@effect/opentelemetry`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const Metrics = RateLimiterMetrics

/**
 * A layer providing a sliding-window limiter (see `slidingWindow`) under your own tag, for sharing one limit
 * between the parts of a program; closed with the layer's scope.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <Id>(
  tag: Context.Tag<Id, RateLimiter>,
  options: RateLimiter.WindowOptions
): Layer.Layer<Id, OptionError> => Layer.scoped(tag, internal.slidingWindow(options))
