/**
 * Reports an engine's counters to a `Progress` session as deltas: engines keep running totals anyway (tasks known,
 * tasks done), and a sampler run every 100 ms (and once at the end) turns them into `addTotal` / `addCompleted`
 * calls, so the hot path pays nothing for progress. Used by the task engine; the JobRunner keeps a copy of the same
 * delta logic today.
 */
import * as Effect from "effect/Effect"
import type { Session } from "./progress.js"

/** What an engine shows at one moment. @internal */
export interface ProgressSample {
  /** Items known so far (never decreases in the display: a smaller value is ignored). */
  readonly total: number
  readonly completed: number
  readonly queueSize: number
  /** One entry per worker row (row `i + 1`): a description, or `undefined` for "waiting". */
  readonly rows: ReadonlyArray<string | undefined>
}

/** A report effect that sends what changed since the last one. @internal */
export const deltaReporter = (session: Session, sample: () => ProgressSample): Effect.Effect<void> => {
  let reported = { total: 0, completed: 0 }
  return Effect.suspend(() => {
    const now = sample()
    const total = Math.max(reported.total, now.total)
    const delta = { total: total - reported.total, completed: now.completed - reported.completed }
    reported = { total, completed: now.completed }
    return Effect.all([
      session.setQueueSize(now.queueSize),
      delta.total > 0 ? session.addTotal(delta.total) : Effect.void,
      delta.completed > 0 ? session.addCompleted(delta.completed) : Effect.void,
      Effect.forEach(
        now.rows,
        (row, i) => row === undefined ? session.workerWaiting(i + 1) : session.setWorker(i + 1, row),
        {
          discard: true
        }
      )
    ], { discard: true })
  })
}
