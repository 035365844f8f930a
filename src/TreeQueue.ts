/**
 * Tree-shaped work: each item's `process` may enqueue children, and an item's optional `afterChildren` runs once
 * its whole subtree is done. A pool of workers takes items in `fifo` (breadth-first), `lifo` (depth-first) or
 * `priority` order and reports to the `Progress` service. Completion is tracked with one counter per item, so
 * `afterChildren` runs exactly once, leaf first, never alongside a descendant's; a failing `process` ends the run
 * with its error; interruption is graceful by default (running items and their `afterChildren` finish, nothing new
 * starts; a second Ctrl-C stops at once).
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import { TreeQueueMetrics } from "./internal/metrics.js"
import * as internal from "./internal/treeQueue.js"
import type { Order } from "./internal/treeQueue.js"
import type { OptionError } from "./OptionError.js"
import type { Progress } from "./Progress.js"

/**
 * What `process` receives: its worker's id (from 1), `enqueue` to add children of this item (only while
 * `process` runs), and `setDescription` to set the worker's row in the progress display.
 *
 * @since 0.1.0
 * @category models
 */
export interface ItemContext<E = never, R = never> {
  readonly workerId: number
  readonly enqueue: (...items: ReadonlyArray<Item<E, R>>) => Effect.Effect<void>
  readonly setDescription: (text: string) => Effect.Effect<void>
}

/**
 * A unit of work: a plain object or a class instance (methods are called on the item, so `this` works).
 *
 * - `process(ctx)`: the work; children enqueued through `ctx` belong to this item.
 * - `afterChildren()`: runs once, after this item's `process` and its whole subtree, `afterChildren` included.
 * - `trackOverall`: counts the item in the overall completed / total of the progress display.
 * - `priority`: with `order: "priority"`, lower values run first (default 0); ties run in arrival order.
 * - `kind`: the name counted in the summary and shown while the item runs (default: the class name, or "item").
 *
 * @since 0.1.0
 * @category models
 */
export interface Item<E = never, R = never> {
  readonly process: (ctx: ItemContext<E, R>) => Effect.Effect<void, E, R>
  readonly afterChildren?: (() => Effect.Effect<void, E, R>) | undefined
  readonly trackOverall?: boolean | undefined
  readonly priority?: number | undefined
  readonly kind?: string | undefined
}

/**
 * `fifo`: breadth-first; `lifo`: depth-first (yields leaves early, good for crawls); `priority`: lowest
 * `priority` first, ties in arrival order.
 *
 * @since 0.1.0
 * @category models
 */
export type { Order } from "./internal/treeQueue.js"

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace run {
  /**
   * - `initial`: any iterable of root items, read exactly once.
   * - `workers`: number of worker fibers (default 5).
   * - `order`: `"fifo"` (default), `"lifo"` or `"priority"`.
   * - `graceful`: on interruption, let running items and their `afterChildren` finish and start nothing new
   *   (default `true`); `false` stops at once.
   * - `title`: the progress session's title (default "TreeQueue").
   *
   * @since 0.1.0
   * @category models
   * @deprecated Use `TreeQueue.Options`: Options and Stats types live at the top of their module.
   */
  export interface Options<E, R> {
    readonly initial: Iterable<Item<E, R>>
    readonly workers?: number | undefined
    readonly order?: Order | undefined
    readonly graceful?: boolean | undefined
    readonly title?: string | undefined
  }
}

/**
 * The options of `run` (`run.Options`, deprecated, is the same type).
 *
 * @since 0.1.0
 * @category models
 */
export type Options<E = never, R = never> = run.Options<E, R>

/**
 * What a finished run did: items processed, `afterChildren` calls, items processed per kind, and elapsed time.
 *
 * @since 0.1.0
 * @category models
 */
export interface Summary extends internal.Summary {}

/**
 * Runs the tree to completion and returns a `Summary`. Fails with the first `process` / `afterChildren` failure
 * (other workers are interrupted) or with `OptionError` for bad options. Reports to the `Progress` in context:
 * provide `Progress.layer` for the automatic display, `Progress.layerNone` for none.
 *
 * @example
 * ```ts
 * import { Console, Effect } from "effect"
 * import { Progress, TreeQueue } from "effect-workers"
 *
 * class Child implements TreeQueue.Item {
 *   readonly trackOverall = true
 *   constructor(readonly n: number) {}
 *   process(ctx: TreeQueue.ItemContext) {
 *     return Effect.zipRight(ctx.setDescription(`child ${this.n}`), Effect.sleep("100 millis"))
 *   }
 * }
 *
 * const root: TreeQueue.Item = {
 *   kind: "Root",
 *   process: (ctx) => ctx.enqueue(new Child(1), new Child(2), new Child(3)),
 *   afterChildren: () => Console.log("All done!")
 * }
 *
 * const summary = TreeQueue.run({ initial: [root], workers: 2 }).pipe(
 *   Effect.provide(Progress.layer())
 * )
 * // Effect.runPromise(summary) -> { processed: 4, afterChildren: 1, byKind: { Root: 1, Child: 3 }, ... }
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const run: <E = never, R = never>(
  options: run.Options<E, R>
) => Effect.Effect<Summary, E | OptionError, R | Progress> = internal.run

/**
 * The module's Effect `Metric`s, labelled `tree=<title>`: items done, items failed, and the item-time histogram.
 * Names follow `effect_workers_<module>_<what>` (README, "Tracing and metrics"); read them with
 * `Metric.value(Metric.tagged(Metrics.x, label, value))` or export them with `@effect/opentelemetry`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const Metrics = TreeQueueMetrics
