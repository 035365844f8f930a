/**
 * The state every part of a task engine shares (the input queue, the worker pool, the counters, the calls in
 * progress, the waits of `awaitIdle` / `awaitSizeBelow`) with the few operations that touch more than one of them:
 * making tasks, cancelling a call, parking a task for its retry backoff, and the one `shutdown`.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import type * as RateLimiter from "../../RateLimiter.js"
import type * as TaskEngine from "../../TaskEngine.js"
import { TaskEngineMetrics as Metrics } from "../metrics.js"
import { TaskEngineError } from "../taskEngineError.js"
import { countingWaits, labels, setGauge } from "../telemetry.js"
import type { TaskQueue } from "./queue.js"
import type { RetryPolicy } from "./retry.js"
import { type AnyCall, type Call, Task } from "./task.js"
import { WorkerPool } from "./worker.js"

/** Per-task options, validated (see `options.ts`). @internal */
export interface TaskSettings {
  readonly priority: number
  /** Milliseconds, `undefined` for no limit; `null` for the engine's `taskTimeout`. */
  readonly timeout: number | undefined | null
}

/** @internal */
export const defaultSettings: TaskSettings = { priority: 0, timeout: null }

interface Wait {
  readonly ready: () => boolean
  readonly deferred: Deferred.Deferred<void>
}

/** @internal */
export class EngineCore<I, A, E> {
  readonly counters = { busy: 0, waitingRetry: 0, succeeded: 0, failed: 0, retried: 0 }
  readonly active = new Set<Call<I, A, E>>()
  readonly pool: WorkerPool<I, A, E>
  readonly limited: boolean
  closing = false
  /** Waits pending: workers call `notify` only while there are some, so the hot path pays one comparison. */
  watchers = 0
  private waits: Array<Wait> = []
  private nextId = 0
  /** The `engine` label of its metrics (made once: see telemetry.ts) and its spans' attribute. */
  readonly tags: ReturnType<typeof labels>

  constructor(
    readonly input: TaskQueue<Task<I>>,
    readonly handler: (input: I, task: TaskEngine.TaskEngine.TaskInfo) => unknown,
    readonly retry: RetryPolicy<E>,
    private readonly limiter: RateLimiter.RateLimiter<unknown>,
    unlimited: RateLimiter.RateLimiter<unknown>,
    /** The engine's `taskTimeout` in milliseconds, or `undefined`. */
    private readonly taskTimeout: number | undefined,
    readonly fibers: FiberSet.FiberSet<unknown, unknown>,
    /** Forks into `fibers` with the engine's context (the handler's requirements), from any fiber. */
    readonly fork: (effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void>,
    workers: number,
    readonly title: string
  ) {
    this.tags = labels("engine", title)
    this.limited = limiter !== unlimited
    this.pool = new WorkerPool(this, workers)
  }

  /** A task of `call`; its id is `id`, or one made by the engine ("1", "2", …). */
  task(input: I, index: number, call: Call<I, A, E>, settings: TaskSettings, id?: string): Task<I> {
    const timeout = settings.timeout === null ? this.taskTimeout : settings.timeout
    return new Task(
      id ?? String(++this.nextId),
      input,
      index,
      call as unknown as AnyCall<I>,
      settings.priority,
      timeout
    )
  }

  /** Tasks of `call` for a batch of inputs, `index` their place in it (the loop of `applyToAll`/`applyToEach`). */
  tasks(inputs: ReadonlyArray<I>, call: Call<I, A, E>, settings: TaskSettings, indexed: boolean): Array<Task<I>> {
    const timeout = settings.timeout === null ? this.taskTimeout : settings.timeout
    const owner = call as unknown as AnyCall<I>
    const priority = settings.priority
    const tasks = new Array<Task<I>>(inputs.length)
    for (let i = 0; i < inputs.length; i++) {
      tasks[i] = new Task(String(++this.nextId), inputs[i] as I, indexed ? i : 0, owner, priority, timeout)
    }
    return tasks
  }

  /** A rate-limit permit for one attempt; a failing limiter fails the attempt with a typed `RateLimiter` error. */
  limiterTake(task: Task<I>): Effect.Effect<void, TaskEngineError> {
    return Effect.mapError(
      countingWaits(this.limiter.take({ workerId: task.workerId, taskId: task.id }), Metrics.rateLimitWaits, this.tags),
      (cause) => new TaskEngineError({ reason: "RateLimiter", taskId: task.id, cause })
    )
  }

  /** The queued and running gauges, set where they change: an attempt starts or ends, tasks are offered. */
  gauges(): void {
    setGauge(Metrics.queued, this.tags, this.input.size)
    setGauge(Metrics.running, this.tags, this.counters.busy)
  }

  /** Stops a call: its queued tasks leave the queue at once, and the workers running its tasks are interrupted. */
  cancel(call: Call<I, A, E>, by: FiberId.FiberId): void {
    this.active.delete(call)
    if (call.cancelled) return
    call.cancelled = true
    this.input.dropCancelled(call)
    this.pool.interruptCall(call as unknown as AnyCall<I>, by)
    if (this.watchers > 0) this.notify()
  }

  /** Runs `effect` for `call`, which is registered until it ends, and cancelled if it ends any other way than success. */
  track<X>(call: Call<I, A, E>, effect: Effect.Effect<X>): Effect.Effect<X> {
    if (this.closing) return Effect.interrupt
    this.active.add(call)
    return Effect.onExit(effect, (exit) =>
      Effect.withFiberRuntime<void>((fiber) => {
        if (exit._tag === "Success") this.active.delete(call)
        else this.cancel(call, fiber.id())
        return Effect.void
      }))
  }

  /** A task waiting out its backoff sleeps in its own fiber, then queues again: it holds no worker. */
  retryLater(task: Task<I>, delay: number): Effect.Effect<void> {
    return Effect.sync(() => {
      this.counters.waitingRetry++
      this.fork(
        Effect.sleep(delay).pipe(
          Effect.zipRight(Effect.suspend(() => task.call.cancelled ? Effect.void : this.input.offerAll([task]))),
          Effect.ensuring(Effect.sync(() => {
            this.counters.waitingRetry--
            if (this.watchers > 0) this.notify()
          }))
        )
      )
    })
  }

  // ---- waits ----------------------------------------------------------------------------------------------------

  get isIdle(): boolean {
    return this.counters.busy === 0 && this.counters.waitingRetry === 0 && this.input.size === 0
  }

  /** Settles the waits whose condition now holds. */
  notify(): void {
    const waits = this.waits
    this.waits = []
    for (const wait of waits) {
      if (wait.ready()) Deferred.unsafeDone(wait.deferred, Effect.void)
      else this.waits.push(wait)
    }
    this.watchers = this.waits.length
  }

  /** Waits until `ready` holds (checked now, then whenever a task leaves the queue or settles). */
  waitFor(ready: () => boolean): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.closing) return Effect.interrupt
      if (ready()) return Effect.void
      const wait: Wait = { ready, deferred: Deferred.unsafeMake<void>(FiberId.none) }
      this.waits.push(wait)
      this.watchers = this.waits.length
      return Effect.onInterrupt(Deferred.await(wait.deferred), () =>
        Effect.sync(() => {
          this.waits = this.waits.filter((w) => w !== wait)
          this.watchers = this.waits.length
        }))
    })
  }

  stats(): TaskEngine.TaskEngine.Stats {
    const c = this.counters
    return {
      workers: this.pool.target,
      busy: c.busy,
      queued: this.input.size,
      waitingRetry: c.waitingRetry,
      succeeded: c.succeeded,
      failed: c.failed,
      retried: c.retried,
      paused: this.input.isPaused
    }
  }

  /**
   * The one shutdown, in this order: no new call and no worker replaced (`closing`); every caller settled
   * (interrupted), the manual flow's waiters too (`settleRounds`); the queue shut (idle workers and waiting offers
   * interrupted); the waits settled; then the workers and retry sleepers interrupted, and awaited.
   */
  shutdown(settleRounds: () => Effect.Effect<void>): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.closing = true
      for (const call of this.active) call.settle()
      this.active.clear()
      this.input.shutdown()
      for (const wait of this.waits) Deferred.unsafeDone(wait.deferred, Effect.interrupt)
      this.waits = []
      this.watchers = 0
      return Effect.zipRight(settleRounds(), FiberSet.clear(this.fibers))
    })
  }
}
