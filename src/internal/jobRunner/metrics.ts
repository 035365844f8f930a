/**
 * The runner's metrics as Effect `Metric`s, and their rendering in the Prometheus text format for the optional
 * `metricsPort` endpoint.
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"

/** @internal */
export const Metrics = {
  queueDepth: Metric.gauge("effect_workers_job_runner_queue_depth", { description: "items waiting in the queue" }),
  inFlight: Metric.gauge("effect_workers_job_runner_in_flight", { description: "items being processed" }),
  processed: Metric.counter("effect_workers_job_runner_processed_total", {
    description: "items processed successfully",
    incremental: true
  }),
  failed: Metric.counter("effect_workers_job_runner_failed_total", { description: "items failed", incremental: true }),
  processes: Metric.gauge("effect_workers_job_runner_processes", { description: "live reader processes" }),
  restarts: Metric.counter("effect_workers_job_runner_restarts_total", {
    description: "reader processes replaced (recycled or died)",
    incremental: true
  })
} as const

const escape = (s: string) => s.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")

/** @internal */
export const render = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const lines: Array<string> = []
  const typed = new Set<string>()
  for (const pair of pairs) {
    const name = pair.metricKey.name
    if (!name.startsWith("effect_workers_job_runner_")) continue
    const state = pair.metricState
    let type: string
    let value: number
    if (MetricState.isCounterState(state)) {
      type = "counter"
      value = Number(state.count)
    } else if (MetricState.isGaugeState(state)) {
      type = "gauge"
      value = Number(state.value)
    } else continue
    if (!typed.has(name)) {
      typed.add(name)
      if (pair.metricKey.description._tag === "Some") lines.push(`# HELP ${name} ${pair.metricKey.description.value}`)
      lines.push(`# TYPE ${name} ${type}`)
    }
    const labels = pair.metricKey.tags.map((t) => `${t.key}="${escape(t.value)}"`).join(",")
    lines.push(`${name}${labels.length > 0 ? `{${labels}}` : ""} ${value}`)
  }
  return lines.join("\n") + "\n"
}

/** @internal */
export const prometheusText: Effect.Effect<string> = Effect.map(Metric.snapshot, render)
