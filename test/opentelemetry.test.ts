/**
 * Issue 13: the documented OpenTelemetry setup (examples/opentelemetry) exports our spans with their parents and
 * serves our metrics on a Prometheus scrape endpoint bound to 127.0.0.1, which this test scrapes.
 */
import { describe, expect, it } from "@effect/vitest"
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus"
import type { MetricReader } from "@opentelemetry/sdk-metrics"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Effect from "effect/Effect"
import { createServer } from "node:net"
import { telemetryLayer, work } from "../examples/opentelemetry/telemetry.js"

/** A port free a moment ago (the exporter takes a port number, and does not tell which one 0 gave it). */
const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })

describe("OpenTelemetry (examples/opentelemetry)", () => {
  it("exports the spans with their parents, and Prometheus scrapes the effect_workers_* metrics", async () => {
    const port = await freePort()
    let started!: () => void
    const listening = new Promise<void>((resolve) => started = resolve)
    const prometheus = new PrometheusExporter({ host: "127.0.0.1", port }, () => started())
    const spans = new InMemorySpanExporter()
    const program = Effect.gen(function*() {
      expect(yield* work).toBe(50)
      yield* Effect.promise(() => listening)
      const response = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/metrics`))
      // Read before the layer's scope closes: shutting the SDK down empties the in-memory exporter.
      return { text: yield* Effect.promise(() => response.text()), finished: spans.getFinishedSpans() }
    }).pipe(
      Effect.provide(telemetryLayer({
        serviceName: "effect-workers-test",
        spanProcessor: new SimpleSpanProcessor(spans),
        metricReader: prometheus as unknown as MetricReader
      }))
    )
    const { finished, text } = await Effect.runPromise(program)

    for (
      const series of [
        `effect_workers_worker_queue_misses_total{queue="squares"`,
        `effect_workers_worker_queue_hits_total{queue="squares"`,
        `effect_workers_worker_queue_run_duration_seconds_bucket{queue="squares"`,
        `effect_workers_task_engine_completed_total{engine="doubler"`,
        `effect_workers_task_engine_task_duration_seconds_count{engine="doubler"`,
        `effect_workers_durable_queue_acked_total{queue="emails"`,
        `effect_workers_result_cache_misses_total{cache="memory"`
      ]
    ) expect(text).toContain(series)
    expect(text).toMatch(/effect_workers_task_engine_completed_total\{engine="doubler"[^}]*\} 50/)

    const byId = new Map(finished.map((span) => [span.spanContext().spanId, span]))
    const parentOf = (name: string) => {
      const span = finished.find((s) => s.name === name)
      expect(span, name).toBeDefined()
      return byId.get(span!.parentSpanContext?.spanId ?? "")?.name
    }
    expect(parentOf("TaskEngine.task")).toBe("example work")
    expect(parentOf("WorkerQueue.require")).toBe("TaskEngine.task")
    expect(parentOf("WorkerQueue.run")).toBe("WorkerQueue.require")
    expect(parentOf("DurableQueue.take")).toBe("example work")
  })
})
