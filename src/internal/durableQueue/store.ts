/**
 * The store port of `DurableQueue`: the few operations a backend must do atomically, and nothing else. Every rule
 * (options, encoding, attempts, exit classification, dead-lettering, lease refresh timing, settlement retries,
 * graceful `run`) lives once in core.ts over this port; memory, Redis, PostgreSQL and SQLite only store.
 *
 * A store sees jobs as opaque strings (`payload`, JSON written by the core) under string ids; it never parses them.
 * Leases belong to one core (one `DurableQueue` instance): the store identifies its holder however it likes (a
 * token made at construction) and ignores a refresh or settlement of a job leased to someone else now.
 *
 * Made to grow (issues "complete job queue" and "durable throughput"): a run-at time or a priority is one more
 * field on `OfferedJob` and on `Settlement`'s "Retry", a bulk offer is `offer` with many jobs (already a batch),
 * and larger lease batches are `lease(max)` with a larger `max`.
 */
import type * as Effect from "effect/Effect"

/** A job handed to a store to keep. @internal */
export interface OfferedJob {
  readonly id: string
  /** The encoded job (JSON text); stored and returned byte for byte. */
  readonly payload: string
  /** False for ids the core generated (random UUIDs, unique by construction): a store may skip remembering them. */
  readonly custom: boolean
}

/** A job leased to this core. @internal */
export interface LeasedJob {
  readonly id: string
  readonly payload: string
  /**
   * Attempts counted so far, this lease included: the store adds one as it leases, so a job whose runner dies
   * (no settlement, the lease expires) has that attempt counted when it is leased again.
   */
  readonly attempts: number
  /** The store's own handle (a row number); the core hands it back untouched. */
  readonly handle: unknown
}

/**
 * What becomes of a leased job; `attempts` is what the store writes (the core decides it).
 * - Ack: done, gone (its id stays known, so it is not queued again);
 * - Release: queued again untouched (interrupted, or fetched and never run: `attempts` is one less than leased);
 * - Retry: queued again after a failed attempt, with its error;
 * - Dead: moved to the dead letters with its error.
 *
 * @internal
 */
export type Settlement =
  | { readonly _tag: "Ack" }
  | { readonly _tag: "Release"; readonly attempts: number }
  | { readonly _tag: "Retry"; readonly attempts: number; readonly lastError: string }
  | { readonly _tag: "Dead"; readonly attempts: number; readonly lastError: string }

/** @internal */
export interface Settle {
  readonly job: LeasedJob
  readonly settlement: Settlement
}

/** A dead letter as stored. @internal */
export interface StoredDeadLetter {
  readonly id: string
  readonly payload: string
  readonly attempts: number
  readonly lastError: string
}

/**
 * A store of one queue (its name is given to the store's constructor). Every operation fails with the store's own
 * error (`unknown`): the core wraps it into `DurableQueueError` "StoreFailed".
 *
 * @internal
 */
export interface Store {
  /** "memory", "redis" or "sql": named in errors. */
  readonly backend: string
  /** The most jobs one `lease` call may ask for. */
  readonly maxBatch: number
  /**
   * The shortest time (ms) between a lease that found nothing and the next, when woken early: under a stream of
   * single offers a fetcher then takes several per statement instead of one (20 ms on SQL). 0: none.
   */
  readonly wakeSpacingMillis: number
  /**
   * How long (ms) a small batch of settlements waits for more before it is written: where each write is a commit
   * (SQL), settlements trickling in from handlers that take a while would otherwise cost a commit each. Default 0.
   */
  readonly settleLingerMillis?: number | undefined
  /** Keeps the jobs, skipping ids already known (waiting, leased, done or dead). */
  readonly offer: (jobs: ReadonlyArray<OfferedJob>) => Effect.Effect<void, unknown>
  /**
   * Leases up to `max` ready jobs, oldest first, for `leaseMillis`, counting an attempt on each. Jobs whose lease
   * expired are ready again (their runner died). Never waits for jobs to come.
   */
  readonly lease: (max: number) => Effect.Effect<ReadonlyArray<LeasedJob>, unknown>
  /** Completes when jobs may have been offered elsewhere (a notification); `Effect.never` for stores without. */
  readonly ready: Effect.Effect<void>
  /** Extends the leases of these jobs, where this core still holds them. */
  readonly refresh: (jobs: ReadonlyArray<LeasedJob>) => Effect.Effect<void, unknown>
  /** Applies settlements, each only where this core still holds the job; idempotent (a retried batch is harmless). */
  readonly settle: (batch: ReadonlyArray<Settle>) => Effect.Effect<void, unknown>
  /** Jobs waiting or leased. */
  readonly size: Effect.Effect<number, unknown>
  /** Dead letters, oldest first. */
  readonly deadLetters: Effect.Effect<ReadonlyArray<StoredDeadLetter>, unknown>
  /** Queues dead letter `id` again with no attempts counted; false when there is no such dead letter. */
  readonly requeue: (id: string) => Effect.Effect<boolean, unknown>
  /** Deletes every dead letter; returns how many there were. */
  readonly purge: Effect.Effect<number, unknown>
}
