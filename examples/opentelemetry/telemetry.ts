/**
 * OpenTelemetry for effect-workers, with `@effect/opentelemetry`: every span the library makes (`WorkerQueue.require`,
 * `TaskEngine.task`, `DurableQueue.take`, …) goes to an OpenTelemetry span processor, and every Effect `Metric`
 * (`effect_workers_*`) to an OpenTelemetry metric reader, here Prometheus's scrape endpoint.
 *
 * Install (development or application dependencies; effect-workers itself never needs them):
 *   npm install @effect/opentelemetry@^0.64 @opentelemetry/api @opentelemetry/resources@^2 \
 *     @opentelemetry/sdk-metrics@^2 @opentelemetry/sdk-trace-base@^2 @opentelemetry/exporter-prometheus
 *
 * `main.ts` beside this file runs it; `test/opentelemetry.test.ts` scrapes it.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import type { MetricReader } from "@opentelemetry/sdk-metrics"
import type { SpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { DurableQueue, ResultCache, TaskEngine, WorkerQueue } from "../../src/index.js"

/**
 * The one layer a program provides: spans to `spanProcessor`, metrics to `metricReader` (a `PrometheusExporter`
 * serves them at `/metrics`). The SDK is shut down (spans flushed, the endpoint closed) when the layer's scope
 * closes.
 */
export const telemetryLayer = (options: {
  readonly serviceName: string
  readonly spanProcessor: SpanProcessor
  readonly metricReader: MetricReader
}) =>
  NodeSdk.layer(() => ({
    resource: { serviceName: options.serviceName },
    spanProcessor: options.spanProcessor,
    metricReader: options.metricReader
  }))

/** Some work for every module to report: squares through a cached queue, a task engine and a durable queue. */
export const work = Effect.scoped(
  Effect.gen(function*() {
    const squares = yield* WorkerQueue.make({
      name: "squares",
      cache: yield* ResultCache.memory<number, number>(),
      worker: (n: number) => Effect.succeed(n * n)
    })
    const engine = yield* TaskEngine.make({
      title: "doubler",
      workers: 4,
      handler: (n: number) => Effect.map(squares.require(n % 10), (square) => square * 2)
    })
    const results = yield* engine.applyToAll(Array.from({ length: 50 }, (_, i) => i))
    const emails = yield* DurableQueue.memory({ name: "emails", schema: Schema.String })
    yield* emails.offer("ada@example.com")
    yield* emails.take((to) => Effect.log(`sending to ${to}`))
    return results.length
  }).pipe(Effect.withSpan("example work"))
)
