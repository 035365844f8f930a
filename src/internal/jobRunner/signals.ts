/**
 * What a runner started by `runMain` or the CLI says about signals. `NodeRuntime.runMain` turns the first SIGTERM /
 * SIGINT into a graceful stop and then stops listening, so a second signal used to kill the process silently; here
 * the first prints `stopping: N running, grace 30 s; signal again to force`, the end of the stop prints the
 * summary, and a second signal kills the readers, says what it abandons, and exits with code 130.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Api from "../../JobRunner.js"

/** Filled in by the run; read by the signal handlers. @internal */
export interface RunControl {
  /** Jobs running (in all, and per process slot), and jobs queued. */
  status?: () => {
    readonly inFlight: number
    readonly perProcess: ReadonlyArray<readonly [processId: number, running: number]>
    readonly queued: number
  }
  /** Kills every reader process at once (synchronously). */
  forceKill?: () => void
  /** Called once the run has stopped, with its counts. */
  stopped?: (summary: Api.Summary) => void
}

const write = (line: string) => process.stderr.write(`${line}\n`)

/**
 * Installs the signal handlers for the life of the scope.
 *
 * @internal
 */
export const reportSignals = (name: string, grace: Duration.DurationInput, control: RunControl) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      let signals = 0
      control.stopped = (s) => {
        if (signals > 0) {
          write(`JobRunner ${name}: stopped: ${s.processed} processed, ${s.failed} failed, ${s.restarts} restarts`)
        }
      }
      const onSignal = (signal: NodeJS.Signals) => {
        signals++
        const status = control.status?.() ?? { inFlight: 0, perProcess: [], queued: 0 }
        const running = status.inFlight
        if (signals === 1) {
          const seconds = Duration.toMillis(Duration.decode(grace)) / 1000
          write(`JobRunner ${name}: ${signal}: stopping: ${running} running, grace ${seconds} s; signal again to force`)
          return
        }
        const where = status.perProcess.filter(([, r]) => r > 0).map(([p, r]) => `process ${p}: ${r}`).join(", ")
        write(
          `JobRunner ${name}: ${signal} again: forced stop; abandoning ${running} running job(s)${
            where.length > 0 ? ` (${where})` : ""
          } and ${status.queued} queued`
        )
        control.forceKill?.()
        process.exit(130)
      }
      process.on("SIGINT", onSignal)
      process.on("SIGTERM", onSignal)
      return onSignal
    }),
    (onSignal) =>
      Effect.sync(() => {
        process.removeListener("SIGINT", onSignal)
        process.removeListener("SIGTERM", onSignal)
      })
  )
