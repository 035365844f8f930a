/**
 * The one implementation of `DurableQueue`'s rules, over a `Store` (store.ts) that only stores: validated options,
 * Schema encoding in JavaScript (encoding.ts), attempts counted at lease, exit classification, dead-lettering
 * (including a job whose runner died while running its last attempt), lease refresh, settlement retries while the
 * store is away, and graceful `run`. Memory, Redis, PostgreSQL and SQLite share every line of it.
 *
 * Parts, each a small class: `Held` (the jobs leased here, refreshed together), `Settler` (settlements written in
 * batches by one fiber, retried while the store is away), `Feed` (one fetcher leasing as many jobs as takers wait
 * for). `make` wires them into the public queue.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as DurableQueue from "../../DurableQueue.js"
import { type Codec, codec as makeCodec } from "./encoding.js"
import { DurableQueueError } from "./error.js"
import { offerEntries, offerId, type QueueSettings, runSettings } from "./options.js"
import type { LeasedJob, OfferedJob, Settle, Settlement, Store } from "./store.js"

/** Settlements written per store call. */
const SETTLE_BATCH = 256

/** The jobs leased by this core (fetched, running, or settled but not yet written); their leases are refreshed together. */
class Held {
  readonly jobs = new Map<string, LeasedJob>()
  constructor(readonly store: Store, readonly leaseMillis: number) {}
  add(jobs: ReadonlyArray<LeasedJob>): void {
    for (const job of jobs) this.jobs.set(job.id, job)
  }
  delete(job: LeasedJob): void {
    if (this.jobs.get(job.id) === job) this.jobs.delete(job.id)
  }
  /** Every third of the lease, so two refreshes can be lost or late before a live runner's lease lapses. */
  refreshLoop(): Effect.Effect<never> {
    return Effect.suspend(() =>
      this.jobs.size === 0 ? Effect.void : this.store.refresh(Array.from(this.jobs.values()))
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
  readonly queue = Effect.runSync(Queue.unbounded<Pending>())
  constructor(
    readonly store: Store,
    readonly held: Held,
    readonly failed: (cause: unknown) => DurableQueueError,
    readonly onRequeued: Effect.Effect<void>
  ) {}

  submit(job: LeasedJob, settlement: Settlement): void {
    this.queue.unsafeOffer({ job, settlement, done: undefined })
  }

  /** Waits until written; fails when the store stayed away. */
  submitAndWait(job: LeasedJob, settlement: Settlement): Effect.Effect<void, DurableQueueError> {
    return Effect.flatMap(Deferred.make<void, DurableQueueError>(), (done) => {
      this.queue.unsafeOffer({ job, settlement, done })
      return Deferred.await(done)
    })
  }

  write(batch: ReadonlyArray<Pending>): Effect.Effect<void> {
    const retryMillis = Math.max(this.held.leaseMillis, 10_000)
    return this.store.settle(batch).pipe(
      Effect.retry(Schedule.spaced("200 millis").pipe(Schedule.upTo(retryMillis))),
      Effect.mapError(this.failed),
      Effect.tapError((error) => Effect.logWarning("DurableQueue: settling jobs failed; their leases will lapse", error)),
      Effect.exit,
      Effect.flatMap((exit) => {
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
   * A batch smaller than a quarter of `SETTLE_BATCH` with no `take` waiting on it lingers `settleLingerMillis` for
   * more (SQL: 1 ms handlers on SQLite settled a job or two per commit, 584 jobs/s against the floor's 7,369).
   */
  private collect(chunk: ReadonlyArray<Pending>): Effect.Effect<ReadonlyArray<Pending>> {
    const linger = this.store.settleLingerMillis ?? 0
    if (linger <= 0 || chunk.length >= SETTLE_BATCH / 4 || chunk.some((pending) => pending.done !== undefined)) return Effect.succeed(chunk)
    return Effect.zipRight(
      Effect.sleep(linger),
      Effect.map(Queue.takeUpTo(this.queue, SETTLE_BATCH - chunk.length), (more) => [...chunk, ...more])
    )
  }

  /** Only the wait is interruptible: a batch taken is written. On interruption what is queued is written first. */
  loop(): Effect.Effect<never> {
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(Queue.takeBetween(this.queue, 1, SETTLE_BATCH)), (chunk) =>
        Effect.flatMap(this.collect(Array.from(chunk)), (batch) => this.write(batch)))
    ).pipe(
    Effect.forever,
    Effect.onInterrupt(() =>
      Effect.gen(this, function*() {
        while ((yield* Queue.size(this.queue)) > 0) {
          yield* this.write(Array.from(yield* Queue.takeUpTo(this.queue, SETTLE_BATCH)))
        }
      }).pipe(Effect.timeout("5 seconds"), Effect.ignore)
    )
    )
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
 * One fetcher leases jobs and hands them out: as many as takers wait for, and, while a `run` is active, ahead of
 * them (see `LOOKAHEAD`). Jobs fetched but not yet handed out are held (refreshed) and put back, uncounted, when
 * the last `run` stops or the scope closes.
 */
class Feed {
  demand = 0
  /** The takers of active `run`s (their concurrency): what the buffer is filled ahead for. Single `take`s do not count. */
  takers = 0
  readonly jobs = Effect.runSync(Queue.unbounded<LeasedJob>())
  /** Opened when a taker starts waiting, or the buffer runs low. */
  readonly wake = Effect.unsafeMakeLatch(false)
  /** Opened when jobs may have become ready here (an offer, a retry): a fetcher waiting out its poll looks at once. */
  readonly offered = Effect.unsafeMakeLatch(false)
  constructor(readonly store: Store, readonly held: Held, readonly pollMillis: number) {}

  /** Uninterruptible from the call to the hand-over: jobs the store leased must reach `jobs`, where the put-back finds them. */
  private fetch(want: number): Effect.Effect<Either.Either<ReadonlyArray<LeasedJob>, unknown>> {
    return Effect.uninterruptible(
      Effect.flatMap(Effect.either(this.store.lease(Math.min(want, this.store.maxBatch))), (leased): Effect.Effect<Either.Either<ReadonlyArray<LeasedJob>, unknown>> => {
        if (Either.isLeft(leased)) return Effect.succeed(leased)
        this.held.add(leased.right)
        return Effect.as(Queue.offerAll(this.jobs, leased.right), leased)
      })
    )
  }

  private buffered(): number {
    return Option.getOrElse(this.jobs.unsafeSize(), () => 0)
  }

  /** How many jobs to lease now: what waiting takers lack, or a refill of a low buffer while a `run` is active. */
  private wanted(): number {
    const buffered = this.buffered()
    const lacking = this.demand - buffered
    return buffered < this.takers ? Math.max(lacking, LOOKAHEAD * this.takers - buffered) : lacking
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
      this.offered.unsafeClose()
      const leased = yield* this.fetch(want)
      if (Either.isLeft(leased)) {
        yield* Effect.logWarning("DurableQueue: leasing jobs failed; retrying", leased.left)
        yield* Effect.sleep(Math.max(this.pollMillis, 200))
      } else if (leased.right.length === 0) {
        const empty = yield* Clock.currentTimeMillis
        yield* Effect.raceFirst(Effect.sleep(this.pollMillis), Effect.raceFirst(this.offered.await, this.store.ready))
        const early = empty + this.store.wakeSpacingMillis - (yield* Clock.currentTimeMillis)
        if (early > 0) yield* Effect.sleep(early)
      }
    }
    })
  }

  /** A job from the buffer without waiting (a `poll`, so nothing is counted as demand), else `wait`. */
  next(): Effect.Effect<LeasedJob> {
    return Effect.flatMap(Queue.poll(this.jobs), (polled) => {
      if (Option.isNone(polled)) return this.wait
      // The fetcher is woken only when it has something to do (not once per job handed out of a full buffer).
      if (this.buffered() < this.takers) this.wake.unsafeOpen()
      return Effect.succeed(polled.value)
    })
  }

  private readonly wait: Effect.Effect<LeasedJob> = Effect.uninterruptibleMask((restore) =>
    Effect.suspend(() => {
      this.demand++
      this.wake.unsafeOpen()
      return restore(Queue.take(this.jobs)).pipe(Effect.ensuring(Effect.sync(() => this.demand--)))
    })
  )

  /** What was fetched and not handed out, to be put back (the last `run` stopped, or the scope closes). */
  takeBuffered(): Effect.Effect<ReadonlyArray<LeasedJob>> {
    return Effect.map(Queue.takeAll(this.jobs), (chunk) => Array.from(chunk))
  }
}

/** What a finished attempt makes of its job. */
const classify = (exit: Exit.Exit<unknown, unknown>, job: LeasedJob, maxAttempts: number): Settlement => {
  if (Exit.isSuccess(exit)) return { _tag: "Ack" }
  if (Cause.isInterruptedOnly(exit.cause)) return { _tag: "Release", attempts: job.attempts - 1 }
  const lastError = Cause.pretty(exit.cause)
  return job.attempts >= maxAttempts
    ? { _tag: "Dead", attempts: job.attempts, lastError }
    : { _tag: "Retry", attempts: job.attempts, lastError }
}

const runnerDied = (job: LeasedJob, settings: QueueSettings): Settlement => ({
  _tag: "Dead",
  attempts: job.attempts - 1,
  lastError: `its runner died while running it: attempt ${job.attempts - 1} of ${settings.maxAttempts} was never settled ` +
    `(its ${settings.leaseMillis} ms lease expired; the process was killed, crashed or ran out of memory)`
})

/**
 * `offerAll`: every entry checked and encoded before the store is called, so a hostile entry fails the call with
 * nothing written; of entries sharing an id the first is queued (every entry's id is returned); one store call.
 */
const offerBatch = <A>(
  codec: Codec<A>,
  store: Store,
  name: string,
  failed: (cause: unknown) => DurableQueueError,
  offered: Effect.Effect<void>
): DurableQueue.DurableQueue<A>["offerAll"] =>
(entries) =>
  Effect.gen(function*() {
    const checked = yield* offerEntries(entries)
    const ids: Array<string> = []
    const jobs: Array<OfferedJob> = []
    const seen = new Set<string>()
    for (const entry of checked) {
      const custom = entry.id !== undefined
      const id = custom ? entry.id! : globalThis.crypto.randomUUID()
      const payload = yield* codec.encode(entry.value as A).pipe(
        Effect.mapError((cause) => new DurableQueueError({ reason: "EncodeFailed", backend: store.backend, queue: name, id, cause }))
      )
      ids.push(id)
      if (!seen.has(id)) {
        seen.add(id)
        jobs.push({ id, payload, custom })
      }
    }
    if (jobs.length > 0) {
      yield* Effect.mapError(store.offer(jobs), failed)
      yield* offered
    }
    return ids
  })

/** @internal */
export const make = <A, I>(
  store: Store,
  settings: QueueSettings,
  schema: Schema.Schema<A, I>
): Effect.Effect<DurableQueue.DurableQueue<A>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { maxAttempts, name } = settings
    const codec: Codec<A> = makeCodec(schema)
    const failed = (cause: unknown) => new DurableQueueError({ reason: "StoreFailed", backend: store.backend, queue: name, cause })
    const held = new Held(store, settings.leaseMillis)
    const feed = new Feed(store, held, settings.pollMillis)
    const settler = new Settler(store, held, failed, feed.offered.open)
    const putBack = Effect.map(feed.takeBuffered(), (left) => {
      for (const job of left) settler.submit(job, { _tag: "Release", attempts: job.attempts - 1 })
    })
    // Forked in this order so that the scope, closing in reverse, stops the fetcher (which puts back what it
    // fetched) before the settler writes its last batches, and refreshes leases until then.
    yield* Effect.forkScoped(Effect.interruptible(held.refreshLoop()))
    yield* Effect.forkScoped(Effect.interruptible(settler.loop()))
    yield* feed.loop().pipe(
      Effect.interruptible,
      // What was fetched and not handed out goes back, uncounted; takers still waiting are interrupted (shutdown).
      Effect.onExit(() => Effect.zipRight(putBack, Queue.shutdown(feed.jobs))),
      Effect.forkScoped
    )

    // A job leased with more attempts than allowed was leased before by a runner that never settled it (it died):
    // it goes to the dead letters here, and the taker waits for the next.
    const nextRunnable: Effect.Effect<LeasedJob> = Effect.flatMap(Effect.suspend(() => feed.next()), (job) => {
      if (job.attempts <= maxAttempts) return Effect.succeed(job)
      settler.submit(job, runnerDied(job, settings))
      return nextRunnable
    })

    // `graceful` (used by `run`): interrupting the taker does not interrupt a running handler, so a shutdown lets
    // running jobs finish and be acknowledged; `run` does not wait for its settlements to be written, `take` does.
    const take = <X, E, R>(
      handler: (value: A, job: DurableQueue.Job) => Effect.Effect<X, E, R>,
      graceful: boolean
    ): Effect.Effect<Exit.Exit<X, E>, DurableQueueError, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(nextRunnable), (job) => {
          let settled = false
          const run = Effect.flatMap(Effect.orDie(codec.decode(job.payload)), (value) => handler(value, { id: job.id, attempt: job.attempts }))
          return Effect.flatMap(Effect.exit(graceful ? run : restore(run)), (exit) => {
            settled = true
            const settlement = classify(exit, job, maxAttempts)
            const result: Effect.Effect<Exit.Exit<X, E>> = settlement._tag === "Release"
              ? Effect.failCause((exit as Exit.Failure<X, E>).cause as Cause.Cause<never>)
              : Effect.succeed(exit)
            if (graceful) {
              settler.submit(job, settlement)
              return result
            }
            return Effect.zipRight(settler.submitAndWait(job, settlement), result)
          }).pipe(
            // Whatever ends this fiber between the lease and the settlement (a defect outside the handler, such as a
            // stack overflow) still settles the job, as a failed attempt: held unsettled, its lease would be
            // refreshed for as long as this process lives.
            Effect.onExit((exit) => settled ? Effect.void : Effect.sync(() => settler.submit(job, classify(Exit.isSuccess(exit) ? Exit.die("settled by no one") : exit, job, maxAttempts))))
          )
        })
      )

    const run: DurableQueue.DurableQueue<A>["run"] = (handler, runOptions) =>
      Effect.flatMap(runSettings(runOptions), ({ concurrency, shutdownTimeout }) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.gen(function*() {
            // A taker outlives any failure or defect (it logs and goes on); only interruption stops it.
            const loop = take(handler, true).pipe(
              Effect.catchAllCause((cause) =>
                Cause.isInterruptedOnly(cause)
                  ? Effect.failCause(cause as Cause.Cause<never>)
                  : Effect.zipRight(Effect.logWarning("DurableQueue: taking a job failed; retrying", cause), Effect.sleep("500 millis"))
              ),
              Effect.forever,
              Effect.interruptible
            )
            // Daemons, not children: a fiber waits for its children's interruption when it ends, so a handler still
            // running (uninterruptibly) after `shutdownTimeout` would otherwise hold `run` forever.
            feed.takers += concurrency
            const fibers = yield* Effect.forEach(Array.from({ length: concurrency }), () => Effect.forkDaemon(loop))
            return yield* restore(Fiber.joinAll(fibers)).pipe(
              Effect.zipRight(Effect.never),
              // Takers waiting for a job stop at once; running jobs finish. A job still running after
              // `shutdownTimeout` is left to its lease (it comes back once the process is gone). The wait is made
              // interruptible: a finalizer runs uninterruptibly, where the timeout could not cut it.
              Effect.onExit(() =>
                Effect.ignore(Effect.timeout(Effect.interruptible(Fiber.interruptAll(fibers)), Duration.toMillis(shutdownTimeout)))
              ),
              // Jobs leased ahead for these takers go back once no run is left to take them.
              Effect.ensuring(Effect.suspend(() => (feed.takers -= concurrency) === 0 ? putBack : Effect.void))
            )
          })
        ))

    const offer: DurableQueue.DurableQueue<A>["offer"] = (value, offerOptions) =>
      Effect.gen(function*() {
        const custom = offerOptions?.id !== undefined
        const id = custom ? yield* offerId(offerOptions!.id) : globalThis.crypto.randomUUID()
        const payload = yield* codec.encode(value).pipe(
          Effect.mapError((cause) => new DurableQueueError({ reason: "EncodeFailed", backend: store.backend, queue: name, id, cause }))
        )
        yield* Effect.mapError(store.offer([{ id, payload, custom }]), failed)
        yield* feed.offered.open
        return id
      })

    const offerAll = offerBatch(codec, store, name, failed, feed.offered.open)

    const deadLetterReport = Effect.flatMap(Effect.mapError(store.deadLetters, failed), (stored) =>
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
            if (Either.isRight(either)) letters.push(either.right)
            else {
              const { attempts, id, lastError, payload } = stored[i]!
              undecodable.push({ id, payload, attempts, lastError, error: either.left.message })
            }
          })
          return { letters, undecodable }
        }
      ))

    return {
      name,
      offer,
      offerAll,
      take: (handler) => take(handler, false),
      run,
      size: Effect.mapError(store.size, failed),
      deadLetters: Effect.flatMap(deadLetterReport, ({ letters, undecodable }) =>
        undecodable.length === 0 ? Effect.succeed(letters) : Effect.as(
          Effect.logWarning(
            `DurableQueue ${name}: ${undecodable.length} dead letter(s) do not decode with today's schema (see undecodableDeadLetters): ` +
              undecodable.slice(0, 10).map((letter) => `${letter.id}: ${letter.error}`).join("; ")
          ),
          letters
        )),
      undecodableDeadLetters: Effect.map(deadLetterReport, (report) => report.undecodable),
      requeue: (id) =>
        Effect.flatMap(offerId(id), (checked) =>
          Effect.tap(Effect.mapError(store.requeue(checked), failed), (found) => found ? feed.offered.open : Effect.void)),
      purge: Effect.mapError(store.purge, failed)
    } satisfies DurableQueue.DurableQueue<A>
  })
