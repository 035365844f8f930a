/**
 * Issue 13: every module's spans (with their parents and links, seen by a recording tracer) and its Effect
 * metrics (seen in `Metric.snapshot`, each series found by the label this test gave its instance, so other tests
 * in the process cannot disturb the counts).
 */
import { assert, describe, it } from "@effect/vitest"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import * as Tracer from "effect/Tracer"
import * as DurableQueue from "../src/DurableQueue.js"
import * as Progress from "../src/Progress.js"
import * as RateLimiter from "../src/RateLimiter.js"
import * as ResultCache from "../src/ResultCache.js"
import * as TaskEngine from "../src/TaskEngine.js"
import * as TreeQueue from "../src/TreeQueue.js"
import * as WorkerQueue from "../src/WorkerQueue.js"

// ---- a recording tracer ------------------------------------------------------------------------------------------

class RecordedSpan implements Tracer.Span {
  readonly _tag = "Span"
  readonly spanId: string
  readonly traceId = "trace"
  readonly sampled = true
  readonly attributes = new Map<string, unknown>()
  links: Array<Tracer.SpanLink>
  status: Tracer.SpanStatus
  constructor(
    readonly name: string,
    readonly parent: Option.Option<Tracer.AnySpan>,
    readonly context: Context.Context<never>,
    links: ReadonlyArray<Tracer.SpanLink>,
    startTime: bigint,
    readonly kind: Tracer.SpanKind,
    id: number
  ) {
    this.spanId = `span${id}`
    this.links = [...links]
    this.status = { _tag: "Started", startTime }
  }
  end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
    this.status = { _tag: "Ended", startTime: this.status.startTime, endTime, exit }
  }
  attribute(key: string, value: unknown): void {
    this.attributes.set(key, value)
  }
  event(): void {}
  addLinks(links: ReadonlyArray<Tracer.SpanLink>): void {
    this.links.push(...links)
  }
}

const recording = () => {
  const spans: Array<RecordedSpan> = []
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind) => {
      const span = new RecordedSpan(name, parent, context, links, startTime, kind, spans.length)
      spans.push(span)
      return span
    },
    context: (f) => f()
  })
  const named = (name: string) => spans.filter((span) => span.name === name)
  const parentName = (span: RecordedSpan) =>
    Option.match(span.parent, { onNone: () => "(root)", onSome: (p) => p._tag === "Span" ? p.name : "(external)" })
  return { spans, named, parentName, layer: Layer.setTracer(tracer) }
}

// ---- metrics -----------------------------------------------------------------------------------------------------

/** The value of a counter or gauge (or a histogram's count) in the snapshot, for the series with this label. */
const metricValue = (name: string, label: string, value: string) =>
  Effect.map(Metric.snapshot, (pairs) => {
    const pair = pairs.find((p) =>
      p.metricKey.name === name && p.metricKey.tags.some((t) => t.key === label && t.value === value)
    )
    if (pair === undefined) return undefined
    const state = pair.metricState
    if (MetricState.isCounterState(state)) return Number(state.count)
    if (MetricState.isGaugeState(state)) return Number(state.value)
    if (MetricState.isHistogramState(state)) return state.count
    return undefined
  })

const unique = (prefix: string) => `${prefix}-${Math.random().toString(36).slice(2)}`

// ---- tests -------------------------------------------------------------------------------------------------------

describe("telemetry (issue 13)", () => {
  it.scoped("WorkerQueue: require under the caller's span, the run its child, linked from the de-duplicated waiter; metrics", () => {
    const rec = recording()
    return Effect.gen(function*() {
      const name = unique("wq")
      const gate = yield* Deferred.make<void>()
      const queue = yield* WorkerQueue.make({
        name,
        cache: yield* ResultCache.memory<string, number>(),
        worker: (s: string) => Effect.as(Effect.withSpan(Deferred.await(gate), "inside worker"), s.length),
        concurrency: 1
      })
      const first = yield* Effect.fork(Effect.withSpan(queue.require("abc"), "caller A"))
      yield* Effect.yieldNow()
      const second = yield* Effect.fork(Effect.withSpan(queue.require("abc"), "caller B"))
      yield* Effect.yieldNow()
      assert.strictEqual(yield* metricValue("effect_workers_worker_queue_in_flight", "queue", name), 1)
      yield* Deferred.succeed(gate, undefined)
      assert.deepStrictEqual([yield* Fiber.join(first), yield* Fiber.join(second)], [3, 3])
      assert.strictEqual(yield* Effect.withSpan(queue.require("abc"), "caller C"), 3) // a hit

      const requires = rec.named("WorkerQueue.require")
      assert.deepStrictEqual(requires.map(rec.parentName), ["caller A", "caller B", "caller C"])
      assert.deepStrictEqual(requires.map((s) => s.attributes.get("effect_workers.cache")), [
        "miss",
        "deduplicated",
        "hit"
      ])
      const [run] = rec.named("WorkerQueue.run")
      assert.strictEqual(rec.named("WorkerQueue.run").length, 1)
      assert.strictEqual(Option.getOrThrow(run!.parent), requires[0])
      assert.strictEqual(rec.parentName(rec.named("inside worker")[0]!), "WorkerQueue.run")
      assert.deepStrictEqual(requires[1]!.links.map((l) => l.span), [run])
      assert.strictEqual(run!.status._tag, "Ended")

      const m = (what: string) => metricValue(`effect_workers_worker_queue_${what}`, "queue", name)
      assert.deepStrictEqual(
        [yield* m("hits_total"), yield* m("misses_total"), yield* m("deduplicated_total"), yield* m("completed_total")],
        [1, 1, 1, 1]
      )
      assert.strictEqual(yield* m("in_flight"), 0)
      assert.strictEqual(yield* m("run_duration_seconds"), 1)
    }).pipe(Effect.provide(rec.layer))
  })

  it.scoped("WorkerQueue: a run is a child of the require that started it, not of the span current at make", () => {
    const rec = recording()
    return Effect.gen(function*() {
      const queue = yield* Effect.withSpan(
        WorkerQueue.make({ name: unique("wq"), worker: (n: number) => Effect.succeed(n) }),
        "making the queue"
      )
      yield* Effect.withSpan(queue.require(1), "the caller")
      const [run] = rec.named("WorkerQueue.run")
      assert.strictEqual(rec.parentName(run!), "WorkerQueue.require")
      assert.strictEqual(rec.parentName(rec.named("WorkerQueue.require")[0]!), "the caller")
    }).pipe(Effect.provide(rec.layer))
  })

  it.effect("ResultCache: hits and misses by kind of cache", () =>
    Effect.gen(function*() {
      const kind = "memory"
      const hits = yield* metricValue("effect_workers_result_cache_hits_total", "cache", kind)
      const misses = yield* metricValue("effect_workers_result_cache_misses_total", "cache", kind)
      const cache = yield* ResultCache.memory<string, number>()
      yield* cache.get("x")
      yield* cache.set("x", 1)
      yield* cache.get("x")
      yield* cache.get("x")
      assert.strictEqual(yield* metricValue("effect_workers_result_cache_hits_total", "cache", kind), (hits ?? 0) + 2)
      assert.strictEqual(
        yield* metricValue("effect_workers_result_cache_misses_total", "cache", kind),
        (misses ?? 0) + 1
      )
    }))

  it.scoped("TaskEngine: a TaskEngine.task span per attempt under the caller's span; completed, failed, retries", () => {
    const rec = recording()
    return Effect.gen(function*() {
      const title = unique("engine")
      let calls = 0
      const engine = yield* TaskEngine.make({
        title,
        workers: 2,
        retry: { times: 1 },
        handler: (n: number) =>
          Effect.withSpan(
            Effect.suspend(() =>
              n === 1 && ++calls === 1
                ? Effect.fail("once" as const)
                : n === 2
                ? Effect.fail("always" as const)
                : Effect.succeed(n)
            ),
            "handler"
          )
      })
      const results = yield* Effect.withSpan(engine.applyToAll([0, 1, 2]), "the call")
      assert.deepStrictEqual(results.map((r) => r.attempts), [1, 2, 2])
      const tasks = rec.named("TaskEngine.task")
      assert.strictEqual(tasks.length, 5) // 1 + 2 + 2 attempts
      assert.isTrue(tasks.every((s) => rec.parentName(s) === "the call" && s.status._tag === "Ended"))
      assert.deepStrictEqual(
        tasks.map((s) => `${s.attributes.get("effect_workers.task_id")}#${s.attributes.get("effect_workers.attempt")}`)
          .sort(),
        ["1#1", "2#1", "2#2", "3#1", "3#2"]
      )
      assert.isTrue(rec.named("handler").every((s) => rec.parentName(s) === "TaskEngine.task"))
      const m = (what: string) => metricValue(`effect_workers_task_engine_${what}`, "engine", title)
      assert.deepStrictEqual(
        [
          yield* m("completed_total"),
          yield* m("failed_total"),
          yield* m("retries_total"),
          yield* m("task_duration_seconds")
        ],
        [2, 1, 2, 5]
      )
      assert.deepStrictEqual([yield* m("queued"), yield* m("running")], [0, 0])
    }).pipe(Effect.provide(rec.layer))
  })

  // A worker settles tasks that succeed at once in bursts (up to 256 without an Effect step) and publishes their
  // metrics when a burst ends: by the time the call returns, every one is counted and the gauges are back to 0.
  it.scoped("TaskEngine: tasks settled in bursts are all counted and timed once the call returns; the gauges are 0", () =>
    Effect.gen(function*() {
      const title = unique("bursts")
      const engine = yield* TaskEngine.make({ title, workers: 2, handler: (n: number) => Effect.succeed(n) })
      const m = (what: string) => metricValue(`effect_workers_task_engine_${what}`, "engine", title)
      for (const [calls, total] of [[1_000, 1_000], [1, 1_001], [700, 1_701]] as const) {
        yield* engine.applyToAll(Array.from({ length: calls }, (_, i) => i))
        assert.deepStrictEqual(
          [yield* m("completed_total"), yield* m("task_duration_seconds"), yield* m("queued"), yield* m("running")],
          [total, total, 0, 0]
        )
      }
    }))

  it.scoped("RateLimiter and TaskEngine: waits for a permit are counted (TestClock)", () =>
    Effect.gen(function*() {
      const title = unique("limited")
      const before = (yield* metricValue("effect_workers_rate_limiter_waits_total", "limiter", "sliding_window")) ?? 0
      const rateLimiter = yield* RateLimiter.slidingWindow({ limit: 1, interval: "1 second" })
      const engine = yield* TaskEngine.make({
        title,
        workers: 3,
        rateLimiter,
        handler: (n: number) => Effect.succeed(n)
      })
      const fiber = yield* Effect.fork(engine.applyToAll([1, 2, 3]))
      yield* TestClock.adjust("3 seconds")
      yield* Fiber.join(fiber)
      assert.strictEqual(
        yield* metricValue("effect_workers_rate_limiter_waits_total", "limiter", "sliding_window"),
        before + 2
      )
      assert.strictEqual(yield* metricValue("effect_workers_task_engine_rate_limit_waits_total", "engine", title), 2)
    }))

  it.scoped("TreeQueue: an item's span is the child of its parent item's; items done and failed", () => {
    const rec = recording()
    return Effect.gen(function*() {
      const title = unique("tree")
      const leaf = { process: () => Effect.void }
      const root = {
        process: (ctx: TreeQueue.ItemContext<never, never>) => ctx.enqueue(leaf, leaf)
      }
      yield* Effect.withSpan(TreeQueue.run({ initial: [root], title, workers: 2 }), "the crawl")
      const items = rec.named("TreeQueue.item")
      assert.strictEqual(items.length, 3)
      assert.deepStrictEqual(items.map(rec.parentName).sort(), ["TreeQueue.item", "TreeQueue.item", "the crawl"])
      assert.strictEqual(yield* metricValue("effect_workers_tree_queue_items_done_total", "tree", title), 3)
      const failing = { process: () => Effect.fail("broken" as const) }
      yield* Effect.exit(TreeQueue.run({ initial: [failing], title }))
      assert.strictEqual(yield* metricValue("effect_workers_tree_queue_items_failed_total", "tree", title), 1)
    }).pipe(Effect.provide(Layer.merge(rec.layer, Progress.layerNone)))
  })

  // Spans cost more than trivial work (README, "Tracing and metrics"): with Effect's built-in tracer, which nobody
  // reads, no module opens one. Told apart by the span current inside the user's function: a module span when
  // opened (as with the recording tracer), else the caller's ("the caller") or none (a worker forked at make).
  const currentSpanName = Effect.map(
    Effect.option(Effect.currentSpan),
    Option.match({ onNone: () => "(none)", onSome: (span) => span.name })
  )
  const seenInside = Effect.gen(function*() {
    const seen: Array<string> = []
    const see = Effect.tap(currentSpanName, (name) => Effect.sync(() => seen.push(name)))
    const queue = yield* WorkerQueue.make({ name: unique("wq"), worker: (n: number) => Effect.as(see, n) })
    yield* Effect.withSpan(queue.require(1), "the caller")
    yield* Effect.withSpan(queue.requireAll([2]), "the caller")
    const engine = yield* TaskEngine.make({
      title: unique("engine"),
      workers: 1,
      handler: (n: number) => Effect.as(see, n)
    })
    yield* Effect.withSpan(engine.applyToAll([1]), "the caller")
    yield* Effect.withSpan(TreeQueue.run({ initial: [{ process: () => see }], title: unique("tree") }), "the caller")
    const durable = yield* DurableQueue.memory({ name: unique("dq"), schema: Schema.Number })
    yield* durable.offer(1)
    yield* Effect.withSpan(durable.take(() => see), "the caller")
    return seen
  }).pipe(Effect.provide(Progress.layerNone))

  it.scoped("no module span with Effect's built-in tracer; the same run with a tracer installed has them", () => {
    const rec = recording()
    return Effect.gen(function*() {
      assert.deepStrictEqual(yield* seenInside, ["(none)", "(none)", "(none)", "the caller", "the caller"])
      assert.deepStrictEqual(
        yield* Effect.provide(seenInside, rec.layer),
        ["WorkerQueue.run", "WorkerQueue.run", "TaskEngine.task", "TreeQueue.item", "DurableQueue.take"]
      )
      assert.deepStrictEqual(
        ["WorkerQueue.require", "WorkerQueue.requireAll", "DurableQueue.offer"].map((name) => rec.named(name).length),
        [1, 1, 1]
      )
      // Tracing turned off hides the recording tracer too (the caller's span is then Effect's no-op span).
      const before = rec.spans.length
      assert.deepStrictEqual(
        yield* seenInside.pipe(Effect.withTracerEnabled(false), Effect.provide(rec.layer)),
        ["(none)", "(none)", "(none)", "the caller", "the caller"]
      )
      assert.strictEqual(rec.spans.length, before)
    })
  })

  it.scoped("TreeQueue without a tracer: items done, failed and timed all the same (no span to hang them on)", () =>
    Effect.gen(function*() {
      const title = unique("tree")
      const leaf = { process: () => Effect.void }
      const failing = { process: () => Effect.fail("broken" as const), afterChildren: () => Effect.fail("not this") }
      yield* TreeQueue.run({ initial: [{ process: (ctx) => ctx.enqueue(leaf, leaf) }], title, workers: 2 })
      assert.strictEqual(yield* metricValue("effect_workers_tree_queue_items_done_total", "tree", title), 3)
      assert.strictEqual(yield* metricValue("effect_workers_tree_queue_item_duration_seconds", "tree", title), 3)
      assert.deepStrictEqual(yield* Effect.flip(TreeQueue.run({ initial: [failing], title })), "broken")
      assert.strictEqual(yield* metricValue("effect_workers_tree_queue_items_failed_total", "tree", title), 1)
      assert.strictEqual(yield* metricValue("effect_workers_tree_queue_item_duration_seconds", "tree", title), 4)
      // A failing afterChildren is not an item's process failing.
      const after = { process: () => Effect.void, afterChildren: () => Effect.fail("after" as const) }
      assert.deepStrictEqual(yield* Effect.flip(TreeQueue.run({ initial: [after], title })), "after")
      assert.deepStrictEqual(
        [
          yield* metricValue("effect_workers_tree_queue_items_done_total", "tree", title),
          yield* metricValue("effect_workers_tree_queue_items_failed_total", "tree", title)
        ],
        [4, 1]
      )
    }).pipe(Effect.provide(Progress.layerNone)))

  it.scoped("DurableQueue: offer, take and settle spans; acked, retried and dead counters", () => {
    const rec = recording()
    return Effect.gen(function*() {
      const name = unique("dq")
      const queue = yield* DurableQueue.memory({
        name,
        schema: Schema.Number,
        maxAttempts: 2,
        backoff: DurableQueue.Backoff.none
      })
      yield* Effect.withSpan(queue.offer(1), "producer")
      yield* Effect.withSpan(queue.offer(2), "producer")
      yield* Effect.withSpan(queue.take((n) => Effect.succeed(n)), "consumer")
      yield* queue.take(() => Effect.fail("no"))
      yield* queue.take(() => Effect.fail("no"))
      assert.deepStrictEqual(rec.named("DurableQueue.offer").map(rec.parentName), ["producer", "producer"])
      const takes = rec.named("DurableQueue.take")
      assert.strictEqual(takes.length, 3)
      assert.strictEqual(rec.parentName(takes[0]!), "consumer")
      assert.deepStrictEqual(takes.map((s) => s.attributes.get("effect_workers.attempt")), [1, 1, 2])
      assert.isAbove(rec.named("DurableQueue.settle").length, 0)
      const m = (what: string) => metricValue(`effect_workers_durable_queue_${what}`, "queue", name)
      assert.deepStrictEqual(
        [yield* m("offered_total"), yield* m("acked_total"), yield* m("retried_total"), yield* m("dead_total")],
        [2, 1, 1, 1]
      )
    }).pipe(Effect.provide(rec.layer))
  })

  it.live("DurableQueue.runBatch: one span per batch (its jobs' count), per-job acked, retried and dead counters", () => {
    const rec = recording()
    return Effect.gen(function*() {
      const name = unique("dqb")
      const queue = yield* DurableQueue.memory({
        name,
        schema: Schema.Number,
        maxAttempts: 2,
        backoff: DurableQueue.Backoff.none
      })
      yield* queue.offerAll([1, 2, 3].map((value) => ({ value })))
      const runner = yield* Effect.fork(Effect.withSpan(
        queue.runBatch((values) =>
          values.includes(3)
            ? Effect.fail(new DurableQueue.BatchFailure({ failures: [{ index: values.indexOf(3), error: "no" }] }))
            : Effect.void
        ),
        "consumer"
      ))
      const m = (what: string) => metricValue(`effect_workers_durable_queue_${what}`, "queue", name)
      for (let i = 0; i < 500 && ((yield* m("dead_total")) ?? 0) < 1; i++) yield* Effect.sleep("5 millis")
      yield* Fiber.interrupt(runner)
      const batches = rec.named("DurableQueue.runBatch")
      assert.deepStrictEqual(batches.map((span) => span.attributes.get("effect_workers.jobs")), [3, 1])
      assert.strictEqual(rec.parentName(batches[0]!), "consumer")
      assert.deepStrictEqual([yield* m("acked_total"), yield* m("retried_total"), yield* m("dead_total")], [2, 1, 1])
    }).pipe(Effect.provide(rec.layer), Effect.scoped)
  })
})
