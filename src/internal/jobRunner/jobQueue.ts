/**
 * The bounded queue between the writer (or durable source) and the reader processes, with the wake-ups each side
 * waits on, and the prevent-requeue window: the keys of items queued within `preventRequeuingTime`.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import type { Job } from "./spawner.js"

/**
 * How many items the writer is asked for: `min(lookupBlockSize, floor(0.8 × maxQueueSize) − size)`, and at least 1,
 * so a queue of 1 (where `floor(0.8)` is 0) is still filled.
 *
 * @internal
 */
export const desiredCount = (maxQueueSize: number, lookupBlockSize: number, size: number): number =>
  Math.max(1, Math.min(lookupBlockSize, Math.floor(0.8 * maxQueueSize) - size))

/**
 * The writer is called only while the queue is under 30 % of its maximum.
 *
 * @internal
 */
export const needsRefill = (maxQueueSize: number, size: number): boolean => size < 0.3 * maxQueueSize

/**
 * Wakes every waiting fiber. `waitOr` registers the waiter in the calling fiber, synchronously, before racing it
 * with the other wake-ups: a waiter registered inside a forked race arm could miss a notification sent before the
 * arm starts.
 *
 * @internal
 */
export class Notifier {
  private waiters: Array<Deferred.Deferred<void>> = []
  waitOr(...others: ReadonlyArray<Effect.Effect<unknown>>): Effect.Effect<void> {
    return Effect.suspend(() => {
      const d = Deferred.unsafeMake<void>(FiberId.none)
      this.waiters.push(d)
      return Effect.asVoid(Effect.raceAll([Deferred.await(d), ...others]))
    })
  }
  get wait(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const d = Deferred.unsafeMake<void>(FiberId.none)
      this.waiters.push(d)
      return Deferred.await(d)
    })
  }
  notify(): void {
    if (this.waiters.length === 0) return
    const ws = this.waiters
    this.waiters = []
    for (const d of ws) Deferred.unsafeDone(d, Exit.void)
  }
}

/**
 * The queue and the run's shared job state. JavaScript runs one fiber at a time, so the synchronous updates of its
 * fields cannot interleave.
 *
 * @internal
 */
export class JobQueue {
  readonly jobs: Array<Job> = []
  private nextJobId = 0
  /** Jobs handed to a process and not settled yet. */
  inFlight = 0
  /** Jobs ever queued (for Progress). */
  queuedTotal = 0
  stopping = false
  readonly stop = Deferred.unsafeMake<void>(FiberId.none)
  readonly itemAvailable = new Notifier()
  readonly spaceAvailable = new Notifier()
  readonly belowThreshold = new Notifier()
  /** Notified when nothing is in flight (or a durable source holds no job). */
  readonly idle = new Notifier()
  private readonly threshold: number

  constructor(readonly max: number) {
    this.threshold = 0.3 * max
  }

  get length(): number {
    return this.jobs.length
  }

  get isFull(): boolean {
    return this.jobs.length >= this.max
  }

  /**
   * With a durable source: the process feed holding each of its jobs, so that a job cancelled in its DurableQueue
   * (`cancel`, a timeout) can be taken back from the process (see `cancel`).
   */
  readonly holders = new Map<Job, { readonly abort: (job: Job) => void }>()

  push(item: unknown, settle?: Job["settle"], progress?: Job["progress"]): Job {
    const job: Job = settle === undefined
      ? { id: this.nextJobId++, item }
      : { id: this.nextJobId++, item, settle, progress }
    this.jobs.push(job)
    this.queuedTotal++
    this.itemAvailable.notify()
    return job
  }

  /**
   * A durable job cancelled or timed out in its queue: still queued, it is removed and settled "back" (it never
   * ran); handed to a process, that process gives it up (an `Effect` reader is interrupted) and it settles as
   * `Cancelled`. Settled already: nothing. O(queue length) for a queued one, which only cancellations pay.
   */
  cancel(job: Job): void {
    const at = this.jobs.indexOf(job)
    if (at >= 0) {
      this.jobs.splice(at, 1)
      this.spaceAvailable.notify()
      job.settle?.("back")
      return
    }
    this.holders.get(job)?.abort(job)
  }

  take(): Job | undefined {
    const job = this.jobs.shift()
    if (job === undefined) return undefined
    this.spaceAvailable.notify()
    if (this.jobs.length < this.threshold) this.belowThreshold.notify()
    return job
  }

  /** A job a process refused goes back to the head. */
  putBack(job: Job): void {
    this.jobs.unshift(job)
    this.itemAvailable.notify()
  }

  /** Waits for room; `false` when the run is stopping. */
  readonly waitForSpace: Effect.Effect<boolean> = Effect.suspend(() => {
    const loop = (): Effect.Effect<boolean> =>
      this.stopping ? Effect.succeed(false) : this.isFull
        ? Effect.flatMap(this.spaceAvailable.waitOr(Deferred.await(this.stop)), loop)
        : Effect.succeed(true)
    return loop()
  })

  /** Stops the run: every waiter wakes; the jobs not handed out yet are returned. */
  stopNow(): Array<Job> {
    this.stopping = true
    Deferred.unsafeDone(this.stop, Exit.void)
    return this.jobs.splice(0)
  }
}

/**
 * Keys recorded beyond which the oldest are forgotten early. A key costs about 150 bytes (a string and a Map
 * entry), so the cap bounds the window at about 75 MB; without it, 10 000 unique items per second for the default
 * 300 s held 3 million keys, about 450 MB.
 *
 * @internal
 */
export const MAX_WINDOW_KEYS = 500_000

/**
 * The prevent-requeue window: an item whose key was queued within `windowMillis` is skipped. A `Map` keeps keys in
 * the order they were (re)recorded, so pruning stops at the first key still inside the window.
 *
 * @internal
 */
export class RequeueWindow {
  private readonly seen = new Map<string, number>()
  private capped = false

  constructor(
    readonly windowMillis: number,
    private readonly maxKeys: number,
    private readonly onCap: (maxKeys: number) => void
  ) {}

  get enabled(): boolean {
    return this.windowMillis > 0
  }

  get size(): number {
    return this.seen.size
  }

  has(key: string, now: number): boolean {
    const at = this.seen.get(key)
    return at !== undefined && now - at < this.windowMillis
  }

  record(key: string, now: number): void {
    this.seen.delete(key)
    this.seen.set(key, now)
    if (this.seen.size <= this.maxKeys) return
    // Full: the oldest key goes, though still inside the window (that item could be queued again early).
    this.seen.delete(this.seen.keys().next().value!)
    if (!this.capped) {
      this.capped = true
      this.onCap(this.maxKeys)
    }
  }

  prune(now: number): void {
    for (const [key, at] of this.seen) {
      if (now - at < this.windowMillis) break
      this.seen.delete(key)
    }
  }
}
