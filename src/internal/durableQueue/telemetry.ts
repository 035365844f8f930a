/**
 * DurableQueue's spans and metrics, kept out of `core.ts` (which owns the queue's rules) by decorating both sides
 * of it: the `Store` it writes to (settlements are counted where they are written, once the store took them) and
 * the queue it returns (offer and per-job spans). Naming: README, "Tracing and metrics".
 */
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Effect from "effect/Effect"
import type * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as DurableQueue from "../../DurableQueue.js"
import type { OptionError } from "../../OptionError.js"
import { bump, counter, labels, tracing, withSpanWhenTraced } from "../telemetry.js"
import type { EventPort } from "./events.js"
import type { QueueSettings } from "./options.js"
import type { Settle, Store } from "./store.js"

/** Label `queue`: the queue's `name`. @internal */
export const DurableQueueMetrics = {
  offered: counter("effect_workers_durable_queue_offered_total", "jobs offered (an id already known counts too)"),
  acked: counter("effect_workers_durable_queue_acked_total", "jobs acknowledged after a successful attempt"),
  retried: counter("effect_workers_durable_queue_retried_total", "failed attempts put back for another try"),
  dead: counter("effect_workers_durable_queue_dead_total", "jobs moved to the dead letters"),
  released: counter(
    "effect_workers_durable_queue_released_total",
    "jobs put back uncounted (interrupted, or fetched and not run at shutdown)"
  ),
  leaseExpired: counter(
    "effect_workers_durable_queue_lease_expired_total",
    "jobs whose last lease lapsed unsettled (runner died, hung or lost the store), found and dead-lettered"
  )
} as const

const Metrics = DurableQueueMetrics

/**
 * Counts a batch the store has taken; `core.ts` dead-letters a runner's lost last attempt with one attempt less.
 * Each counter is bumped once per batch: a bump looks its labelled metric up in the registry (a hash of the key),
 * which per job was ~0.4 % of the SQLite consumer's profile (bench/_profile.ts, issue #16).
 */
const count = (batch: ReadonlyArray<Settle>, tags: ReturnType<typeof labels>): void => {
  let acked = 0
  let retried = 0
  let released = 0
  let dead = 0
  let expired = 0
  for (const { job, settlement } of batch) {
    switch (settlement._tag) {
      case "Ack":
        acked++
        break
      case "Retry":
        retried++
        break
      case "Release":
        released++
        break
      case "Dead":
        dead++
        if (settlement.attempts < job.attempts) expired++
        break
    }
  }
  if (acked > 0) bump(Metrics.acked, tags, acked)
  if (retried > 0) bump(Metrics.retried, tags, retried)
  if (released > 0) bump(Metrics.released, tags, released)
  if (dead > 0) bump(Metrics.dead, tags, dead)
  if (expired > 0) bump(Metrics.leaseExpired, tags, expired)
}

// Delegates member by member (a store is a class instance: a spread would lose its methods); a required member
// added to `Store` fails to compile here until it is delegated, an optional one (settleLingerMillis, leaseBatch,
// leaseWhileRunning, settleBatch) does not: keep them in mind.
const tracedStore = (store: Store, name: string, tags: ReturnType<typeof labels>): Store => ({
  backend: store.backend,
  maxBatch: store.maxBatch,
  wakeSpacingMillis: store.wakeSpacingMillis,
  settleLingerMillis: store.settleLingerMillis,
  leaseBatch: store.leaseBatch,
  leaseWhileRunning: store.leaseWhileRunning,
  settleBatch: store.settleBatch,
  offer: (jobs) => store.offer(jobs),
  lease: (max) => store.lease(max),
  get ready() {
    return store.ready
  },
  refresh: (jobs) => store.refresh(jobs),
  get size() {
    return store.size
  },
  get deadLetters() {
    return store.deadLetters
  },
  requeue: (id) => store.requeue(id),
  get purge() {
    return store.purge
  },
  cancel: (id) => store.cancel(id),
  progress: (job, json) => store.progress(job, json),
  status: (id) => store.status(id),
  setPaused: (paused) => store.setPaused(paused),
  get counts() {
    return store.counts
  },
  get requeueAll() {
    return store.requeueAll
  },
  get nextDueMillis() {
    return store.nextDueMillis
  },
  // The settler's fiber was forked when the queue was made: its batches are root spans, not children of that.
  settle: (batch) =>
    Effect.tap(store.settle(batch), () => count(batch, tags)).pipe(
      withSpanWhenTraced("DurableQueue.settle", {
        root: true,
        captureStackTrace: false,
        attributes: { "effect_workers.queue": name, "effect_workers.jobs": batch.length }
      })
    ),
  jobs: (state, limit, offset) => store.jobs(state, limit, offset),
  get hearing() {
    return store.hearing
  }
})

const tracedQueue = <A>(
  queue: DurableQueue.DurableQueue<A>,
  tags: ReturnType<typeof labels>
): DurableQueue.DurableQueue<A> => {
  const attributes = { "effect_workers.queue": queue.name }
  // One span per job a handler runs, a child of the caller of `take` or `run` (its taker fibers inherit it). Whether
  // the caller is traced is looked at once per `take` or `run`, not per job: the per-job check and its attributes
  // object cost ~1.3 % of the core's CPU per job with tracing off (bench/_core-cpu.ts profile, issue #16).
  const traced =
    <X, E, R>(handler: (value: A, job: DurableQueue.Job) => Effect.Effect<X, E, R>) =>
    (value: A, job: DurableQueue.Job) =>
      Effect.withSpan(handler(value, job), "DurableQueue.take", {
        kind: "consumer",
        captureStackTrace: false,
        attributes: { ...attributes, "effect_workers.job_id": job.id, "effect_workers.attempt": job.attempt }
      })
  const whenTraced = <X, E, R, B, F, R2>(
    handler: (value: A, job: DurableQueue.Job) => Effect.Effect<X, E, R>,
    use: (handler: (value: A, job: DurableQueue.Job) => Effect.Effect<X, E, R>) => Effect.Effect<B, F, R2>
  ): Effect.Effect<B, F, R2> => Effect.withFiberRuntime((fiber) => use(tracing(fiber) ? traced(handler) : handler))
  return {
    ...queue,
    offer: (value, options) =>
      queue.offer(value, options).pipe(
        Effect.tap(() => bump(Metrics.offered, tags)),
        withSpanWhenTraced("DurableQueue.offer", { kind: "producer", attributes, captureStackTrace: false })
      ),
    offerAll: (entries) =>
      queue.offerAll(entries).pipe(
        Effect.tap((ids) => bump(Metrics.offered, tags, ids.length)),
        // No attribute read from `entries` here: it may be anything a JavaScript caller passed (null), and the core
        // is what checks it.
        withSpanWhenTraced("DurableQueue.offerAll", { kind: "producer", attributes, captureStackTrace: false })
      ),
    take: ((
      handler: (value: A, job: DurableQueue.Job) => Effect.Effect<unknown, unknown, unknown>,
      options?: DurableQueue.TakeOptions<unknown, unknown>
    ) =>
      whenTraced(
        handler,
        (handler) => options === undefined ? queue.take(handler) : queue.take(handler, options)
      )) as DurableQueue.DurableQueue<A>["take"],
    run: (handler, options) => whenTraced(handler, (handler) => queue.run(handler, options)),
    // One span per batch (not per job: a batch is one handler call), its jobs' count and first id as attributes.
    // Cast as `take`: one body for both overloads (with `result` or not); the options go through as given.
    runBatch: ((
      handler: (
        values: NonEmptyReadonlyArray<A>,
        jobs: NonEmptyReadonlyArray<DurableQueue.Job>
      ) => Effect.Effect<unknown, unknown, unknown>,
      options?: DurableQueue.RunBatchOptions<unknown, unknown>
    ) =>
      Effect.withFiberRuntime<never, OptionError, unknown>((fiber) =>
        queue.runBatch(
          tracing(fiber)
            ? (values, jobs) =>
              Effect.withSpan(handler(values, jobs), "DurableQueue.runBatch", {
                kind: "consumer",
                captureStackTrace: false,
                attributes: {
                  ...attributes,
                  "effect_workers.jobs": jobs.length,
                  "effect_workers.job_id": jobs[0].id
                }
              })
            : handler,
          options as DurableQueue.RunBatchOptions | undefined
        )
      )) as DurableQueue.DurableQueue<A>["runBatch"]
  }
}

/**
 * The core's `make` with telemetry around it: the core gets a counting store, its caller a queue whose offers and
 * jobs have spans.
 * @internal
 */
export const withTelemetry = (
  make: <A, I>(store: Store, settings: QueueSettings, schema: Schema.Schema<A, I>, port: EventPort) => Effect.Effect<
    DurableQueue.DurableQueue<A>,
    never,
    Scope.Scope
  >
) =>
<A, I>(store: Store, settings: QueueSettings, schema: Schema.Schema<A, I>, port: EventPort): Effect.Effect<
  DurableQueue.DurableQueue<A>,
  never,
  Scope.Scope
> => {
  const tags = labels("queue", settings.name)
  const traced = make(tracedStore(store, settings.name, tags), settings, schema, port)
  return Effect.map(traced, (queue) => tracedQueue(queue, tags))
}
