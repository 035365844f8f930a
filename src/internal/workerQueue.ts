/**
 * The WorkerQueue machinery. An item's life: `require` looks it up in the in-flight map (equal items share one
 * entry and one `Deferred`), then in the cache; on a miss the entry is admitted to the work queue, or waits in a
 * FIFO waiting room while the queue holds `capacity` items. `concurrency` worker fibers take entries from the
 * queue; each run writes the cache, then removes the entry, then settles the `Deferred` for every waiter.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as MutableHashMap from "effect/MutableHashMap"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { OptionError } from "../OptionError.js"
import type * as ResultCache from "../ResultCache.js"
import type * as WorkerQueue from "../WorkerQueue.js"
import { checker } from "./options.js"
import { describeKey } from "./resultCache.js"

const check = checker("WorkerQueue")

/** @internal */
export class WorkerQueueError extends Schema.TaggedError<WorkerQueueError>("effect-workers/WorkerQueueError")(
  "WorkerQueueError",
  {
    reason: Schema.Literal("Closed", "FinishTimeout"),
    queue: Schema.String,
    item: Schema.optional(Schema.String)
  }
) {
  override get message(): string {
    const item = this.item === undefined ? "" : ` (item ${this.item})`
    return this.reason === "Closed"
      ? `WorkerQueue ${this.queue} is closed${item}`
      : `WorkerQueue ${this.queue} closed before the item finished within its finish timeout${item}`
  }
}

interface Entry<I, A, E> {
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
  /** Waiters counted while the entry is in the waiting room, so the last one to leave can withdraw it. */
  waiters: number
  /** The outcome once settled, read synchronously by waiters that arrive after it. */
  exit: Exit.Exit<A, E | WorkerQueueError> | undefined
  /** The one Promise every `unsafeRequire` caller of the entry gets (no fiber each), and how to settle it. */
  promise?: Promise<A> | undefined
  settlePromise?: ((exit: Exit.Exit<A, E | WorkerQueueError>) => void) | undefined
}

const settledPromise = <A, E>(exit: Exit.Exit<A, E>): Promise<A> =>
  Exit.isSuccess(exit) ? Promise.resolve(exit.value) : Promise.reject(Cause.squash(exit.cause))

/** An array used as a FIFO: `shift` moves a head index instead of copying, and compacts now and then. */
class Fifo<A> {
  private items: Array<A> = []
  private head = 0
  get length(): number {
    return this.items.length - this.head
  }
  push(a: A): void {
    this.items.push(a)
  }
  /** Only called when `length > 0`. */
  shift(): A {
    const a = this.items[this.head]!
    this.items[this.head++] = undefined as A
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return a
  }
  count(predicate: (a: A) => boolean): number {
    let n = 0
    for (let i = this.head; i < this.items.length; i++) if (predicate(this.items[i]!)) n++
    return n
  }
}

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

/** @internal */
export const make = <I, A, E = never, R = never>(
  options: WorkerQueue.Options<I, A, E, R>
): Effect.Effect<WorkerQueue.WorkerQueue<I, A, E>, OptionError, Scope.Scope | R> =>
  Effect.gen(function*() {
    const name = options.name ?? "WorkerQueue"
    const concurrency = yield* check.integer("concurrency", options.concurrency, 3, 1)
    const capacity = yield* check.integerOrInfinity("capacity", options.capacity, Number.POSITIVE_INFINITY, 1)
    const finishTimeout = yield* check.duration("finishTimeout", options.finishTimeout, "3 seconds")
    const context = yield* Effect.context<R>()
    const registry = yield* Effect.serviceOption(Registry)
    const cache = options.cache
    const worker = options.worker

    const inFlight = MutableHashMap.empty<I, Entry<I, A, E>>()
    const work = yield* Queue.unbounded<Entry<I, A, E>>()
    const room = new Fifo<Entry<I, A, E>>()
    let queued = 0
    let running = 0
    let closed = false
    let drained: Deferred.Deferred<void> | undefined
    const stats = { hits: 0, misses: 0, deduplicated: 0, completed: 0, failed: 0, cacheErrors: 0 }

    const error = (reason: WorkerQueueError["reason"], item?: I) =>
      new WorkerQueueError({ reason, queue: name, ...(item === undefined ? {} : { item: describeKey(item) }) })

    const settle = (entry: Entry<I, A, E>, exit: Exit.Exit<A, E | WorkerQueueError>) => {
      if (entry.state === "done") return
      entry.state = "done"
      entry.exit = exit
      MutableHashMap.remove(inFlight, entry.item)
      if (entry.deferred !== undefined) Deferred.unsafeDone(entry.deferred, exit)
      if (entry.settlePromise !== undefined) entry.settlePromise(exit)
      if (drained !== undefined && MutableHashMap.size(inFlight) === 0) Deferred.unsafeDone(drained, Exit.void)
    }

    const admit = (entry: Entry<I, A, E>) => {
      entry.state = "queued"
      queued++
      Queue.unsafeOffer(work, entry)
    }

    // Moves the oldest entries still wanted from the waiting room into the queue while it has space.
    const admitFromRoom = () => {
      while (queued < capacity && room.length > 0) {
        const next = room.shift()
        if (next.state === "room") admit(next)
      }
    }

    // A cache that fails, or even dies, never fails the work nor stops a worker: it is logged and bypassed.
    const logCacheFailure = (cause: Cause.Cause<ResultCache.ResultCacheError>) => {
      stats.cacheErrors++
      const failure = Cause.failureOption(cause)
      const message = Option.isSome(failure) ? failure.value.message : Cause.pretty(cause)
      return Effect.logWarning(`WorkerQueue ${name}: ${message}; going on without the cache`)
    }

    const runEntry = (entry: Entry<I, A, E>) =>
      Effect.uninterruptibleMask((restore) => {
        queued--
        running++
        admitFromRoom()
        // `suspend`: a worker that throws instead of returning an Effect fails this run, not the worker fiber.
        return restore(Effect.suspend(() => worker(entry.item))).pipe(
          Effect.exit,
          Effect.flatMap((exit): Effect.Effect<void> => {
            running--
            if (Exit.isSuccess(exit)) {
              stats.completed++
              // The cache is written before the entry goes, so no second run of the item can start in between.
              const write = cache === undefined
                ? Effect.void
                : Effect.catchAllCause(cache.set(entry.item, exit.value), logCacheFailure)
              return Effect.map(write, () => settle(entry, exit))
            }
            if (closed && Cause.isInterruptedOnly(exit.cause)) {
              settle(entry, Exit.fail(error("FinishTimeout", entry.item)))
            } else {
              stats.failed++
              settle(entry, exit)
            }
            return Effect.void
          })
        )
      })

    const workers = yield* Effect.forEach(
      Array.from({ length: concurrency }),
      // The worker's context is provided once to each loop, not on every run.
      () => Effect.forkDaemon(Effect.provide(Effect.forever(Effect.flatMap(Queue.take(work), runEntry)), context)),
      { concurrency: "unbounded" }
    )

    // A waiter of an entry not yet queued is counted, so that when the last one leaves a waiting-room entry it
    // is withdrawn before it ever runs; once queued, a run goes on whoever still waits (its result is cached).
    const awaitEntry = (
      entry: Entry<I, A, E>,
      restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>
    ): Effect.Effect<A, E | WorkerQueueError> => {
      if (entry.exit !== undefined) return entry.exit
      if (entry.deferred === undefined) entry.deferred = Deferred.unsafeMake(FiberId.none)
      // Waiters that arrive during the cache read are counted too: the entry may move to the waiting room next.
      if (entry.state === "queued") return restore(Deferred.await(entry.deferred))
      entry.waiters++
      return Effect.onInterrupt(restore(Deferred.await(entry.deferred)), () =>
        Effect.sync(() => {
          entry.waiters--
          if (entry.waiters === 0 && entry.state === "room") settle(entry, Exit.interrupt(FiberId.none))
        }))
    }

    const submit = (entry: Entry<I, A, E>) => {
      stats.misses++
      if (closed) {
        settle(entry, Exit.fail(error("Closed", entry.item)))
      } else if (queued < capacity) {
        admit(entry)
      } else {
        entry.state = "room"
        room.push(entry)
      }
    }

    const lookup = (item: I): Effect.Effect<Option.Option<A>> =>
      cache === undefined
        ? Effect.succeedNone
        : Effect.catchAllCause(cache.get(item), (cause) => Effect.as(logCacheFailure(cause), Option.none<A>()))
    const unsafeGet = cache?.unsafeGet

    const afterLookup = (entry: Entry<I, A, E>, hit: Option.Option<A>) => {
      if (Option.isSome(hit)) {
        stats.hits++
        settle(entry, Exit.succeed(hit.value))
      } else {
        submit(entry)
      }
    }

    // Registers interest in the item, synchronously, and returns what to await: the entry in flight for an
    // equal item, or a new one submitted to the workers on a miss, or (on a hit in a synchronous cache) a settled
    // outcome that never enters the map. With an asynchronous cache the new entry is left in state "lookup" and
    // pushed to `lookups`: the caller reads the cache. The entry is in the map before that read, so an equal item
    // arriving meanwhile joins it.
    const begin = (
      item: I,
      lookups: Array<Entry<I, A, E>>
    ): Entry<I, A, E> | Exit.Exit<A> | WorkerQueueError => {
      if (closed) return error("Closed", item)
      const found = MutableHashMap.get(inFlight, item)
      if (Option.isSome(found)) {
        stats.deduplicated++
        return found.value
      }
      if (unsafeGet !== undefined) {
        const hit = unsafeGet(item)
        if (Option.isSome(hit)) {
          stats.hits++
          return Exit.succeed(hit.value)
        }
      }
      const entry: Entry<I, A, E> = { item, deferred: undefined, state: "lookup", waiters: 0, exit: undefined }
      MutableHashMap.set(inFlight, item, entry)
      if (cache === undefined || unsafeGet !== undefined) submit(entry)
      else lookups.push(entry)
      return entry
    }

    const runLookups = (lookups: Array<Entry<I, A, E>>): Effect.Effect<void> =>
      lookups.length === 0
        ? Effect.void
        : Effect.forEach(lookups, (entry) => Effect.map(lookup(entry.item), (hit) => afterLookup(entry, hit)), {
          discard: true
        })

    const require = (item: I): Effect.Effect<A, E | WorkerQueueError> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          const lookups: Array<Entry<I, A, E>> = []
          const entry = begin(item, lookups)
          if (entry instanceof WorkerQueueError) return Effect.fail(entry)
          if (Exit.isExit(entry)) return entry
          return lookups.length === 0
            ? awaitEntry(entry, restore)
            : Effect.zipRight(runLookups(lookups), awaitEntry(entry, restore))
        })
      )

    const requireAll = (items: Iterable<I>): Effect.Effect<Array<A>, E | WorkerQueueError> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          const lookups: Array<Entry<I, A, E>> = []
          // A settled outcome (a cache hit) or the entry to wait for, per item in input order.
          const entries: Array<Entry<I, A, E> | Exit.Exit<A>> = []
          for (const item of items) {
            const entry = begin(item, lookups)
            if (entry instanceof WorkerQueueError) return Effect.fail(entry)
            entries.push(entry)
          }
          const exitOf = (entry: Entry<I, A, E> | Exit.Exit<A>) => (Exit.isExit(entry) ? entry : entry.exit)
          const collect = (): Effect.Effect<Array<A>, E | WorkerQueueError> => {
            const values = new Array<A>(entries.length)
            for (let i = 0; i < entries.length; i++) {
              const exit = exitOf(entries[i]!)!
              if (Exit.isFailure(exit)) return Effect.failCause(exit.cause)
              values[i] = exit.value
            }
            return Effect.succeed(values)
          }
          // Waits for the first unsettled entry, then looks for the next: one wait per entry still pending when
          // its turn comes, not one Effect step per item. Failures are read afterwards, in input order.
          const awaitFrom = (start: number): Effect.Effect<void> => {
            let i = start
            while (i < entries.length && exitOf(entries[i]!) !== undefined) i++
            if (i === entries.length) return Effect.void
            const entry = entries[i] as Entry<I, A, E>
            return Effect.flatMap(Effect.exit(awaitEntry(entry, restore)), () => awaitFrom(i + 1))
          }
          const awaitPending = Effect.suspend(() => awaitFrom(0))
          return runLookups(lookups).pipe(Effect.zipRight(awaitPending), Effect.flatMap(collect))
        })
      )

    // The Promise twin of `require` for plain TypeScript: the same synchronous registration, then one Promise per
    // entry shared by all its callers (as DataLoader shares one per key), instead of a fiber per caller. A Promise
    // cannot be interrupted, so its waiter is never withdrawn.
    const unsafeRequire = (item: I): Promise<A> => {
      const lookups: Array<Entry<I, A, E>> = []
      const entry = begin(item, lookups)
      if (entry instanceof WorkerQueueError) return Promise.reject(entry)
      if (Exit.isExit(entry)) return settledPromise(entry)
      if (entry.promise === undefined) {
        if (entry.state !== "queued") entry.waiters++
        entry.promise = new Promise<A>((resolve, reject) => {
          entry.settlePromise = (exit) => Exit.isSuccess(exit) ? resolve(exit.value) : reject(Cause.squash(exit.cause))
        })
      }
      if (lookups.length > 0) Effect.runFork(runLookups(lookups))
      return entry.promise
    }

    let closing: Deferred.Deferred<void> | undefined
    const shutdown = Effect.gen(function*() {
      // Items still waiting for room were never accepted: they fail as a `require` after close would.
      while (room.length > 0) {
        const entry = room.shift()
        if (entry.state === "room") settle(entry, Exit.fail(error("Closed", entry.item)))
      }
      if (MutableHashMap.size(inFlight) > 0) {
        drained = Deferred.unsafeMake<void>(FiberId.none)
        yield* Effect.timeoutOption(Deferred.await(drained), finishTimeout)
      }
      // What is left ran out of time: its waiters fail now, then the workers are stopped.
      for (const entry of MutableHashMap.values(inFlight)) settle(entry, Exit.fail(error("FinishTimeout", entry.item)))
      yield* Fiber.interruptAll(workers)
      yield* Queue.shutdown(work)
      if (Option.isSome(registry)) yield* registry.value.unregister(queue)
    })

    // The shutdown runs in a fiber of its own, so a caller of `close` that is interrupted leaves it to finish,
    // and every caller (the scope's finalizer among them) just awaits its end. New requires fail at once.
    const close: Effect.Effect<void> = Effect.suspend(() => {
      if (closing === undefined) {
        closed = true
        const latch = Deferred.unsafeMake<void>(FiberId.none)
        closing = latch
        return Effect.zipRight(
          // Interruptible even when `close` runs in a finalizer, so that the finish timeout can cut its wait.
          Effect.forkDaemon(Effect.interruptible(Effect.ensuring(shutdown, Deferred.done(latch, Exit.void)))),
          Deferred.await(latch)
        )
      }
      return Deferred.await(closing)
    })

    const queue: WorkerQueue.WorkerQueue<I, A, E> = {
      name,
      require,
      requireAll,
      unsafeRequire,
      close,
      isRunning: Effect.sync(() => !closed),
      stats: Effect.sync(() => ({
        ...stats,
        inFlight: MutableHashMap.size(inFlight),
        queued,
        waiting: room.count((e) => e.state === "room"),
        running
      }))
    }

    yield* Effect.addFinalizer(() => close)
    if (Option.isSome(registry)) yield* registry.value.register(queue)
    return queue
  })
