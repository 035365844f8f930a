/**
 * The workers: long-lived fibers that poll the input queue and run the handler inline, so a task costs no fiber of
 * its own. A handler that returns a success outright (`Effect.succeed` is an `Exit`) is settled with no Effect
 * step, and a worker settles up to 256 such tasks in a row before it yields (bench/RESULTS.md: this is what puts
 * `applyToAll` at ~0.25× the time of `Effect.forEach`). The pool keeps one slot per worker id, replaces a worker
 * interrupted to cancel a call, and grows or shrinks to a new target (`setWorkers`).
 */
import type * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import type * as FiberId from "effect/FiberId"
import type * as Tracer from "effect/Tracer"
import { TaskEngineMetrics as Metrics } from "../metrics.js"
import { fromUserResult } from "../promise.js"
import { TaskEngineError } from "../taskEngineError.js"
import { bump, observeNanos, SpanMaker } from "../telemetry.js"
import type { EngineCore } from "./engine.js"
import type { Call, Failure, Task } from "./task.js"

// Tasks a worker settles in a row without an Effect step before it yields to other fibers.
const burstMax = 256

/** @internal */
export class Worker<I, A, E> {
  current: Task<I> | undefined = undefined
  private burst = 0
  /** The current attempt's `TaskEngine.task` span (undefined with tracing off) and its start by the clock. */
  private span: Tracer.Span | undefined = undefined
  private started = 0n
  /**
   * Metrics of a burst of tasks settled with no Effect step, published when the burst ends (`publish`: the worker
   * yields, waits or runs an attempt on), not per task: the `completed` count not yet added, whether the gauges are
   * behind, and the end of the last such attempt by the clock, which is the next one's start (one clock reading a
   * task, not two; what lies between is a poll of the queue). Per task, these cost `applyToAll` of 100k trivial
   * tasks 1.10-1.38x the time it took without metrics (bench/RESULTS.md, "Telemetry cost").
   */
  private unpublished = 0
  private gaugesBehind = false
  private lastEnd: bigint | undefined = undefined
  private readonly spans: SpanMaker
  readonly loop: Effect.Effect<void> = Effect.suspend(() => this.next())
  private readonly yieldThenLoop = Effect.zipRight(Effect.yieldNow(), this.loop)
  private readonly waitTake: Effect.Effect<void>
  private readonly settled: {
    readonly onSuccess: (value: A) => Effect.Effect<void>
    readonly onFailure: (cause: Cause.Cause<Failure<E>>) => Effect.Effect<void>
  }

  constructor(
    readonly id: number,
    readonly fiber: Fiber.RuntimeFiber<unknown, unknown>,
    private readonly core: EngineCore<I, A, E>
  ) {
    this.spans = new SpanMaker(fiber)
    this.waitTake = Effect.flatMap(
      core.input.take,
      (task) => task === undefined || task.call.cancelled ? this.next() : this.attempt(task)
    )
    this.settled = { onSuccess: (value) => this.onSuccess(value), onFailure: (cause) => this.onFailure(cause) }
  }

  /**
   * The next task not cancelled, polled at once; only an empty queue costs a wait. A worker whose id is no longer
   * below the pool's target retires here, between tasks.
   */
  next(): Effect.Effect<void> {
    const core = this.core
    for (;;) {
      if (this.id >= core.pool.target) {
        this.publish()
        return Effect.void
      }
      if (++this.burst > burstMax) {
        this.burst = 0
        this.publish()
        return this.yieldThenLoop
      }
      const task = core.input.poll()
      // A task left the queue, or the last one settled: `awaitIdle` / `awaitSizeBelow` may be due.
      if (core.watchers > 0) core.notify()
      if (task === undefined) {
        this.burst = 0
        this.publish()
        return this.waitTake
      }
      if (!task.call.cancelled) {
        const step = this.start(task)
        if (step !== undefined) {
          this.burst = 0
          return step
        }
      }
    }
  }

  /** Publishes what a burst of settled tasks left behind (see `unpublished`); the next attempt reads the clock. */
  private publish(): void {
    this.lastEnd = undefined
    if (this.unpublished > 0) {
      bump(Metrics.completed, this.core.tags, this.unpublished)
      this.unpublished = 0
    }
    if (this.gaugesBehind) {
      this.gaugesBehind = false
      this.core.gauges()
    }
  }

  private attempt(task: Task<I>): Effect.Effect<void> {
    return this.start(task) ?? this.next()
  }

  // Starts an attempt: `undefined` when it settled at once and the worker may go on to its next task.
  private start(task: Task<I>): Effect.Effect<void> | undefined {
    const core = this.core
    task.attempt++
    task.workerId = this.id
    this.current = task
    core.counters.busy++
    this.started = this.lastEnd ?? this.spans.now()
    this.lastEnd = undefined
    // Without a tracer (telemetry.ts `tracing`) not even the attributes are made: this runs once per task.
    this.span = this.spans.enabled ?
      this.spans.open("TaskEngine.task", task.call.span, {
        "effect_workers.engine": core.title,
        "effect_workers.task_id": task.id,
        "effect_workers.attempt": task.attempt
      }) :
      undefined
    const run = core.limited
      ? Effect.zipRight(core.limiterTake(task), Effect.suspend(() => this.run(task)))
      : this.run(task)
    if (Exit.isExit(run) && run._tag === "Success") {
      // Settled at once: counted, timed and gauged with the burst (`publish`).
      this.current = undefined
      core.counters.busy--
      core.counters.succeeded++
      this.unpublished++
      this.endAttempt(run, true)
      const delivering = (task.call as Call<I, A, E>).deliver(task, run as Exit.Exit<A, Failure<E>>)
      if (delivering === undefined) return undefined
      this.publish()
      return Effect.zipRight(delivering, this.loop)
    }
    // The attempt runs on: the gauges say so while it does.
    this.gaugesBehind = true
    this.publish()
    return Effect.matchCauseEffect(run, this.settled)
  }

  // One attempt of the handler as an Effect: an Effect as returned, a Promise as a typed `UnknownException` on
  // rejection, any other value as a success; a synchronous throw is a defect, as `Effect.suspend` would make it.
  private run(task: Task<I>): Effect.Effect<A, Failure<E>> {
    let run: Effect.Effect<A, Failure<E>>
    try {
      run = fromUserResult(this.core.handler(task.input, task)) as Effect.Effect<A, E>
    } catch (defect) {
      run = Effect.die(defect)
    }
    // The handler's own spans are children of the attempt's; a settled result (an Exit) has none to parent.
    if (this.span !== undefined && !Exit.isExit(run)) run = Effect.withParentSpan(run, this.span)
    const timeout = task.timeout
    return timeout === undefined ? run : Effect.timeoutFail(run, {
      duration: timeout,
      onTimeout: () =>
        new TaskEngineError({ reason: "TaskTimeout", taskId: task.id, timeout: Duration.millis(timeout) })
    })
  }

  private deliver(task: Task<I>, exit: Exit.Exit<A, Failure<E>>): Effect.Effect<void> {
    if (exit._tag === "Success") {
      this.core.counters.succeeded++
      bump(Metrics.completed, this.core.tags)
    } else {
      this.core.counters.failed++
      bump(Metrics.failed, this.core.tags)
    }
    const delivering = (task.call as Call<I, A, E>).deliver(task, exit)
    return delivering === undefined ? this.next() : Effect.zipRight(delivering, this.loop)
  }

  /**
   * Ends the attempt's span and records its time; the gauges move with it, or with the burst (`inBurst`: it
   * settled at once, and its end is the next attempt's start).
   */
  endAttempt(exit: Exit.Exit<unknown, unknown>, inBurst = false): void {
    const end = this.spans.now()
    if (this.span !== undefined) {
      this.spans.close(this.span, exit)
      this.span = undefined
    }
    observeNanos(Metrics.taskDuration, this.core.tags, this.started, end)
    if (inBurst) {
      this.lastEnd = end
      this.gaugesBehind = true
    } else this.core.gauges()
  }

  private release(exit: Exit.Exit<unknown, unknown>): Task<I> {
    const task = this.current!
    this.current = undefined
    this.core.counters.busy--
    this.endAttempt(exit)
    return task
  }

  private onSuccess(value: A): Effect.Effect<void> {
    const exit = Exit.succeed(value)
    const task = this.release(exit)
    return task.call.cancelled ? this.next() : this.deliver(task, exit)
  }

  private onFailure(cause: Cause.Cause<Failure<E>>): Effect.Effect<void> {
    const exit = Exit.failCause(cause)
    const task = this.release(exit)
    if (task.call.cancelled) return this.loop
    const delay = this.core.retry.delay(task, exit)
    if (delay === undefined) return this.deliver(task, exit)
    return Effect.flatMap(delay, (next) => {
      if (typeof next !== "number") return this.deliver(task, next)
      this.core.counters.retried++
      bump(Metrics.retries, this.core.tags)
      return next === 0 ? this.attempt(task) : Effect.zipRight(this.core.retryLater(task, next), this.loop)
    })
  }
}

/**
 * Worker fibers by id. Every worker is interruptible throughout: its bookkeeping is synchronous (one step, never
 * cut in two), and the only interruptions it gets are engine shutdown and `cancel`, which targets a worker
 * suspended inside an attempt of the cancelled call (nothing of another call is lost).
 *
 * @internal
 */
export class WorkerPool<I, A, E> {
  readonly slots: Array<Worker<I, A, E> | undefined> = []
  constructor(private readonly core: EngineCore<I, A, E>, public target: number) {}

  start(): Effect.Effect<void> {
    return Effect.suspend(() => {
      for (let id = 0; id < this.target; id++) this.spawn(id)
      return Effect.void
    })
  }

  // Starts the worker of `id` unless one lives; it is replaced when interrupted, unless the engine is closing or
  // the pool shrank below it.
  private spawn(id: number): void {
    if (this.slots[id] !== undefined || this.core.closing) return
    const run = Effect.withFiberRuntime<void>((fiber) => {
      const worker = new Worker(id, fiber, this.core)
      this.slots[id] = worker
      return Effect.onExit(worker.loop, () =>
        Effect.sync(() => {
          // Interrupted inside an attempt (cancel or shutdown): that attempt is no longer running.
          if (worker.current !== undefined) {
            worker.current = undefined
            this.core.counters.busy--
            worker.endAttempt(Exit.interrupt(worker.fiber.id()))
          }
          if (this.slots[id] === worker) this.slots[id] = undefined
          if (id < this.target) this.spawn(id)
          else this.core.notify()
        }))
    })
    this.core.fork(Effect.interruptible(run))
  }

  /** A new number of workers: more start now; those above it retire after their current task. */
  setTarget(target: number): void {
    const before = this.target
    this.target = target
    for (let id = 0; id < target; id++) this.spawn(id)
    if (target < before) this.core.input.wake()
  }

  /** Interrupts the workers running a task of `call`; each is replaced. */
  interruptCall(call: Call<I, never, never>, by: FiberId.FiberId): void {
    for (const worker of this.slots) {
      if (worker !== undefined && worker.current !== undefined && worker.current.call === call) {
        // The worker is suspended (we are running), so it sees the interruption before it does anything else.
        worker.fiber.unsafeInterruptAsFork(by)
      }
    }
  }

  /** What each worker runs, for `Progress`. */
  rows(): Array<string | undefined> {
    const rows: Array<string | undefined> = []
    for (let id = 0; id < this.target; id++) {
      const task = this.slots[id]?.current
      rows.push(
        task === undefined ? undefined : `task ${task.id}${task.attempt > 1 ? ` (attempt ${task.attempt})` : ""}`
      )
    }
    return rows
  }
}
