/**
 * The run's counters and where they are published: Effect `Metric`s tagged with the runner's name and, when a
 * `Progress` service is present, a progress session with one row per process slot. Counters are plain fields
 * updated per job; they are published every 250 ms and at the end, not per item: a tagged metric update costs
 * about as much as a trivial job.
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type * as Api from "../../JobRunner.js"
import type { Session } from "../progress.js"
import type { JobQueue } from "./jobQueue.js"
import { Metrics } from "./metrics.js"

/** What one process slot is doing, for the Progress display. @internal */
export interface SlotRow {
  readonly processId: number
  running: number
  taken: number
}

/**
 * What the writer loop is doing, for the dashboard: "asking" (the writer was called), "full" (the queue is above
 * its refill threshold), "idle" (the writer had nothing; backing off), "draining" (stopWhenEmpty: waiting for
 * queued jobs to finish), "source" (a durable source feeds the run), "stopped".
 * @internal
 */
export type WriterState = "starting" | "asking" | "full" | "idle" | "draining" | "source" | "stopped"

/**
 * The runs alive in this process, read by the dashboard (`effect-workers/dashboard`): a run adds itself when it
 * starts and leaves when it ends. Reading is plain field access, so a dashboard costs a run nothing.
 * @internal
 */
export const liveRuns: Set<RunStats> = new Set()

/** @internal */
export class RunStats {
  writerState: WriterState = "starting"
  readonly startedAt = Date.now()
  processed = 0
  failed = 0
  processesStarted = 0
  restarts = 0
  liveProcesses = 0
  shutdownTimedOut = false
  readonly slotRows: Array<SlotRow | undefined> = []
  private flushed = { processed: 0, failed: 0, restarts: 0 }
  private reported = { total: 0, completed: 0 }
  private readonly m:
    & Record<"queueDepth" | "inFlight" | "processes", Metric.Metric.Gauge<number>>
    & Record<"processed" | "failed" | "restarts", Metric.Metric.Counter<number>>

  constructor(
    readonly runnerName: string,
    readonly numProcesses: number,
    readonly queue: JobQueue,
    private readonly session: Session | undefined
  ) {
    this.m = {
      queueDepth: Metric.tagged(Metrics.queueDepth, "runner", runnerName),
      inFlight: Metric.tagged(Metrics.inFlight, "runner", runnerName),
      processed: Metric.tagged(Metrics.processed, "runner", runnerName),
      failed: Metric.tagged(Metrics.failed, "runner", runnerName),
      processes: Metric.tagged(Metrics.processes, "runner", runnerName),
      restarts: Metric.tagged(Metrics.restarts, "runner", runnerName)
    }
  }

  /** A process is up; a restart when the run has already started as many as it has slots. */
  processStarted(): void {
    if (this.processesStarted >= this.numProcesses) this.restarts++
    this.processesStarted++
    this.liveProcesses++
  }

  summary(): Api.Summary {
    return {
      processed: this.processed,
      failed: this.failed,
      processesStarted: this.processesStarted,
      restarts: this.restarts
    }
  }

  readonly flush: Effect.Effect<void> = Effect.suspend(() => {
    const delta = {
      processed: this.processed - this.flushed.processed,
      failed: this.failed - this.flushed.failed,
      restarts: this.restarts - this.flushed.restarts
    }
    this.flushed = { processed: this.processed, failed: this.failed, restarts: this.restarts }
    return Effect.all([
      Metric.set(this.m.queueDepth, this.queue.length),
      Metric.set(this.m.inFlight, this.queue.inFlight),
      Metric.set(this.m.processes, this.liveProcesses),
      Metric.incrementBy(this.m.processed, delta.processed),
      Metric.incrementBy(this.m.failed, delta.failed),
      Metric.incrementBy(this.m.restarts, delta.restarts),
      this.reportProgress
    ], { discard: true })
  })

  private readonly reportProgress: Effect.Effect<void> = Effect.suspend(() => {
    const session = this.session
    if (session === undefined) return Effect.void
    const done = this.processed + this.failed
    const total = this.queue.queuedTotal - this.reported.total
    const completed = done - this.reported.completed
    this.reported = { total: this.queue.queuedTotal, completed: done }
    return Effect.all([
      session.setQueueSize(this.queue.length),
      total > 0 ? session.addTotal(total) : Effect.void,
      completed > 0 ? session.addCompleted(completed) : Effect.void,
      Effect.forEach(this.slotRows.slice(0, this.numProcesses), (row, i) =>
        row === undefined || row.running === 0
          ? session.workerWaiting(i + 1)
          : session.setWorker(i + 1, `process ${row.processId}: ${row.running} running, ${row.taken} taken`), {
        discard: true
      })
    ], { discard: true })
  })
}
