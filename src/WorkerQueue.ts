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
import type * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { WorkerQueueMetrics } from "./internal/metrics.js"
import * as internal from "./internal/workerQueue.js"
import { WorkerQueueError } from "./internal/workerQueue.js"
import type { OptionError } from "./OptionError.js"
import type { ResultCache, ResultCacheError } from "./ResultCache.js"
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
   * a fiber per item. Every item is registered (and de-duplicated) before the first wait, so the workers see the
   * whole batch at once. Fails with the first failure in input order; `requireAllExit` gives every outcome.
   */
  readonly requireAll: (items: Iterable<I>) => Effect.Effect<Array<A>, E | WorkerQueueError>
  /**
   * `requireAll` that never fails: each item's outcome as an `Exit`, in input order, as DataLoader's `loadMany`
   * gives a value or an `Error` per key. Interrupting it leaves every item it was the last waiter of.
   */
  readonly requireAllExit: (items: Iterable<I>) => Effect.Effect<Array<Exit.Exit<A, E | WorkerQueueError>>>
  /**
   * `require` for plain TypeScript: a Promise of the item's result, with no fiber per call (as fast as
   * DataLoader's `load`). It rejects with the typed failure (`E` or `WorkerQueueError`), or with the defect.
   * A Promise cannot be interrupted: its wait lasts until the item settles, at the latest when the queue closes.
   */
  readonly unsafeRequire: (item: I) => Promise<A>
  /**
   * Forgets the item's result (DataLoader's `clear`): removes it from the cache and detaches a run in flight for
   * it, whose waiters still get its result but which no longer writes the cache nor answers new requires: the next
   * `require` runs the worker again. Fails with `ResultCacheError` when the cache cannot delete (it has no `clear`).
   */
  readonly clear: (item: I) => Effect.Effect<void, ResultCacheError>
  /** `clear` for every item: empties the cache (`ResultCacheError` when it cannot) and detaches every run. */
  readonly clearAll: Effect.Effect<void, ResultCacheError>
  /**
   * Puts a result in the cache without running the worker (DataLoader's `prime`). As there, an item already in
   * the cache or in flight is left as it is: `clear` it first to replace it. Without a cache, does nothing.
   */
  // A method, so that `A` stays covariant (a queue of `number` results is a queue of `unknown` results).
  prime(item: I, value: A): Effect.Effect<void, ResultCacheError>
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
export interface Options<in out I, in out A, in out E = never, out R = never, in out K = I> {
  /**
   * Computes an item's result: an Effect, or a Promise (see `PromiseOptions`). Its failures reach every waiter
   * of the item and are not cached.
   */
  readonly worker: (item: I) => Effect.Effect<A, E, R>
  /**
   * Where results are kept, under the item's key; any `Option.some` is a hit. Default: no cache (only in-flight
   * de-duplication). A cache that fails, throws or lacks a method is logged and bypassed, never failing the work.
   */
  readonly cache?: ResultCache<K, A> | undefined
  /**
   * The item's key in the cache and in the in-flight map, as DataLoader's `cacheKeyFn`: items with equal keys
   * share one run (the first item's). Keys compare with Effect `Equal`/`Hash`. Default: the item itself.
   */
  readonly key?: ((item: I) => K) | undefined
  /** Most worker runs at once, an integer from 1 to 1,000,000. Default: 3. */
  readonly concurrency?: number | undefined
  /** Most items waiting for a worker; more requires of new items wait for room. Default: unbounded. */
  readonly capacity?: number | undefined
  /** How long `close` lets running and queued items finish before failing them. Default: 3 seconds. */
  readonly finishTimeout?: Duration.DurationInput | undefined
  /** Shown in errors, logs and the registry. Default: "WorkerQueue". */
  readonly name?: string | undefined
}

/**
 * The options of a queue whose worker returns a Promise (an `async` function): a rejection reaches the waiters as
 * a typed `Cause.UnknownException` (its `cause` is what was rejected), so the queue's error type is that.
 *
 * @since 0.1.0
 * @category models
 */
export interface PromiseOptions<in out I, in out A, in out K = I>
  extends Omit<Options<I, A, never, never, K>, "worker">
{
  readonly worker: (item: I) => PromiseLike<A>
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
export const isWorkerQueueError = (u: unknown): u is WorkerQueueError => internal.isWorkerQueueError(u)

/**
 * Makes a queue whose life is the current scope: closing the scope closes the queue. The worker returns an
 * Effect, or a Promise: with an `async` worker a rejection is a typed `Cause.UnknownException` (see
 * `PromiseOptions`). Bad options (a missing worker, `concurrency: 1e12`, a misspelt key) fail with `OptionError`.
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
 *
 * // An async worker: its rejections are Cause.UnknownException failures.
 * const pages = WorkerQueue.make({ worker: async (url: string) => (await fetch(url)).text() })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: {
  <I, A, E = never, R = never, K = I>(
    options: Options<I, A, E, R, K>
  ): Effect.Effect<WorkerQueue<I, A, E>, OptionError, Scope.Scope | R>
  <I, A, K = I>(
    options: PromiseOptions<I, A, K>
  ): Effect.Effect<WorkerQueue<I, A, Cause.UnknownException>, OptionError, Scope.Scope>
} = internal.make

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
export function layer<Id, I, A, E = never, R = never, K = I>(
  tag: Context.Tag<Id, WorkerQueue<I, A, E>>,
  options: Options<I, A, E, R, K>
): Layer.Layer<Id, OptionError, R>
export function layer<Id, I, A, K = I>(
  tag: Context.Tag<Id, WorkerQueue<I, A, Cause.UnknownException>>,
  options: PromiseOptions<I, A, K>
): Layer.Layer<Id, OptionError>
export function layer<Id, I, A, E, R, K>(
  tag: Context.Tag<Id, WorkerQueue<I, A, E>>,
  options: Options<I, A, E, R, K> | PromiseOptions<I, A, K>
): Layer.Layer<Id, OptionError, R> {
  return Layer.scoped(tag, internal.make(options))
}

/**
 * For tests: `layer` with a fresh in-memory cache when `options.cache` is not given, plus a fresh `Registry`
 * the queue registers with, so a test can assert on both.
 *
 * @since 0.1.0
 * @category layers
 */
export function layerTest<Id, I, A, E = never, R = never, K = I>(
  tag: Context.Tag<Id, WorkerQueue<I, A, E>>,
  options: Options<I, A, E, R, K>
): Layer.Layer<Id | Registry, OptionError, R>
export function layerTest<Id, I, A, K = I>(
  tag: Context.Tag<Id, WorkerQueue<I, A, Cause.UnknownException>>,
  options: PromiseOptions<I, A, K>
): Layer.Layer<Id | Registry, OptionError>
export function layerTest<Id, I, A, E, R, K>(
  tag: Context.Tag<Id, WorkerQueue<I, A, E>>,
  options: Options<I, A, E, R, K> | PromiseOptions<I, A, K>
): Layer.Layer<Id | Registry, OptionError, R> {
  return Layer.scoped(
    tag,
    options.cache !== undefined
      ? internal.make<I, A, E, R, K>(options)
      : Effect.flatMap(ResultCacheModule.memory<K, A>(), (cache) => internal.make<I, A, E, R, K>({ ...options, cache }))
  ).pipe(Layer.provideMerge(Registry.layer))
}

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

/**
 * The module's Effect `Metric`s, labelled `queue=<name>`: hits, misses, de-duplicated requires, keys in flight,
 * completed and failed runs, and the run-time histogram. Names follow `effect_workers_<module>_<what>` (README,
 * "Tracing and metrics"); read them with `Metric.value(Metric.tagged(Metrics.x, label, value))` or export them with
 * `@effect/opentelemetry`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const Metrics = WorkerQueueMetrics
