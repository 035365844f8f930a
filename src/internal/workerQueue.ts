/**
 * The WorkerQueue machinery. An item's life: `require` maps it to its key and looks the key up in the in-flight
 * map (equal keys share one entry and one `Deferred`), then in the cache; on a miss the entry is admitted to the
 * work queue, or waits in the waiting room while the queue holds `capacity` items. `concurrency` worker fibers take
 * entries from the queue; each run writes the cache, then removes the entry, then settles it for every waiter.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as MutableHashMap from "effect/MutableHashMap"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
import type { OptionError } from "../OptionError.js"
import type * as ResultCache from "../ResultCache.js"
import type * as WorkerQueue from "../WorkerQueue.js"
import { typeIdGuard } from "./errorTypeId.js"
import { WorkerQueueMetrics as Metrics } from "./metrics.js"
import { checker } from "./options.js"
import { optionalString } from "./optionString.js"
import * as resultCache from "./resultCache.js"
import { bump, labels, linkTo, observeNanos, setGauge, SpanMaker, useSpanWhenTraced } from "./telemetry.js"
import { CacheGuard, callWorker, Room, type RoomNode } from "./workerQueueParts.js"

const check = checker("WorkerQueue")

const KNOWN_OPTIONS = ["worker", "cache", "key", "concurrency", "capacity", "finishTimeout", "name"]

/** @internal */
export class WorkerQueueError
  extends Schema.TaggedError<WorkerQueueError>("effect-workers/WorkerQueue/WorkerQueueError")(
    "WorkerQueueError",
    {
      reason: Schema.Literal("Closed", "FinishTimeout"),
      queue: Schema.String,
      item: Schema.optional(Schema.String)
    }
  )
{
  override get message(): string {
    const item = this.item === undefined ? "" : ` (item ${this.item})`
    return this.reason === "Closed"
      ? `WorkerQueue ${this.queue} is closed${item}`
      : `WorkerQueue ${this.queue} closed before the item finished within its finish timeout${item}`
  }
}

/** TypeId-based: see errorTypeId.ts. @internal */
export const isWorkerQueueError = typeIdGuard(WorkerQueueError, "effect-workers/WorkerQueue/WorkerQueueError")

type Outcome<A, E> = Exit.Exit<A, E | WorkerQueueError>

/**
 * An entry's spans: the span of the require that made it (the run's parent), the run's span once it started, and
 * the spans of de-duplicated waiters that arrived before it, which get their link to the run when it starts.
 */
interface EntryTrace {
  readonly parent: Tracer.Span | undefined
  run: Tracer.Span | undefined
  waiters: Array<Tracer.Span> | undefined
}
type Restore = <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>

interface Entry<K, I, A, E> {
  readonly key: K
  /** The first item that asked for the key: the one the worker receives. */
  readonly item: I
  /**
   * What waiters await, made when the first one has to wait: an entry that settles before anyone waits (a batch
   * registered by `requireAll` is awaited one entry at a time) never needs one.
   */
  deferred: Deferred.Deferred<A, E | WorkerQueueError> | undefined
  /**
   * "lookup": its cache read is under way; "room": waiting for space in the work queue; "queued": in the queue
   * or running; "done": settled.
   */
  state: "lookup" | "room" | "queued" | "done"
  /** Waiters counted while the entry is in "lookup" or "room", so the last one to leave can withdraw it. */
  waiters: number
  /** Its place in the waiting room, while in "room". */
  roomNode: RoomNode<Entry<K, I, A, E>> | undefined
  /** The outcome once settled, read synchronously by waiters that arrive after it. */
  exit: Outcome<A, E> | undefined
  /** The one Promise every `unsafeRequire` caller of the entry gets (no fiber each), and how to settle it. */
  promise?: Promise<A> | undefined
  settlePromise?: ((exit: Outcome<A, E>) => void) | undefined
  /** Set only when a require with a span touched it (an `unsafeRequire` has none), so untraced entries stay small. */
  trace?: EntryTrace | undefined
}

const exitOf = <K, I, A, E>(e: Entry<K, I, A, E> | Outcome<A, E>): Outcome<A, E> | undefined =>
  Exit.isExit(e) ? e : e.exit

const rejectionOf = (cause: Cause.Cause<unknown>): unknown => Cause.squash(cause)

const settledPromise = <A, E>(exit: Exit.Exit<A, E>): Promise<A> =>
  Exit.isSuccess(exit) ? Promise.resolve(exit.value) : Promise.reject(rejectionOf(exit.cause))

/** @internal */
export class RegistryImpl implements WorkerQueue.Registry.Service {
  readonly queues = new Set<WorkerQueue.WorkerQueue<never, unknown, unknown>>()
  readonly register = (queue: WorkerQueue.WorkerQueue<never, unknown, unknown>) =>
    Effect.sync(() => void this.queues.add(queue))
  readonly unregister = (queue: WorkerQueue.WorkerQueue<never, unknown, unknown>) =>
    Effect.sync(() => void this.queues.delete(queue))
  readonly size = Effect.sync(() => this.queues.size)
  readonly names = Effect.sync(() => Array.from(this.queues, (q) => q.name))
  // A snapshot first: closing a queue unregisters it, which must not disturb the iteration (the original's
  // `aclose_all` crashes with "set changed size during iteration").
  readonly closeAll = Effect.suspend(() => {
    const all = Array.from(this.queues)
    this.queues.clear()
    return Effect.forEach(all, (queue) => queue.close, { concurrency: "unbounded", discard: true })
  })
}

/** @internal */
export class Registry extends Context.Tag("effect-workers/WorkerQueue/Registry")<
  Registry,
  WorkerQueue.Registry.Service
>() {}

/** @internal */
export const registryLayer: Layer.Layer<Registry> = Layer.scoped(
  Registry,
  Effect.acquireRelease(Effect.sync(() => new RegistryImpl()), (registry) => registry.closeAll)
)

/** The options once checked, defaults applied. */
interface Settings<I, A, E, R, K> {
  readonly name: string
  readonly worker: (item: I) => Effect.Effect<A, E, R> | PromiseLike<A>
  readonly cache: ResultCache.ResultCache<K, A> | undefined
  readonly key: ((item: I) => K) | undefined
  readonly concurrency: number
  readonly capacity: number
  readonly finishTimeout: Duration.Duration
}

const settingsOf = <I, A, E, R, K>(
  options: WorkerQueue.Options<I, A, E, R, K> | WorkerQueue.PromiseOptions<I, A, K>
): Effect.Effect<Settings<I, A, E, R, K>, OptionError> =>
  Effect.gen(function*() {
    yield* check.knownKeys(options, KNOWN_OPTIONS)
    const worker = yield* check.require("worker", options.worker, typeof options.worker === "function", "a function")
    const cache = yield* check.require(
      "cache",
      options.cache,
      options.cache === undefined || (typeof options.cache === "object" && options.cache !== null),
      "a ResultCache (an object with get and set)"
    )
    const key = yield* check.require(
      "key",
      options.key,
      options.key === undefined || typeof options.key === "function",
      "a function from item to key"
    )
    const name = yield* optionalString(check, "name", options.name, "WorkerQueue")
    return {
      name,
      worker: worker as Settings<I, A, E, R, K>["worker"],
      cache,
      key,
      concurrency: yield* check.integer("concurrency", options.concurrency, 3, 1),
      capacity: yield* check.integerOrInfinity("capacity", options.capacity, Number.POSITIVE_INFINITY, 1),
      finishTimeout: yield* check.duration("finishTimeout", options.finishTimeout, "3 seconds")
    }
  })

/**
 * The queue's state and its operations. The public methods are arrow properties so that they can be passed
 * around unbound (`ids.map(queue.unsafeRequire)`).
 * @internal
 */
export class WorkerQueueImpl<I, A, E, R, K> implements WorkerQueue.WorkerQueue<I, A, E> {
  readonly name: string
  readonly counters = { hits: 0, misses: 0, deduplicated: 0, completed: 0, failed: 0, cacheErrors: 0 }
  /** The `queue` label of this queue's metrics, made once (see telemetry.ts). */
  private readonly tags: ReturnType<typeof labels>
  private readonly spanAttributes: Record<string, unknown>
  // No stack trace per span: `new Error()` on every require cost more than the require itself.
  private readonly spanOptions: { readonly attributes: Record<string, unknown>; readonly captureStackTrace: false }
  private readonly cache: CacheGuard<K, A>
  private readonly inFlight = MutableHashMap.empty<K, Entry<K, I, A, E>>()
  /** Entries `clear` took out of the map that have not settled yet: close still waits for and settles them. */
  private readonly detached = new Set<Entry<K, I, A, E>>()
  private readonly room = new Room<Entry<K, I, A, E>>()
  private queued = 0
  private running = 0
  private closed = false
  private drained: Deferred.Deferred<void> | undefined = undefined
  private closing: Deferred.Deferred<void> | undefined = undefined
  workers: ReadonlyArray<Fiber.RuntimeFiber<never>> = []

  constructor(
    readonly settings: Settings<I, A, E, R, K>,
    private readonly work: Queue.Queue<Entry<K, I, A, E>>,
    private readonly runtime: Runtime.Runtime<never>,
    private readonly registry: Option.Option<WorkerQueue.Registry.Service>,
    private readonly spans: SpanMaker
  ) {
    this.name = settings.name
    this.tags = labels("queue", settings.name)
    this.spanAttributes = { "effect_workers.queue": settings.name }
    this.spanOptions = { attributes: this.spanAttributes, captureStackTrace: false }
    this.cache = new CacheGuard(settings.cache, settings.name, this.counters, runtime)
  }

  private error(reason: WorkerQueueError["reason"], item: I): WorkerQueueError {
    return new WorkerQueueError({ reason, queue: this.name, item: resultCache.describeKey(item) })
  }

  private pending(): number {
    return MutableHashMap.size(this.inFlight) + this.detached.size
  }

  private settle(entry: Entry<K, I, A, E>, exit: Outcome<A, E>): void {
    if (entry.state === "done") return
    if (entry.roomNode !== undefined) {
      this.room.remove(entry.roomNode)
      entry.roomNode = undefined
    }
    entry.state = "done"
    entry.exit = exit
    if (!this.isDetached(entry)) MutableHashMap.remove(this.inFlight, entry.key)
    else this.detached.delete(entry)
    if (entry.deferred !== undefined) Deferred.unsafeDone(entry.deferred, exit)
    if (entry.settlePromise !== undefined) entry.settlePromise(exit)
    setGauge(Metrics.inFlight, this.tags, this.pending())
    if (this.drained !== undefined && this.pending() === 0) Deferred.unsafeDone(this.drained, Exit.void)
  }

  private admit(entry: Entry<K, I, A, E>): void {
    entry.state = "queued"
    this.queued++
    Queue.unsafeOffer(this.work, entry)
  }

  /** Moves the oldest waiting-room entries into the queue while it has space. */
  private admitFromRoom(): void {
    while (this.queued < this.settings.capacity) {
      const next = this.room.shift()
      if (next === undefined) return
      next.roomNode = undefined
      this.admit(next)
    }
  }

  private submit(entry: Entry<K, I, A, E>): void {
    this.counters.misses++
    bump(Metrics.misses, this.tags)
    entry.trace?.parent?.attribute("effect_workers.cache", "miss")
    if (this.closed) {
      this.settle(entry, Exit.fail(this.error("Closed", entry.item)))
    } else if (this.queued < this.settings.capacity) {
      this.admit(entry)
    } else {
      entry.state = "room"
      entry.roomNode = this.room.push(entry)
    }
  }

  /** A waiter of an entry not yet queued leaves: the last one withdraws it before it ever runs. */
  private leave(entry: Entry<K, I, A, E>): void {
    if (--entry.waiters === 0 && entry.state === "room") this.settle(entry, Exit.interrupt(FiberId.none))
  }

  /** One worker run, from taking the entry to settling it; never fails, so the worker fiber never dies. */
  readonly runEntry = (entry: Entry<K, I, A, E>): Effect.Effect<void, never, R> =>
    Effect.uninterruptibleMask((restore) => {
      this.queued--
      this.running++
      this.admitFromRoom()
      const start = this.spans.now()
      const span = this.runSpan(entry)
      // With a Promise worker `E` is `UnknownException` (the public `make` says so), hence the cast.
      const run = callWorker(this.settings.worker, entry.item, this.name) as Effect.Effect<A, E, R>
      return restore(span === undefined ? run : Effect.withParentSpan(run, span)).pipe(
        Effect.exit,
        Effect.flatMap((exit): Effect.Effect<void> => {
          this.running--
          observeNanos(Metrics.runDuration, this.tags, start, this.spans.now())
          this.spans.close(span, exit)
          if (Exit.isSuccess(exit)) {
            this.counters.completed++
            bump(Metrics.completed, this.tags)
            // The cache is written before the entry goes, so no second run of the item can start in between.
            if (this.settings.cache === undefined || this.isDetached(entry)) {
              this.settle(entry, exit)
              return Effect.void
            }
            return Effect.map(this.cache.set(entry.key, exit.value), () => this.settle(entry, exit))
          }
          if (this.closed && Cause.isInterruptedOnly(exit.cause)) {
            this.settle(entry, Exit.fail(this.error("FinishTimeout", entry.item)))
          } else {
            this.counters.failed++
            bump(Metrics.failed, this.tags)
            this.settle(entry, exit)
          }
          return Effect.void
        })
      )
    })

  /**
   * The `WorkerQueue.run` span of the worker call: a child of the require that made the entry (not of the span
   * current when the queue was made, which the worker fiber inherited), linked from every de-duplicated waiter.
   */
  private runSpan(entry: Entry<K, I, A, E>): Tracer.Span | undefined {
    // Opened synchronously (SpanMaker): `Effect.useSpan` per run cost more than an empty run.
    const trace = entry.trace
    const span = this.spans.open("WorkerQueue.run", trace?.parent, this.spanAttributes)
    if (trace !== undefined && span !== undefined) {
      trace.run = span
      trace.waiters?.forEach((waiter) => waiter.addLinks([linkTo(span)]))
      trace.waiters = undefined
    }
    return span
  }

  private hit(span: Tracer.Span | undefined): void {
    this.counters.hits++
    bump(Metrics.hits, this.tags)
    span?.attribute("effect_workers.cache", "hit")
  }

  /** A require that joins an entry in flight: counted, and its span linked to the entry's run. */
  private join(entry: Entry<K, I, A, E>, span: Tracer.Span | undefined): void {
    this.counters.deduplicated++
    bump(Metrics.deduplicated, this.tags)
    if (span === undefined) return
    span.attribute("effect_workers.cache", "deduplicated")
    const trace = entry.trace ??= { parent: undefined, run: undefined, waiters: undefined }
    if (trace.run !== undefined) span.addLinks([linkTo(trace.run)])
    else (trace.waiters ??= []).push(span)
  }

  private afterLookup(entry: Entry<K, I, A, E>, hit: Option.Option<A>): void {
    if (entry.state !== "lookup") return // settled meanwhile (the queue closed and gave up on it)
    if (Option.isSome(hit)) {
      this.hit(entry.trace?.parent)
      this.settle(entry, Exit.succeed(hit.value))
    } else if (entry.waiters === 0) {
      // Everyone left during the read: nobody wants a run.
      this.settle(entry, Exit.interrupt(FiberId.none))
    } else {
      this.submit(entry)
    }
  }

  /**
   * Cache reads run in a fiber of their own (one per batch), so that a waiter can leave while a slow cache
   * answers, and the entry still gets its answer for the others.
   */
  private startLookups(lookups: Array<Entry<K, I, A, E>>): void {
    if (lookups.length === 0) return
    Runtime.runFork(this.runtime)(
      Effect.forEach(lookups, (entry) => Effect.map(this.cache.get(entry.key), (hit) => this.afterLookup(entry, hit)), {
        discard: true
      })
    )
  }

  /**
   * Registers interest in the item, synchronously, and returns what to await: the entry in flight for an equal
   * key, or a new one submitted on a miss, or a settled outcome that never enters the map (a hit in a synchronous
   * cache, a closed queue, a key function that threw). With an asynchronous cache the new entry stays in "lookup"
   * and is pushed to `lookups`, which the caller starts; it is in the map before that read, so an equal item
   * arriving meanwhile joins it.
   */
  private begin(
    item: I,
    lookups: Array<Entry<K, I, A, E>>,
    span: Tracer.Span | undefined
  ): Entry<K, I, A, E> | Outcome<A, E> {
    if (this.closed) return Exit.fail(this.error("Closed", item))
    let key: K
    try {
      key = this.settings.key === undefined ? (item as unknown as K) : this.settings.key(item)
    } catch (defect) {
      return Exit.die(defect)
    }
    const found = MutableHashMap.get(this.inFlight, key)
    if (Option.isSome(found)) {
      this.join(found.value, span)
      return found.value
    }
    if (this.cache.hasSyncRead) {
      const hit = this.cache.unsafeGet(key)
      if (Option.isSome(hit)) {
        this.hit(span)
        return Exit.succeed(hit.value)
      }
    }
    const entry: Entry<K, I, A, E> = {
      key,
      item,
      deferred: undefined,
      state: "lookup",
      waiters: 0,
      roomNode: undefined,
      exit: undefined
    }
    if (span !== undefined) entry.trace = { parent: span, run: undefined, waiters: undefined }
    MutableHashMap.set(this.inFlight, key, entry)
    setGauge(Metrics.inFlight, this.tags, this.pending())
    if (this.settings.cache === undefined || this.cache.hasSyncRead) this.submit(entry)
    else lookups.push(entry)
    return entry
  }

  private deferredOf(entry: Entry<K, I, A, E>): Deferred.Deferred<A, E | WorkerQueueError> {
    if (entry.deferred === undefined) entry.deferred = Deferred.unsafeMake(FiberId.none)
    return entry.deferred
  }

  /** Counts a waiter on an entry that may still be withdrawn; returns whether it was counted. */
  private hold(entry: Entry<K, I, A, E>): boolean {
    if (entry.state !== "lookup" && entry.state !== "room") return false
    entry.waiters++
    return true
  }

  /** One waiter's wait: only the wait is interruptible, and leaving it is counted. */
  private awaitEntry(entry: Entry<K, I, A, E>, restore: Restore): Effect.Effect<A, E | WorkerQueueError> {
    if (entry.exit !== undefined) return entry.exit
    const wait = restore(Deferred.await(this.deferredOf(entry)))
    if (!this.hold(entry)) return wait
    return Effect.onInterrupt(wait, () => Effect.sync(() => this.leave(entry)))
  }

  // The span's parent is the caller's current span: `useSpan` reads it from the calling fiber. No span (and no
  // cost) unless a tracer is installed (`useSpanWhenTraced`).
  readonly require = (item: I): Effect.Effect<A, E | WorkerQueueError> =>
    useSpanWhenTraced(
      "WorkerQueue.require",
      this.spanOptions,
      (span) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.suspend(() => {
            const lookups: Array<Entry<K, I, A, E>> = []
            const entry = this.begin(item, lookups, span)
            if (Exit.isExit(entry)) return entry
            const wait = this.awaitEntry(entry, restore)
            this.startLookups(lookups)
            return wait
          })
        )
    )

  /**
   * Registers a batch, then waits for the first unsettled entry, then looks for the next: one wait per entry
   * still pending when its turn comes, not one Effect step per item. The batch is one waiter of each entry that
   * could still be withdrawn, and leaves them all when it ends or is interrupted.
   */
  private batch(
    items: Iterable<I>,
    restore: Restore,
    span: Tracer.Span | undefined
  ): Effect.Effect<Array<Entry<K, I, A, E> | Outcome<A, E>>> {
    const lookups: Array<Entry<K, I, A, E>> = []
    const entries: Array<Entry<K, I, A, E> | Outcome<A, E>> = []
    const held: Array<Entry<K, I, A, E>> = []
    for (const item of items) {
      const entry = this.begin(item, lookups, span)
      if (!Exit.isExit(entry) && this.hold(entry)) held.push(entry)
      entries.push(entry)
    }
    span?.attribute("effect_workers.items", entries.length)
    this.startLookups(lookups)
    const awaitFrom = (start: number): Effect.Effect<void> => {
      let i = start
      while (i < entries.length && exitOf(entries[i]!) !== undefined) i++
      if (i === entries.length) return Effect.void
      const entry = entries[i] as Entry<K, I, A, E>
      return Effect.flatMap(Effect.exit(restore(Deferred.await(this.deferredOf(entry)))), () => awaitFrom(i + 1))
    }
    const settled = Effect.as(Effect.suspend(() => awaitFrom(0)), entries)
    if (held.length === 0) return settled
    return Effect.ensuring(settled, Effect.sync(() => held.forEach((entry) => this.leave(entry))))
  }

  // One span for the batch, the parent of the runs its items start (a span per item would cost more than the
  // item on a memory-cache hit). `then` reads the settled batch.
  private tracedBatch<B, X>(
    items: Iterable<I>,
    then: (batch: Effect.Effect<Array<Entry<K, I, A, E> | Outcome<A, E>>>) => Effect.Effect<B, X>
  ): Effect.Effect<B, X> {
    return useSpanWhenTraced(
      "WorkerQueue.requireAll",
      this.spanOptions,
      (span) => Effect.uninterruptibleMask((restore) => Effect.suspend(() => then(this.batch(items, restore, span))))
    )
  }

  readonly requireAllExit = (items: Iterable<I>): Effect.Effect<Array<Outcome<A, E>>> =>
    this.tracedBatch(items, (batch) => Effect.map(batch, (entries) => entries.map((e) => exitOf(e)!)))

  readonly requireAll = (items: Iterable<I>): Effect.Effect<Array<A>, E | WorkerQueueError> =>
    this.tracedBatch(items, (batch) =>
      Effect.flatMap(batch, (entries) => {
        // Read in input order, so the failure reported is the first one.
        const values = new Array<A>(entries.length)
        for (let i = 0; i < entries.length; i++) {
          const exit = exitOf(entries[i]!)!
          if (Exit.isFailure(exit)) return Effect.failCause(exit.cause)
          values[i] = exit.value
        }
        return Effect.succeed(values)
      }))

  // The Promise twin of `require` for plain TypeScript: the same synchronous registration, then one Promise per
  // entry shared by all its callers (as DataLoader shares one per key), instead of a fiber per caller. A Promise
  // cannot be interrupted, so its waiter never leaves.
  readonly unsafeRequire = (item: I): Promise<A> => {
    const lookups: Array<Entry<K, I, A, E>> = []
    const entry = this.begin(item, lookups, undefined)
    if (Exit.isExit(entry)) return settledPromise(entry)
    if (entry.promise === undefined) {
      this.hold(entry)
      entry.promise = new Promise<A>((resolve, reject) => {
        entry.settlePromise = (exit) => Exit.isSuccess(exit) ? resolve(exit.value) : reject(rejectionOf(exit.cause))
      })
    }
    this.startLookups(lookups)
    return entry.promise
  }

  private detach(entry: Entry<K, I, A, E>): void {
    MutableHashMap.remove(this.inFlight, entry.key)
    this.detached.add(entry)
  }

  /** Set by `clear`: out of the in-flight map, and its result is not written to the cache. A set, not a field of
   * every entry: 8 bytes less per waiting item (1M queued items are the measured case). */
  private isDetached(entry: Entry<K, I, A, E>): boolean {
    return this.detached.size > 0 && this.detached.has(entry)
  }

  readonly clear = (item: I): Effect.Effect<void, ResultCache.ResultCacheError> =>
    Effect.suspend(() => {
      const key = this.settings.key === undefined ? (item as unknown as K) : this.settings.key(item)
      const found = MutableHashMap.get(this.inFlight, key)
      if (Option.isSome(found)) this.detach(found.value)
      return this.settings.cache === undefined ? Effect.void : resultCache.clear(this.settings.cache, key)
    })

  readonly clearAll: Effect.Effect<void, ResultCache.ResultCacheError> = Effect.suspend(() => {
    for (const entry of Array.from(MutableHashMap.values(this.inFlight))) this.detach(entry)
    return this.settings.cache === undefined ? Effect.void : resultCache.clearAll(this.settings.cache)
  })

  readonly prime = (item: I, value: A): Effect.Effect<void, ResultCache.ResultCacheError> =>
    Effect.suspend(() => {
      const key = this.settings.key === undefined ? (item as unknown as K) : this.settings.key(item)
      // As DataLoader: a key already there (in flight, or in the cache) is left as it is.
      if (this.settings.cache === undefined || MutableHashMap.has(this.inFlight, key)) return Effect.void
      return resultCache.prime(this.settings.cache, key, value)
    })

  readonly isRunning: Effect.Effect<boolean> = Effect.sync(() => !this.closed)

  readonly stats: Effect.Effect<WorkerQueue.Stats> = Effect.sync(() => ({
    ...this.counters,
    inFlight: this.pending(),
    queued: this.queued,
    waiting: this.room.length,
    running: this.running
  }))

  private readonly shutdown: Effect.Effect<void> = Effect.suspend(() => {
    // Items still waiting for room were never accepted: they fail as a `require` after close would.
    for (let entry = this.room.shift(); entry !== undefined; entry = this.room.shift()) {
      entry.roomNode = undefined
      this.settle(entry, Exit.fail(this.error("Closed", entry.item)))
    }
    const drain = this.pending() === 0 ? Effect.void : Effect.suspend(() => {
      this.drained = Deferred.unsafeMake<void>(FiberId.none)
      return Effect.timeoutOption(Deferred.await(this.drained), this.settings.finishTimeout)
    })
    return Effect.zipRight(
      drain,
      Effect.suspend(() => {
        // What is left ran out of time: its waiters fail now, then the workers are stopped.
        const left = [...MutableHashMap.values(this.inFlight), ...this.detached]
        for (const entry of left) this.settle(entry, Exit.fail(this.error("FinishTimeout", entry.item)))
        return Fiber.interruptAll(this.workers).pipe(
          Effect.zipRight(Queue.shutdown(this.work)),
          Effect.zipRight(Option.isSome(this.registry) ? this.registry.value.unregister(this) : Effect.void)
        )
      })
    )
  })

  // The shutdown runs in a fiber of its own, so a caller of `close` that is interrupted leaves it to finish, and
  // every caller (the scope's finalizer among them) just awaits its end. New requires fail at once.
  readonly close: Effect.Effect<void> = Effect.suspend(() => {
    if (this.closing === undefined) {
      this.closed = true
      const latch = Deferred.unsafeMake<void>(FiberId.none)
      this.closing = latch
      return Effect.zipRight(
        // Interruptible even when `close` runs in a finalizer, so that the finish timeout can cut its wait.
        Effect.forkDaemon(Effect.interruptible(Effect.ensuring(this.shutdown, Deferred.done(latch, Exit.void)))),
        Deferred.await(latch)
      )
    }
    return Deferred.await(this.closing)
  })
}

/** @internal */
export const make = <I, A, E = never, R = never, K = I>(
  options: WorkerQueue.Options<I, A, E, R, K> | WorkerQueue.PromiseOptions<I, A, K>
): Effect.Effect<WorkerQueue.WorkerQueue<I, A, E>, OptionError, Scope.Scope | R> =>
  Effect.gen(function*() {
    const settings = yield* settingsOf<I, A, E, R, K>(options)
    const context = yield* Effect.context<R>()
    const runtime = yield* Effect.runtime<never>()
    const registry = yield* Effect.serviceOption(Registry)
    const work = yield* Queue.unbounded<Entry<K, I, A, E>>()
    // The tracer and clock in force at construction open the runs' spans and time them (TestClock drives it),
    // with no Effect step.
    const spans = yield* Effect.withFiberRuntime<SpanMaker>((fiber) => Effect.succeed(new SpanMaker(fiber)))
    const impl = new WorkerQueueImpl<I, A, E, R, K>(settings, work, runtime, registry, spans)
    // The worker's context is provided once to each loop, not on every run.
    const loop = Effect.provide(Effect.forever(Effect.flatMap(Queue.take(work), impl.runEntry)), context)
    impl.workers = yield* Effect.forEach(Array.from({ length: settings.concurrency }), () => Effect.forkDaemon(loop))
    yield* Effect.addFinalizer(() => impl.close)
    if (Option.isSome(registry)) yield* registry.value.register(impl)
    return impl
  })
