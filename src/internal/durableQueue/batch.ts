/**
 * `runBatch` (issue #16): a `run` whose handler is called once per batch of jobs, as pg-boss's `batchSize` and
 * graphile-worker's batch jobs, written once over the core's parts so every store has it. A `Crew` taker (core.ts)
 * runs a `BatchWorker` instead of `Attempts`: it takes the job the taker got, the runnable jobs buffered after it
 * (up to `size`), waits up to `maxWait` for more, runs the handler once, and settles every job of the batch by its
 * own rules (`complete`: its own attempts, backoff, dead letter), submitted to the `Settler` together (one store
 * write per 256). It reaches the core only through `BatchPort` (built in core.ts), so this file imports nothing from
 * core.ts.
 */
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as DurableQueue from "../../DurableQueue.js"
import { typeIdGuard } from "../errorTypeId.js"
import { type Codec, NOT_NOW } from "./encoding.js"
import { DurableQueueError, thrownMessage } from "./error.js"
import { emitSettled, type Emitter } from "./events.js"
import { type JobSettings, jobSettings, type QueueSettings } from "./options.js"
import type { LeasedJob, Settlement } from "./store.js"

/**
 * A Schema tagged error as every error of the library (test/conventions.test.ts); the error of each failure is
 * `unknown` to the Schema and `E` to TypeScript (`failures` re-declared). @internal (exported as
 * `DurableQueue.BatchFailure`)
 */
export class BatchFailure<E = unknown>
  extends Schema.TaggedError<BatchFailure<unknown>>("effect-workers/DurableQueue/BatchFailure")("BatchFailure", {
    failures: Schema.Array(Schema.Struct({ index: Schema.Number, error: Schema.Unknown })),
    /** With `runBatch`'s `result`: one per job of the batch, the results of the jobs acknowledged (since 0.3.0). */
    results: Schema.optional(Schema.Array(Schema.Unknown))
  })
{
  declare readonly failures: ReadonlyArray<DurableQueue.BatchItemFailure<E>>
  override get message(): string {
    return `${this.failures.length} job(s) of the batch failed (indexes ${
      this.failures.slice(0, 10).map((failure) => failure.index).join(", ")
    }${this.failures.length > 10 ? ", …" : ""})`
  }
}

const isBranded = typeIdGuard(BatchFailure, "effect-workers/DurableQueue/BatchFailure")

/** Structural, so a plain-JavaScript handler may fail with `{ _tag: "BatchFailure", failures: [...] }`. @internal */
export const isBatchFailure = (u: unknown): u is BatchFailure<unknown> =>
  isBranded(u) || typeof u === "object" && u !== null && (u as { readonly _tag?: unknown })._tag === "BatchFailure" &&
    Array.isArray((u as { readonly failures?: unknown }).failures)

/** What a `BatchWorker` uses of the core (built from its parts in core.ts). @internal */
export interface BatchPort<A> {
  readonly settings: QueueSettings
  readonly backend: string
  readonly codec: Codec<A>
  readonly emitter: Emitter
  /** The settlement of a success with no result. */
  readonly ack: Settlement
  /** A runnable job from the buffer now, if any (others settled on the way, as `run`'s takers do); none once shut. */
  readonly poll: () => LeasedJob | undefined
  /** Waits for a job, counted as demand (the fetcher leases for it); interrupted once the buffer is shut. */
  readonly wait: Effect.Effect<LeasedJob>
  /** Whether a job handed out may run (see core.ts `runnable`: cancelled or past `maxAttempts` are settled there). */
  readonly runnable: (job: LeasedJob) => boolean
  /** Whether the buffer is shut (the queue's scope closes). */
  readonly shut: () => boolean
  /** Whether the job's cancellation was asked while it was held here (forgotten then). */
  readonly ended: (id: string) => boolean
  /**
   * The settlement of a finished attempt by the core's rules (core.ts `complete`: retry, backoff, dead letter; a
   * success's value encoded with `result` and kept, as `run` keeps it).
   */
  readonly complete: (
    job: LeasedJob,
    perJob: JobSettings,
    exit: Exit.Exit<unknown, unknown>,
    result?: Codec<unknown>
  ) => Effect.Effect<Settlement>
  /** Hands a settlement to the `Settler`. */
  readonly submit: (job: LeasedJob, settlement: Settlement) => void
  /** The handler's view of a job: `run`'s own handle (core.ts `JobHandle`: id, attempt, progress). */
  readonly handle: (job: LeasedJob) => DurableQueue.Job
  /** The takers waiting out `maxWait`, whose jobs the core's put-back (last run stopped, `pause`, close) takes. */
  readonly gathering: Set<Gathering>
  /** The settlement of a finished attempt without its backoff (core.ts `classify`), for when `complete` died. */
  readonly unsettled: (job: LeasedJob, exit: Exit.Exit<unknown, unknown>) => Settlement
}

/** A taker holding jobs while it waits for more: its jobs go back when the core puts back what it fetched. @internal */
export interface Gathering {
  readonly putBack: () => void
}

/** @internal */
export interface BatchSettings {
  readonly size: number
  readonly maxWaitMillis: number
}

type Restore = <X, E, R>(effect: Effect.Effect<X, E, R>) => Effect.Effect<X, E, R>

type Handler<A, X, E, R> = (
  values: NonEmptyReadonlyArray<A>,
  jobs: NonEmptyReadonlyArray<DurableQueue.Job>
) => Effect.Effect<X, E, R>

/** Index → error of a `BatchFailure`, or why it is not one the core can apply (then every job fails). */
const failuresOf = (failure: BatchFailure<unknown>, size: number): Map<number, unknown> | string => {
  const byIndex = new Map<number, unknown>()
  for (const item of failure.failures) {
    const index: unknown = (item as { readonly index?: unknown } | null)?.index
    if (typeof index !== "number" || !Number.isInteger(index) || index < 0 || index >= size) {
      return `a BatchFailure named index ${String(index)}, not an integer from 0 to ${size - 1}`
    }
    if (byIndex.has(index)) return `a BatchFailure named index ${index} twice`
    byIndex.set(index, item.error)
  }
  return byIndex
}

/**
 * `decodeNow`, a throw (a schema whose transformation throws) left to `decode`, where it fails its job alone: thrown
 * in `start` it failed every job of the batch (test/DurableQueue.batchWorker.test.ts: with `maxAttempts` 1, the
 * good jobs batched with one such payload were dead letters, never run).
 */
const decodeNow = <A>(codec: Codec<A>, payload: string): A | typeof NOT_NOW => {
  try {
    return codec.decodeNow(payload)
  } catch {
    return NOT_NOW
  }
}

/**
 * The handler's results when they are an array of one per job, else what came instead (for "ResultsMismatch"),
 * undefined when none came. A
 * throw as they are read (a Proxy's `length`, a revoked Proxy) is what came: let out of `settle` it was a defect
 * of this code, every job failed with it and the taker paused 500 ms ("taking a job failed; retrying").
 */
const aligned = (read: () => unknown, size: number): ReadonlyArray<unknown> | string | undefined => {
  try {
    const value = read()
    if (value === undefined) return undefined
    if (!Array.isArray(value)) return `${describe(value)} (not an array)`
    const length = value.length
    return length === size ? value : `${length} result(s)`
  } catch (thrown) {
    return `results that threw as they were read (${thrownMessage(thrown)})`
  }
}

const describe = (value: unknown): string =>
  value === null
    ? "null"
    : typeof value === "object"
    ? `an object (${Object.prototype.toString.call(value)})`
    : typeof value

/**
 * The batches of one `runBatch` taker, each handler call on the taker's own fiber `self` under `restore` (as
 * `Attempts`). The jobs of a batch are not registered in `Running`: a `cancel` of one does not interrupt the
 * batch (the others would lose their attempt); `ended` tells at the end that it was cancelled. Every job taken is
 * settled exactly once, also when this code itself fails (`onExit`). `job` stays undefined: `Crew` has nothing to
 * settle for it.
 * @internal
 */
export class BatchWorker<A, X, E, R> {
  job: LeasedJob | undefined = undefined
  constructor(
    readonly port: BatchPort<A>,
    readonly handler: Handler<A, X, E, R>,
    readonly batch: BatchSettings,
    readonly restore: Restore,
    /** Completes once the run is stopping: a taker waiting out `maxWait` runs what it holds at once. */
    readonly stopping: Effect.Effect<void>,
    /** `runBatch`'s `result`: the handler succeeds with one result per job, each kept with its job. */
    readonly result?: Codec<unknown>
  ) {}

  readonly run = (first: LeasedJob): Effect.Effect<boolean, never, R> => {
    const jobs: Array<LeasedJob> = [first]
    this.fill(jobs)
    const open = new Set(jobs)
    const gathered = jobs.length < this.batch.size && this.batch.maxWaitMillis > 0
      ? this.gather(jobs, open)
      : Effect.void
    // Put back while gathering (the queue closing, `pause`, the last run stopping): nothing left to run.
    return Effect.flatMap(
      gathered,
      () => jobs.length === 0 ? Effect.succeed(!this.port.shut()) : this.start(jobs, open)
    )
      .pipe(Effect.onExit((exit) => open.size === 0 ? Effect.void : this.settleLeft(open, exit)))
  }

  /** The runnable jobs buffered now, up to `size`. */
  private fill(jobs: Array<LeasedJob>, open?: Set<LeasedJob>): void {
    while (jobs.length < this.batch.size) {
      const job = this.port.poll()
      if (job === undefined) return
      jobs.push(job)
      open?.add(job)
    }
  }

  /**
   * Waits up to `maxWait` from now for more jobs: each wait is one job (counted as demand, so the fetcher leases),
   * then what came with it is polled at once. Ends early once `size` are held, the run stops or the buffer shuts.
   * Meanwhile the jobs held are in `gathering`, where the core's put-back finds them as it finds the buffer's: the
   * queue's scope closing wakes this taker only after the settler's last write, too late to put them back itself
   * (their leases lapsed, an attempt counted for a handler never run).
   */
  private gather(jobs: Array<LeasedJob>, open: Set<LeasedJob>): Effect.Effect<void> {
    const { port } = this
    const gathering: Gathering = {
      putBack: () => {
        for (const job of jobs) this.submit(job, open, { _tag: "Release", attempts: job.attempts - 1 })
        jobs.length = 0
      }
    }
    const waited = Effect.flatMap(Clock.currentTimeMillis, (start) => {
      const deadline = start + this.batch.maxWaitMillis
      const more: Effect.Effect<void> = Effect.flatMap(Clock.currentTimeMillis, (now) => {
        if (jobs.length === 0 || jobs.length >= this.batch.size || now >= deadline || port.shut()) return Effect.void
        return Effect.flatMap(this.waitUntil(Effect.raceFirst(Effect.sleep(deadline - now), this.stopping)), (got) => {
          if (Option.isNone(got)) return Effect.void
          const job = got.value
          if (port.runnable(job)) {
            jobs.push(job)
            open.add(job)
          }
          this.fill(jobs, open)
          return more
        })
      })
      return more
    })
    return Effect.suspend(() => {
      port.gathering.add(gathering)
      return Effect.ensuring(waited, Effect.sync(() => port.gathering.delete(gathering)))
    })
  }

  /**
   * A job from `port.wait`, unless `until` ends first. Not `Effect.raceFirst(wait, until)`: when `until` won, a
   * wait that had taken a job in the same scheduler round (before its interruption arrived) completed with it and
   * the race dropped it: held, its lease refreshed, never run nor put back (test/DurableQueue.batchWorker.test.ts,
   * lost at one offset of 16). The wait runs on a fiber of its own (interruptible: forked from the taker's
   * uninterruptible part it would not be), whose exit after its interruption says whether it took one.
   */
  private waitUntil(until: Effect.Effect<void>): Effect.Effect<Option.Option<LeasedJob>> {
    return Effect.flatMap(Effect.fork(Effect.interruptible(this.port.wait)), (waiting) =>
      Effect.zipRight(
        Effect.exit(this.restore(Effect.raceFirst(Fiber.await(waiting), until))),
        Effect.map(
          Fiber.interrupt(waiting),
          (exit) => Exit.isSuccess(exit) ? Option.some(exit.value) : Option.none<LeasedJob>()
        )
      ))
  }

  /** Decodes the jobs (one that does not fails alone, as in `run`), then runs the handler on the others. */
  private start(jobs: ReadonlyArray<LeasedJob>, open: Set<LeasedJob>): Effect.Effect<boolean, never, R> {
    const { codec, emitter } = this.port
    const values: Array<A> = []
    const handed: Array<LeasedJob> = []
    const later: Array<LeasedJob> = []
    for (const job of jobs) {
      // Cancelled while this taker waited out `maxWait`: settled by `runnable`, not handed to the handler.
      if (this.batch.maxWaitMillis > 0 && !this.port.runnable(job)) {
        open.delete(job)
        continue
      }
      emitter.emit("Started", job.id, job.attempts)
      const value = decodeNow(codec, job.payload)
      if (value === NOT_NOW) {
        later.push(job)
      } else {
        values.push(value)
        handed.push(job)
      }
    }
    const decoded = later.length === 0 ?
      Effect.void :
      Effect.forEach(later, (job) =>
        // A defect too (a schema whose transformation throws) fails this job alone, as a failure does.
        Effect.matchCauseEffect(Effect.orDie(Effect.suspend(() => codec.decode(job.payload))), {
          onFailure: (cause) => this.completeJob(job, open, Exit.failCause(cause)),
          onSuccess: (value) =>
            Effect.sync(() => {
              values.push(value)
              handed.push(job)
            })
        }), { discard: true })
    return Effect.flatMap(decoded, () => handed.length === 0 ? Effect.succeed(true) : this.call(values, handed, open))
  }

  private call(values: Array<A>, handed: Array<LeasedJob>, open: Set<LeasedJob>): Effect.Effect<boolean, never, R> {
    const handles = handed.map(this.port.handle)
    // A handler that throws is a defect (`suspend`), as is one that returns something else than an Effect.
    const called = Effect.suspend(() => {
      const effect: unknown = this.handler(
        values as unknown as NonEmptyReadonlyArray<A>,
        handles as unknown as NonEmptyReadonlyArray<DurableQueue.Job>
      )
      return Effect.isEffect(effect)
        ? effect as Effect.Effect<X, E, R>
        : Effect.die(new Error(`runBatch's handler returned ${describe(effect)}, not an Effect`))
    })
    return Effect.flatMap(
      Effect.exit(this.restore(this.timed(called, handed))),
      (exit) => this.settle(handed, open, exit)
    )
  }

  /** The batch bounded by the shortest timeout of its jobs (each the offer's, else the queue's): none is run longer. */
  private timed(called: Effect.Effect<X, E, R>, handed: ReadonlyArray<LeasedJob>): Effect.Effect<X, E, R> {
    let timeoutMillis: number | undefined
    let timedJob = handed[0]!
    for (const job of handed) {
      const own = job.options === undefined ? undefined : jobSettings(job.options).timeoutMillis
      const millis = own ?? this.port.settings.timeoutMillis
      if (millis !== undefined && (timeoutMillis === undefined || millis < timeoutMillis)) {
        timeoutMillis = millis
        timedJob = job
      }
    }
    if (timeoutMillis === undefined) return called
    const error = new DurableQueueError({
      reason: "TimedOut",
      backend: this.port.backend,
      queue: this.port.settings.name,
      id: timedJob.id,
      attempt: timedJob.attempts,
      timeoutMillis
    })
    return Effect.timeoutFailCause(called, { duration: timeoutMillis, onTimeout: () => Cause.die(error) })
  }

  /**
   * Every job of the batch by the handler's outcome: acknowledged, failed with the batch's cause, or (a
   * `BatchFailure`) failed with its own error or acknowledged; cancelled while the batch ran, cancelled (its result
   * not kept). With `result`, each job acknowledged keeps its own result (`port.complete`, `run`'s rule); results not
   * one per job fail every job ("ResultsMismatch"): which result is whose cannot be told. Whether the taker goes
   * on: not after the handler interrupted itself (its jobs went back uncounted; taking them again at once would
   * spin, as in `run`).
   */
  private settle(
    handed: ReadonlyArray<LeasedJob>,
    open: Set<LeasedJob>,
    exit: Exit.Exit<X, E>
  ): Effect.Effect<boolean> {
    let all: Exit.Exit<unknown, unknown> | undefined
    let some: Map<number, unknown> | undefined
    let results: ReadonlyArray<unknown> | undefined
    if (Exit.isFailure(exit)) {
      const cause = exit.cause
      if (cause._tag === "Fail" && isBatchFailure(cause.error)) {
        const failures = failuresOf(cause.error, handed.length)
        if (typeof failures === "string") all = Exit.die(new Error(`runBatch's handler failed with ${failures}`))
        else some = failures
        // Without `results`, the jobs acknowledged keep none (documented at `BatchFailure`).
        const error = cause.error as { readonly results?: unknown }
        if (all === undefined && this.result !== undefined) {
          const given = aligned(() => error.results, handed.length)
          if (typeof given === "string") {
            all = Exit.fail(this.mismatch(given, handed.length, "failed with a BatchFailure whose results hold"))
          } else {
            results = given
          }
        }
      } else {
        all = exit
      }
    } else if (this.result !== undefined) {
      const given = aligned(() => exit.value, handed.length) ?? "undefined (not an array)"
      if (typeof given === "string") all = Exit.fail(this.mismatch(given, handed.length, "succeeded with"))
      else results = given
    }
    const goOn = !(all !== undefined && Exit.isFailure(all) && Cause.isInterruptedOnly(all.cause))
    const pending: Array<Effect.Effect<void>> = []
    handed.forEach((job, i) => {
      if (this.port.ended(job.id)) return this.submit(job, open, { _tag: "Cancelled", attempts: job.attempts })
      const failed = all ?? (some !== undefined && some.has(i) ? Exit.fail(some.get(i)) : undefined)
      if (failed !== undefined) pending.push(this.completeJob(job, open, failed))
      else if (results === undefined) this.submit(job, open, this.port.ack)
      else {
        // A defect in this job's settlement stays this job's: left to `settleLeft` it failed every job of the batch
        // not yet settled (3 of 4 in the test, when a result schema's encoding threw; the codec catches that now).
        pending.push(Effect.catchAllCause(
          // `suspend`: the codec's encoding runs as `complete` is called (a throw there is synchronous).
          Effect.suspend(() => this.completeJob(job, open, Exit.succeed(results[i]), this.result)),
          (cause) => this.completeJob(job, open, Exit.failCause(cause))
        ))
      }
    })
    if (pending.length === 0) return Effect.succeed(goOn)
    return Effect.as(Effect.all(pending, { discard: true }), goOn)
  }

  /** Why results that are not one per job fail every job, naming the batch's size and what came. */
  private mismatch(got: string, size: number, what: string): DurableQueueError {
    return new DurableQueueError({
      reason: "ResultsMismatch",
      backend: this.port.backend,
      queue: this.port.settings.name,
      cause: new Error(
        `runBatch's handler ${what} ${got} for a batch of ${size} job(s) (with \`result\`, one result per job, in the order of \`values\`)`
      )
    })
  }

  /** Settles a job by the core's rules (`port.complete`): a failed attempt, or a success whose result is kept. */
  private completeJob(
    job: LeasedJob,
    open: Set<LeasedJob>,
    exit: Exit.Exit<unknown, unknown>,
    result?: Codec<unknown>
  ): Effect.Effect<void> {
    const perJob = job.options === undefined ? {} : jobSettings(job.options)
    return Effect.map(this.port.complete(job, perJob, exit, result), (settlement) => this.submit(job, open, settlement))
  }

  private submit(job: LeasedJob, open: Set<LeasedJob>, settlement: Settlement): void {
    if (!open.delete(job)) return
    emitSettled(this.port.emitter, job, settlement)
    this.port.submit(job, settlement)
  }

  /**
   * Jobs left unsettled by a defect in this code (not the handler's: those settle their batch) are settled as a
   * failed attempt: held unsettled, their leases would be refreshed for as long as this process lives. The defect
   * may be `complete`'s own (a queue backoff Schedule that throws), which asked again dies again: such a job is
   * settled without its backoff, as `run`'s `settleUnsettled` does (test/DurableQueue.batchWorker.test.ts: both
   * jobs of the batch stayed "running" before).
   */
  private settleLeft(open: Set<LeasedJob>, exit: Exit.Exit<boolean, never>): Effect.Effect<void> {
    const cause = Exit.isFailure(exit) ? Exit.failCause(exit.cause) : Exit.die("settled by no one")
    return Effect.forEach(Array.from(open), (job) => {
      if (this.port.ended(job.id)) {
        return Effect.sync(() => this.submit(job, open, { _tag: "Cancelled", attempts: job.attempts }))
      }
      return Effect.catchAllCause(
        this.completeJob(job, open, cause),
        () => Effect.sync(() => this.submit(job, open, this.port.unsettled(job, cause)))
      )
    }, { discard: true })
  }
}
