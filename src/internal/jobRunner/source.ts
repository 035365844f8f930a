/**
 * A durable source instead of a writer: jobs leased from a `DurableQueue` (built in the writer process with the
 * writer context) through its public `run`, each held by a taker until a reader has run it, then acknowledged
 * (success) or handed back to the queue as a failed attempt. Takers: every reader slot plus a prefetch of
 * `min(lookupBlockSize, maxQueueSize)`. The DurableQueue job passes through: a reader's `ReaderJob.progress` is
 * recorded as the job's progress, and a job cancelled (`cancel(id)`) or timed out (the queue's or the offer's
 * `timeout`) interrupts the handler here, which takes the job back from the run (see `JobQueue.cancel`).
 */
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import type * as DurableQueue from "../../DurableQueue.js"
import type * as Api from "../../JobRunner.js"
import { type AnyRunner, failureDetail, JobRunnerError } from "./definition.js"
import type { JobQueue } from "./jobQueue.js"

/** @internal */
export interface SourceDeps {
  readonly runner: AnyRunner
  readonly source: NonNullable<AnyRunner["source"]>
  readonly settings: Api.Settings
  readonly queue: JobQueue
  readonly writerContext: Context.Context<unknown>
  readonly done: Deferred.Deferred<void>
}

const failureDetailOf = (outcome: Api.JobFailure) =>
  outcome.reason === "ReaderFailed" ? outcome.message : `${outcome.reason}: ${outcome.message}`

/** Builds the durable queue; returns the loop that feeds the job queue from it. @internal */
export const sourceLoop = (
  { done, queue, runner, settings, source, writerContext }: SourceDeps
): Effect.Effect<Effect.Effect<void, unknown>, JobRunnerError, Scope.Scope> =>
  Effect.gen(function*() {
    const durable = yield* (Effect.suspend(() => source(settings)).pipe(
      Effect.provide(writerContext)
    ) as Effect.Effect<DurableQueue.DurableQueue<unknown>, unknown, Scope.Scope>).pipe(
      Effect.catchAllCause((cause) =>
        Effect.fail(
          new JobRunnerError({ reason: "WriterContextFailed", runner: runner.name, detail: failureDetail(cause) })
        )
      )
    )
    let held = 0
    const takers = settings.numProcesses * settings.concurrentTasksPerProcess +
      Math.min(settings.lookupBlockSize, queue.max)
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const handler = (item: unknown, durableJob: DurableQueue.Job) =>
      Effect.async<void, JobRunnerError>((resume) => {
        if (queue.stopping) return resume(Effect.interrupt)
        held++
        const job = queue.push(item, (outcome) => {
          held--
          if (held === 0) queue.idle.notify()
          resume(
            outcome === undefined
              ? Effect.void
              : outcome === "back"
              ? Effect.interrupt
              : Effect.fail(
                new JobRunnerError({ reason: "ReaderFailed", runner: runner.name, detail: failureDetailOf(outcome) })
              )
          )
        }, (value) => {
          // Progress the store refuses (not JSON, over 64 KiB) is the reader's mistake, not the job's failure.
          runFork(
            durableJob.progress(value).pipe(
              Effect.catchAllCause((cause) =>
                Effect.logWarning(`JobRunner ${runner.name}: job ${durableJob.id}'s progress was not recorded`, cause)
              )
            )
          )
        })
        // The DurableQueue interrupts the handler when the job is cancelled or times out: the job leaves the
        // queue, or the process holding it gives it up (an `Effect` reader is interrupted).
        return Effect.sync(() => queue.cancel(job))
      })
    const loop = durable.run(handler, { concurrency: takers, shutdownTimeout: settings.gracefulShutdownTimeout })
    if (!settings.stopWhenEmpty) return loop
    // Stops once this runner holds no job and the queue reports none waiting or leased anywhere (a failed
    // attempt being handed back is still leased until it is queued again, so nothing slips between the two).
    const watch = Effect.gen(function*() {
      for (;;) {
        yield* Effect.sleep(settings.emptyQueueSleepTime)
        if (held > 0 || queue.inFlight > 0 || queue.length > 0) continue
        const size = yield* durable.size.pipe(
          Effect.catchAll((error) =>
            Effect.as(Effect.logWarning("JobRunner: reading the queue size failed", error), -1)
          )
        )
        if (size === 0) break
      }
      yield* Deferred.succeed(done, undefined)
    })
    return Effect.raceFirst(loop, watch)
  })
