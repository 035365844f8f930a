/**
 * One supervisor per run: a fiber per process slot starts a reader process, feeds it jobs from the queue, and
 * replaces it when it has taken `maxJobsPerProcess` jobs and its replacement is ready (or `RECYCLE_OVERRUN` ×
 * `maxJobsPerProcess` more, whatever the replacement does; the old process finishes the jobs it runs while the
 * replacement takes over) or when it dies. Shutdown stops the writer, lets running jobs
 * finish for `gracefulShutdownTimeout`, then kills what is left.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import type * as Api from "../../JobRunner.js"
import {
  type AnyRunner,
  isPromiseLike,
  JobCancelled,
  type JobRunnerError,
  JobTimedOut,
  type ProcessDied
} from "./definition.js"
import { type JobQueue, Notifier } from "./jobQueue.js"
import type { ReaderError } from "./protocol.js"
import type { Job, JobDone, ReaderHandle, ReaderSpawner } from "./spawner.js"
import type { RunStats, SlotRow } from "./stats.js"

const reasonOf = (
  error: ReaderError | ProcessDied | JobTimedOut | JobCancelled,
  shutdownTimedOut: boolean
): Api.JobFailure["reason"] => {
  switch (error._tag) {
    case "JobCancelled":
      return "Cancelled"
    case "ProcessDied":
      return shutdownTimedOut ? "ShutdownTimeout" : "ProcessDied"
    case "JobTimedOut":
      return "JobTimeout"
    case "ReaderError":
      return error.reason === "Unsendable" ? "Unsendable" : "ReaderFailed"
  }
}

/** @internal */
export interface SupervisorDeps {
  readonly runner: AnyRunner
  readonly settings: Api.Settings
  readonly queue: JobQueue
  readonly stats: RunStats
  readonly spawner: ReaderSpawner["Type"]
}

/**
 * How far past `maxJobsPerProcess` a process keeps taking jobs while its replacement is not ready yet, as a multiple
 * of `maxJobsPerProcess`: at most 1 × more (200 at the default), so a leaking process holds at most twice what the
 * setting allows when its replacement never becomes ready (a context that fails, a start slower than the jobs),
 * and is then recycled anyway. Without an overrun, each slot idled for a whole start (1-2.4 s compiled, 11-13 s
 * through tsx at load 16-20) once per 200 trivial jobs (a few ms of work): recycling was 7-12x slower than none.
 */
export const RECYCLE_OVERRUN = 1

/**
 * A burst of results counts as fast when it came back within this many ms of the previous hand-over: trivial jobs
 * do (a round trip takes 0.1-5 ms here, loaded), while jobs of 40 ms all ending in the same timer tick do not, and
 * must not pile up in the first process that is ready while the others start.
 */
const FAST_BURST_MS = 10

/**
 * The hand-over to one process: jobs are given synchronously and settle through a callback, with no fiber per job
 * (a failure's report gets one). A process holds its `concurrentTasksPerProcess` running jobs plus a prefetch that
 * waits in its backlog (readerHost.ts), sized to the reader: it doubles while the process returns as many results
 * in one burst as it has slots (jobs that finish within a round trip: without it, at the seed's defaults each round
 * trip carried at most 4 trivial jobs, 0.5-1.9x piscina) and come back fast, and halves otherwise (slow jobs,
 * where a backlog would only keep work from an idle process). It is capped at `0.3 × maxQueueSize / numProcesses` (45 at
 * the defaults), what the writer keeps queued, so the processes share the queue rather than one draining it; and
 * it is 0 with `jobTimeout`. A process killed (SIGKILL) with prefetched jobs: those it had not reported started
 * beyond its first `concurrentTasksPerProcess` go to another process, and may run twice if it had begun them.
 */
class ProcessFeed {
  readonly row: SlotRow
  readonly slotFree = new Notifier()
  readonly diedSignal = Deferred.unsafeMake<void>(FiberId.none)
  died = false
  /** A job of this process timed out: it takes no more, and is replaced. */
  timedOut = false
  taken = 0
  /** Jobs settled since the feed last handed jobs over: one results message's worth. */
  private burst = 0
  /** When jobs were last handed over: the run's Clock, so that under TestClock inline runs prefetch deterministically. */
  private filledAt = 0
  private prefetch = 0
  private readonly prefetchCap: number
  /** With `jobTimeout`: when each running job started (reported by the reader), in that order. */
  readonly startedAt: Map<Job, number> | undefined
  readonly jobStarted = new Notifier()

  /** Its replacement has started (sent its ready message): past `maxJobsPerProcess`, the process takes no more. */
  replacementReady = false

  constructor(
    private readonly handle: ReaderHandle,
    private readonly deps: SupervisorDeps,
    /** Completed once the process has taken half its `maxJobsPerProcess`: time to spawn its replacement. */
    private readonly halfway: Deferred.Deferred<void>,
    private readonly runReport: (failure: Api.JobFailure, settle: () => void) => void,
    private readonly clock: Clock.Clock
  ) {
    this.row = { processId: handle.processId, running: 0, taken: 0 }
    this.startedAt = Duration.toMillis(deps.settings.jobTimeout) > 0 ? new Map() : undefined
    // No prefetch with `jobTimeout`: a reader stuck in a synchronous loop sends nothing more, not even the results
    // of the jobs before the stuck one in the same batch, so the writer could not tell which job to time out.
    const { maxQueueSize, numProcesses } = deps.settings
    this.prefetchCap = this.startedAt === undefined ? Math.floor((0.3 * maxQueueSize) / numProcesses) : 0
  }

  /**
   * How many jobs the process may hold: its slots and the prefetch, resized from the last burst and how long after
   * the previous hand-over it came back.
   */
  holdLimit(): number {
    const slots = this.deps.settings.concurrentTasksPerProcess
    if (this.burst > 0) {
      const now = this.clock.unsafeCurrentTimeMillis()
      const fast = this.burst >= slots && now - this.filledAt < FAST_BURST_MS
      this.prefetch = fast
        ? Math.min(this.prefetchCap, Math.max(2 * this.burst, this.prefetch))
        : Math.floor(this.prefetch / 2)
      this.burst = 0
    }
    return slots + this.prefetch
  }

  /** Durable jobs the reader has started (reported, or among the first `concurrentTasksPerProcess` it holds). */
  private readonly began = new Set<Job>()
  /** Durable jobs given up (cancelled in their queue) while their reader runs them: their outcome is already settled. */
  private readonly aborted = new Set<Job>()

  private readonly started = (job: Job): void => {
    if (job.settle !== undefined) this.began.add(job)
    if (this.startedAt === undefined) return
    this.startedAt.set(job, this.clock.unsafeCurrentTimeMillis())
    this.jobStarted.notify()
  }

  markDied(): void {
    this.died = true
    Deferred.unsafeDone(this.diedSignal, Exit.void)
    this.slotFree.notify()
  }

  /**
   * Whether the process may take more jobs: it retires after `maxJobsPerProcess` once its replacement is ready, and
   * after `(1 + RECYCLE_OVERRUN) × maxJobsPerProcess` whatever its replacement does.
   */
  get open(): boolean {
    const max = this.deps.settings.maxJobsPerProcess
    return !this.deps.queue.stopping && !this.died && !this.timedOut &&
      (max === 0 || this.taken < (this.replacementReady ? max : (1 + RECYCLE_OVERRUN) * max))
  }

  /** The replacement is ready: wake the feed, so that a process past `maxJobsPerProcess` retires now. */
  markReplacementReady(): void {
    this.replacementReady = true
    this.slotFree.notify()
  }

  readonly settle: JobDone = (job, error) => {
    const { queue, stats } = this.deps
    this.row.running--
    queue.inFlight--
    this.burst++
    if (this.startedAt !== undefined) this.startedAt.delete(job)
    if (job.settle !== undefined) {
      queue.holders.delete(job)
      this.began.delete(job)
    }
    if (this.aborted.delete(job)) {
      // Cancelled while running, reported then; only its slot was still held (see `abort`).
      if (error?._tag === "ProcessDied") this.markDied()
    } else if (error?._tag === "ProcessDied" && error.unstarted === true) {
      // It never ran: another process runs it (or, stopping, a durable source gets it back untried).
      this.markDied()
      this.row.taken--
      if (queue.stopping) job.settle?.("back")
      else queue.putBack(job)
    } else if (error === undefined) {
      stats.processed++
      job.settle?.(undefined)
    } else {
      if (error._tag === "ProcessDied") this.markDied()
      this.fail(job, error)
    }
    if (queue.inFlight === 0) queue.idle.notify()
    this.slotFree.notify()
  }

  /**
   * With `jobTimeout`: fails every job that has run for longer, and retires the process (replaced at once; closed
   * once its other jobs end, killed if it cannot close). Jobs are kept in start order, so the first is the oldest:
   * the sweep sleeps until its deadline, not on a fixed tick.
   */
  get sweep(): Effect.Effect<void> {
    const startedAt = this.startedAt!
    const timeout = Duration.toMillis(this.deps.settings.jobTimeout)
    return Effect.gen(this, function*() {
      for (;;) {
        const oldest = startedAt.entries().next()
        if (oldest.done === true) {
          yield* this.jobStarted.waitOr(Deferred.await(this.diedSignal))
          if (this.died) return
          continue
        }
        const now = yield* Clock.currentTimeMillis
        const [job, at] = oldest.value
        if (now - at < timeout) {
          yield* Effect.sleep(Duration.millis(at + timeout - now))
          continue
        }
        startedAt.delete(job)
        if (!this.handle.cancel(job.id)) continue
        this.timedOut = true
        this.settle(
          job,
          new JobTimedOut({ detail: `still running after ${Duration.format(this.deps.settings.jobTimeout)}` })
        )
        // The feed may be waiting for an item: wake it to see the process is closed (a rare, spurious wake-up
        // for the other feeds).
        this.deps.queue.itemAvailable.notify()
      }
    })
  }

  /**
   * Gives up a durable job its DurableQueue cancelled (or timed out): the reader is told (an `Effect` reader is
   * interrupted, a job still in its backlog dropped) and the job settles `Cancelled`, its slot free. A sync or
   * async reader cannot be stopped and runs on, its outcome ignored; one stuck in a synchronous loop holds its
   * slot in the process until `jobTimeout` (if set) times out the jobs sent after it and replaces the process.
   */
  readonly abort = (job: Job): void => {
    const error = new JobCancelled({ detail: "cancelled or timed out in its DurableQueue" })
    if (!this.began.has(job) || this.handle.interrupt === undefined) {
      // Not started (it waits in the reader's backlog, which drops it), or a spawner that cannot interrupt.
      if (this.handle.cancel(job.id)) this.settle(job, error)
      return
    }
    // Running: the durable job settles now, but the slot stays held until the reader reports the job's end (an
    // interrupted `Effect` reader at once; a sync or async one when it finishes). A synchronous loop never
    // reports: with `jobTimeout` the sweep still times it out and replaces the process, as for any stuck job.
    this.deps.queue.holders.delete(job)
    this.aborted.add(job)
    this.handle.interrupt(job.id)
    this.fail(job, error)
  }

  /** Counts and reports a failed job, then settles it (a durable job's lease) once `onError` has run. */
  private fail(job: Job, error: ReaderError | ProcessDied | JobTimedOut | JobCancelled): void {
    const { stats } = this.deps
    stats.failed++
    const failure: Api.JobFailure = {
      reason: reasonOf(error, stats.shutdownTimedOut),
      jobId: job.id,
      item: job.item,
      processId: this.handle.processId,
      message: error._tag === "ReaderError" ? error.message : error.detail
    }
    this.runReport(failure, () => job.settle?.(failure))
  }

  /** Hands over queued jobs up to what the process may hold. */
  fill(): void {
    const { queue, settings } = this.deps
    const limit = this.holdLimit()
    this.filledAt = this.clock.unsafeCurrentTimeMillis()
    while (this.row.running < limit && this.open) {
      const job = queue.take()
      if (job === undefined) return
      this.taken++
      if (settings.maxJobsPerProcess > 0 && this.taken * 2 >= settings.maxJobsPerProcess) {
        Deferred.unsafeDone(this.halfway, Exit.void)
      }
      queue.inFlight++
      this.row.running++
      this.row.taken++
      if (job.settle !== undefined) queue.holders.set(job, this)
      if (!this.handle.submit(job, this.settle, this.started)) {
        // The process is gone and did not take it: the job goes back to the head of the queue.
        this.taken--
        queue.inFlight--
        this.row.running--
        this.row.taken--
        if (job.settle !== undefined) queue.holders.delete(job)
        queue.putBack(job)
        this.markDied()
      }
    }
  }
}

/** @internal */
export class Supervisor {
  readonly handles = new Set<ReaderHandle>()

  constructor(private readonly deps: SupervisorDeps) {}

  /** Jobs running per live process. */
  running(): Array<readonly [number, number]> {
    return this.deps.stats.slotRows.flatMap((row) => (row === undefined ? [] : [[row.processId, row.running] as const]))
  }

  /** Kills every reader process now, outside any fiber (a forced stop, just before the process exits). */
  killAllNow(): void {
    for (const handle of this.handles) Effect.runFork(handle.kill)
  }

  private report(failure: Api.JobFailure): Effect.Effect<void> {
    const { runner } = this.deps
    return Effect.gen(function*() {
      yield* Effect.logWarning(
        `JobRunner ${runner.name}: job ${failure.jobId} failed (${failure.reason}) in process ${failure.processId}: ${failure.message}`
      )
      const onError = runner.onError
      if (onError === undefined) return
      yield* Effect.suspend(() => {
        const out = onError(failure)
        return Effect.isEffect(out)
          ? (out as Effect.Effect<unknown, unknown>)
          : isPromiseLike(out)
          ? Effect.tryPromise(() => out)
          : Effect.void
      }).pipe(Effect.catchAllCause((cause) => Effect.logWarning("JobRunner onError failed", cause)))
    })
  }

  /**
   * Feeds one process until it stops taking jobs (recycled, died, or the run stops) — then `retiring` completes,
   * so the slot starts a replacement — and waits for the jobs it is running.
   */
  private feed(
    handle: ReaderHandle,
    index: number,
    retiring: Deferred.Deferred<void>,
    halfway: Deferred.Deferred<void>,
    replacementReady: Deferred.Deferred<void>
  ): Effect.Effect<void> {
    const { queue, stats } = this.deps
    return Effect.scoped(Effect.gen(this, function*() {
      const reports = yield* FiberSet.make<void, never>()
      const runFork = yield* FiberSet.runtime(reports)<never>()
      const feed = new ProcessFeed(handle, this.deps, halfway, (failure, settle) => {
        runFork(Effect.zipRight(this.report(failure), Effect.sync(settle)))
      }, yield* Effect.clock)
      stats.slotRows[index] = feed.row
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          if (stats.slotRows[index] === feed.row) stats.slotRows[index] = undefined
        })
      )
      yield* Effect.forkScoped(Effect.andThen(handle.exited, Effect.sync(() => feed.markDied())))
      if (feed.startedAt !== undefined) yield* Effect.forkScoped(feed.sweep)
      if (this.deps.settings.maxJobsPerProcess > 0) {
        yield* Effect.forkScoped(
          Effect.andThen(Deferred.await(replacementReady), Effect.sync(() => feed.markReplacementReady()))
        )
      }
      while (feed.open) {
        if (feed.row.running >= feed.holdLimit()) {
          // A plain wait, no race: it is the hot path (once per results message), and a race forks a fiber per
          // arm. Whatever closes the process (death, a timeout) notifies `slotFree` too.
          yield* feed.slotFree.wait
        } else if (queue.length === 0) {
          // Past `maxJobsPerProcess`, the replacement's readiness closes the process too (before it, it must not
          // wake the wait: it would return at once, every time).
          const past = this.deps.settings.maxJobsPerProcess > 0 && feed.taken >= this.deps.settings.maxJobsPerProcess
          yield* queue.itemAvailable.waitOr(
            Deferred.await(queue.stop),
            Deferred.await(feed.diedSignal),
            ...(past ? [Deferred.await(replacementReady)] : [])
          )
        } else {
          feed.fill()
        }
      }
      yield* Deferred.succeed(halfway, undefined)
      yield* Deferred.succeed(retiring, undefined)
      // A process retired for a timed-out job waits for its started jobs only: the ones in its backlog come back
      // unstarted when it closes (or is killed, stuck in a synchronous loop), and another process runs them.
      while (feed.row.running > 0 && !(feed.timedOut && feed.startedAt!.size === 0)) yield* feed.slotFree.wait
      yield* FiberSet.awaitEmpty(reports)
    }))
  }

  /** Spawns a process, or gives up when the run stops first (a slow context build must not hold a shutdown). */
  private spawn(index: number, scope: Scope.Scope) {
    const { queue, runner, settings, spawner } = this.deps
    return spawner.spawn({ runner, settings, slot: index }).pipe(
      Scope.extend(scope),
      Effect.map(Option.some),
      Effect.raceFirst(Effect.as(Deferred.await(queue.stop), Option.none())),
      Effect.either
    )
  }

  /** Spawns into a fresh scope (closed if the spawn is interrupted, or by the caller if it gives up). */
  private spawnInto(index: number) {
    return Effect.gen(this, function*() {
      const scope = yield* Scope.make()
      const result = yield* this.spawn(index, scope).pipe(Effect.onInterrupt(() => Scope.close(scope, Exit.void)))
      return { scope, result }
    })
  }

  /**
   * One process slot: start, feed, replace, until the run stops; then wait for the processes still draining. The
   * replacement of a recycled process is spawned once it has taken half its `maxJobsPerProcess`, and the old one
   * keeps taking jobs past `maxJobsPerProcess` until the replacement is ready (at most `RECYCLE_OVERRUN` ×
   * `maxJobsPerProcess` more): a start (node, the module, the context) takes 1-2.4 s compiled, while 200 trivial
   * jobs take milliseconds (4,000 such jobs with recycling took 44 s against 11 s without, each replacement
   * booting while its slot idled).
   */
  slot(index: number): Effect.Effect<void, JobRunnerError> {
    const { queue, stats } = this.deps
    return Effect.gen(this, function*() {
      let failures = 0
      const draining: Array<Fiber.RuntimeFiber<void>> = []
      let ahead: Fiber.RuntimeFiber<Effect.Effect.Success<ReturnType<Supervisor["spawnInto"]>>> | undefined
      while (!queue.stopping) {
        const { result: spawned, scope } = ahead !== undefined ? yield* Fiber.join(ahead) : yield* this.spawnInto(index)
        ahead = undefined
        if (spawned._tag === "Left" || Option.isNone(spawned.right)) {
          yield* Scope.close(scope, Exit.void)
          if (spawned._tag === "Right") break
          if (stats.processesStarted === 0) return yield* spawned.left
          failures++
          yield* Effect.logWarning(spawned.left.message)
          yield* Effect.raceFirst(
            Effect.sleep(Duration.seconds(Math.min(30, 2 ** failures))),
            Deferred.await(queue.stop)
          )
          continue
        }
        if (queue.stopping) {
          yield* Scope.close(scope, Exit.void)
          break
        }
        failures = 0
        const handle = spawned.right.value
        this.handles.add(handle)
        stats.processStarted()
        const retiring = yield* Deferred.make<void>()
        const halfway = yield* Deferred.make<void>()
        const replacementReady = yield* Deferred.make<void>()
        draining.push(
          yield* Effect.fork(
            this.feed(handle, index, retiring, halfway, replacementReady).pipe(
              Effect.ensuring(Effect.suspend(() => {
                this.handles.delete(handle)
                stats.liveProcesses--
                return Scope.close(scope, Exit.void)
              }))
            )
          )
        )
        yield* Deferred.await(halfway)
        if (!queue.stopping) {
          ahead = yield* Effect.fork(
            Effect.tap(this.spawnInto(index), ({ result }) =>
              result._tag === "Right" && Option.isSome(result.right)
                ? Deferred.succeed(replacementReady, undefined)
                : Effect.void)
          )
        }
        yield* Deferred.await(retiring)
      }
      if (ahead !== undefined) {
        // Spawned ahead but not needed: the run stopped.
        const { scope } = yield* Fiber.join(ahead)
        yield* Scope.close(scope, Exit.void)
      }
      yield* Fiber.awaitAll(draining)
    })
  }

  /**
   * Stops the run: the writer stops, jobs not handed out go back (to a durable source, untried), running jobs get
   * the grace period, then the processes are killed and their jobs reported.
   */
  shutdown(
    slots: ReadonlyArray<Fiber.RuntimeFiber<void, JobRunnerError>>,
    writer: Fiber.RuntimeFiber<unknown, unknown>
  ) {
    const { queue, runner, settings, stats } = this.deps
    return Effect.gen(this, function*() {
      for (const job of queue.stopNow()) job.settle?.("back")
      yield* Fiber.interrupt(writer)
      // Finalizers run uninterruptibly; the wait must be interruptible for the timeouts to apply.
      const all = Effect.interruptible(Fiber.awaitAll(slots))
      const finished = yield* Effect.timeout(all, settings.gracefulShutdownTimeout).pipe(Effect.option)
      if (Option.isNone(finished)) {
        stats.shutdownTimedOut = true
        yield* Effect.logWarning(
          `JobRunner ${runner.name}: ${queue.inFlight} job(s) still running after ${
            Duration.format(settings.gracefulShutdownTimeout)
          }; killing the reader processes`
        )
        yield* Effect.forEach(this.handles, (h) => h.kill, { discard: true })
        yield* Effect.timeout(all, Duration.seconds(5)).pipe(Effect.ignore)
      }
      yield* stats.flush
    })
  }
}
