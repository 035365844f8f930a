/**
 * TreeQueue's engine. Each enqueued item becomes a node with a counter of unfinished work under it (its own
 * `process` plus one per child); finishing a node decrements its parent's counter, so completion is O(1) per
 * item and `afterChildren` runs exactly once, when the counter reaches zero, after every descendant's. Workers
 * are fibers that wait on a `Deferred` when nothing is queued, so idle workers use no CPU.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
import { OptionError } from "../OptionError.js"
import { Fifo } from "./fifo.js"
import { TreeQueueMetrics as Metrics } from "./metrics.js"
import { checker } from "./options.js"
import { optionalString } from "./optionString.js"
import { Progress, type Session, type UnsafeSession } from "./progress.js"
import * as signals from "./signals.js"
import { bump, labels, observeNanos, SpanMaker } from "./telemetry.js"

/** @internal */
export interface ItemContext<E, R> {
  readonly workerId: number
  readonly enqueue: (...items: ReadonlyArray<Item<E, R>>) => Effect.Effect<void>
  readonly setDescription: (text: string) => Effect.Effect<void>
}

/** @internal */
export interface Item<E, R> {
  readonly process: (ctx: ItemContext<E, R>) => Effect.Effect<void, E, R>
  readonly afterChildren?: (() => Effect.Effect<void, E, R>) | undefined
  readonly trackOverall?: boolean | undefined
  readonly priority?: number | undefined
  readonly kind?: string | undefined
}

/** @internal */
export type Order = "fifo" | "lifo" | "priority"

/** @internal */
export interface RunOptions<E, R> {
  readonly initial: Iterable<Item<E, R>>
  readonly workers?: number | undefined
  readonly order?: Order | undefined
  readonly graceful?: boolean | undefined
  readonly title?: string | undefined
}

/** @internal */
export interface Summary {
  readonly processed: number
  readonly afterChildren: number
  readonly byKind: Readonly<Record<string, number>>
  readonly elapsed: Duration.Duration
}

interface Node<E, R> {
  readonly item: Item<E, R>
  readonly parent: Node<E, R> | undefined
  readonly seq: number
  readonly priority: number
  /** Own `process` (until it ends) plus each child not yet finished. */
  pending: number
  /** Set when `process` ended: later `enqueue` calls on its context are refused. */
  closed: boolean
  /** Its `TreeQueue.item` span once it runs: the parent of its children's spans. */
  span?: Tracer.Span | undefined
}

/** Pending nodes in one of three orders; every operation O(1) or O(log n). */
interface Frontier<E, R> {
  readonly push: (node: Node<E, R>) => void
  readonly take: () => Node<E, R> | undefined
  readonly size: () => number
}

const fifo = <E, R>(): Frontier<E, R> => {
  const items = new Fifo<Node<E, R>>()
  return {
    push: (node) => items.push(node),
    take: () => items.shift(),
    size: () => items.length
  }
}

const lifo = <E, R>(): Frontier<E, R> => {
  const items: Array<Node<E, R>> = []
  return {
    push: (node) => {
      items.push(node)
    },
    take: () => items.pop(),
    size: () => items.length
  }
}

const before = <E, R>(a: Node<E, R>, b: Node<E, R>) =>
  a.priority < b.priority || (a.priority === b.priority && a.seq < b.seq)

/** A binary min-heap on (priority, arrival): lower priority first, ties in arrival order. */
const heap = <E, R>(): Frontier<E, R> => {
  const items: Array<Node<E, R>> = []
  return {
    push: (node) => {
      items.push(node)
      let i = items.length - 1
      while (i > 0) {
        const p = (i - 1) >> 1
        if (!before(items[i]!, items[p]!)) break
        const t = items[i]!
        items[i] = items[p]!
        items[p] = t
        i = p
      }
    },
    take: () => {
      const top = items[0]
      const last = items.pop()
      if (top === undefined || last === undefined || items.length === 0) return top
      items[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < items.length && before(items[l]!, items[m]!)) m = l
        if (r < items.length && before(items[r]!, items[m]!)) m = r
        if (m === i) break
        const t = items[i]!
        items[i] = items[m]!
        items[m] = t
        i = m
      }
      return top
    },
    size: () => items.length
  }
}

const check = checker("TreeQueue")

/**
 * An item's own fields checked where it enters the queue (a root, or a child through `enqueue`): without this a
 * missing `process` ended the run as a raw "process is not a function" TypeError, and `priority: NaN` silently
 * broke the heap's order. The error names the item by its fields.
 */
const invalidItem = (item: unknown): OptionError | undefined => {
  const fail = (field: string, expected: string) =>
    new OptionError({ module: "TreeQueue", field: `item.${field}`, value: item, expected })
  if (item === null || typeof item !== "object") {
    return new OptionError({
      module: "TreeQueue",
      field: "item",
      value: item,
      expected: "an object with a process method"
    })
  }
  const { priority, process } = item as Partial<Item<unknown, unknown>>
  if (typeof process !== "function") return fail("process", "a function")
  if (priority !== undefined && !(typeof priority === "number" && !Number.isNaN(priority))) {
    return fail("priority", "a number (not NaN)")
  }
  return undefined
}

/** A bad child is a defect carrying the `OptionError` (enqueue has no error channel); `run` turns it back. */
const isItemError = (defect: unknown): defect is OptionError =>
  defect instanceof OptionError && defect.module === "TreeQueue" && defect.field.startsWith("item")

const kindOf = (item: object): string => {
  const kind = (item as { readonly kind?: unknown }).kind
  if (typeof kind === "string") return kind
  const ctor = (item as { readonly constructor?: { readonly name?: unknown } }).constructor
  return ctor !== undefined && ctor !== Object && typeof ctor.name === "string" && ctor.name !== ""
    ? ctor.name
    : "item"
}

/**
 * Watches SIGINT / SIGTERM for the life of the run (see `signals.ts`, which never changes what a signal does to a
 * program that does not handle it): records the first, so that a run it stopped ends the process with 130 / 143
 * rather than 0, and once the graceful drain has begun, a second one stops at once (`force`).
 */
class SignalWatch {
  signal: signals.Signal | undefined = undefined
  private force: (() => void) | undefined = undefined

  onDrain(force: () => void): void {
    this.force = force
  }

  readonly watch: Effect.Effect<void, never, Scope.Scope> = Effect.acquireRelease(
    Effect.sync(() =>
      signals.subscribe({
        onSignal: (signal) => {
          this.signal ??= signal
          if (this.force === undefined) return false
          this.force()
          return true
        }
      })
    ),
    (unsubscribe) => Effect.sync(unsubscribe)
  )

  /** A run that a signal stopped (it ended interrupted after one) makes the process exit with its status. */
  readonly afterInterrupt = Effect.sync(() => {
    if (this.signal !== undefined) signals.exitWithSignalStatus(this.signal)
  })
}

/** @internal */
export const run = <E, R>(
  options: RunOptions<E, R>
): Effect.Effect<Summary, E | OptionError, R | Progress> =>
  Effect.gen(function*() {
    yield* check.knownKeys(options, ["initial", "workers", "order", "graceful", "title"])
    const workers = yield* check.integer("workers", options.workers, 5, 1)
    const order = yield* check.require(
      "order",
      options.order ?? "fifo",
      options.order === undefined || options.order === "fifo" || options.order === "lifo" ||
        options.order === "priority",
      "one of \"fifo\", \"lifo\", \"priority\""
    )
    const graceful = yield* check.require(
      "graceful",
      options.graceful ?? true,
      options.graceful === undefined || typeof options.graceful === "boolean",
      "a boolean"
    )
    yield* check.require(
      "initial",
      options.initial,
      options.initial != null && typeof (options.initial as Iterable<unknown>)[Symbol.iterator] === "function",
      "an iterable of items"
    )
    const title = yield* optionalString(check, "title", options.title, "TreeQueue")
    // Read `initial` exactly once, and check every root before anything runs.
    const roots = Array.from(options.initial)
    for (const item of roots) {
      const error = invalidItem(item)
      if (error !== undefined) return yield* Effect.fail(error)
    }
    const progress = yield* Progress
    return yield* Effect.scoped(Effect.gen(function*() {
      const session = yield* progress.session({ title, workers })
      return yield* runWith(roots, workers, order, graceful, session, title)
    })).pipe(
      Effect.catchSomeDefect((defect) => isItemError(defect) ? Option.some(Effect.fail(defect)) : Option.none())
    )
  })

/**
 * Synchronous reporting for the hot loop: a session of this library's layers takes field writes directly; any
 * other session's Effects are buffered and run by the loop between steps.
 */
interface Reporter {
  readonly unsafe: UnsafeSession
  readonly flush: <A, E, R>(next: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

const reporterOf = (session: Session): Reporter => {
  if (session.unsafe !== undefined) {
    return { unsafe: session.unsafe, flush: (next) => next }
  }
  const buffer: Array<Effect.Effect<void>> = []
  return {
    unsafe: {
      setWorker: (id, d) => buffer.push(session.setWorker(id, d)),
      workerWaiting: (id) => buffer.push(session.workerWaiting(id)),
      workerDone: (id) => buffer.push(session.workerDone(id)),
      setQueueSize: (n) => buffer.push(session.setQueueSize(n)),
      addTotal: (n) => buffer.push(session.addTotal(n)),
      addCompleted: (n) => buffer.push(session.addCompleted(n)),
      setStopping: () => {
        if (session.setStopping !== undefined) buffer.push(session.setStopping)
      }
    },
    flush: (next) => buffer.length === 0 ? next : Effect.zipRight(Effect.all(buffer.splice(0), { discard: true }), next)
  }
}

const refused = Effect.dieMessage(
  "TreeQueue: enqueue called after the item's process ended; children must be enqueued from process"
)

/** What an item's `process` gets: its `enqueue` is refused once `process` ended, and checks a batch whole. */
const itemContext = <E, R>(
  node: Node<E, R>,
  workerId: number,
  push: (item: Item<E, R>, parent: Node<E, R>) => void,
  queued: () => Effect.Effect<void>,
  setDescription: (text: string) => Effect.Effect<void>
): ItemContext<E, R> => ({
  workerId,
  enqueue: (...children) =>
    Effect.suspend(() => {
      if (node.closed) return refused
      // All checked before any is queued, so a bad batch adds nothing.
      for (let i = 0; i < children.length; i++) {
        const error = invalidItem(children[i])
        if (error !== undefined) return Effect.die(error)
      }
      for (let i = 0; i < children.length; i++) push(children[i]!, node)
      return queued()
    }),
  setDescription
})

/**
 * One run's item spans and metrics. Spans are opened synchronously from the run's fiber (its tracer and clock):
 * `Effect.useSpan` per item cost several times an empty item. The initial items' parent is the caller's span.
 */
class ItemTelemetry<E, R> {
  private readonly tags: ReturnType<typeof labels>

  private constructor(
    readonly spans: SpanMaker,
    private readonly callerSpan: Tracer.AnySpan | undefined,
    private readonly title: string
  ) {
    this.tags = labels("tree", title)
  }

  static make<E, R>(title: string): Effect.Effect<ItemTelemetry<E, R>> {
    return Effect.withFiberRuntime((fiber) =>
      Effect.succeed(new ItemTelemetry<E, R>(new SpanMaker(fiber), fiber.currentSpan, title))
    )
  }

  /**
   * An item's duration, and done or failed (`cause` undefined: done; interrupted only: neither). Returns its end by
   * the clock, which a worker going straight on to its next item takes as that item's start (see `worker`).
   */
  ended(started: bigint, cause: Cause.Cause<unknown> | undefined): bigint {
    const end = this.spans.now()
    observeNanos(Metrics.itemDuration, this.tags, started, end)
    if (cause === undefined) bump(Metrics.itemsDone, this.tags)
    else if (!Cause.isInterruptedOnly(cause)) bump(Metrics.itemsFailed, this.tags)
    return end
  }

  /**
   * One item's `process` in its `TreeQueue.item` span (a child of the item that enqueued it), counted and timed;
   * only when `spans.enabled` (a tracer is installed: telemetry.ts `tracing`).
   */
  traced(
    node: Node<E, R>,
    kind: string,
    workerId: number,
    process: Effect.Effect<void, E, R>
  ): Effect.Effect<void, E, R> {
    const started = this.spans.now()
    const span = this.spans.open("TreeQueue.item", node.parent === undefined ? this.callerSpan : node.parent.span, {
      "effect_workers.tree": this.title,
      "effect_workers.kind": kind,
      "effect_workers.worker": workerId
    })
    node.span = span
    return Effect.onExit(span === undefined ? process : Effect.withParentSpan(process, span), (exit) => {
      this.ended(started, Exit.isSuccess(exit) ? undefined : exit.cause)
      this.spans.close(span, exit)
      // Only children still to run need it as their parent; a leaf lets it go at once.
      if (node.pending <= 1) node.span = undefined
      return Effect.void
    })
  }
}

/**
 * One run's bookkeeping: the frontier, the counters and the idle workers. Every node's counter is settled here, so
 * the rule "a node ends when its process and every child's subtree ended" is in one place (`settle`).
 */
class TreeRun<E, R> {
  readonly frontier: Frontier<E, R>
  readonly report: UnsafeSession
  readonly flush: Reporter["flush"]
  private readonly idle: Array<Deferred.Deferred<void>> = []
  private seq = 0
  /** Nodes enqueued and not yet finished (afterChildren included). */
  outstanding = 0
  stopping = false
  processed = 0
  afterCount = 0
  readonly byKind = new Map<string, number>()

  constructor(order: Order, session: Session, readonly telemetry: ItemTelemetry<E, R>) {
    this.frontier = order === "fifo" ? fifo() : order === "lifo" ? lifo() : heap()
    const reporter = reporterOf(session)
    this.report = reporter.unsafe
    this.flush = reporter.flush
  }

  wakeAll(): void {
    for (const d of this.idle.splice(0)) Deferred.unsafeDone(d, Exit.void)
  }

  /** A deferred that the next `push` (or the run's end) completes. */
  waitForWork(): Deferred.Deferred<void> {
    const d = Deferred.unsafeMake<void>(FiberId.none)
    this.idle.push(d)
    return d
  }

  readonly push = (item: Item<E, R>, parent: Node<E, R> | undefined): void => {
    const priority = item.priority ?? 0
    this.frontier.push({ item, parent, seq: this.seq++, priority, pending: 1, closed: false })
    this.outstanding++
    if (parent !== undefined) parent.pending++
    const d = this.idle.pop()
    if (d !== undefined) Deferred.unsafeDone(d, Exit.void)
    if (item.trackOverall === true) this.report.addTotal(1)
  }

  readonly queued = (): Effect.Effect<void> => {
    this.report.setQueueSize(this.frontier.size())
    return this.flush(Effect.void)
  }

  /** A node's `process` ended: counted, and its own unit of work settled (`settle`). */
  processDone(node: Node<E, R>, kind: string, workerId: number): Effect.Effect<void, E, R> {
    node.closed = true
    this.processed++
    this.byKind.set(kind, (this.byKind.get(kind) ?? 0) + 1)
    if (node.item.trackOverall === true) this.report.addCompleted(1)
    return this.settle(node, workerId)
  }

  /**
   * Ends one unit of a node's work (its own process, or a child's whole subtree) and walks up while counters
   * reach zero. Synchronous until a node with `afterChildren`: that one runs as an Effect, then the walk goes on.
   */
  settle(from: Node<E, R> | undefined, workerId: number): Effect.Effect<void, E, R> {
    let node = from
    while (node !== undefined) {
      if (--node.pending > 0) return Effect.void
      if (node.item.afterChildren !== undefined) return this.afterChildren(node, workerId)
      if (--this.outstanding === 0) this.wakeAll()
      node = node.parent
    }
    return Effect.void
  }

  private afterChildren(done: Node<E, R>, workerId: number): Effect.Effect<void, E, R> {
    this.report.setWorker(workerId, `${kindOf(done.item)}: after children`)
    return this.flush(Effect.suspend(() => done.item.afterChildren!())).pipe(
      Effect.zipRight(Effect.suspend(() => {
        this.afterCount++
        if (--this.outstanding === 0) this.wakeAll()
        return this.settle(done.parent, workerId)
      }))
    )
  }

  summary(elapsedMillis: number): Summary {
    return {
      processed: this.processed,
      afterChildren: this.afterCount,
      byKind: Object.fromEntries(this.byKind),
      elapsed: Duration.millis(elapsedMillis)
    }
  }
}

/** One worker fiber of a run: takes nodes until the frontier is empty and nothing is outstanding, or the run stops. */
class TreeWorker<E, R> {
  /** When the item in `process` started, by the clock, while it runs without a span (else undefined). */
  private started: bigint | undefined = undefined
  /**
   * The end of the worker's last item when it went straight on to take the next one (no wait, no afterChildren
   * between): that item's start, so an item costs one clock reading, not two (two cost a 111k-item run of empty
   * items a good part of its 1.2-1.6x base's time: bench/RESULTS.md, "Telemetry cost").
   */
  private lastEnd: bigint | undefined = undefined
  private readonly loop: Effect.Effect<void, E, R> = Effect.suspend(() => this.next())

  constructor(private readonly run: TreeRun<E, R>, private readonly workerId: number) {}

  readonly setDescription = (text: string): Effect.Effect<void> =>
    Effect.suspend(() => {
      this.run.report.setWorker(this.workerId, text)
      return this.run.flush(Effect.void)
    })

  /** The worker's whole life: its loop, a failure of its item counted, and its end reported. */
  get fiber(): Effect.Effect<void, E, R> {
    // The item in `process` when the worker failed (not in `afterChildren`), without a span to count it.
    const failed = Effect.onError(this.loop, (cause) =>
      Effect.sync(() => {
        if (this.started !== undefined) this.run.telemetry.ended(this.started, cause)
      }))
    return failed.pipe(Effect.ensuring(Effect.suspend(() => {
      this.run.report.workerDone(this.workerId)
      return this.run.flush(Effect.void)
    })))
  }

  private next(): Effect.Effect<void, E, R> {
    const run = this.run
    const node = run.stopping ? undefined : run.frontier.take()
    if (node === undefined) return this.waitOrEnd()
    const item = node.item
    const kind = kindOf(item)
    const done = () => this.done(node, kind)
    run.report.setQueueSize(run.frontier.size())
    run.report.setWorker(this.workerId, kind)
    const processing = item.process(itemContext(node, this.workerId, run.push, run.queued, this.setDescription))
    if (run.telemetry.spans.enabled) {
      return run.flush(Effect.flatMap(run.telemetry.traced(node, kind, this.workerId, processing), done))
    }
    // No span (no tracer installed: telemetry.ts `tracing`): the metrics ride on the continuation the item
    // needs anyway, and a failure is counted once by the worker (`onError` in `fiber`). A frame of their own per
    // item (`onExit`, or even one `matchCauseEffect` in place of this `flatMap`) made a 111k-item run of empty
    // items 1.7-2.2x base's time.
    this.started = this.lastEnd ?? run.telemetry.spans.now()
    this.lastEnd = undefined
    return run.flush(Effect.flatMap(processing, done))
  }

  /** Nothing to take: the worker ends when the run stops or nothing is outstanding, else waits for a `push`. */
  private waitOrEnd(): Effect.Effect<void, E, R> {
    const run = this.run
    this.lastEnd = undefined
    if (run.stopping || run.outstanding === 0) return run.flush(Effect.void)
    const d = run.waitForWork()
    run.report.workerWaiting(this.workerId)
    return run.flush(Effect.zipRight(Deferred.await(d), this.loop))
  }

  private done(node: Node<E, R>, kind: string): Effect.Effect<void, E, R> {
    if (this.started !== undefined) {
      this.lastEnd = this.run.telemetry.ended(this.started, undefined)
      this.started = undefined
    }
    const next = this.run.processDone(node, kind, this.workerId)
    if (next === Effect.void) return this.loop
    this.lastEnd = undefined // an afterChildren runs first: not part of the next item
    return Effect.zipRight(next, this.loop)
  }
}

const runWith = <E, R>(
  initial: ReadonlyArray<Item<E, R>>,
  workerCount: number,
  order: Order,
  graceful: boolean,
  session: Session,
  title: string
): Effect.Effect<Summary, E, R | Scope.Scope> =>
  Effect.gen(function*() {
    const run = new TreeRun<E, R>(order, session, yield* ItemTelemetry.make<E, R>(title))
    for (const item of initial) run.push(item, undefined)
    run.report.setQueueSize(run.frontier.size())
    yield* run.flush(Effect.void)
    const start = yield* Clock.currentTimeMillis
    const ids = Array.from({ length: workerCount }, (_, i) => i + 1)
    // The workers run outside this fiber's interruption: a graceful stop lets them finish their item.
    const pool = yield* Effect.forkScoped(
      Effect.forEach(ids, (id) => new TreeWorker(run, id).fiber, { concurrency: "unbounded", discard: true })
    )
    const signalWatch = new SignalWatch()
    yield* signalWatch.watch
    const stop = graceful
      ? Effect.suspend(() => {
        run.stopping = true
        run.wakeAll()
        run.report.setStopping?.()
        signalWatch.onDrain(() => pool.unsafeInterruptAsFork(FiberId.none))
        return run.flush(Fiber.await(pool))
      })
      : Fiber.interrupt(pool)
    yield* Fiber.join(pool).pipe(Effect.onInterrupt(() => Effect.zipRight(stop, signalWatch.afterInterrupt)))
    const end = yield* Clock.currentTimeMillis
    return run.summary(end - start)
  })
