/**
 * `DurableQueue.memory`: the core over a store in memory, for tests. The store keeps what Redis and SQL keep (the
 * JSON text of each job, its attempts and last error, leases with a deadline read through `Clock`, dead letters,
 * every id ever offered), so `TestClock` drives leases and a test on it sees what production sees.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as DurableQueue from "../../DurableQueue.js"
import type { OptionError } from "../../OptionError.js"
import * as core from "./core.js"
import { queueSettings } from "./options.js"
import type { LeasedJob, OfferedJob, Settle, Store, StoredCounts, StoredDeadLetter, StoredStatus } from "./store.js"

interface Row {
  readonly id: string
  payload: string
  attempts: number
  lastError: string
  /** While leased: when the lease ends, and which lease it is (a late settlement of an older lease is ignored). */
  deadline: number
  lease: number
}

/** @internal */
export class MemoryStore implements Store {
  readonly backend = "memory"
  readonly maxBatch = 256
  readonly wakeSpacingMillis = 0
  readonly ready: Effect.Effect<void> = Effect.never
  /** Every id offered and not purged: an id is queued once. */
  private readonly known = new Set<string>()
  /** Insertion order is queue order. */
  private readonly waiting = new Map<string, Row>()
  private readonly leased = new Map<string, Row>()
  private readonly dead = new Map<string, Row>()
  private leases = 0

  constructor(readonly leaseMillis: number) {}

  offer(jobs: ReadonlyArray<OfferedJob>): Effect.Effect<void> {
    return Effect.sync(() => {
      for (const { id, payload } of jobs) {
        if (this.known.has(id)) continue
        this.known.add(id)
        this.waiting.set(id, { id, payload, attempts: 0, lastError: "", deadline: 0, lease: 0 })
      }
    })
  }

  lease(max: number): Effect.Effect<ReadonlyArray<LeasedJob>> {
    return Effect.map(Clock.currentTimeMillis, (now) => {
      // Leases that ran out: their runner died; the jobs are ready again, their attempt counted.
      for (const row of this.leased.values()) {
        if (row.deadline <= now) this.requeueRow(row)
      }
      const out: Array<LeasedJob> = []
      for (const row of this.waiting.values()) {
        if (out.length >= max) break
        this.waiting.delete(row.id)
        row.attempts++
        row.deadline = now + this.leaseMillis
        row.lease = ++this.leases
        this.leased.set(row.id, row)
        out.push({ id: row.id, payload: row.payload, attempts: row.attempts, handle: row.lease, options: undefined })
      }
      return out
    })
  }

  refresh(jobs: ReadonlyArray<LeasedJob>): Effect.Effect<ReadonlyArray<string>> {
    return Effect.map(Clock.currentTimeMillis, (now) => {
      for (const job of jobs) {
        const row = this.held(job)
        if (row !== undefined) row.deadline = now + this.leaseMillis
      }
      return []
    })
  }

  settle(batch: ReadonlyArray<Settle>): Effect.Effect<void> {
    return Effect.sync(() => {
      for (const { job, settlement } of batch) {
        const row = this.held(job)
        if (row === undefined) continue
        this.leased.delete(row.id)
        if (settlement._tag === "Ack" || settlement._tag === "Cancelled") continue
        row.attempts = settlement.attempts
        if (settlement._tag !== "Release") row.lastError = settlement.lastError
        if (settlement._tag === "Dead") this.dead.set(row.id, row)
        else this.waiting.set(row.id, row)
      }
    })
  }

  readonly size: Effect.Effect<number> = Effect.sync(() => this.waiting.size + this.leased.size)

  readonly deadLetters: Effect.Effect<ReadonlyArray<StoredDeadLetter>> = Effect.sync(() =>
    Array.from(this.dead.values(), ({ attempts, id, lastError, payload }) => ({ id, payload, attempts, lastError }))
  )

  requeue(id: string): Effect.Effect<boolean> {
    return Effect.sync(() => {
      const row = this.dead.get(id)
      if (row === undefined) return false
      this.dead.delete(id)
      row.attempts = 0
      this.waiting.set(id, row)
      return true
    })
  }

  readonly purge: Effect.Effect<number> = Effect.sync(() => {
    const n = this.dead.size
    for (const id of this.dead.keys()) this.known.delete(id)
    this.dead.clear()
    return n
  })

  // #11 port stubs, implemented in the next commits
  cancel(): Effect.Effect<"cancelled" | "asked" | "none"> {
    return Effect.dieMessage("cancel: not implemented yet")
  }
  progress(): Effect.Effect<void> {
    return Effect.dieMessage("progress: not implemented yet")
  }
  status(): Effect.Effect<StoredStatus | undefined> {
    return Effect.dieMessage("status: not implemented yet")
  }
  setPaused(): Effect.Effect<void> {
    return Effect.dieMessage("setPaused: not implemented yet")
  }
  readonly counts: Effect.Effect<StoredCounts> = Effect.dieMessage("counts: not implemented yet")
  readonly requeueAll: Effect.Effect<number> = Effect.dieMessage("requeueAll: not implemented yet")

  private held(job: LeasedJob): Row | undefined {
    const row = this.leased.get(job.id)
    return row !== undefined && row.lease === job.handle ? row : undefined
  }

  private requeueRow(row: Row): void {
    this.leased.delete(row.id)
    this.waiting.set(row.id, row)
  }
}

/** @internal */
export const make = <A, I>(
  options: DurableQueue.Options<A, I>
): Effect.Effect<DurableQueue.DurableQueue<A>, OptionError, Scope.Scope> =>
  Effect.flatMap(queueSettings(options), (settings) => core.make(new MemoryStore(settings.leaseMillis), settings, options.schema))
