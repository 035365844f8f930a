/**
 * Runs `work` with OpenTelemetry: spans printed to the console (a `ConsoleSpanExporter`; use an OTLP exporter for
 * Jaeger, Tempo, Honeycomb, …) and metrics served for Prometheus on 127.0.0.1:9464 (`HOST` / `PORT` to change;
 * `HOST=0.0.0.0` for a Prometheus outside the container). Then it waits: `curl http://127.0.0.1:9464/metrics`
 * shows the `effect_workers_*` series; Ctrl-C stops it.
 *
 *   node --import tsx examples/opentelemetry/main.ts
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus"
import type { MetricReader } from "@opentelemetry/sdk-metrics"
import { BatchSpanProcessor, ConsoleSpanExporter } from "@opentelemetry/sdk-trace-base"
import * as Effect from "effect/Effect"
import { telemetryLayer, work } from "./telemetry.js"

const host = process.env.HOST ?? "127.0.0.1"
const port = Number(process.env.PORT ?? 9464)

// The exporter bundles its own copy of the metrics SDK, whose class is the same at run time but another type to
// TypeScript: hence the cast.
const prometheus = new PrometheusExporter({ host, port }) as unknown as MetricReader

Effect.gen(function*() {
  const done = yield* work
  yield* Effect.log(`${done} tasks done; metrics at http://${host}:${port}/metrics (Ctrl-C to stop)`)
  return yield* Effect.never
}).pipe(
  Effect.provide(telemetryLayer({
    serviceName: "effect-workers-example",
    spanProcessor: new BatchSpanProcessor(new ConsoleSpanExporter()),
    metricReader: prometheus
  })),
  NodeRuntime.runMain
)
