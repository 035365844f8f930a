/**
 * `DurableQueue.memory`: the core over a store in memory, for tests. The store keeps what Redis and SQL keep (the
 * JSON text of each job, its attempts, last error and progress, leases with a deadline read through `Clock`,
 * delays and priorities, dead letters, done jobs with their results, cancelled ids, the paused flag, every id ever
 * offered), so `TestClock` drives leases, delays and backoff and a test on it sees what production sees.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import type * as Scope from "effect/Scope"
import type * as DurableQueue from "../../DurableQueue.js"
import type { OptionError } from "../../OptionError.js"
import * as core from "./core.js"
import { queueSettings } from "./options.js"
import type {
  LeasedJob,
  OfferedJob,
  Settle,
  Store,
  StoredCounts,
  StoredDeadLetter,
  StoredJob,
  StoredState,
  StoredStatus
} from "./store.js"

interface Row {
  readonly id: string
  payload: string
  readonly options: string | undefined
  readonly priority: number
  /** Offer order: ties of priority go by it. */
  readonly sequence: number
  attempts: number
  lastError: string | undefined
  progress: string | undefined
  /** While queued: not leased before this time (ms, `Clock`). */
  readyAt: number
  /** Which enqueue of this row an entry of `Waiting` belongs to: an older entry is stale (see `Waiting`). */
  ticket: number
  /** While leased: when the lease ends, and which lease it is (a late settlement of an older lease is ignored). */
  deadline: number
  lease: number
  cancelAsked: boolean
  /** done: the stored result, until `resultUntil`. */
  result: string | undefined
  resultUntil: number
  state: "queued" | "leased" | "dead" | "done" | "cancelled"
  /** When it entered its state (ms, `Clock`; a lease does not set it, as Redis and SQL do not keep a lease's start). */
  since: number
}

/** Priority first (higher first), then offer order. */
const byPriority = (a: Row, b: Row): number => b.priority - a.priority || a.sequence - b.sequence

interface Entry {
  readonly row: Row
  readonly ticket: number
  /** The order key: `readyAt` in the delayed heap, unused in the ready one (it orders by `byPriority`). */
  readonly at: number
}

/** A binary heap of entries, least first by `before`. */
class Heap {
  readonly items: Array<Entry> = []
  constructor(readonly before: (a: Entry, b: Entry) => boolean) {}
  push(entry: Entry): void {
    const items = this.items
    let i = items.push(entry) - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(entry, items[parent]!)) break
      items[i] = items[parent]!
      i = parent
    }
    items[i] = entry
  }
  peek(): Entry | undefined {
    return this.items[0]
  }
  pop(): Entry | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (top === undefined || last === undefined || items.length === 0) return top
    let i = 0
    while (true) {
      let child = 2 * i + 1
      if (child >= items.length) break
      if (child + 1 < items.length && this.before(items[child + 1]!, items[child]!)) child++
      if (!this.before(items[child]!, last)) break
      items[i] = items[child]!
      i = child
    }
    items[i] = last
    return top
  }
}

/**
 * The queued rows in lease order, so a lease of n jobs costs O(n log queued): it copied, filtered and sorted every
 * queued row (O(queued log queued) per lease of at most 256: 41 % of a 40,000-job drain's samples, and CPU per job
 * growing with the queue, issue #16). Ready rows in a heap by priority then offer order, delayed ones in a heap
 * by due time, moved to the first when due. Entries are not removed when their row leaves the queue (a cancel, a
 * lease): an entry whose ticket is not its row's current one, or whose row is no longer queued, is stale and
 * skipped.
 */
class Waiting {
  private readonly ready = new Heap((a, b) => byPriority(a.row, b.row) < 0)
  private readonly delayed = new Heap((a, b) => a.at < b.at)
  private tickets = 0
  constructor(private readonly queued: Map<string, Row>) {}

  add(row: Row, now: number): void {
    row.ticket = ++this.tickets
    const entry: Entry = { row, ticket: row.ticket, at: row.readyAt }
    if (row.readyAt <= now) this.ready.push(entry)
    else this.delayed.push(entry)
  }

  /** Up to `max` ready rows, best first, taken out of `queued`. */
  take(max: number, now: number): Array<Row> {
    for (let due = this.delayed.peek(); due !== undefined && due.at <= now; due = this.delayed.peek()) {
      this.delayed.pop()
      if (this.live(due)) this.ready.push(due)
    }
    const out: Array<Row> = []
    while (out.length < max) {
      const entry = this.ready.pop()
      if (entry === undefined) break
      if (!this.live(entry)) continue
      this.queued.delete(entry.row.id)
      out.push(entry.row)
    }
    return out
  }

  private live(entry: Entry): boolean {
    return entry.row.ticket === entry.ticket && entry.row.state === "queued" &&
      this.queued.get(entry.row.id) === entry.row
  }
}

/** @internal */
export class MemoryStore implements Store {
  readonly backend = "memory"
  readonly maxBatch = 256
  readonly wakeSpacingMillis = 0
  /**
   * Changes that make jobs ready (an offer, a job put back or retried, a requeue, a resume), counted. Several cores
   * may share one store (the contract suite's memory queues: two instances of a name), as processes share Redis;
   * an idle fetcher backs off to 2 s (core.ts `IdleBackoff`) and would see another core's offer that late unless
   * `ready` tells it.
   */
  private changes = 0
  /** Completed at the next change, made when a fetcher first waits for it (not per job offered). */
  private pulse: Deferred.Deferred<void> | undefined = undefined
  /**
   * The `changes` seen by the fiber's last lease: the core leases on its fetcher's fiber and awaits `ready` on
   * fibers forked from it, which inherit it; so a change between a lease and the wait after it is not missed.
   */
  private readonly seen = FiberRef.unsafeMake(0)
  readonly ready: Effect.Effect<void> = Effect.flatMap(
    FiberRef.get(this.seen),
    (seen) => seen < this.changes ? Effect.void : Deferred.await(this.pulse ??= Deferred.unsafeMake(FiberId.none))
  )
  /** `ready` hears every change (see `changes`); a subclass may say otherwise (tests of stores that do not hear). */
  readonly hearing: Effect.Effect<boolean> | undefined = Effect.succeed(true)
  /** Every job offered and not purged, whatever its state: an id is queued once. */
  private readonly rows = new Map<string, Row>()
  /** Waiting or delayed. */
  private readonly queued = new Map<string, Row>()
  /** `queued` in lease order. */
  private readonly waiting = new Waiting(this.queued)
  private readonly leased = new Map<string, Row>()
  /** Insertion order is dead-letter order. */
  private readonly dead = new Map<string, Row>()
  private leases = 0
  private sequence = 0
  private paused = false

  constructor(readonly leaseMillis: number) {}

  offer(jobs: ReadonlyArray<OfferedJob>): Effect.Effect<void> {
    return Effect.map(Clock.currentTimeMillis, (now) => {
      for (const { delayMillis, id, options, payload, priority } of jobs) {
        if (this.rows.has(id)) continue
        const row: Row = {
          id,
          payload,
          options,
          priority,
          sequence: ++this.sequence,
          attempts: 0,
          lastError: undefined,
          progress: undefined,
          readyAt: now + delayMillis,
          ticket: 0,
          deadline: 0,
          lease: 0,
          cancelAsked: false,
          result: undefined,
          resultUntil: 0,
          state: "queued",
          since: now
        }
        this.rows.set(id, row)
        this.queued.set(id, row)
        this.waiting.add(row, now)
        this.changed()
      }
    })
  }

  lease(max: number): Effect.Effect<ReadonlyArray<LeasedJob>> {
    return Effect.tap(this.leaseNow(max), () => FiberRef.set(this.seen, this.changes))
  }

  private leaseNow(max: number): Effect.Effect<ReadonlyArray<LeasedJob>> {
    return Effect.map(Clock.currentTimeMillis, (now) => {
      // Leases that ran out: their runner died; the jobs are ready again, their attempt counted (or cancelled, if
      // that was asked meanwhile).
      for (const row of this.leased.values()) {
        if (row.deadline > now) continue
        this.leased.delete(row.id)
        if (row.cancelAsked) this.cancelled(row, now)
        else this.enqueue(row, now)
      }
      if (this.paused) return []
      return this.waiting.take(max, now).map((row): LeasedJob => {
        row.attempts++
        row.deadline = now + this.leaseMillis
        row.lease = ++this.leases
        row.state = "leased"
        this.leased.set(row.id, row)
        return { id: row.id, payload: row.payload, attempts: row.attempts, handle: row.lease, options: row.options }
      })
    })
  }

  refresh(jobs: ReadonlyArray<LeasedJob>): Effect.Effect<ReadonlyArray<string>> {
    return Effect.map(Clock.currentTimeMillis, (now) => {
      const asked: Array<string> = []
      for (const job of jobs) {
        const row = this.held(job)
        if (row === undefined) continue
        row.deadline = now + this.leaseMillis
        if (row.cancelAsked) asked.push(row.id)
      }
      return asked
    })
  }

  settle(batch: ReadonlyArray<Settle>): Effect.Effect<void> {
    return Effect.map(Clock.currentTimeMillis, (now) => {
      for (const { job, settlement } of batch) {
        const row = this.held(job)
        if (row === undefined) continue
        this.leased.delete(row.id)
        switch (settlement._tag) {
          case "Ack":
            row.state = "done"
            row.result = settlement.result
            row.resultUntil = now + settlement.resultTtlMillis
            row.payload = ""
            row.since = now
            break
          case "Cancelled":
            row.state = "cancelled"
            row.attempts = settlement.attempts
            row.since = now
            break
          case "Release":
            row.attempts = settlement.attempts
            // A job whose cancellation was asked is not queued again.
            if (row.cancelAsked) this.cancelled(row, now)
            else this.enqueue(row, now)
            break
          case "Retry":
            row.attempts = settlement.attempts
            row.lastError = settlement.lastError
            if (row.cancelAsked) this.cancelled(row, now)
            else this.enqueue(row, now + settlement.delayMillis, now)
            break
          case "Dead":
            row.attempts = settlement.attempts
            row.lastError = settlement.lastError
            row.state = "dead"
            row.since = now
            this.dead.set(row.id, row)
        }
      }
    })
  }

  readonly size: Effect.Effect<number> = Effect.sync(() => this.queued.size + this.leased.size)

  readonly deadLetters: Effect.Effect<ReadonlyArray<StoredDeadLetter>> = Effect.sync(() =>
    Array.from(
      this.dead.values(),
      ({ attempts, id, lastError, payload }) => ({ id, payload, attempts, lastError: lastError ?? "" })
    )
  )

  requeue(id: string): Effect.Effect<boolean> {
    return Effect.map(Clock.currentTimeMillis, (now) => {
      const row = this.dead.get(id)
      if (row === undefined) return false
      this.dead.delete(id)
      row.attempts = 0
      this.enqueue(row, now)
      return true
    })
  }

  readonly purge: Effect.Effect<number> = Effect.sync(() => {
    const n = this.dead.size
    for (const id of this.dead.keys()) this.rows.delete(id)
    this.dead.clear()
    return n
  })

  cancel(id: string): Effect.Effect<"cancelled" | "asked" | "none"> {
    return Effect.map(Clock.currentTimeMillis, (now) => {
      const row = this.rows.get(id)
      if (row?.state === "queued") {
        this.queued.delete(id)
        row.state = "cancelled"
        row.since = now
        return "cancelled"
      }
      if (row?.state === "leased") {
        row.cancelAsked = true
        return "asked"
      }
      return "none"
    })
  }

  progress(job: LeasedJob, json: string): Effect.Effect<void> {
    return Effect.sync(() => {
      const row = this.held(job)
      if (row !== undefined) row.progress = json
    })
  }

  status(id: string): Effect.Effect<StoredStatus | undefined> {
    return Effect.map(Clock.currentTimeMillis, (now) => {
      const row = this.rows.get(id)
      if (row === undefined) return undefined
      // An expired result is dropped here, lazily: no sweeper.
      if (row.result !== undefined && row.resultUntil <= now) row.result = undefined
      const state: StoredState = row.state === "queued"
        ? (row.readyAt > now ? "delayed" : "waiting")
        : row.state === "leased"
        ? "running"
        : row.state
      return { state, attempts: row.attempts, progress: row.progress, lastError: row.lastError, result: row.result }
    })
  }

  setPaused(paused: boolean): Effect.Effect<void> {
    return Effect.sync(() => {
      this.paused = paused
      if (!paused) this.changed()
    })
  }

  readonly counts: Effect.Effect<StoredCounts> = Effect.map(Clock.currentTimeMillis, (now) => {
    let delayed = 0
    let oldest = Infinity
    for (const row of this.queued.values()) {
      if (row.readyAt > now) delayed++
      else oldest = Math.min(oldest, row.readyAt)
    }
    let done = 0
    for (const row of this.rows.values()) if (row.state === "done") done++
    return {
      waiting: this.queued.size - delayed,
      delayed,
      running: this.leased.size,
      dead: this.dead.size,
      paused: this.paused,
      done,
      oldestWaitingMillis: oldest === Infinity ? undefined : now - oldest
    }
  })

  readonly requeueAll: Effect.Effect<number> = Effect.map(Clock.currentTimeMillis, (now) => {
    const n = this.dead.size
    for (const row of this.dead.values()) {
      row.attempts = 0
      this.enqueue(row, now)
    }
    this.dead.clear()
    return n
  })

  /** A scan of the queued and leased rows: this store is for tests, and `lease` scans them too. */
  readonly nextDueMillis: Effect.Effect<number | undefined> = Effect.map(Clock.currentTimeMillis, (now) => {
    let next = Infinity
    for (const row of this.queued.values()) if (row.readyAt > now && row.readyAt < next) next = row.readyAt
    for (const row of this.leased.values()) if (row.deadline < next) next = row.deadline
    return next === Infinity ? undefined : next - now
  })

  private held(job: LeasedJob): Row | undefined {
    const row = this.leased.get(job.id)
    return row !== undefined && row.lease === job.handle ? row : undefined
  }

  private enqueue(row: Row, readyAt: number, now = readyAt): void {
    row.state = "queued"
    row.readyAt = readyAt
    row.since = now
    this.queued.set(row.id, row)
    this.waiting.add(row, now)
    this.changed()
  }

  private changed(): void {
    this.changes++
    const pulse = this.pulse
    if (pulse === undefined) return
    this.pulse = undefined
    Deferred.unsafeDone(pulse, Exit.void)
  }

  private cancelled(row: Row, now: number): void {
    row.state = "cancelled"
    row.since = now
  }

  jobs(state: StoredState, limit: number, offset: number): Effect.Effect<ReadonlyArray<StoredJob>> {
    return Effect.map(Clock.currentTimeMillis, (now) => {
      // The orders of the other stores (store.ts); memory is for tests, so a sort of everything is fine here.
      const rows = state === "waiting"
        ? Array.from(this.queued.values()).filter((row) => row.readyAt <= now).sort(byPriority)
        : state === "delayed"
        ? Array.from(this.queued.values()).filter((row) => row.readyAt > now).sort((a, b) => a.readyAt - b.readyAt)
        : state === "running"
        ? Array.from(this.leased.values()).sort((a, b) => a.deadline - b.deadline)
        : Array.from(this.rows.values()).filter((row) => row.state === state).sort((a, b) =>
          b.since - a.since || b.sequence - a.sequence
        )
      return rows.slice(offset, offset + limit).map((row): StoredJob => ({
        id: row.id,
        payload: state === "done" || state === "cancelled" ? undefined : row.payload,
        attempts: row.attempts,
        progress: row.progress,
        lastError: row.lastError,
        ageMillis: state === "running" ? undefined : state === "waiting" ? now - row.readyAt : now - row.since
      }))
    })
  }
}

/** @internal */
export const make = <A, I>(
  options: DurableQueue.Options<A, I>
): Effect.Effect<DurableQueue.DurableQueue<A>, OptionError, Scope.Scope> =>
  Effect.flatMap(
    queueSettings(options),
    (settings) => core.make(new MemoryStore(settings.leaseMillis), settings, options.schema)
  )
