/**
 * The one implementation of `DurableQueue`'s rules, over a `Store` (store.ts) that only stores: validated options,
 * Schema encoding in JavaScript (encoding.ts), attempts counted at lease, exit classification, dead-lettering
 * (including a job whose runner died while running its last attempt), lease refresh, settlement retries while the
 * store is away, and graceful `run`. Memory, Redis, PostgreSQL and SQLite share every line of it.
 *
 * Parts, each a small class: `Held` (the jobs leased here, refreshed together), `Settler` (settlements written in
 * batches by one fiber, retried while the store is away), `Feed` (one fetcher leasing as many jobs as takers wait
 * for), `Running` (the fibers running handlers, by job id, for `cancel`), `Crew` (a `run`'s takers, each running
 * its jobs' handlers on its own fiber). Over them: `attempt` / `runAttempt` (one job run by `take` / by a `run`'s
 * taker, timed out, settled with its backoff or result), `makeTake`, `makeRun`, `makeOffer`, `makeAdmin` (cancel,
 * status, results, pause, counts…); `make` wires them into the public queue.
 */
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as DurableQueue from "../../DurableQueue.js"
import type { OptionError } from "../../OptionError.js"
import { retryDelay } from "./backoff.js"
import { type BatchPort, BatchWorker, type Gathering } from "./batch.js"
import { CLOSE_FLUSH_MILLIS, flushWithin, withinCloseBound } from "./closeFlush.js"
import { type Codec, codec as makeCodec, NOT_NOW, notJson } from "./encoding.js"
import { DurableQueueError, thrownMessage } from "./error.js"
import { emitSettled, type Emitter, type EventPort, inProcessPort, makeEmitter } from "./events.js"
import { makeJobs, parseProgress } from "./listing.js"
import {
  batchSettings,
  type JobSettings,
  jobSettings,
  offerEntries,
  offerId,
  type OfferSettings,
  offerSettings,
  type QueueSettings,
  runSettings,
  takeSettings,
  usualJob
} from "./options.js"
import { members as eventMembers } from "./schedule.js"
import type { LeasedJob, OfferedJob, Settle, Settlement, Store, StoredStatus } from "./store.js"
import { withTelemetry } from "./telemetry.js"

/** Settlements written per store call, unless the store says otherwise (`Store.settleBatch`). */
const SETTLE_BATCH = 256

/** The jobs leased by this core (fetched, running, or settled but not yet written); their leases are refreshed together. */
class Held {
  readonly jobs = new Map<string, LeasedJob>()
  constructor(
    readonly store: Store,
    readonly leaseMillis: number,
    /** Told the ids among them whose cancellation was asked (the refresh reports them). */
    readonly asked: (ids: ReadonlyArray<string>) => void = () => {}
  ) {}
  add(jobs: ReadonlyArray<LeasedJob>): void {
    for (const job of jobs) this.jobs.set(job.id, job)
  }
  delete(job: LeasedJob): void {
    if (this.jobs.get(job.id) === job) this.jobs.delete(job.id)
  }
  /** Every third of the lease, so two refreshes can be lost or late before a live runner's lease lapses. */
  refreshLoop(): Effect.Effect<never> {
    return Effect.suspend(() =>
      this.jobs.size === 0 ? Effect.void : Effect.map(this.store.refresh(Array.from(this.jobs.values())), this.asked)
    ).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("DurableQueue: refreshing leases failed", cause)),
      Effect.zipRight(Effect.sleep(Math.max(10, Math.floor(this.leaseMillis / 3)))),
      Effect.forever
    )
  }
}

interface Pending extends Settle {
  readonly done: Deferred.Deferred<void, DurableQueueError> | undefined
}

/**
 * Settlements, written in batches by one fiber. A batch the store fails is retried every 200 ms for a lease or
 * 10 seconds, whichever is longer, its jobs' leases refreshed meanwhile (they stay in `Held`), so a job finished
 * during a store restart is acknowledged once it is back instead of running again; after that it is let go (its
 * lease lapses and it comes back: at-least-once).
 */
class Settler {
  /**
   * Settlements not yet taken by the loop: a plain array and a latch, as the event emitter's (an Effect `Queue`
   * offer was a linked-list node per job, and its `takeBetween` a `Chunk` per batch, issue #16).
   */
  private pending: Array<Pending> = []
  private readonly wake = Effect.unsafeMakeLatch(false)
  /** Built once: a Schedule per batch was 5 % of the memory core's CPU at small batches. */
  private readonly retryPolicy: Schedule.Schedule<unknown>
  constructor(
    readonly store: Store,
    readonly held: Held,
    readonly failed: (cause: unknown) => DurableQueueError,
    readonly onRequeued: Effect.Effect<void>
  ) {
    this.retryPolicy = Schedule.spaced("200 millis").pipe(Schedule.upTo(Math.max(held.leaseMillis, 10_000)))
    this.batch = store.settleBatch ?? SETTLE_BATCH
  }

  /** Settlements per store call at most. */
  private readonly batch: number

  /**
   * Settlements submitted, and settled (written, failed after their retries, or let go at close): written in
   * submission order by one fiber, so `settled` passing a count means every settlement submitted before it is
   * settled. `written` waits on them; the hot path pays an increment per job and one per batch.
   */
  private submitted = 0
  private settled = 0
  /** `written` callers: each done once `settled` reaches its `target` (or the settler closes). */
  private waiters: Array<{ readonly target: number; readonly done: Deferred.Deferred<void> }> = []
  /** Set once the close flushed (`flushOnClose`): nothing is written after it. */
  private closed = false

  submit(job: LeasedJob, settlement: Settlement): void {
    this.push({ job, settlement, done: undefined })
  }

  /** Waits until written; fails when the store stayed away. */
  submitAndWait(job: LeasedJob, settlement: Settlement): Effect.Effect<void, DurableQueueError> {
    return Effect.flatMap(Deferred.make<void, DurableQueueError>(), (done) => {
      this.push({ job, settlement, done })
      return Deferred.await(done)
    })
  }

  private push(pending: Pending): void {
    this.submitted++
    if (this.closed) return this.letGo([pending])
    this.pending.push(pending)
    if (this.pending.length === 1) this.wake.unsafeOpen()
  }

  /**
   * Waits until every settlement submitted before the call is settled: written, failed after its retries, or let
   * go as the queue closed. A `run`'s end waits on it (bounded there), so what it ran is acknowledged when it
   * returns.
   */
  written(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.closed || this.settled >= this.submitted) return Effect.void
      const waiter = { target: this.submitted, done: Deferred.unsafeMake<void>(FiberId.none) }
      this.waiters.push(waiter)
      return Effect.onInterrupt(
        Deferred.await(waiter.done),
        () => Effect.sync(() => this.waiters = this.waiters.filter((other) => other !== waiter))
      )
    })
  }

  /** Counts `n` settlements settled and wakes the `written` callers they satisfy. */
  private count(n: number): void {
    this.settled += n
    if (this.waiters.length === 0) return
    const left: typeof this.waiters = []
    for (const waiter of this.waiters) {
      if (this.closed || waiter.target <= this.settled) Deferred.unsafeDone(waiter.done, Exit.void)
      else left.push(waiter)
    }
    this.waiters = left
  }

  /** Up to `max` of the settlements submitted, oldest first. */
  private takeUpTo(max: number): Array<Pending> {
    if (this.pending.length <= max) {
      const all = this.pending
      this.pending = []
      return all
    }
    return this.pending.splice(0, max)
  }

  write(batch: ReadonlyArray<Pending>): Effect.Effect<void> {
    return this.store.settle(batch).pipe(
      Effect.retry(this.retryPolicy),
      Effect.mapError(this.failed),
      Effect.tapError((error) =>
        Effect.logWarning("DurableQueue: settling jobs failed; their leases will lapse", error)
      ),
      Effect.exit,
      Effect.flatMap((exit) => {
        // Counted once: a batch the loop wrote is no longer in flight, so `flushOnClose` does not write it again.
        if (this.inFlight === batch) this.inFlight = []
        this.count(batch.length)
        let requeued = false
        for (const pending of batch) {
          this.held.delete(pending.job)
          if (pending.settlement._tag === "Release" || pending.settlement._tag === "Retry") requeued = true
          if (pending.done !== undefined) Deferred.unsafeDone(pending.done, exit)
        }
        return requeued ? this.onRequeued : Effect.void
      })
    )
  }

  /**
   * A batch smaller than a quarter of the store's batch with no `take` waiting on it lingers `settleLingerMillis` for
   * more (SQL: 1 ms handlers on SQLite settled a job or two per commit, 584 jobs/s against the floor's 7,369).
   */
  private collect(chunk: Array<Pending>): Effect.Effect<ReadonlyArray<Pending>> {
    const linger = this.store.settleLingerMillis ?? 0
    if (
      linger <= 0 || chunk.length >= this.batch / 4 || this.waiters.length > 0 ||
      chunk.some((pending) => pending.done !== undefined)
    ) {
      return Effect.succeed(chunk)
    }
    return Effect.zipRight(
      Effect.sleep(linger),
      Effect.sync(() => {
        for (const more of this.takeUpTo(this.batch - chunk.length)) chunk.push(more)
        return chunk
      })
    )
  }

  /**
   * A batch taken is written; on interruption (the scope closes) the batch being written and what is queued are
   * written by `flushOnClose`. The write itself is interruptible so that a store that stopped answering cannot hold
   * the close: a batch cut short is written again there (a settlement the store applied already finds the job no
   * longer held and is ignored, as on every store).
   */
  loop(): Effect.Effect<never> {
    return Effect.uninterruptibleMask((restore) =>
      Effect.zipRight(
        restore(this.wake.await),
        Effect.suspend(() => {
          const chunk = this.takeUpTo(this.batch)
          // Closed only once everything submitted is taken: what is left is the next batch, at once.
          if (this.pending.length === 0) this.wake.unsafeClose()
          if (chunk.length === 0) return Effect.void
          this.inFlight = chunk
          return Effect.flatMap(this.collect(chunk), (batch) => {
            this.inFlight = batch
            return restore(this.write(batch))
          })
        })
      )
    ).pipe(
      Effect.forever,
      Effect.onInterrupt(() => this.flushOnClose())
    )
  }

  /** The batch the loop is writing (written again by `flushOnClose` when the loop is interrupted meanwhile). */
  private inFlight: ReadonlyArray<Pending> = []

  /**
   * As the scope closes: the batch cut short and what is queued are written, for 5 s at most (closeFlush.ts: a
   * store that stopped answering held the close forever; a database away, 10 s of retries per batch). What is not
   * written then is not lost (its leases lapse and the jobs come back: at-least-once); its `take` callers get a
   * `DurableQueueError`.
   */
  private flushOnClose(): Effect.Effect<void> {
    const flush = Effect.gen(this, function*() {
      while (this.inFlight.length > 0 || this.pending.length > 0) {
        if (this.inFlight.length === 0) this.inFlight = this.takeUpTo(this.batch)
        yield* this.write(this.inFlight)
      }
    })
    const letGo = Effect.suspend(() => {
      const left = [...this.inFlight, ...this.takeUpTo(Number.POSITIVE_INFINITY)]
      this.inFlight = []
      this.closed = true
      this.letGo(left)
      if (left.length === 0) return Effect.void
      return Effect.logWarning(
        `DurableQueue: ${left.length} settlement(s) not written within ${CLOSE_FLUSH_MILLIS} ms of closing; their leases will lapse`
      )
    })
    return flushWithin(flush, letGo)
  }

  /**
   * Settlements not written, as the queue closed (or submitted after: a `run`'s taker finishing its job once the
   * queue's scope closed under it): their leases lapse, their `take` callers get a `DurableQueueError`.
   */
  private letGo(left: ReadonlyArray<Pending>): void {
    this.count(left.length)
    if (left.length === 0) return
    const error = this.failed(new Error(`the queue closed before ${left.length} settlement(s) were written`))
    for (const pending of left) {
      this.held.delete(pending.job)
      if (pending.done !== undefined) Deferred.unsafeDone(pending.done, Exit.fail(error))
    }
  }
}

/**
 * How far a `run` leases ahead: up to this many times its concurrency, refilled once fewer than its concurrency are
 * buffered. Leasing only as many jobs as takers waited for made batches shrink to the idle takers of one tick (32
 * jobs with a no-op handler, ~15 with a 1 ms one on PostgreSQL: 0.13 commits per job, issue #16); a buffer refilled
 * in large batches keeps a round trip per 50–250 jobs, as graphile-worker's local queue does.
 */
const LOOKAHEAD = 4

/**
 * A `run` whose takers go fast leases about this much of its work ahead, when that is more than `LOOKAHEAD` gives:
 * each store call costs a fixed 70–190 µs of this process's CPU (a Redis round trip, even an empty lease, at load
 * 16), so a lease and a settlement of 64 jobs cost ~6 µs per job more than of 256 (bench/_redis-store-cpu.ts
 * --batch 64: 10–13.6 µs/job, --batch 256: 5–8.8). Measured by rate, not fixed: a run with slow handlers still
 * leases only `LOOKAHEAD` × its concurrency ahead, so it holds no more jobs back from other processes than before.
 */
const AHEAD_MILLIS = 20

/**
 * A store's `leaseBatch` is held to this many jobs per taker, so a run of low concurrency with slow handlers does
 * not hoard a queue's jobs from other processes (concurrency 1: 16 ahead; 16 and up: the SQL store's 256).
 */
const LEASE_BATCH_PER_TAKER = 16

/**
 * The jobs fetched and not yet handed out, first in first out: a plain array, read synchronously. An Effect `Queue`
 * cost a taker four Effect steps, a `Chunk` and an `Option` per job for its `poll` (issue #16). Once shut down (the
 * scope closes) it hands out nothing: takers polling it are interrupted.
 * @internal exported for test/DurableQueue.feed.test.ts
 */
export class JobBuffer {
  private items: Array<LeasedJob | undefined> = []
  private head = 0
  shut = false
  get size(): number {
    return this.items.length - this.head
  }
  offerAll(jobs: ReadonlyArray<LeasedJob>): void {
    for (const job of jobs) this.items.push(job)
  }
  poll(): LeasedJob | undefined {
    if (this.head >= this.items.length) return undefined
    const job = this.items[this.head]
    this.items[this.head++] = undefined
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    }
    return job
  }
  takeAll(): Array<LeasedJob> {
    const left = this.items.slice(this.head) as Array<LeasedJob>
    this.items = []
    this.head = 0
    return left
  }
  /** The jobs past the first `keep`, taken out (the first `keep` stay, in order). */
  takeAfter(keep: number): Array<LeasedJob> {
    const from = this.head + Math.max(0, keep)
    if (from >= this.items.length) return []
    const left = this.items.slice(from) as Array<LeasedJob>
    this.items.length = from
    return left
  }
}

/** Where an idle fetcher's wait stops doubling (see `IdleBackoff`). */
const IDLE_MAX_MILLIS = 2_000

/**
 * How long an idle fetcher waits for news after a lease that found nothing, when no delayed job or lapsing lease is
 * due sooner (`Feed.untilDue` bounds it by the next due time). Where the store hears changes made by every process
 * (`Store.hearing`: memory, Redis once its wake subscription holds, PostgreSQL once its LISTEN is confirmed, SQLite
 * reading `data_version` every `pollInterval`: 15 µs per ms idle instead of 29, sqliteWatch.ts), an
 * offer, a job put back or retried and a resume each wake the fetcher, so the poll is only a safety net: empty
 * leases in a row wait `pollInterval` (100 ms by default), then twice as long each time, up to 2 s (or
 * `pollInterval` if longer). An idle `run` of concurrency 16 cost 36 (Redis), 42 (PostgreSQL) µs of CPU per ms of
 * wall time at a lease every 100 ms, 2.0 and 4.2 with this and no taker woken by an empty lease (bench/_idle-cpu.ts,
 * medians of 4 interleaved with main at load 15-24, bench/RESULTS.md; issue #16). The cost: a change whose
 * notification is lost (a subscriber reconnecting, a LISTEN gone deaf until its next probe, an offer from a
 * PostgreSQL process with `notify: false`) is seen up to 2 s later instead of 100 ms; so is a delayed job or a
 * lapsed lease when reading the next due time failed (read, they are waited for exactly, as before). A store that
 * does not hear (`notify: false`) polls every `pollInterval`, as before. Any news (an offer,
 * a notification) or a lease that found jobs starts the backoff again from `pollInterval`.
 */
class IdleBackoff {
  /** The last wait after an empty lease while hearing; 0: none since the last news. */
  private wait = 0
  constructor(readonly pollMillis: number) {}
  /** The wait after a lease that found nothing: the next step where the store hears, else the poll. */
  empty(hearing: boolean): number {
    if (!hearing) return this.reset()
    this.wait = this.wait === 0 ? this.pollMillis : Math.min(Math.max(IDLE_MAX_MILLIS, this.pollMillis), this.wait * 2)
    return this.wait
  }
  /** News, or a lease that found jobs: the next wait is the poll. */
  reset(): number {
    this.wait = 0
    return this.pollMillis
  }
}

/**
 * One fetcher leases jobs and hands them out: as many as takers wait for, and, while a `run` is active, ahead of
 * them (see `LOOKAHEAD`). Jobs fetched but not yet handed out are held (refreshed) and put back, uncounted, when
 * the last `run` stops or the scope closes.
 *
 * @internal exported for test/DurableQueue.feed.test.ts
 */
export class Feed {
  demand = 0
  /** The takers of active `run`s (their concurrency): what the buffer is filled ahead for. Single `take`s do not count. */
  takers = 0
  readonly jobs = new JobBuffer()
  /** Opened when a taker starts waiting, or the buffer runs low. */
  readonly wake = Effect.unsafeMakeLatch(false)
  /** Opened when jobs may have become ready here (an offer, a retry): a fetcher waiting out its poll looks at once. */
  readonly offered = Effect.unsafeMakeLatch(false)
  /** Whether the last due time read had passed already (see `untilDue`). */
  private overdue = false
  /** Jobs handed out since the last lease started, and when it started (ms, `Clock`; -1: none yet). */
  private handed = 0
  private leaseStarted = -1
  /** Jobs handed out per ms between the last two lease starts (see `AHEAD_MILLIS`). */
  private rate = 0
  /** Set as the scope closes (before `jobs` is shut down): a `run`'s taker that ends then is not replaced. */
  closed = false
  /**
   * Opened when jobs were handed to the buffer (or it was shut down); takers waiting for a job await it, then poll.
   * Not `Queue.take`: effect 3's take hands an item to a waiting taker's Deferred at the offer, and a taker
   * interrupted at that moment (its interruption queued before the offer's resume) drops the item: a leased job
   * then stayed held, its lease refreshed, never run nor put back (test/DurableQueue.feed.test.ts). A latch
   * awaited and a poll lose nothing when interrupted.
   */
  readonly available = Effect.unsafeMakeLatch(false)
  /** How long the fetcher waits after a lease that found nothing (see `IdleBackoff`). */
  private readonly idle: IdleBackoff
  constructor(readonly store: Store, readonly held: Held, readonly pollMillis: number) {
    this.idle = new IdleBackoff(pollMillis)
  }

  /** Puts leased jobs in the buffer and wakes the takers waiting for one; interrupted once the buffer is shut. */
  handOver(jobs: ReadonlyArray<LeasedJob>): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.jobs.shut) return Effect.interrupt
      this.jobs.offerAll(jobs)
      return this.available.open
    })
  }

  /** Shuts the buffer (the scope closes): takers waiting are woken, and interrupted by their poll. */
  shutdown(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.jobs.shut = true
      return this.available.open
    })
  }

  /** Uninterruptible from the call to the hand-over: jobs the store leased must reach `jobs`, where the put-back finds them. */
  private fetch(want: number): Effect.Effect<Either.Either<ReadonlyArray<LeasedJob>, unknown>> {
    const pauses = this.pauses
    return Effect.uninterruptible(
      Effect.flatMap(
        Effect.either(this.store.lease(want)),
        (leased): Effect.Effect<Either.Either<ReadonlyArray<LeasedJob>, unknown>> => {
          if (Either.isLeft(leased)) return Effect.succeed(leased)
          // Leased before this instance paused the queue, arrived after: none starts here once `pause` returned
          // (a run of concurrency 2 started the 8 jobs of a lease out as it paused).
          if (pauses !== this.pauses && this.putBack !== undefined && leased.right.length > 0) {
            this.held.add(leased.right)
            this.putBack(leased.right)
            return Effect.succeed(leased)
          }
          // An empty lease wakes no taker: opening `available` for nothing woke every waiting taker (16 for a run of
          // concurrency 16) at each poll, to find the buffer empty and wait again (issue #16, bench/_idle-cpu.ts).
          if (leased.right.length === 0) {
            this.overlap = false
            this.handedSinceLease = 0
            return Effect.succeed(leased)
          }
          this.adapt(want, leased.right.length)
          // Takers waiting for a full lease are a sign of fast takers only if they ran jobs since the last one came:
          // a run's first lease always finds them waiting (at concurrency 64 it is full, and with 1 s handlers the
          // next 256 were leased at once: 512 held by one process).
          this.overlap = this.store.leaseWhileRunning === true && this.handedSinceLease > 0 && this.demand > 0 &&
            leased.right.length >= this.store.maxBatch
          this.handedSinceLease = 0
          this.held.add(leased.right)
          return Effect.as(Effect.zipRight(this.handOver(leased.right), this.unwanted), leased)
        }
      ).pipe(Effect.ensuring(this.landed.open))
    )
  }

  /**
   * Open while no lease is out; closed from a lease's sizing (`loop`) until its jobs reached the buffer or went back
   * (`unwanted`). The last `run` to stop awaits it, so the jobs of a lease out then are put back before it returns.
   */
  readonly landed = Effect.unsafeMakeLatch(true)

  /**
   * Where jobs leased for `run`s that all stopped while the lease was out go back (core.ts `putBack`): the run's
   * own put-back ran before they arrived, and in the buffer, with no taker to read it, they stayed held (refreshed)
   * by an idle instance until its scope closed. On Redis a lease is out through most of a fast drain
   * (`Store.leaseWhileRunning`): a run stopped then kept up to 256 jobs from every other process.
   */
  putBack: ((jobs: ReadonlyArray<LeasedJob>) => void) | undefined

  /** Once no `run` is left: what the buffer holds past the single `take`s waiting goes back (`putBack`). */
  private readonly unwanted: Effect.Effect<void> = Effect.sync(() => this.dropUnwanted())

  private dropUnwanted(): void {
    if (this.takers > 0 || this.putBack === undefined || this.jobs.shut) return
    const left = this.jobs.takeAfter(this.demand)
    if (left.length > 0) this.putBack(left)
  }

  private buffered(): number {
    return this.jobs.shut ? 0 : this.jobs.size
  }

  /** How many jobs to lease now: what waiting takers lack, or a refill of a low buffer while a `run` is active. */
  private wanted(): number {
    const buffered = this.buffered()
    const lacking = this.demand - buffered
    // Two measures of fast takers, the larger taken: the hand-out rate (every store), and, where the store has a
    // `leaseBatch` (SQL), leases that came back to takers already waiting (`adapt`), which a stall of the event loop
    // does not hide (by rate alone the SQL refill fell back to 64 under load).
    const ahead = Math.max(LOOKAHEAD * this.takers, Math.ceil(this.rate * AHEAD_MILLIS), this.adapted())
    const { maxBatch } = this.store
    this.low = this.overlap && this.takers > 0 ? maxBatch + 1 : this.takers
    if (buffered >= this.low) return lacking
    return Math.max(lacking, (this.overlap ? Math.max(ahead, 2 * maxBatch) : ahead) - buffered)
  }

  /**
   * Fewer buffered jobs than this wake the fetcher (see `wanted`): the concurrency; a full lease and one while
   * `overlap` holds.
   */
  private low = 0

  /**
   * Whether the next lease is asked for while a full one is still buffered, so that the store works on it while
   * this process runs the buffered jobs: set when a full lease (`maxBatch`) came back to takers already waiting for
   * it (the fetcher is the bound), on a store whose lease can proceed meanwhile (`Store.leaseWhileRunning`); cleared
   * by a lease that found the takers busy. With a no-op handler on Redis, the lease of the next 256 and the run of
   * the last 256 alternated, each side idle while the other worked (bench/_redis-trace.ts).
   */
  private overlap = false

  /** How many times this instance paused the queue (`pause`): a lease out meanwhile puts its jobs back (`fetch`). */
  pauses = 0

  /** Jobs handed out since the last lease came back (reset as the buffer is put back: a run's end, pause). */
  private handedSinceLease = 0

  /**
   * The rate of hand-outs since the last lease started; leases started within one millisecond count together (a
   * clock that does not move, as `TestClock`'s, keeps the rate at 0).
   */
  private measure(now: number): void {
    if (this.leaseStarted >= 0 && now <= this.leaseStarted) return
    if (this.leaseStarted >= 0) this.rate = this.handed / (now - this.leaseStarted)
    this.handed = 0
    this.leaseStarted = now
  }

  /** The smallest and largest refill: 4 × the concurrency, and the store's `leaseBatch` (16 per taker at most). */
  private bounds(): readonly [number, number] {
    return [
      LOOKAHEAD * this.takers,
      Math.min(this.store.leaseBatch ?? 0, this.store.maxBatch, LEASE_BATCH_PER_TAKER * this.takers)
    ]
  }

  /** A refill's size past 4 × the concurrency, where the store has a `leaseBatch` (see `adapt`). */
  private refill = 0

  /**
   * A full lease that came back to takers already waiting for it (they drained the buffer before it arrived: the
   * fetcher is the bound) doubles the next refill, up to the store's `leaseBatch` (and 16 per taker); one that found
   * none waiting halves it, down to 4 × the concurrency. Fast handlers reach large leases in a few round trips;
   * slow ones keep the small lookahead, so two processes share a short queue. (A refill sized by the drain rate
   * over 25 ms instead fell back to 64 under load: a 20 ms stall of the event loop looked like slow handlers.)
   */
  private adapt(asked: number, got: number): void {
    if (got < asked || this.takers === 0) return
    const [base, cap] = this.bounds()
    const current = Math.max(base, this.refill)
    this.refill = this.demand > 0 ? Math.min(cap, current * 2) : Math.max(base, Math.floor(current / 2))
  }

  /** How far a refill leases ahead by `adapt`: 4 × the concurrency, or more as it found the takers starved. */
  private adapted(): number {
    const [base, cap] = this.bounds()
    return cap <= base ? base : Math.min(cap, Math.max(base, this.refill))
  }

  loop(): Effect.Effect<never> {
    return Effect.gen(this, function*() {
      while (true) {
        this.wake.unsafeClose()
        const want = this.wanted()
        if (want <= 0) {
          yield* this.wake.await
          continue
        }
        // Closed as the lease is sized, not at its call: sized while a run was active, it leases jobs for it even
        // if the run stops before the call (the fiber suspended between), and that run's end must wait for them to
        // go back (a run's interrupt returned, then 4 jobs were leased; `fetch` opens it again, as the scope's close).
        this.landed.unsafeClose()
        this.offered.unsafeClose()
        const started = yield* Clock.currentTimeMillis
        this.measure(started)
        const asked = Math.min(Math.max(want, this.wanted()), this.store.maxBatch)
        const leased = yield* this.fetch(asked)
        if (Either.isLeft(leased)) {
          yield* Effect.logWarning("DurableQueue: leasing jobs failed; retrying", leased.left)
          yield* Effect.sleep(Math.max(this.pollMillis, 200))
        } else if (leased.right.length < asked) {
          // Fewer than asked: the ready jobs ran out, so wait for news (an offer, a notification, the poll, the next
          // delayed job's due time) as after an empty lease, instead of leasing again at once. A trickle of offers
          // (50 a second on PostgreSQL) met a lease already in flight, which could not see the new job: it waited
          // for that lease's end and one more (offer → start p50 63 ms at load 14; a delayed job's lateness 10-40 ms
          // per such lease at load 17; bench/RESULTS.md, issues 11 and 16).
          if (leased.right.length > 0) this.overdue = false
          const poll = leased.right.length > 0
            ? this.idle.reset()
            : this.idle.empty(this.store.hearing !== undefined && (yield* this.store.hearing))
          const woken = yield* Effect.raceFirst(
            Effect.flatMap(this.untilDue(poll), (ms) => Effect.as(Effect.sleep(ms), ms < poll ? "due" : "poll")),
            Effect.as(Effect.raceFirst(this.offered.await, this.store.ready), "news")
          )
          if (woken === "news") this.idle.reset()
          // `wakeSpacingMillis` counts from this lease's START: at most one lease per spacing under a stream of
          // single offers, with no wait when offers come further apart than that. It holds for wake-ups by offers
          // and polls, not at a job's due time.
          const early = started + this.store.wakeSpacingMillis - (yield* Clock.currentTimeMillis)
          if (woken !== "due" && early > 0) yield* Effect.sleep(early)
        } else {
          this.overdue = false
          this.idle.reset()
        }
      }
    })
  }

  /**
   * How long a fetcher whose lease found nothing waits (unless woken): until the next delayed job (or retry) is due
   * by the store's clock, so it starts on time wherever it was offered, at most the poll. The due time is read
   * after the lease (which made ready what was due), so it is a time to come: a delayed job due at once starts a
   * few ms late instead of up to `pollInterval` (100 ms by default; issue #11). A time already passed is trusted
   * once (the store makes it ready at the next lease), not twice running (a store that keeps reporting a job it
   * does not lease, as a paused one may, would make this loop spin); a failed read is the poll (no retry loop).
   * `poll` is the wait without a due time: `pollInterval`, or longer while backing off (`IdleBackoff`), which so
   * never delays a job past its due time.
   */
  private untilDue(poll: number): Effect.Effect<number> {
    return Effect.map(
      Effect.either(Effect.tapError(
        this.store.nextDueMillis,
        (cause) => Effect.logDebug("DurableQueue: reading the next due time failed; polling", cause)
      )),
      (due) => {
        const ms = Either.isRight(due) ? due.right : undefined
        if (typeof ms !== "number" || Number.isNaN(ms)) {
          this.overdue = false
          return poll
        }
        if (ms > 0) {
          this.overdue = false
          return Math.min(poll, Math.ceil(ms))
        }
        if (this.overdue) return poll
        this.overdue = true
        return 0
      }
    )
  }

  /** A job from the buffer without waiting (a `poll`, so nothing is counted as demand), else `wait`. */
  next(): Effect.Effect<LeasedJob> {
    return Effect.flatMap(this.poll, (polled) => Option.isNone(polled) ? this.wait : Effect.succeed(polled.value))
  }

  /** A job from the buffer, if any, without waiting; interrupted once the buffer is shut. */
  readonly poll: Effect.Effect<Option.Option<LeasedJob>> = Effect.suspend(() =>
    this.jobs.shut ? Effect.interrupt : Effect.succeed(Option.fromNullable(this.pollNow()))
  )

  /** `poll` without an Effect, for a caller that checked `jobs.shut`. */
  pollNow(): LeasedJob | undefined {
    const job = this.jobs.poll()
    if (job === undefined) return undefined
    this.handed++
    this.handedSinceLease++
    // The fetcher is woken only when it has something to do (not once per job handed out of a full buffer).
    if (this.jobs.size < this.takers || this.jobs.size < this.low) this.wake.unsafeOpen()
    return job
  }

  readonly wait: Effect.Effect<LeasedJob> = Effect.uninterruptibleMask((restore) =>
    Effect.suspend(() => {
      this.demand++
      this.wake.unsafeOpen()
      return restore(this.awaitJob).pipe(Effect.onExit((exit) =>
        Effect.sync(() => {
          this.demand--
          // A `take` interrupted as the lease kept for it arrived (its wake-up queued behind the interruption):
          // with no run to read the buffer, that job stayed held (refreshed) until the scope closed.
          if (Exit.isFailure(exit)) this.dropUnwanted()
        })
      ))
    })
  )

  /**
   * Closes the latch, then polls: a job handed over after the close opens it again, so none is missed; one left in
   * the buffer after this poll reopens it for the other waiters. A shut-down buffer fails the poll (interruption).
   */
  private readonly awaitJob: Effect.Effect<LeasedJob> = Effect.suspend(() => {
    if (this.jobs.shut) return Effect.interrupt
    this.available.unsafeClose()
    const job = this.jobs.poll()
    if (job === undefined) return Effect.zipRight(this.available.await, this.awaitJob)
    this.handed++
    this.handedSinceLease++
    if (this.jobs.size > 0) this.available.unsafeOpen()
    return Effect.succeed(job)
  })

  /** What was fetched and not handed out, to be put back (the last `run` stopped, or the scope closes). */
  takeBuffered(): Effect.Effect<ReadonlyArray<LeasedJob>> {
    return Effect.sync(() => {
      this.handedSinceLease = 0
      // The takers measured are gone (or paused): a run that starts next is not sized by their speed (after a fast
      // run, one of concurrency 1 with 50 ms handlers leased 256 at once by the stale rate, not 4).
      this.rate = 0
      this.handed = 0
      this.leaseStarted = -1
      this.refill = 0
      this.overlap = false
      return this.jobs.takeAll()
    })
  }
}

/** Handlers running in this core by job id, and the ids whose cancellation was asked: `ask` interrupts them. */
class Running {
  /**
   * Where handlers run: a slot per `run` taker (for as long as it lives) or `take` attempt, holding the id of the
   * job it runs. A Map of fibers by job id cost a `set` and a `delete` of a fresh string key per job (~2–4 % of the
   * Redis consumer's profile, issue #16); `ask` (a cancel: rare) looks through the slots instead.
   */
  readonly slots = new Set<Slot>()
  readonly asked = new Set<string>()
  /**
   * The fibers interrupted here. A `run`'s taker runs its jobs' handlers on its own fiber, and an Effect fiber once
   * interrupted stays so: a taker found here takes no other job (it ends and another replaces it, `Crew`).
   */
  readonly interrupted = new WeakSet<Fiber.RuntimeFiber<unknown, unknown>>()
  constructor(readonly held: Map<string, LeasedJob>) {}

  ask(ids: ReadonlyArray<string>): void {
    // A refresh also reports a job settled here but not yet written; once written (no longer held) its id goes.
    for (const id of this.asked) if (!this.held.has(id)) this.asked.delete(id)
    for (const id of ids) {
      this.asked.add(id)
      for (const slot of this.slots) {
        if (slot.running === id && slot.fiber !== undefined) this.interrupt(slot.fiber)
      }
    }
  }

  /** Whether `fiber` was interrupted here: a WeakSet lookup only once any was (a cancel), not per job. */
  wasInterrupted(fiber: Fiber.RuntimeFiber<unknown, unknown>): boolean {
    return this.interrupts > 0 && this.interrupted.has(fiber)
  }
  private interrupts = 0

  private interrupt(fiber: Fiber.RuntimeFiber<unknown, unknown>): void {
    this.interrupts++
    this.interrupted.add(fiber)
    fiber.unsafeInterruptAsFork(FiberId.none)
  }

  join(slot: Slot): void {
    this.slots.add(slot)
  }

  /** The slot leaves (its taker ended, its attempt is over). */
  leave(slot: Slot): void {
    this.slots.delete(slot)
  }

  /** The slot of a fiber (a taker's), if it joined: for the rare paths (a defect, a taker's end), a scan. */
  slotOf(fiber: Fiber.RuntimeFiber<unknown, unknown>): Slot | undefined {
    for (const slot of this.slots) if (slot.fiber === fiber) return slot
    return undefined
  }

  /** Whether it was interrupted at once (its cancellation was asked already). */
  start(slot: Slot, id: string): boolean {
    slot.running = id
    // Asked between the lease and now (a refresh of the fetched job, or a local cancel).
    if (this.asked.size === 0 || !this.asked.has(id) || slot.fiber === undefined) return false
    this.interrupt(slot.fiber)
    return true
  }

  /** Whether its cancellation was asked. */
  end(slot: Slot | undefined, id: string): boolean {
    if (slot !== undefined) slot.running = undefined
    return this.asked.size > 0 && this.asked.delete(id)
  }
}

/** A fiber that runs handlers, and the id of the job it runs now (`Running`). */
interface Slot {
  running: string | undefined
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
}

/** The parts of one queue, shared by its operations. */
interface Parts<A> {
  readonly store: Store
  readonly settings: QueueSettings
  readonly codec: Codec<A>
  readonly held: Held
  readonly feed: Feed
  readonly settler: Settler
  readonly running: Running
  readonly failed: (cause: unknown, id?: string) => DurableQueueError
  readonly emitter: Emitter
  /** The settlement of nearly every job (no result kept): one object per queue, not one per job. */
  readonly ack: Settlement
  /** `runBatch` takers holding jobs while they wait out `maxWait` (batch.ts): `putBack` puts those back too. */
  readonly gathering: Set<Gathering>
}

/**
 * What a finished attempt makes of its job, before its backoff or result are worked out (`complete`). A job
 * whose cancellation was asked is not retried, whatever its handler did but succeed.
 */
const classify = (
  exit: Exit.Exit<unknown, unknown>,
  job: LeasedJob,
  settings: QueueSettings,
  cancelled: boolean
): Settlement => {
  // The time to live goes with every acknowledgement: a store may keep the done record (status "done") only
  // that long (Redis does), result or not.
  if (Exit.isSuccess(exit)) return { _tag: "Ack", result: undefined, resultTtlMillis: settings.resultTtlMillis }
  if (cancelled) return { _tag: "Cancelled", attempts: job.attempts }
  if (Cause.isInterruptedOnly(exit.cause)) return { _tag: "Release", attempts: job.attempts - 1 }
  const lastError = Cause.pretty(exit.cause)
  return job.attempts >= settings.maxAttempts
    ? { _tag: "Dead", attempts: job.attempts, lastError }
    : { _tag: "Retry", attempts: job.attempts, lastError, delayMillis: 0 }
}

/**
 * The settlement of a finished attempt: a retry waits out its backoff in the store (as a delayed job, holding no
 * taker and no lease), or goes to the dead letters when a queue's backoff Schedule ended; a success keeps its
 * result when asked to.
 */
const complete = <A>(
  parts: Parts<A>,
  job: LeasedJob,
  perJob: JobSettings,
  exit: Exit.Exit<unknown, unknown>,
  cancelled: boolean,
  result: Codec<unknown> | undefined
): Effect.Effect<Settlement> => {
  const settlement = classify(exit, job, parts.settings, cancelled)
  if (settlement._tag === "Retry" && Exit.isFailure(exit)) {
    return Effect.map(
      retryDelay(perJob.backoff ?? parts.settings.backoff, job.attempts, Cause.squash(exit.cause)),
      (delayMillis): Settlement =>
        delayMillis === undefined
          ? {
            _tag: "Dead",
            attempts: job.attempts,
            lastError: `${settlement.lastError}\n(the queue's backoff schedule ended after ${job.attempts} attempts)`
          }
          : { ...settlement, delayMillis }
    )
  }
  if (settlement._tag !== "Ack" || result === undefined || !Exit.isSuccess(exit)) return Effect.succeed(settlement)
  // The work is done: a result that cannot be encoded is lost (logged), the job is not run again for it.
  return result.encode(exit.value).pipe(
    Effect.map((json): Settlement => ({ _tag: "Ack", result: json, resultTtlMillis: parts.settings.resultTtlMillis })),
    Effect.catchAll((error) =>
      Effect.as(
        Effect.logWarning(
          `DurableQueue ${parts.settings.name}: the result of job ${
            JSON.stringify(job.id)
          } cannot be encoded; not stored`,
          // As a Cause, so the logger prints the error (an Error as a plain message printed "{}").
          Cause.fail(error)
        ),
        settlement
      )
    )
  )
}

/**
 * A job leased again past `maxAttempts`: its last lease lapsed unsettled. The text states only what is known.
 * Attempts are counted at lease, and a lease can lapse under load while its runner lives (a refresh or a
 * settlement written late), so the former "attempt 3 of 2 was never settled" read as a third run after two.
 */
const runnerDied = (job: LeasedJob, settings: QueueSettings): Settlement => ({
  _tag: "Dead",
  attempts: job.attempts - 1,
  lastError: `leased ${job.attempts - 1} time${job.attempts === 2 ? "" : "s"}, maxAttempts ${settings.maxAttempts}: ` +
    `the last lease (${settings.leaseMillis} ms) lapsed without a settlement ` +
    `(its runner died, hung past the lease, or lost the store)`
})

/** Progress larger than this is refused: it is stored with the job and read by every `status`. */
const MAX_PROGRESS_BYTES = 64 * 1024

/** UTF-8 bytes, counted only when they could exceed the limit (n UTF-16 code units are at most 3n bytes). */
const utf8Length = (text: string): number =>
  text.length * 3 <= MAX_PROGRESS_BYTES ? text.length : new TextEncoder().encode(text).length

const recordProgress = <A>(parts: Parts<A>, job: LeasedJob, value: unknown): Effect.Effect<void, DurableQueueError> =>
  Effect.suspend(() => {
    const rejected = (why: string) =>
      new DurableQueueError({
        reason: "ProgressRejected",
        backend: parts.store.backend,
        queue: parts.settings.name,
        id: job.id,
        cause: new Error(why)
      })
    // A getter of the value may throw as it is read (a Proxy, a user's class): a rejected progress, not a defect.
    let json: string
    try {
      const why = notJson(value)
      if (why !== undefined) return Effect.fail(rejected(`it is not plain JSON: ${why}`))
      json = JSON.stringify(value)
    } catch (thrown) {
      return Effect.fail(rejected(`reading it threw: ${thrownMessage(thrown)}`))
    }
    const bytes = utf8Length(json)
    if (bytes > MAX_PROGRESS_BYTES) {
      return Effect.fail(rejected(`its JSON is ${bytes} bytes, more than ${MAX_PROGRESS_BYTES}`))
    }
    return Effect.mapError(parts.store.progress(job, json), (cause) => parts.failed(cause, job.id)).pipe(
      Effect.tap(() => parts.emitter.emit("Progress", job.id, job.attempts, { progress: value }))
    )
  })

/**
 * The `DurableQueue.Job` a handler gets. `progress` is a getter on the prototype, not a closure per job: the closure
 * (and, under tsx, its `__name` / `set name` wrapper) was 5.3 % of the Redis consumer's CPU per job (profile of
 * bench/_profile.ts --jobs 100000, issue #16). Read as a property (`job.progress(...)`, or destructured) it is
 * the function it was.
 */
class JobHandle<A> implements DurableQueue.Job {
  readonly id: string
  readonly attempt: number
  // Private fields (#): not enumerable, so a handler logging or spreading its job sees only id and attempt.
  readonly #parts: Parts<A>
  readonly #job: LeasedJob
  constructor(parts: Parts<A>, job: LeasedJob) {
    this.id = job.id
    this.attempt = job.attempts
    this.#parts = parts
    this.#job = job
  }
  get progress(): (value: unknown) => Effect.Effect<void, DurableQueueError> {
    return (value) => recordProgress(this.#parts, this.#job, value)
  }
}

/**
 * The handler's effect for `job`, built now: its value decoded synchronously when the schema allows (`decodeNow`),
 * else decoded as an Effect inside the attempt (a payload that does not decode is a failed attempt). What the
 * handler throws as it is called is a defect of the attempt, as in the `Effect.suspend` this replaces (one Effect
 * step a job fewer; `body` keeps it where the handler must not be called yet).
 */
const handlerEffect = <A, X, E, R>(
  parts: Parts<A>,
  job: LeasedJob,
  handler: (value: A, job: DurableQueue.Job) => Effect.Effect<X, E, R>
): Effect.Effect<X, E, R> => {
  try {
    const handle = new JobHandle(parts, job)
    const value = parts.codec.decodeNow(job.payload)
    return value !== NOT_NOW
      ? handler(value, handle)
      : Effect.flatMap(Effect.orDie(parts.codec.decode(job.payload)), (value) => handler(value, handle))
  } catch (error) {
    return Cause.isInterruptedException(error)
      ? Effect.failCause(Cause.sequential(Cause.die(error), Cause.interrupt(FiberId.none)))
      : Effect.die(error)
  }
}

/** The attempt's timeout: the offer's, else the queue's; undefined: none. */
const timeoutOf = <A>(parts: Parts<A>, perJob: JobSettings): number | undefined =>
  perJob.timeoutMillis ?? parts.settings.timeoutMillis

/** The handler's body: the job decoded, run, bounded by its timeout (the offer's, else the queue's). */
const body = <A, X, E, R>(
  parts: Parts<A>,
  job: LeasedJob,
  perJob: JobSettings,
  handler: (value: A, job: DurableQueue.Job) => Effect.Effect<X, E, R>
): Effect.Effect<X, E, R> => {
  const run = Effect.suspend(() => handlerEffect(parts, job, handler))
  const timeoutMillis = timeoutOf(parts, perJob)
  if (timeoutMillis === undefined) return run
  return Effect.timeoutFailCause(run, {
    duration: timeoutMillis,
    onTimeout: () =>
      Cause.die(
        new DurableQueueError({
          reason: "TimedOut",
          backend: parts.store.backend,
          queue: parts.settings.name,
          id: job.id,
          attempt: job.attempts,
          timeoutMillis
        })
      )
  })
}

type Restore = <X, E, R>(effect: Effect.Effect<X, E, R>) => Effect.Effect<X, E, R>

/**
 * Settles a job whose attempt ended with no settlement (a defect outside the handler, such as a stack overflow), as
 * a failed attempt: held unsettled, its lease would be refreshed for as long as this process lives.
 */
const settleUnsettled = <A>(
  parts: Parts<A>,
  job: LeasedJob,
  exit: Exit.Exit<unknown, unknown>,
  slot: Slot | undefined
): void => {
  const cancelled = parts.running.end(slot, job.id)
  const settlement = classify(
    Exit.isSuccess(exit) ? Exit.die("settled by no one") : exit,
    job,
    parts.settings,
    cancelled
  )
  emitSettled(parts.emitter, job, settlement)
  parts.settler.submit(job, settlement)
}

/**
 * One attempt of `job` for `take`, its handler on a fiber of its own, so that a `cancel` interrupts the handler and
 * not the caller's fiber; interrupting the caller interrupts the handler and puts the job back. The fiber is a
 * daemon: a child would be interrupted with its parent (Effect signals children at once, even while the parent is
 * uninterruptible).
 */
const attempt = <A, X, E, R>(
  parts: Parts<A>,
  job: LeasedJob,
  handler: (value: A, job: DurableQueue.Job) => Effect.Effect<X, E, R>,
  restore: Restore,
  result: Codec<unknown> | undefined
): Effect.Effect<Exit.Exit<X, E>, DurableQueueError, R> => {
  const { running, settler } = parts
  const perJob = jobSettings(job.options)
  let settled = false
  let fiber: Fiber.RuntimeFiber<X, E> | undefined
  const slot: Slot = { running: undefined, fiber: undefined }
  return Effect.gen(function*() {
    parts.emitter.emit("Started", job.id, job.attempts)
    fiber = yield* Effect.forkDaemon(Effect.interruptible(body(parts, job, perJob, handler)))
    slot.fiber = fiber
    running.join(slot)
    running.start(slot, job.id)
    const handling = fiber
    const exit = yield* Effect.flatMap(
      Effect.exit(restore(Fiber.await(handling))),
      (awaited) => Exit.isSuccess(awaited) ? Effect.succeed(awaited.value) : Fiber.interrupt(handling)
    )
    const settlement = yield* complete(parts, job, perJob, exit, running.end(slot, job.id), result)
    emitSettled(parts.emitter, job, settlement)
    settled = true
    const outcome: Effect.Effect<Exit.Exit<X, E>> = settlement._tag === "Release"
      ? Effect.failCause((exit as Exit.Failure<X, E>).cause as Cause.Cause<never>)
      : Effect.succeed(exit)
    return yield* Effect.zipRight(settler.submitAndWait(job, settlement), outcome)
  }).pipe(
    Effect.onExit((exit) => {
      running.leave(slot)
      return settled ? Effect.void : Effect.sync(() => {
        fiber?.unsafeInterruptAsFork(FiberId.none)
        settleUnsettled(parts, job, exit, slot)
      })
    })
  )
}

/** A job offered without options (nearly all): one object, not one per job. */
const NO_SETTINGS: JobSettings = {}

/**
 * What a `run`'s taker runs its jobs with (`Attempts`); `job` is set until its settlement is submitted. `run`'s
 * result: whether the taker goes on. A worker made with a `Next` may instead end its job's effect with
 * `next(goOn)`, the taker's next job without an Effect step between (its result is then the last job's).
 */
interface Worker<R> {
  job: LeasedJob | undefined
  readonly run: (job: LeasedJob) => Effect.Effect<boolean, never, R>
}

/** The taker's next job after one settled (`goOn`), or `false` (the taker ends). */
type Next<R> = (goOn: boolean) => Effect.Effect<boolean, never, R>

/**
 * The attempts of one `run`'s taker, each its handler on the taker's own fiber `self` (interruptible there, under
 * `restore`): a `cancel` interrupts `self` (`Running`), a timeout interrupts what `Effect.timeoutFailCause` forked,
 * and a shutdown does not interrupt a taker running a job (`Crew`). Settled without waiting for the write; whether
 * the taker goes on is the result. A fiber of its own per job (forked, awaited, its exit handed back) cost more CPU
 * than the rest of the job together on the memory store (issue #16: bench/_core-cpu.ts, before and after in
 * bench/RESULTS.md). A success with no result to keep is settled in the handler's continuation (no `Effect.exit`,
 * `complete` or `onExit` step: 4 Effect steps a job fewer), by continuations made once per taker, not per job; the
 * other outcomes go through `complete`. A defect outside the handler leaves `job` set, and `Crew` settles it.
 */
class Attempts<A, X, E, R> implements Worker<R>, Slot {
  job: LeasedJob | undefined = undefined
  running: string | undefined = undefined
  readonly fiber: Fiber.RuntimeFiber<unknown, unknown>
  private perJob: JobSettings = NO_SETTINGS
  private readonly continuation: {
    readonly onSuccess: (value: X) => Effect.Effect<boolean, never, R>
    readonly onFailure: (cause: Cause.Cause<E>) => Effect.Effect<boolean>
  }
  constructor(
    readonly parts: Parts<A>,
    readonly handler: (value: A, job: DurableQueue.Job) => Effect.Effect<X, E, R>,
    readonly result: Codec<unknown> | undefined,
    readonly self: Fiber.RuntimeFiber<unknown, unknown>,
    readonly restore: Restore,
    readonly next: Next<R>
  ) {
    this.fiber = self
    parts.running.join(this)
    this.continuation = {
      onSuccess: (value) => this.succeeded(value),
      onFailure: (cause) => this.completed(Exit.failCause(cause))
    }
  }

  readonly run = (job: LeasedJob): Effect.Effect<boolean, never, R> => {
    const { emitter, running } = this.parts
    this.job = job
    this.perJob = job.options === undefined ? NO_SETTINGS : jobSettings(job.options)
    emitter.emit("Started", job.id, job.attempts)
    // Built now (`handlerEffect`) unless a timeout forks it or the taker was interrupted at once (a cancel asked
    // before the start: the handler is then not called, as before).
    const asked = running.start(this, job.id)
    const effect = asked || timeoutOf(this.parts, this.perJob) !== undefined
      ? body(this.parts, job, this.perJob, this.handler)
      : handlerEffect(this.parts, job, this.handler)
    return Effect.matchCauseEffect(this.restore(effect), this.continuation)
  }

  /** The usual end: the next job follows in the same continuation (`Next`), no `Effect.succeed` and `flatMap` between. */
  private succeeded(value: X): Effect.Effect<boolean, never, R> {
    if (this.result !== undefined) return this.completed(Exit.succeed(value))
    const job = this.job!
    this.parts.running.end(this, job.id)
    return this.next(this.settled(job, this.parts.ack))
  }

  private completed(exit: Exit.Exit<X, E>): Effect.Effect<boolean> {
    const job = this.job!
    const settlement = complete(this.parts, job, this.perJob, exit, this.parts.running.end(this, job.id), this.result)
    return Effect.map(settlement, (settlement) => this.settled(job, settlement))
  }

  /** Submits the settlement; whether the taker goes on (not after a self-interruption, nor once cancelled). */
  private settled(job: LeasedJob, settlement: Settlement): boolean {
    emitSettled(this.parts.emitter, job, settlement)
    this.job = undefined
    this.parts.settler.submit(job, settlement)
    return settlement._tag !== "Release" && !this.parts.running.wasInterrupted(this.self)
  }
}

/**
 * Whether a job handed out may run. One leased with more attempts than allowed was leased before by a runner that
 * never settled it (it died): it goes to the dead letters here. One cancelled while fetched is settled, not run.
 */
const runnable = <A>({ emitter, running, settings, settler }: Parts<A>, job: LeasedJob): boolean => {
  if (running.asked.size > 0 && running.asked.delete(job.id)) {
    settler.submit(job, { _tag: "Cancelled", attempts: job.attempts - 1 })
    emitter.emit("Cancelled", job.id, job.attempts - 1)
    return false
  }
  if (job.attempts <= settings.maxAttempts) return true
  const died = runnerDied(job, settings)
  emitSettled(emitter, job, died)
  settler.submit(job, died)
  return false
}

/** `take(handler, result)`: interrupting the caller interrupts the handler; it waits for its settlement's write. */
const makeTake = <A>(parts: Parts<A>) => {
  const nextRunnable: Effect.Effect<LeasedJob> = Effect.flatMap(
    Effect.suspend(() => parts.feed.next()),
    (job) => runnable(parts, job) ? Effect.succeed(job) : nextRunnable
  )
  return <X, E, R>(
    handler: (value: A, job: DurableQueue.Job) => Effect.Effect<X, E, R>,
    result: Codec<unknown> | undefined
  ): Effect.Effect<Exit.Exit<X, E>, DurableQueueError, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(nextRunnable), (job) => attempt(parts, job, handler, restore, result))
    )
}

/** Jobs fetched and not handed out go back, uncounted (the last `run` stopped, this instance paused, or shutdown). */
const putBack = <A>({ feed, gathering, settler }: Parts<A>): Effect.Effect<void> =>
  Effect.map(feed.takeBuffered(), (left) => {
    for (const job of left) settler.submit(job, { _tag: "Release", attempts: job.attempts - 1 })
    for (const batch of gathering) batch.putBack()
  })

type Taker = Fiber.RuntimeFiber<unknown, unknown>

/**
 * The takers of one `run`: daemon fibers (a child would be interrupted with its parent, even while the parent is
 * uninterruptible), each running its jobs' handlers itself (`runAttempt`). `stop` (shutdown) interrupts only the
 * takers waiting for a job; the others finish their job, settle it and end. A taker interrupted by its job's
 * `cancel` stays interrupted (an Effect 3 fiber has no way back): it settles the job, ends, and a new taker takes its
 * place. A taker whose handler interrupted itself (the job put back, uncounted) ends and is not replaced, as before
 * this class (taking the job again at once would spin).
 */
class Crew<A, R> {
  stopping = false
  private alive = 0
  /** Takers waiting for a job, or pausing after a defect: what `stop` interrupts. */
  private readonly idle = new Set<Taker>()
  /** Done once no taker is left (after `stop`, or when the queue's scope closed under the run). */
  readonly gone = Deferred.unsafeMake<void>(FiberId.none)
  /** Opened by `stop`: a `runBatch` taker waiting out its `maxWait` holds jobs (it is not idle) and runs them then. */
  readonly stopped = Effect.unsafeMakeLatch(false)
  constructor(
    readonly parts: Parts<A>,
    readonly worker: (self: Taker, restore: Restore, next: Next<R>, stopped: Effect.Effect<void>) => Worker<R>
  ) {}

  spawn(): Effect.Effect<void, never, R> {
    return Effect.suspend(() => {
      this.alive++
      // Interruptible: a fiber forked from `run`'s uninterruptible part would start uninterruptible, and `restore`
      // in it would restore that.
      return Effect.asVoid(
        Effect.forkDaemon(Effect.interruptible(Effect.withFiberRuntime((self: Taker) => this.taker(self))))
      )
    })
  }

  stop(): void {
    this.stopping = true
    this.stopped.unsafeOpen()
    for (const taker of this.idle) taker.unsafeInterruptAsFork(FiberId.none)
  }

  /**
   * A loop of `next` and `work` with as few Effect steps per job as it takes: a job already buffered is polled and
   * run in one step. A defect outside a handler (those settle their job) settles the job it happened to, if any
   * (held unsettled, its lease would be refreshed for as long as this process lives), is logged, and the taker goes
   * on after a pause.
   */
  private taker(self: Taker): Effect.Effect<void, never, R> {
    const { feed } = this.parts
    return Effect.uninterruptibleMask((restore) => {
      const step = (): Effect.Effect<boolean, never, R> => {
        if (this.stopping || feed.jobs.shut) return Effect.interrupt
        const job = this.pollRunnable()
        if (job !== undefined) return run(job)
        return Effect.flatMap(
          this.idly(self, restore(feed.wait)),
          (job) => runnable(this.parts, job) ? run(job) : Effect.succeed(true)
        )
      }
      // A worker's `Next`: the next job at once, inside its previous job's continuation. With an `Effect.suspend`
      // and a `flatMap` of the loop between jobs, the Redis consumer took 4 Effect steps a job more
      // (bench/_profile.ts, issue #16).
      const worker = this.worker(self, restore, (goOn) => goOn ? step() : Effect.succeed(false), this.stopped.await)
      const run = worker.run
      const next: Effect.Effect<boolean, never, R> = Effect.suspend(step)
      const loop: Effect.Effect<void, never, R> = Effect.flatMap(next, (again) => again ? loop : Effect.void)
      const guarded: Effect.Effect<void, never, R> = Effect.catchAllCause(loop, (cause) => {
        if (worker.job !== undefined) {
          settleUnsettled(this.parts, worker.job, Exit.failCause(cause), this.parts.running.slotOf(self))
          worker.job = undefined
        }
        return Cause.isInterruptedOnly(cause)
          ? Effect.failCause(cause as Cause.Cause<never>)
          : Effect.zipRight(
            Effect.logWarning("DurableQueue: taking a job failed; retrying", cause),
            Effect.zipRight(this.idly(self, restore(Effect.sleep("500 millis"))), guarded)
          )
      })
      return guarded
    }).pipe(Effect.onExit(() => this.ended(self)))
  }

  /** A runnable job from the feed's buffer, if any (polled uninterruptibly: a job polled is run). */
  private pollRunnable(): LeasedJob | undefined {
    let job = this.parts.feed.pollNow()
    while (job !== undefined && !runnable(this.parts, job)) job = this.parts.feed.pollNow()
    return job
  }

  /** `wait` as an idle taker (interrupted by `stop`), unless the run is stopping already. */
  private idly<X>(self: Taker, wait: Effect.Effect<X>): Effect.Effect<X> {
    return Effect.suspend(() => {
      if (this.stopping) return Effect.interrupt
      this.idle.add(self)
      return Effect.ensuring(wait, Effect.sync(() => this.idle.delete(self)))
    })
  }

  private ended(self: Taker): Effect.Effect<void, never, R> {
    const slot = this.parts.running.slotOf(self)
    if (slot !== undefined) this.parts.running.leave(slot)
    this.alive--
    this.idle.delete(self)
    if (this.parts.running.interrupted.has(self) && !this.stopping && !this.parts.feed.closed) return this.spawn()
    if (this.alive === 0) Deferred.unsafeDone(this.gone, Exit.void)
    return Effect.void
  }
}

/**
 * `run`: `concurrency` takers (`Crew`). Interrupting it stops them gracefully: takers waiting for a job stop at once;
 * running jobs finish. A job still running after `shutdownTimeout` is left to its lease (it comes back once the
 * process is gone).
 */
const makeRun = <A>(parts: Parts<A>): DurableQueue.DurableQueue<A>["run"] => (handler, runOptions) =>
  Effect.flatMap(
    runSettings(runOptions),
    ({ concurrency, result, shutdownTimeout }) =>
      Effect.suspend(() => {
        const codec = result === undefined ? undefined : makeCodec(result)
        return runCrew(
          parts,
          concurrency,
          shutdownTimeout,
          concurrency,
          (self, inTaker, next) => new Attempts(parts, handler, codec, self, inTaker, next)
        )
      })
  )

/**
 * `concurrency` takers (`Crew`) running `worker`s, the feed leasing ahead for `takers` of them (see `LOOKAHEAD`).
 * Interrupting it stops them gracefully: takers waiting for a job stop at once; running jobs finish. A job still
 * running after `shutdownTimeout` is left to its lease (it comes back once the process is gone). It returns once
 * the settlements of the jobs run and the put-back are written (`settleOnStop`).
 */
const runCrew = <A, R>(
  parts: Parts<A>,
  concurrency: number,
  shutdownTimeout: Duration.Duration,
  takers: number,
  worker: (self: Taker, restore: Restore, next: Next<R>, stopped: Effect.Effect<void>) => Worker<R>
): Effect.Effect<never, never, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.suspend(() => {
      const crew = new Crew(parts, worker)
      parts.feed.takers += takers
      return Effect.zipRight(
        Effect.forEach(Array.from({ length: concurrency }), () => crew.spawn(), { discard: true }),
        restore(Deferred.await(crew.gone)).pipe(
          // Every taker ended with no shutdown asked: the queue's scope closed under this run.
          Effect.zipRight(Effect.interrupt),
          // The wait is made interruptible: a finalizer runs uninterruptibly, where the timeout could not cut it.
          Effect.onExit(() =>
            Effect.suspend(() => {
              crew.stop()
              return Effect.ignore(
                Effect.timeout(Effect.interruptible(Deferred.await(crew.gone)), Duration.toMillis(shutdownTimeout))
              )
            })
          ),
          Effect.ensuring(settleOnStop(parts, takers))
        )
      )
    })
  )

/**
 * The end of a `run` whose takers are gone: jobs leased ahead for them go back once no run is left to take them
 * (with those of a lease out then, once it lands), and the settlements submitted so far (the jobs it ran, the
 * put-back) are written before it returns: a `status` read right after said "running" 50 of 50 times on SQLite.
 * That wait is bounded by `CLOSE_FLUSH_MILLIS` (5 s): a store that is away holds the run's end no longer; its
 * settlements are still retried meanwhile (or their leases lapse), as before.
 */
const settleOnStop = <A>(parts: Parts<A>, takers: number): Effect.Effect<void> =>
  Effect.suspend(() =>
    (parts.feed.takers -= takers) > 0 ? withinCloseBound(parts.settler.written()) : putBackWritten(parts)
  )

/**
 * The jobs leased ahead go back, and this returns once that is written, with what was settled before (the last
 * `run`'s end, `pause`): a lease out now puts its jobs back as it lands (`Feed.unwanted`), before `landed` opens.
 * Bounded by `CLOSE_FLUSH_MILLIS`.
 */
const putBackWritten = <A>(parts: Parts<A>): Effect.Effect<void> =>
  Effect.zipRight(
    putBack(parts),
    withinCloseBound(Effect.zipRight(parts.feed.landed.await, parts.settler.written()))
  )

/**
 * `runBatch` (batch.ts): a `BatchWorker` per taker over the core's parts. The feed leases ahead as for
 * `ceil(size / LOOKAHEAD)` takers per batch taker, about one full batch each. Counted as `concurrency` takers (2),
 * size 100 with a 50 ms handler on the memory store got 73 jobs a call and 2.6k jobs/s, against 98 and 3.6k; as
 * `size` takers each (4 batches ahead), a large `size` would hold many batches back from other processes, with no
 * gain measured on SQLite or PostgreSQL (their leases of 256 are the bound: 100, 100, 56 a call either way).
 */
const makeRunBatch = <A>(parts: Parts<A>) =>
<X, E, R>(
  handler: (
    values: NonEmptyReadonlyArray<A>,
    jobs: NonEmptyReadonlyArray<DurableQueue.Job>
  ) => Effect.Effect<X, E, R>,
  options?: Parameters<typeof batchSettings>[0]
): Effect.Effect<never, OptionError, R> =>
  Effect.flatMap(batchSettings(options), ({ concurrency, maxWaitMillis, result, shutdownTimeout, size }) => {
    const { emitter, feed, running, settler } = parts
    const port: BatchPort<A> = {
      settings: parts.settings,
      backend: parts.store.backend,
      codec: parts.codec,
      emitter,
      ack: parts.ack,
      poll: () => {
        if (feed.jobs.shut) return undefined
        let job = feed.pollNow()
        while (job !== undefined && !runnable(parts, job)) job = feed.pollNow()
        return job
      },
      wait: feed.wait,
      runnable: (job) => runnable(parts, job),
      shut: () => feed.jobs.shut,
      ended: (id) => running.end(undefined, id),
      complete: (job, perJob, exit, codec) => complete(parts, job, perJob, exit, false, codec),
      submit: (job, settlement) => settler.submit(job, settlement),
      handle: (job) => new JobHandle(parts, job),
      gathering: parts.gathering,
      unsettled: (job, exit) => classify(exit, job, parts.settings, false)
    }
    const batch = { size, maxWaitMillis }
    const codec = result === undefined ? undefined : makeCodec(result)
    return runCrew(
      parts,
      concurrency,
      shutdownTimeout,
      concurrency * Math.ceil(size / LOOKAHEAD),
      (_self, restore, _next, stopped) => new BatchWorker(port, handler, batch, restore, stopped, codec)
    )
  })

/** One offer's job for the store: its settings resolved (options.ts `offerSettings`/`offerEntries`) and its payload. */
const jobOf = (settings: OfferSettings, payload: string): OfferedJob => ({
  id: settings.id,
  custom: settings.custom,
  delayMillis: settings.delayMillis,
  priority: settings.priority,
  options: settings.options,
  payload
})

/** One offer's job, its value encoded: at once when the schema allows (`encodeNow`), else as an Effect. */
const offeredJob = <A>(
  parts: Parts<A>,
  value: A,
  settings: OfferSettings
): Effect.Effect<OfferedJob, DurableQueueError> => {
  const payload = parts.codec.encodeNow(value)
  if (payload !== undefined) return Effect.succeed(jobOf(settings, payload))
  return Effect.map(
    Effect.mapError(
      parts.codec.encode(value),
      (cause) =>
        new DurableQueueError({
          reason: "EncodeFailed",
          backend: parts.store.backend,
          queue: parts.settings.name,
          id: settings.id,
          cause
        })
    ),
    (payload) => jobOf(settings, payload)
  )
}

/**
 * Hands jobs to the store, then sends their "Offered" events (unless the store saw no subscriber as it wrote
 * them, see `Store.offer`) and wakes this instance's fetcher.
 */
const handOver = <A>(parts: Parts<A>, jobs: ReadonlyArray<OfferedJob>): Effect.Effect<void, DurableQueueError> =>
  Effect.flatMap(
    Effect.mapError(parts.store.offer(jobs), (cause) => parts.failed(cause)),
    (heard) => {
      // An index, not `for…of`: its iterator's results were ~17 bytes a job of offerAll (bench/_offer-cpu.ts --heap).
      if (heard !== false) { for (let i = 0; i < jobs.length; i++) parts.emitter.emit("Offered", jobs[i]!.id) }
      return parts.feed.offered.open
    }
  )

const makeOffer = <A>(parts: Parts<A>): DurableQueue.DurableQueue<A>["offer"] => (value, offerOptions) =>
  Effect.flatMap(
    offerSettings(offerOptions),
    (settings) => Effect.flatMap(offeredJob(parts, value, settings), (job) => Effect.as(handOver(parts, [job]), job.id))
  )

/**
 * The ids and jobs of one `offerAll` run. Only the caller's own ids are de-duplicated: a generated id (a UUIDv7,
 * options.ts `randomId`) is new. Its ms (48 bits) and its counter within that ms (12 bits, from a random start
 * below 2,048 each ms) are no secret, but its last 62 bits are random: one process's ids differ by ms or counter (up
 * to 2,048 a ms; past 4,095 the counter wraps and the 62 bits remain), two processes' collide only within one ms,
 * with equal counters (~1 in 2^11 for a pair) and equal 62 bits: ~n²/2^73 for n ids of that ms (1e-10 at 1,000,000
 * in one ms). A caller's id equal to one would have to guess 62 random bits. The Set of every id was ~4 % of
 * offerAll's CPU.
 */
class OfferBatch {
  constructor(
    readonly ids: Array<string>,
    readonly jobs: Array<OfferedJob>,
    private n: number,
    private seen: Set<string> | undefined
  ) {}
  add(job: OfferedJob): void {
    this.ids[this.n++] = job.id
    if (!job.custom) this.jobs.push(job)
    else if (!(this.seen ??= new Set()).has(job.id)) {
      this.seen.add(job.id)
      this.jobs.push(job)
    }
  }
  /** A batch to go on from this one's state, which stays as it is (the plain loop's, for another run). */
  copy(): OfferBatch {
    return new OfferBatch(this.ids.slice(), this.jobs.slice(), this.n, this.seen && new Set(this.seen))
  }
}

const sendBatch = <A>(parts: Parts<A>, { ids, jobs }: OfferBatch) =>
  jobs.length > 0 ? Effect.as(handOver(parts, jobs), ids) : Effect.succeed(ids)

/**
 * `offerAll`: every entry checked (as `offer` checks its options) and encoded before the store is called, so a
 * hostile entry fails the call with nothing written; of entries sharing an id the first is queued (every entry's
 * id is returned); one store call. A plain loop while the entries are usual (options.ts `usualJob`) and their
 * values encode at once (`encodeNow`), each entry ONE object (`usualJob`, its options read once) and no Effect; from the first that is
 * not (an option to resolve or refuse, a value that fails, for its error; an asynchronous schema), the rest are
 * checked by `offerEntries` and then encoded as Effects, as before.
 */
const offerBatch = <A>(parts: Parts<A>): DurableQueue.DurableQueue<A>["offerAll"] => (entries) => {
  const all: ReadonlyArray<unknown> = Array.isArray(entries) ? entries : []
  const usual = new OfferBatch(new Array(all.length), [], 0, undefined)
  const encode = parts.codec.encodeNow as (value: unknown) => string | undefined
  let i = 0
  for (; i < all.length; i++) {
    const job = usualJob(all[i], encode)
    if (job === undefined) break
    usual.add(job)
  }
  if (Array.isArray(entries) && i === all.length) return Effect.suspend(() => sendBatch(parts, usual))
  // The rest as Effects, into a copy made per run: the returned Effect may run again (a retry), and a second run
  // adding to the first's arrays returned [x, y, y] and queued the fallback's jobs twice.
  return Effect.suspend(() => {
    const batch = usual.copy()
    return Effect.zipRight(
      Effect.flatMap(offerEntries(entries, i), (checked) =>
        Effect.forEach(
          checked,
          ({ settings, value }) => Effect.map(offeredJob(parts, value as A, settings), (job) => batch.add(job)),
          { discard: true }
        )),
      Effect.suspend(() => sendBatch(parts, batch))
    )
  })
}

const deadLetterReport = <A>({ codec, failed, store }: Parts<A>) =>
  Effect.flatMap(Effect.mapError(store.deadLetters, failed), (stored) =>
    Effect.map(
      Effect.forEach(stored, (letter) =>
        Effect.either(Effect.map(codec.decode(letter.payload), (value): DurableQueue.DeadLetter<A> => ({
          id: letter.id,
          value,
          attempts: letter.attempts,
          lastError: letter.lastError
        })))),
      (decoded) => {
        const letters: Array<DurableQueue.DeadLetter<A>> = []
        const undecodable: Array<DurableQueue.UndecodableDeadLetter> = []
        decoded.forEach((either, i) => {
          if (Either.isRight(either)) {
            letters.push(either.right)
          } else {
            const { attempts, id, lastError, payload } = stored[i]!
            undecodable.push({ id, payload, attempts, lastError, error: either.left.message })
          }
        })
        return { letters, undecodable }
      }
    ))

/** The operations on jobs by id and on the queue as a whole. */
const makeAdmin = <A>(parts: Parts<A>) => {
  const { failed, feed, held, running, settings, store } = parts
  const byId = <X>(id: string, f: (id: string) => Effect.Effect<X, unknown>) =>
    Effect.flatMap(offerId(id), (checked) => Effect.mapError(f(checked), (cause) => failed(cause, checked)))
  const stored = (id: string) => byId(id, (checked) => store.status(checked))
  const status = (id: string) =>
    Effect.map(
      stored(id),
      (found: StoredStatus | undefined) =>
        Option.map(Option.fromNullable(found), ({ attempts, lastError, progress, state }): DurableQueue.JobStatus => ({
          id,
          state,
          attempts,
          progress: parseProgress(progress),
          lastError
        }))
    )
  const result = <X, XI>(id: string, schema: Schema.Schema<X, XI>) =>
    Effect.flatMap(stored(id), (found) => {
      if (found?.state !== "done" || found.result === undefined) return Effect.succeedNone
      return makeCodec(schema).decode(found.result).pipe(
        Effect.mapError((cause) =>
          new DurableQueueError({ reason: "DecodeFailed", backend: store.backend, queue: settings.name, id, cause })
        ),
        Effect.map(Option.some)
      )
    })
  const cancel = (id: string) =>
    Effect.map(byId(id, (checked) => store.cancel(checked)), (outcome) => {
      // Held here: its handler is interrupted now rather than at the next refresh.
      if (outcome === "asked" && held.jobs.has(id)) running.ask([id])
      // A running job's "Cancelled" is sent where it is settled; a waiting or delayed one's is sent here.
      if (outcome === "cancelled") parts.emitter.emit("Cancelled", id)
      return outcome !== "none"
    })
  const size = Effect.mapError(store.size, failed)
  const counts = Effect.mapError(store.counts, failed)
  return {
    size,
    cancel,
    status,
    result,
    counts,
    // Jobs this instance leased ahead go back: none starts here after `pause` returns, and they are written back
    // by then (a lease still out puts its jobs back as it lands), so `counts` read next shows them waiting, as
    // after a stopped run (`settleOnStop`); a store that does not answer holds it 5 s at most more.
    pause: Effect.zipRight(
      Effect.mapError(store.setPaused(true), failed),
      Effect.zipRight(Effect.sync(() => feed.pauses++), putBackWritten(parts))
    ),
    resume: Effect.zipRight(Effect.mapError(store.setPaused(false), failed), feed.offered.open),
    isPaused: Effect.map(counts, (c) => c.paused),
    drain: Effect.asVoid(
      Effect.repeat(size, { until: (n) => n === 0, schedule: Schedule.spaced(settings.pollMillis) })
    ),
    requeueAll: Effect.tap(Effect.mapError(store.requeueAll, failed), (n) => n > 0 ? feed.offered.open : Effect.void),
    requeue: (id: string) =>
      Effect.tap(byId(id, (checked) => store.requeue(checked)), (found) => found ? feed.offered.open : Effect.void),
    purge: Effect.mapError(store.purge, failed)
  }
}

/** Starts the parts' fibers in `scope`, in an order that makes shutdown lose nothing. */
const startParts = <A>(parts: Parts<A>): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { feed, held, settler } = parts
    // Forked in this order so that the scope, closing in reverse, stops the fetcher (which puts back what it
    // fetched) before the settler writes its last batches, and refreshes leases until then.
    yield* Effect.forkScoped(Effect.interruptible(held.refreshLoop()))
    yield* Effect.forkScoped(Effect.interruptible(settler.loop()))
    yield* feed.loop().pipe(
      Effect.interruptible,
      // What was fetched and not handed out goes back, uncounted; takers still waiting are interrupted (shutdown).
      Effect.onExit(() =>
        Effect.zipRight(
          Effect.sync(() => {
            feed.closed = true
            // Interrupted between sizing a lease and its call (`Feed.loop`): no lease is out.
            feed.landed.unsafeOpen()
          }),
          Effect.zipRight(putBack(parts), feed.shutdown())
        )
      ),
      Effect.forkScoped
    )
  })

const makeCore = <A, I>(
  store: Store,
  settings: QueueSettings,
  schema: Schema.Schema<A, I>,
  port: EventPort
): Effect.Effect<DurableQueue.DurableQueue<A>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const failed = (cause: unknown, id?: string) =>
      new DurableQueueError({
        reason: "StoreFailed",
        backend: store.backend,
        queue: settings.name,
        cause,
        ...(id === undefined ? {} : { id })
      })
    const held: Held = new Held(store, settings.leaseMillis, (ids) => running.ask(ids))
    const running = new Running(held.jobs)
    const feed = new Feed(store, held, settings.pollMillis)
    const settler = new Settler(store, held, failed, feed.offered.open)
    feed.putBack = (jobs) => {
      for (const job of jobs) settler.submit(job, { _tag: "Release", attempts: job.attempts - 1 })
    }
    // Forked before the other parts: the scope, closing in reverse, stops it last, after the final settlements.
    const emitter = yield* makeEmitter(port.bus, settings.name)
    const parts: Parts<A> = {
      store,
      settings,
      codec: makeCodec(schema),
      held,
      feed,
      settler,
      running,
      failed,
      emitter,
      ack: { _tag: "Ack", result: undefined, resultTtlMillis: settings.resultTtlMillis },
      gathering: new Set()
    }
    yield* startParts(parts)
    const offer = makeOffer(parts)
    const take = makeTake(parts)
    const report = deadLetterReport(parts)
    return {
      name: settings.name,
      offer,
      offerAll: offerBatch(parts),
      take: (<X, E, R>(handler: (value: A, job: DurableQueue.Job) => Effect.Effect<X, E, R>, options?: unknown) =>
        options === undefined
          ? take(handler, undefined)
          : Effect.flatMap(
            takeSettings(options),
            (result) => take(handler, result === undefined ? undefined : makeCodec(result))
          )) as DurableQueue.DurableQueue<A>["take"],
      run: makeRun(parts),
      runBatch: makeRunBatch(parts) as DurableQueue.DurableQueue<A>["runBatch"],
      deadLetters: Effect.flatMap(report, ({ letters, undecodable }) =>
        undecodable.length === 0 ? Effect.succeed(letters) : Effect.as(
          Effect.logWarning(
            `DurableQueue ${settings.name}: ${undecodable.length} dead letter(s) do not decode with today's schema (see undecodableDeadLetters): ` +
              undecodable.slice(0, 10).map((letter) =>
                `${letter.id}: ${letter.error}`
              ).join("; ")
          ),
          letters
        )),
      undecodableDeadLetters: Effect.map(report, (r) =>
        r.undecodable),
      ...makeAdmin(parts),
      ...eventMembers(port, store.backend, settings.name, failed, offer),
      jobs: makeJobs(store, parts.codec, failed)
    } satisfies DurableQueue.DurableQueue<A>
  })

/**
 * The queue over `store`, with telemetry. `port` defaults to the in-process one of `store` itself (memory): keyed
 * by the undecorated store, so that every queue made on one memory store shares its events.
 * @internal
 */
export const make = <A, I>(
  store: Store,
  settings: QueueSettings,
  schema: Schema.Schema<A, I>,
  port: EventPort = inProcessPort(store)
): Effect.Effect<DurableQueue.DurableQueue<A>, never, Scope.Scope> =>
  withTelemetry(makeCore)(store, settings, schema, port)
