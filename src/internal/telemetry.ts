/**
 * What every module's spans and metrics share. The naming scheme (README, "Tracing and metrics"): metrics are
 * `effect_workers_<module>_<what>`, counters end in `_total`, histograms carry their unit (`_seconds`); each
 * instance is told apart by one label (`queue`, `cache`, `engine`, `limiter`, `tree`), never by its name.
 *
 * Updates go through `Metric.unsafeUpdate` with a labels array made once per instance: Effect caches the metric's
 * hook by that array's identity, so an update on a hot path is a property read and an add, with no Effect step.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"

/** Seconds, 1 ms to about 65 s in 17 doubling buckets: latencies of in-process work and of remote stores alike. */
const secondsBoundaries = MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 17 })

/** @internal */
export const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

/** @internal */
export const gauge = (name: string, description: string) => Metric.gauge(name, { description })

/** @internal */
export const seconds = (name: string, description: string) => Metric.histogram(name, secondsBoundaries, description)

/** The one label that tells an instance's series apart (made once per instance: see the module comment). @internal */
export const labels = (key: string, value: string): ReadonlyArray<MetricLabel.MetricLabel> => [
  MetricLabel.make(key, value)
]

/** Adds one to a counter, or `n`. @internal */
export const bump = (
  metric: Metric.Metric.Counter<number>,
  tags: ReadonlyArray<MetricLabel.MetricLabel>,
  n = 1
): void => metric.unsafeUpdate(n, tags)

/** Sets a gauge. @internal */
export const setGauge = (
  metric: Metric.Metric.Gauge<number>,
  tags: ReadonlyArray<MetricLabel.MetricLabel>,
  value: number
): void => metric.unsafeUpdate(value, tags)

/** Records a duration in seconds from two `Clock` readings in nanoseconds. @internal */
export const observeNanos = (
  metric: Metric.Metric.Histogram<number>,
  tags: ReadonlyArray<MetricLabel.MetricLabel>,
  startNanos: bigint,
  endNanos: bigint
): void => metric.unsafeUpdate(Number(endNanos - startNanos) / 1e9, tags)

/**
 * Effect's built-in tracer, the one in its default services: its spans go nowhere but `Effect.currentSpan`.
 * Compared by identity (a tracer installed by `Effect.withTracer` or an OpenTelemetry layer is another object).
 * A program with a second copy of `effect` has another built-in tracer: it gets spans, the safe side.
 */
const builtInTracer: Tracer.Tracer = Context.get(DefaultServices.liveServices, Tracer.Tracer)

/**
 * Whether a module opens spans on this fiber: tracing on (`FiberRef.currentTracerEnabled`) and a tracer someone
 * can read (not Effect's built-in one). Spans cost more than trivial work (with every span on, measured at load
 * 15: `applyToAll` of 100k tasks 1.3-2x slower, `requireAll` of 100k keys ~2x, a 111k-item TreeQueue 3-6x), so
 * without a tracer installed they are not made at all. Metrics are always on; on empty work they are what is left
 * (bench/RESULTS.md, "Telemetry cost": `applyToAll` 1.1-1.4x, TreeQueue 1.2-1.6x: the two clock readings,
 * the duration histogram, counters and gauges updated per task or item). Since then a TaskEngine worker publishes
 * counts and gauges per burst and both read the clock once per task or item ("Telemetry cost, per burst":
 * `applyToAll` 0.70-0.82x and TreeQueue 0.93x the time before that change).
 * @internal
 */
export const tracing = (fiber: Fiber.RuntimeFiber<unknown, unknown>): boolean =>
  fiber.currentTracer !== builtInTracer && fiber.getFiberRef(FiberRef.currentTracerEnabled)

/**
 * `Effect.useSpan` when the fiber is {@link tracing}, else `f(undefined)`: the call site handles the no-span case
 * (its attributes and links are skipped) and its effects' parent stays the caller's span.
 * @internal
 */
export const useSpanWhenTraced = <A, E, R>(
  name: string,
  options: Tracer.SpanOptions,
  f: (span: Tracer.Span | undefined) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) => tracing(fiber) ? Effect.useSpan(name, options, f) : f(undefined))

/**
 * `Effect.withSpan` when the fiber is {@link tracing}, else `self` as it is.
 * @internal
 */
export const withSpanWhenTraced =
  (name: string, options: Tracer.SpanOptions) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.withFiberRuntime((fiber) => tracing(fiber) ? Effect.withSpan(self, name, options) : self)

/**
 * A span opened synchronously from a fiber, for the hot paths that run a user function without an Effect step of
 * their own (a TaskEngine worker settles a handler that returned `Effect.succeed` inline). It uses the fiber's
 * tracer and clock as `Effect.withSpan` would, and no span unless the fiber is {@link tracing} (tracing on and a
 * tracer other than Effect's built-in one), so no reader means no cost.
 * @internal
 */
export class SpanMaker {
  private readonly tracer: Tracer.Tracer
  private readonly clock: Clock.Clock
  readonly enabled: boolean

  constructor(fiber: Fiber.RuntimeFiber<unknown, unknown>) {
    this.tracer = fiber.currentTracer
    this.clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
    this.enabled = tracing(fiber)
  }

  now(): bigint {
    return this.clock.unsafeCurrentTimeNanos()
  }

  /** A span, or `undefined` when tracing is off; `parent` undefined makes a root span. */
  open(
    name: string,
    parent: Tracer.AnySpan | undefined,
    attributes: Record<string, unknown>
  ): Tracer.Span | undefined {
    if (!this.enabled) return undefined
    const span = this.tracer.span(
      name,
      parent === undefined ? Option.none() : Option.some(parent),
      Context.empty(),
      [],
      this.now(),
      "internal"
    )
    for (const key in attributes) span.attribute(key, attributes[key])
    return span
  }

  close(span: Tracer.Span | undefined, exit: Exit.Exit<unknown, unknown>): void {
    if (span !== undefined && span.status._tag === "Started") span.end(this.now(), exit)
  }
}

/** A link to `span`, as `Span.addLinks` takes it. @internal */
export const linkTo = (span: Tracer.AnySpan): Tracer.SpanLink => ({ _tag: "SpanLink", span, attributes: {} })

/**
 * Runs `take` (a rate-limit permit) and counts it as a wait when it took 1 ms or more by the fiber's clock: a
 * limiter built on Effect's own (or a user's `acquire`) does not say whether it made the caller wait, and a
 * permit granted at once takes microseconds.
 * @internal
 */
export const countingWaits = <E>(
  take: Effect.Effect<void, E>,
  metric: Metric.Metric.Counter<number>,
  tags: ReadonlyArray<MetricLabel.MetricLabel>
): Effect.Effect<void, E> =>
  Effect.clockWith((clock) => {
    const start = clock.unsafeCurrentTimeNanos()
    return Effect.tap(take, () => {
      if (clock.unsafeCurrentTimeNanos() - start >= 1_000_000n) bump(metric, tags)
    })
  })
