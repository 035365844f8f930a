/**
 * A cache-aware, de-duplicating worker queue. `require(item)` returns the item's result: from the cache when it
 * is there, from the run already in flight for an equal item when there is one, and otherwise from a new run of
 * the worker, at most `concurrency` at a time. Equal items (Effect `Equal`/`Hash`; primitives by value) share one
 * run, and every waiter gets the same value or the same failure. Failures are not cached. Closing the queue (or
 * its scope) stops new requires, gives running and queued items `finishTimeout` to finish, then fails the rest
 * with a typed `WorkerQueueError`: every waiter settles, nothing hangs.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/workerQueue.js"
import { WorkerQueueError } from "./internal/workerQueue.js"
import type { OptionError } from "./OptionError.js"
import type { ResultCache } from "./ResultCache.js"
import * as ResultCacheModule from "./ResultCache.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface WorkerQueue<in I, out A, out E = never> {
  /** The name given in the options, used in errors and logs. */
  readonly name: string
  /**
   * The item's result: a cache hit, the run in flight for an equal item, or a new run. Interrupting the caller
   * stops its wait only: a run others wait for goes on. Fails with `WorkerQueueError` (`Closed`) once the queue
   * is closed, and (`FinishTimeout`) when the queue closes before the item's run finished.
   */
  readonly require: (item: I) => Effect.Effect<A, E | WorkerQueueError>
  /**
   * The results of many items, in input order, waited for by one fiber: `Effect.all(items.map(require))` without
   * a fiber per item, as DataLoader's `loadMany`. Every item is registered (and de-duplicated) before the first
   * wait, so the workers see the whole batch at once. Fails with the first failure in input order.
   */
  readonly requireAll: (items: Iterable<I>) => Effect.Effect<Array<A>, E | WorkerQueueError>
  /**
   * `require` for plain TypeScript: a Promise of the item's result, with no fiber per call (as fast as
   * DataLoader's `load`). It rejects with the typed failure (`E` or `WorkerQueueError`), or with the defect.
   * A Promise cannot be interrupted: its wait lasts until the item settles, at the latest when the queue closes.
   */
  readonly unsafeRequire: (item: I) => Promise<A>
  /** `true` until `close` starts. */
  readonly isRunning: Effect.Effect<boolean>
  /** Counters since the queue was made, and what is in it now. */
  readonly stats: Effect.Effect<Stats>
  /**
   * Stops taking requires, lets running and queued items finish within `finishTimeout`, then fails the rest.
   * Idempotent: every caller returns once the queue is closed.
   */
  readonly close: Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  /** Requires answered from the cache. */
  readonly hits: number
  /** Requires that found nothing in the cache (or had no cache) and started a run. */
  readonly misses: number
  /** Requires that joined the run already in flight for an equal item. */
  readonly deduplicated: number
  /** Worker runs that succeeded / failed. */
  readonly completed: number
  readonly failed: number
  /** Cache reads or writes that failed (logged; the queue went on without the cache). */
  readonly cacheErrors: number
  /** Distinct items between `require` and their result: waiting, queued or running. */
  readonly inFlight: number
  /** Items in the work queue, not yet started (at most `capacity`). */
  readonly queued: number
  /** Items waiting for room in the work queue because it holds `capacity` items. */
  readonly waiting: number
  /** Items whose worker is running (at most `concurrency`). */
  readonly running: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<in out I, in out A, in out E = never, out R = never> {
  /** Computes an item's result. Its failures reach every waiter of the item and are not cached. */
  readonly worker: (item: I) => Effect.Effect<A, E, R>
  /** Where results are kept; any `Option.some` is a hit. Default: no cache (only in-flight de-duplication). */
  readonly cache?: ResultCache<I, A> | undefined
  /** Most worker runs at once, an integer from 1. Default: 3. */
  readonly concurrency?: number | undefined
  /** Most items waiting for a worker; more requires of new items wait for room. Default: unbounded. */
  readonly capacity?: number | undefined
  /** How long `close` lets running and queued items finish before failing them. Default: 3 seconds. */
  readonly finishTimeout?: Duration.DurationInput | undefined
  /** Shown in errors, logs and the registry. Default: "WorkerQueue". */
  readonly name?: string | undefined
}

/**
 * The queue was closed: `reason` is `Closed` for a require after close, `FinishTimeout` for an item that did not
 * finish within `finishTimeout` once close began.
 *
 * @since 0.1.0
 * @category errors
 */
export { WorkerQueueError }

/**
 * @since 0.1.0
 * @category refinements
 */
export const isWorkerQueueError = (u: unknown): u is WorkerQueueError => u instanceof internal.WorkerQueueError

/**
 * Makes a queue whose life is the current scope: closing the scope closes the queue.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ResultCache, WorkerQueue } from "effect-workers"
 *
 * const program = Effect.gen(function*() {
 *   const queue = yield* WorkerQueue.make({
 *     worker: (n: number) => Effect.succeed(n * 2).pipe(Effect.delay("1 second")),
 *     cache: yield* ResultCache.memory<number, number>(),
 *     concurrency: 3
 *   })
 *   const [a, b] = yield* Effect.all([queue.require(5), queue.require(5)], { concurrency: 2 }) // one run
 *   const c = yield* queue.require(5) // from the cache
 *   return a + b + c
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <I, A, E = never, R = never>(
  options: Options<I, A, E, R>
) => Effect.Effect<WorkerQueue<I, A, E>, OptionError, Scope.Scope | R> = internal.make

/**
 * A layer providing a queue under your own tag; the queue closes when the layer's scope does.
 *
 * @example
 * ```ts
 * import { Context, Effect } from "effect"
 * import { WorkerQueue } from "effect-workers"
 *
 * class Squares extends Context.Tag("Squares")<Squares, WorkerQueue.WorkerQueue<number, number>>() {}
 *
 * const SquaresLive = WorkerQueue.layer(Squares, { worker: (n: number) => Effect.succeed(n * n) })
 * const program = Effect.flatMap(Squares, (q) => q.require(7)).pipe(Effect.provide(SquaresLive))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <Id, I, A, E = never, R = never>(
  tag: Context.Tag<Id, WorkerQueue<I, A, E>>,
  options: Options<I, A, E, R>
): Layer.Layer<Id, OptionError, R> => Layer.scoped(tag, internal.make(options))

/**
 * For tests: `layer` with a fresh in-memory cache when `options.cache` is not given, plus a fresh `Registry`
 * the queue registers with, so a test can assert on both.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerTest = <Id, I, A, E = never, R = never>(
  tag: Context.Tag<Id, WorkerQueue<I, A, E>>,
  options: Options<I, A, E, R>
): Layer.Layer<Id | Registry, OptionError, R> =>
  Layer.scoped(
    tag,
    options.cache !== undefined
      ? internal.make(options)
      : Effect.flatMap(ResultCacheModule.memory<I, A>(), (cache) => internal.make({ ...options, cache }))
  ).pipe(Layer.provideMerge(Registry.layer))

/**
 * Where it is in the context, every queue made registers itself and leaves on close; `closeAll` closes every
 * live queue, idle or busy, and leaves the registry empty (the seed's `aclose_all`, without its crash).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { WorkerQueue } from "effect-workers"
 *
 * const program = Effect.gen(function*() {
 *   yield* WorkerQueue.make({ worker: (n: number) => Effect.succeed(n), name: "a" })
 *   yield* WorkerQueue.make({ worker: (s: string) => Effect.succeed(s.length), name: "b" })
 *   const registry = yield* WorkerQueue.Registry
 *   yield* registry.closeAll
 * }).pipe(Effect.scoped, Effect.provide(WorkerQueue.Registry.layer))
 * ```
 *
 * @since 0.1.0
 * @category registry
 */
// Its own class over the internal tag's key (the same service at run time), so that `yield* Registry` requires
// this public `Registry`: a subclass of the internal tag would carry the internal class as its identifier, which a
// consumer's declarations could only name by an internal path.
export class Registry extends Context.Tag(internal.Registry.key)<Registry, Registry.Service>() {
  /**
   * A fresh registry; closing the layer's scope closes every queue still registered.
   *
   * @since 0.1.0
   */
  static readonly layer: Layer.Layer<Registry> = internal.registryLayer
}

/**
 * @since 0.1.0
 * @category registry
 */
export declare namespace Registry {
  /**
   * @since 0.1.0
   */
  export interface Service {
    readonly register: (queue: WorkerQueue<never, unknown, unknown>) => Effect.Effect<void>
    readonly unregister: (queue: WorkerQueue<never, unknown, unknown>) => Effect.Effect<void>
    /** Closes every registered queue, concurrently, and empties the registry. */
    readonly closeAll: Effect.Effect<void>
    /** How many queues are registered. */
    readonly size: Effect.Effect<number>
    /** The names of the registered queues. */
    readonly names: Effect.Effect<ReadonlyArray<string>>
  }
}
