/**
 * `DurableQueue.memory`: the core over a store in memory, for tests. The store keeps what Redis and SQL keep (the
 * JSON text of each job, its attempts, last error and progress, leases with a deadline read through `Clock`,
 * delays and priorities, dead letters, done jobs with their results, cancelled ids, the paused flag, every id ever
 * offered), so `TestClock` drives leases, delays and backoff and a test on it sees what production sees.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
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

/** @internal */
export class MemoryStore implements Store {
  readonly backend = "memory"
  readonly maxBatch = 256
  readonly wakeSpacingMillis = 0
  readonly ready: Effect.Effect<void> = Effect.never
  /** Every job offered and not purged, whatever its state: an id is queued once. */
  private readonly rows = new Map<string, Row>()
  /** Waiting or delayed. */
  private readonly queued = new Map<string, Row>()
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
      }
    })
  }

  lease(max: number): Effect.Effect<ReadonlyArray<LeasedJob>> {
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
      const ready = Array.from(this.queued.values()).filter((row) => row.readyAt <= now).sort(byPriority).slice(0, max)
      return ready.map((row): LeasedJob => {
        this.queued.delete(row.id)
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
