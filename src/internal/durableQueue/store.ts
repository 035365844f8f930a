/**
 * The store port of `DurableQueue`: the few operations a backend must do atomically, and nothing else. Every rule
 * (options, encoding, attempts, exit classification, dead-lettering, lease refresh timing, settlement retries,
 * graceful `run`) lives once in core.ts over this port; memory, Redis, PostgreSQL and SQLite only store.
 *
 * A store sees jobs as opaque strings (`payload`, JSON written by the core) under string ids; it never parses them.
 * Leases belong to one core (one `DurableQueue` instance): the store identifies its holder however it likes (a
 * token made at construction) and ignores a refresh or settlement of a job leased to someone else now.
 *
 * Times are RELATIVE (`delayMillis`, `resultTtlMillis`): each store reads its own clock (Redis `TIME`, the
 * database's `now()`, `Clock` in memory), so processes whose clocks disagree still agree on a job's time; the core
 * turns an absolute `runAt` into a delay with `Clock.currentTimeMillis`.
 */
import type * as Effect from "effect/Effect"

/** A job handed to a store to keep. @internal */
export interface OfferedJob {
  readonly id: string
  /** The encoded job (JSON text); stored and returned byte for byte. */
  readonly payload: string
  /** False for ids the core generated (UUIDv7s, unique by construction): a store may skip remembering them. */
  readonly custom: boolean
  /** Not leased before the store's now + delayMillis (0: ready now). */
  readonly delayMillis: number
  /** Higher first; ties in offer order. */
  readonly priority: number
  /** Per-job settings the core wrote (JSON text: timeout, backoff), returned at lease untouched; undefined: none. */
  readonly options: string | undefined
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
  /** `OfferedJob.options` as offered. */
  readonly options: string | undefined
}

/**
 * What becomes of a leased job; `attempts` is what the store writes (the core decides it).
 * - Ack: done (its id stays known, so it is not queued again; status "done", attempts kept); `result` (JSON text)
 *   is kept for `resultTtlMillis` when defined;
 * - Release: queued again untouched (interrupted, or fetched and never run: `attempts` is one less than leased);
 * - Retry: queued again after a failed attempt, with its error, not leased before `delayMillis` from now (backoff);
 * - Dead: moved to the dead letters with its error;
 * - Cancelled: its cancellation was asked while it ran; state "cancelled" (id stays known), not retried.
 *
 * @internal
 */
export type Settlement =
  | { readonly _tag: "Ack"; readonly result: string | undefined; readonly resultTtlMillis: number }
  | { readonly _tag: "Release"; readonly attempts: number }
  | { readonly _tag: "Retry"; readonly attempts: number; readonly lastError: string; readonly delayMillis: number }
  | { readonly _tag: "Dead"; readonly attempts: number; readonly lastError: string }
  | { readonly _tag: "Cancelled"; readonly attempts: number }

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

/** @internal */
export type StoredState = "waiting" | "delayed" | "running" | "done" | "dead" | "cancelled"

/** What a store knows of one job. @internal */
export interface StoredStatus {
  readonly state: StoredState
  readonly attempts: number
  /** The last progress reported (JSON text), if any. */
  readonly progress: string | undefined
  readonly lastError: string | undefined
  /** The stored result (JSON text) while its time to live lasts. */
  readonly result: string | undefined
}

/** @internal */
export interface StoredCounts {
  readonly waiting: number
  readonly delayed: number
  readonly running: number
  readonly dead: number
  readonly paused: boolean
  /**
   * Done jobs the store still keeps: memory and SQL keep every done job (SQL counts at most `DONE_COUNT_CAP`: its
   * done rows are kept forever, and counting more at every dashboard sample would read them all); Redis keeps a
   * done record for the result time to live only (none at all with a time to live of 0).
   */
  readonly done: number
  /**
   * How long (ms, the store's clock) the oldest waiting job has been waiting (ready: offered, queued again, or its
   * delay passed); undefined when none waits. Redis looks at the next job of each kind (priority 0 in offer order,
   * the highest and the lowest priority, the first delayed job due): a higher-priority job offered later is not
   * older than the one it passes.
   */
  readonly oldestWaitingMillis: number | undefined
}

/** The most jobs one `jobs` call lists. @internal */
export const MAX_LIST_LIMIT = 1_000

/** The deepest `offset` of a `jobs` call: each store walks that many entries (a list, an index) to skip them. @internal */
export const MAX_LIST_OFFSET = 100_000

/** The most done jobs an SQL store counts (see `StoredCounts.done`). @internal */
export const DONE_COUNT_CAP = 100_000

/** One job of a listing (`Store.jobs`). @internal */
export interface StoredJob {
  readonly id: string
  /** The encoded job (JSON text) of a waiting, delayed, running or dead job; none for done and cancelled ones (Redis drops them). */
  readonly payload: string | undefined
  readonly attempts: number
  /** The last progress reported (JSON text), if any. */
  readonly progress: string | undefined
  readonly lastError: string | undefined
  /**
   * How long ago (ms, the store's clock) the job entered this state: waiting since it became ready, delayed since
   * it was offered or retried, done / dead / cancelled since then. Undefined where the store does not keep it:
   * running jobs on every store (a lease's start is not written: it would cost a write per lease), done jobs on
   * Redis (a write per acknowledgement), and jobs written before this was kept.
   */
  readonly ageMillis: number | undefined
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
   * The shortest time (ms) from the start of a lease that found fewer jobs than asked to the next, when woken
   * early: under a stream of single offers a fetcher then takes several per statement instead of one (20 ms on
   * SQL). 0: none.
   */
  readonly wakeSpacingMillis: number
  /**
   * How long (ms) a small batch of settlements waits for more before it is written: where each write is a commit
   * (SQL), settlements trickling in from handlers that take a while would otherwise cost a commit each. Default 0.
   */
  readonly settleLingerMillis?: number | undefined
  /**
   * Keeps the jobs, skipping ids already known (waiting, delayed, leased, done, dead or cancelled); a delayed job is
   * not leased before its time. Several jobs (`offerAll`) are written all or nothing. May return whether the
   * queue's events had a subscriber in any process when the jobs were written (Redis: `PUBSUB NUMSUB` in the offer
   * script, atomic with the write): false, and the core sends no "Offered" for them. Nothing: the bus decides
   * (`EventBus.listening`).
   */
  readonly offer: (jobs: ReadonlyArray<OfferedJob>) => Effect.Effect<boolean | void, unknown>
  /**
   * Leases up to `max` ready jobs (delay passed), highest priority first, then offer order, for `leaseMillis`,
   * counting an attempt on each; nothing while paused. Jobs whose lease expired are ready again (their runner
   * died); one whose cancellation was asked is settled "cancelled" instead of handed out. Never waits for jobs.
   * The core calls it uninterruptibly (core.ts `Feed.fetch`): any other wait in it must end by itself, since an
   * `Effect.timeout` there cannot interrupt what it bounds (make the bounded effect `interruptible`; sqlListen.ts).
   */
  readonly lease: (max: number) => Effect.Effect<ReadonlyArray<LeasedJob>, unknown>
  /**
   * Completes when jobs may have been offered elsewhere (a notification; SQLite: `data_version` moved);
   * `Effect.never` for stores without.
   */
  readonly ready: Effect.Effect<void>
  /** Extends these leases where this core holds them; returns the ids among them whose cancellation was asked. */
  readonly refresh: (jobs: ReadonlyArray<LeasedJob>) => Effect.Effect<ReadonlyArray<string>, unknown>
  /** Applies settlements, each only where this core still holds the job; idempotent (a retried batch is harmless). */
  readonly settle: (batch: ReadonlyArray<Settle>) => Effect.Effect<void, unknown>
  /** Jobs not yet done: waiting, delayed or leased. */
  readonly size: Effect.Effect<number, unknown>
  /** Dead letters, oldest first. */
  readonly deadLetters: Effect.Effect<ReadonlyArray<StoredDeadLetter>, unknown>
  /** Queues dead letter `id` again with no attempts counted; false when there is no such dead letter. */
  readonly requeue: (id: string) => Effect.Effect<boolean, unknown>
  /** Deletes every dead letter; returns how many there were. */
  readonly purge: Effect.Effect<number, unknown>
  /**
   * waiting/delayed: now "cancelled" (its id stays known). leased: cancellation asked (`refresh` reports it; a
   * later `lease` of it, after its runner died, settles it "cancelled" instead of handing it out). "none": no such
   * job waiting, delayed or leased.
   */
  readonly cancel: (id: string) => Effect.Effect<"cancelled" | "asked" | "none", unknown>
  /** Stores progress (JSON text) of a job this core holds; ignored otherwise. */
  readonly progress: (job: LeasedJob, json: string) => Effect.Effect<void, unknown>
  /** What is known of `id`; undefined when nothing (never offered, purged, or its done record expired). */
  readonly status: (id: string) => Effect.Effect<StoredStatus | undefined, unknown>
  /** Pauses or resumes the queue for every core on the store; resuming wakes takers (notification / wake-up). */
  readonly setPaused: (paused: boolean) => Effect.Effect<void, unknown>
  readonly counts: Effect.Effect<StoredCounts, unknown>
  /** Queues every dead letter again, attempts reset; returns how many. */
  readonly requeueAll: Effect.Effect<number, unknown>
  /**
   * How long (ms, relative, by the store's own clock) until the next timed job comes due: a delayed job (a `delay`,
   * a `runAt`, a retry waiting out its backoff) or a lease that lapses (its runner died); undefined when none. 0 or
   * less: one is due and `lease` has not made it ready yet (the next lease will). Read by the core after a lease
   * that found nothing, to wake at that time instead of at its next poll; must not scan (an index, a sorted set's
   * lowest score).
   */
  readonly nextDueMillis: Effect.Effect<number | undefined, unknown>
  /**
   * Up to `limit` (1 to `MAX_LIST_LIMIT`) jobs in `state`, after skipping `offset` (0 to `MAX_LIST_OFFSET`), each
   * call bounded by those (an index or key range, never the whole queue). Order: waiting in lease order (then
   * delayed jobs whose time came), delayed by due time, running by lease deadline, done, dead and cancelled newest
   * first (Redis: cancelled in no particular order, a set). What a store does not keep is not listed: Redis drops
   * a done record when its result time to live passes; memory and SQL keep done jobs.
   */
  readonly jobs: (state: StoredState, limit: number, offset: number) => Effect.Effect<ReadonlyArray<StoredJob>, unknown>
  /**
   * How many jobs a `run`'s refill may lease at once past 4 × its concurrency (at most `maxBatch`, 16 per taker;
   * core.ts `Feed.adapt`), when its takers wait for the leases: where each lease is a statement and a
   * commit whose cost hardly grows with its rows (SQL), a run of concurrency 16 leasing 64 at a time was bound by
   * lease round trips (issue 16: 2.9–5.3k jobs/s at 64 a lease, 4.5–8.0k with this at 256, interleaved at load 19).
   * Undefined: 4 × the concurrency.
   */
  readonly leaseBatch?: number | undefined
  /**
   * Whether a lease goes to the store at once and proceeds while this process runs jobs (Redis: written to its
   * socket at the call, not at the end of the tick with the auto-pipelined commands). A `run` whose takers wait for
   * full leases then asks for the next one as the last arrives (core.ts `Feed.overlap`).
   */
  readonly leaseWhileRunning?: boolean | undefined
  /**
   * The most settlements one `settle` call carries (default 256). One call is out at a time, so a store whose leases
   * overlap the run of jobs (`leaseWhileRunning`) needs room for those settled during a round trip: on Redis, with
   * a lease always out, settlements of 256 per call fell behind (12 calls left when the last handler ran, 5,000 jobs).
   */
  readonly settleBatch?: number | undefined
  /**
   * Whether `ready` now hears the changes of every process that make jobs ready (offers, jobs put back or retried,
   * a resume, requeues; delayed jobs and lapsing leases are read by `nextDueMillis`): memory always; Redis while its
   * wake subscription holds; PostgreSQL while its LISTEN is confirmed; SQLite while its `data_version` watch reads
   * (sqliteWatch.ts). Where it does, an idle fetcher backs off from `pollInterval` to 2 s (core.ts `IdleBackoff`);
   * undefined or false (`notify: false`, a store of a version before it): it polls every `pollInterval`.
   */
  readonly hearing?: Effect.Effect<boolean> | undefined
}
