/**
 * The task engine: `workers` long-lived fibers take tasks from one Effect `Queue` and run the handler inline, so a
 * task costs no fiber of its own. Each task points at the call that owns it (an `applyToAll`, an `applyToEach` or
 * a round of the manual flow), which receives its result. Cancelling a call marks it (its queued tasks are skipped)
 * and interrupts exactly the workers running its tasks; an interrupted worker is replaced. Retries with a backoff
 * wait in a sleeping fiber, not in a worker.
 */
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import type * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Mailbox from "effect/Mailbox"
import type * as Context from "effect/Context"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as Intervals from "effect/ScheduleIntervals"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { OptionError } from "../OptionError.js"
import * as RateLimiterInternal from "./rateLimiter.js"
import type * as RateLimiter from "../RateLimiter.js"
import type * as TaskEngine from "../TaskEngine.js"
import type * as DurableQueue from "../DurableQueue.js"
import { TaskEngineError } from "./taskEngineError.js"
import type * as TaskResult from "../TaskResult.js"
import { checker } from "./options.js"
import { Progress } from "./progress.js"
import { TaskResultImpl } from "./taskEngineResult.js"

const check = checker("TaskEngine")

type Failure<E> = E | TaskEngineError
type Result<I, A, E> = TaskResult.TaskResult<I, A, Failure<E>>

/** A task in flight: also the `TaskInfo` the handler sees. */
class Task<I> implements TaskEngine.TaskEngine.TaskInfo {
  attempt = 0
  workerId = -1
  scheduleState: unknown = undefined
  constructor(
    readonly id: string,
    readonly input: I,
    readonly index: number,
    readonly call: Call<I, never, never>
  ) {}
}

/**
 * The owner of a set of tasks. `deliver` receives each final result; it returns `undefined` when it delivered at
 * once, or an effect to run (the manual flow waits for room in the result buffer).
 */
interface Call<I, A, E> {
  cancelled: boolean
  readonly deliver: (task: Task<I>, exit: Exit.Exit<A, Failure<E>>) => Effect.Effect<void> | undefined
  readonly settle: () => void
}

interface WorkerSlot<I> {
  readonly workerId: number
  readonly fiber: Fiber.RuntimeFiber<unknown, unknown>
  current: Task<I> | undefined
}

// The end of a manual round, in the result buffer.
class RoundEnd {
  constructor(readonly round: Round) {}
}

interface Round {
  added: number
  finished: number
  ended: boolean
  // awaitEnd is collecting this round's results: a `results` stream must hand its end marker back.
  awaiting: boolean
  markerTaken: boolean
  openedAt: number
  readonly started: Deferred.Deferred<void>
  readonly done: Deferred.Deferred<void>
}

/**
 * The input queue: an array with a moving head, the workers waiting for a task, and (when bounded) the offers
 * waiting for room. Workers poll it synchronously between tasks, so a task costs no Effect step to dequeue.
 */
class TaskQueue<T> {
  private items: Array<T | undefined> = []
  private head = 0
  private readonly takers: Array<(effect: Effect.Effect<T>) => void> = []
  private readonly putters: Array<{ readonly values: ReadonlyArray<T>; next: number; resume: (e: Effect.Effect<void>) => void }> = []
  private shut = false
  constructor(private readonly capacity: number) {}

  get size(): number {
    let size = this.items.length - this.head
    for (const putter of this.putters) size += putter.values.length - putter.next
    return size
  }

  /** The next task, or undefined when none is queued. */
  poll(): T | undefined {
    if (this.head === this.items.length) return undefined
    const item = this.items[this.head]!
    this.items[this.head++] = undefined
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    if (this.putters.length > 0) this.fill()
    return item
  }

  // Moves waiting offers into the room there is, oldest first.
  private fill() {
    while (this.putters.length > 0 && this.items.length - this.head < this.capacity) {
      const putter = this.putters[0]!
      while (putter.next < putter.values.length && this.items.length - this.head < this.capacity) {
        this.items.push(putter.values[putter.next++])
      }
      if (putter.next < putter.values.length) return
      this.putters.shift()
      putter.resume(Effect.void)
    }
  }

  readonly take: Effect.Effect<T> = Effect.suspend(() => {
    if (this.shut) return Effect.interrupt
    const item = this.poll()
    if (item !== undefined) return Effect.succeed(item)
    return Effect.async<T>((resume) => {
      this.takers.push(resume)
      return Effect.sync(() => {
        const i = this.takers.indexOf(resume)
        if (i >= 0) this.takers.splice(i, 1)
      })
    })
  })

  offerAll(values: ReadonlyArray<T>): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.shut) return Effect.interrupt
      let next = 0
      // Waiting workers first (the queue is empty when any waits), then the room there is.
      while (next < values.length && this.takers.length > 0) this.takers.shift()!(Effect.succeed(values[next++]!))
      if (this.putters.length === 0) {
        while (next < values.length && this.items.length - this.head < this.capacity) this.items.push(values[next++])
      }
      if (next === values.length) return Effect.void
      const putter = { values, next, resume: (_: Effect.Effect<void>) => {} }
      return Effect.async<void>((resume) => {
        putter.resume = resume
        this.putters.push(putter)
        // Never queued beyond what was placed: the rest is dropped.
        return Effect.sync(() => {
          const i = this.putters.indexOf(putter)
          if (i >= 0) this.putters.splice(i, 1)
        })
      })
    })
  }

  shutdown(): void {
    if (this.shut) return
    this.shut = true
    this.items = []
    this.head = 0
    for (const taker of this.takers.splice(0)) taker(Effect.interrupt)
    for (const putter of this.putters.splice(0)) putter.resume(Effect.interrupt)
  }
}

/** @internal */
export const make = <I, A, E, R>(
  options: TaskEngine.TaskEngine.Options<I, A, E, R>
): Effect.Effect<TaskEngine.TaskEngine<I, A, E>, OptionError, Scope.Scope | R> =>
  Effect.gen(function*() {
    // Options, defaults applied once.
    const workers = yield* check.integer("workers", options?.workers, Number.NaN, 1)
    const inputCapacity = yield* check.integerOrInfinity("inputCapacity", options.inputCapacity, Infinity, 1)
    const resultCapacity = yield* check.integerOrInfinity("resultCapacity", options.resultCapacity, Infinity, 1)
    const startTimeout = yield* check.optionalDuration("startTimeout", options.startTimeout)
    const taskTimeout = yield* check.optionalDuration("taskTimeout", options.taskTimeout)
    yield* check.require("handler", options.handler, typeof options.handler === "function", "a function")
    const retry = options.retry
    const schedule = retry?.schedule
    const times = retry === undefined
      ? 0
      : yield* check.integerOrInfinity("retry.times", retry.times, schedule === undefined ? 3 : Infinity, 0)
    const retryWhile = retry?.while
    const retryUntil = retry?.until
    const limiter: RateLimiter.RateLimiter = options.rateLimiter ?? RateLimiterInternal.unlimited
    const limited = limiter !== RateLimiterInternal.unlimited
    const handler = options.handler as (input: I, task: TaskEngine.TaskEngine.TaskInfo) => Effect.Effect<A, E>

    const input = new TaskQueue<Task<I>>(inputCapacity)
    const buffer = yield* Queue.unbounded<Result<I, A, E> | RoundEnd>()
    const slots = resultCapacity === Infinity ? undefined : yield* Effect.makeSemaphore(resultCapacity)
    const fibers = yield* FiberSet.make()
    const workerSlots: Array<WorkerSlot<I> | undefined> = new Array(workers)
    const active = new Set<Call<I, A, E>>()
    let closing = false
    let nextId = 0
    const stats = { busy: 0, waitingRetry: 0, succeeded: 0, failed: 0, retried: 0 }

    const clock = yield* Effect.clock
    const newRound = (): Round => ({
      added: 0,
      finished: 0,
      ended: false,
      awaiting: false,
      markerTaken: false,
      openedAt: clock.unsafeCurrentTimeMillis(),
      started: Deferred.unsafeMake<void>(FiberId.none),
      done: Deferred.unsafeMake<void>(FiberId.none)
    })
    let round = newRound()

    // Stops a call: its queued tasks are skipped, and the workers running its tasks are interrupted (and replaced).
    const cancel = (call: Call<I, A, E>, by: FiberId.FiberId) => {
      if (call.cancelled) return
      call.cancelled = true
      for (const slot of workerSlots) {
        if (slot !== undefined && slot.current !== undefined && slot.current.call === (call as Call<I, never, never>)) {
          // The worker is suspended (we are running), so it sees the interruption before it does anything else.
          slot.fiber.unsafeInterruptAsFork(by)
        }
      }
    }

    // ---- retries ------------------------------------------------------------------------------------------------

    // The delay before the next attempt (0: at once), or undefined when the failure is final.
    const retryDelay = (task: Task<I>, exit: Exit.Exit<A, Failure<E>>): Effect.Effect<number | undefined> | undefined => {
      if (times === 0 || Exit.isSuccess(exit) || task.attempt > times || !Cause.isFailType(exit.cause)) {
        return undefined
      }
      const error = exit.cause.error
      // "Do not retry" wins: `until` stops even where `while` would go on.
      if ((retryUntil !== undefined && retryUntil(error)) || (retryWhile !== undefined && !retryWhile(error))) {
        return undefined
      }
      if (schedule === undefined) return Effect.succeed(0)
      return Effect.clockWith((clock) =>
        Effect.map(
          Effect.suspend(() =>
            schedule.step(
              clock.unsafeCurrentTimeMillis(),
              error,
              task.attempt === 1 ? schedule.initial : task.scheduleState
            )
          ),
          ([state, , decision]) => {
            if (ScheduleDecision.isDone(decision)) return undefined
            task.scheduleState = state
            return Math.max(0, Intervals.start(decision.intervals) - clock.unsafeCurrentTimeMillis())
          }
        )
      )
    }

    // A task waiting out its backoff sleeps in its own fiber, then queues again: it holds no worker.
    const retryLater = (task: Task<I>, delay: number) =>
      Effect.suspend(() => {
        stats.waitingRetry++
        return FiberSet.run(
          fibers,
          Effect.interruptible(
            Effect.sleep(delay).pipe(
              Effect.zipRight(input.offerAll([task])),
              Effect.ensuring(Effect.sync(() => stats.waitingRetry--))
            )
          )
        )
      })

    // ---- workers ------------------------------------------------------------------------------------------------

    // Tasks a worker settles in a row without an Effect step before it yields to other fibers.
    const burstMax = 256
    const limiterTake = (task: Task<I>) => limiter.take({ workerId: task.workerId, taskId: task.id })
    const deadline = Option.getOrUndefined(taskTimeout)
    const runHandler = (task: Task<I>): Effect.Effect<A, Failure<E>> => {
      // Calling the handler directly saves a step per task; a throw becomes a defect, as `Effect.suspend` would.
      let run: Effect.Effect<A, E>
      if (limited) {
        run = Effect.suspend(() => handler(task.input, task))
      } else {
        try {
          run = handler(task.input, task)
        } catch (defect) {
          run = Effect.die(defect)
        }
      }
      const timed = deadline === undefined ? run : Effect.timeoutFail(run, {
        duration: deadline,
        onTimeout: () => new TaskEngineError({ reason: "TaskTimeout", taskId: task.id, timeout: deadline })
      })
      return limited ? Effect.zipRight(limiterTake(task), timed) : timed
    }

    // The worker is interruptible throughout: its bookkeeping is synchronous (one step, never cut in two), and the
    // only interruptions it gets are engine shutdown and `cancel`, which targets a worker suspended inside an
    // attempt of the cancelled call (nothing of another call is lost). The task in hand is `slot.current`, so the
    // per-task path allocates no closures.
    const worker = (workerId: number) =>
      Effect.withFiberRuntime<never>((fiber) => {
        const slot: WorkerSlot<I> = { workerId, fiber, current: undefined }
        workerSlots[workerId] = slot
        // eslint-disable-next-line prefer-const
        let loop: Effect.Effect<never>

        const deliver = (task: Task<I>, exit: Exit.Exit<A, Failure<E>>): Effect.Effect<never> => {
          if (exit._tag === "Success") stats.succeeded++
          else stats.failed++
          const delivering = (task.call as Call<I, A, E>).deliver(task, exit)
          return delivering === undefined ? next() : Effect.zipRight(delivering, loop)
        }

        const onSuccess = (value: A): Effect.Effect<never> => {
          const task = slot.current!
          slot.current = undefined
          stats.busy--
          return task.call.cancelled ? next() : deliver(task, Exit.succeed(value))
        }

        const onFailure = (cause: Cause.Cause<Failure<E>>): Effect.Effect<never> => {
          const task = slot.current!
          slot.current = undefined
          stats.busy--
          if (task.call.cancelled) return loop
          const exit = Exit.failCause(cause)
          const delay = retryDelay(task, exit)
          if (delay === undefined) return deliver(task, exit)
          return Effect.flatMap(delay, (millis) => {
            if (millis === undefined) return deliver(task, exit)
            stats.retried++
            return millis === 0 ? attempt(task) : Effect.zipRight(retryLater(task, millis), loop)
          })
        }
        const settled = { onSuccess, onFailure }

        // Starts an attempt. A handler that returned a success outright (as `Effect.succeed` does: an `Exit`) is
        // settled here with no Effect step, and `undefined` says the worker may go on to its next task at once.
        const start = (task: Task<I>): Effect.Effect<never> | undefined => {
          task.attempt++
          task.workerId = workerId
          slot.current = task
          stats.busy++
          const run = runHandler(task)
          if (Exit.isExit(run) && run._tag === "Success") {
            slot.current = undefined
            stats.busy--
            stats.succeeded++
            const delivering = (task.call as Call<I, A, E>).deliver(task, run as Exit.Exit<A, Failure<E>>)
            return delivering === undefined ? undefined : Effect.zipRight(delivering, loop)
          }
          return Effect.matchCauseEffect(run, settled)
        }

        const attempt = (task: Task<I>): Effect.Effect<never> => start(task) ?? next()

        // The next task not cancelled, polled at once; only an empty queue costs a wait. Tasks settled at once run
        // in a burst, and the worker yields after `burstMax` of them, as it would after that many Effect steps.
        let burst = 0
        const next = (): Effect.Effect<never> => {
          for (;;) {
            if (++burst > burstMax) {
              burst = 0
              return yieldThenLoop
            }
            const task = input.poll()
            if (task === undefined) {
              burst = 0
              return waitTake
            }
            if (!task.call.cancelled) {
              const step = start(task)
              if (step !== undefined) {
                burst = 0
                return step
              }
            }
          }
        }
        const waitTake = Effect.flatMap(input.take, (task) => task.call.cancelled ? next() : attempt(task))
        loop = Effect.suspend(next)
        const yieldThenLoop = Effect.zipRight(Effect.yieldNow(), loop)
        return Effect.onExit(loop, () =>
          Effect.sync(() => {
            // Interrupted inside an attempt (cancel or shutdown): that attempt is no longer running.
            if (slot.current !== undefined) {
              slot.current = undefined
              stats.busy--
            }
          }))
      })

    const spawn = (workerId: number): Effect.Effect<void> =>
      Effect.asVoid(FiberSet.run(
        fibers,
        // A worker interrupted to cancel a call is replaced, unless the engine is closing.
        Effect.interruptible(worker(workerId)).pipe(
          Effect.onExit(() => closing ? Effect.void : spawn(workerId))
        )
      ))

    for (let i = 0; i < workers; i++) yield* spawn(i)

    // Progress, when a `Progress` service is provided: sampled every 100 ms (and once at the end) from the
    // counters the workers keep anyway, so the hot path pays nothing for it.
    const progress = yield* Effect.serviceOption(Progress)
    if (Option.isSome(progress)) {
      const session = yield* progress.value.session({ title: options.title ?? "TaskEngine", workers })
      let reported = { total: 0, completed: 0 }
      const report = Effect.suspend(() => {
        const completed = stats.succeeded + stats.failed
        const total = Math.max(reported.total, completed + stats.busy + stats.waitingRetry + input.size)
        const delta = { total: total - reported.total, completed: completed - reported.completed }
        reported = { total, completed }
        return Effect.all([
          session.setQueueSize(input.size),
          delta.total > 0 ? session.addTotal(delta.total) : Effect.void,
          delta.completed > 0 ? session.addCompleted(delta.completed) : Effect.void,
          Effect.forEach(workerSlots, (slot, i) => {
            const task = slot?.current
            return task === undefined
              ? session.workerWaiting(i + 1)
              : session.setWorker(i + 1, `task ${task.id}${task.attempt > 1 ? ` (attempt ${task.attempt})` : ""}`)
          }, { discard: true })
        ], { discard: true })
      })
      yield* Effect.addFinalizer(() => report)
      yield* report.pipe(Effect.zipRight(Effect.sleep("100 millis")), Effect.forever, Effect.interruptible, Effect.forkScoped)
    }

    // Runs before the FiberSet's finalizer (added earlier): no worker is replaced, and every caller settles.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closing = true
        for (const call of active) call.settle()
        active.clear()
        Deferred.unsafeDone(round.started, Effect.interrupt)
        Deferred.unsafeDone(round.done, Effect.interrupt)
        input.shutdown()
        return Queue.shutdown(buffer)
      })
    )

    // ---- applyToAll ---------------------------------------------------------------------------------------------

    const applyToAll = (inputs: Iterable<I>): Effect.Effect<Array<Result<I, A, E>>> =>
      Effect.suspend(() => {
        const array = Array.isArray(inputs) ? inputs as ReadonlyArray<I> : Array.from(inputs)
        const total = array.length
        if (closing) return Effect.interrupt
        if (total === 0) return Effect.succeed([])
        const results: Array<Result<I, A, E>> = new Array(total)
        const finished = Deferred.unsafeMake<Array<Result<I, A, E>>>(FiberId.none)
        let remaining = total
        const call: Call<I, A, E> = {
          cancelled: false,
          deliver: (task, exit) => {
            results[task.index] = new TaskResultImpl(task.id, task.input, task.attempt, exit)
            if (--remaining === 0) Deferred.unsafeDone(finished, Exit.succeed(results))
            return undefined
          },
          settle: () => Deferred.unsafeDone(finished, Effect.interrupt)
        }
        const tasks: Array<Task<I>> = new Array(total)
        const owner = call as Call<I, never, never>
        for (let i = 0; i < total; i++) tasks[i] = new Task(String(++nextId), array[i]!, i, owner)
        active.add(call)
        // Workers run from `make` on, so offering into a bounded queue only waits for them: no deadlock.
        return Effect.zipRight(input.offerAll(tasks), Deferred.await(finished)).pipe(
          Effect.onExit((exit) =>
            Effect.withFiberRuntime<void>((fiber) => {
              active.delete(call)
              if (Exit.isFailure(exit)) cancel(call, fiber.id())
              return Effect.void
            })
          )
        )
      })

    // One input, one result: a call owning a single task.
    const apply = (value: I, applyOptions?: { readonly id?: string | undefined }): Effect.Effect<Result<I, A, E>> =>
      Effect.suspend(() => {
        if (closing) return Effect.interrupt
        const finished = Deferred.unsafeMake<Result<I, A, E>>(FiberId.none)
        const call: Call<I, A, E> = {
          cancelled: false,
          deliver: (task, exit) => {
            Deferred.unsafeDone(finished, Exit.succeed(new TaskResultImpl(task.id, task.input, task.attempt, exit)))
            return undefined
          },
          settle: () => Deferred.unsafeDone(finished, Effect.interrupt)
        }
        const task = new Task(applyOptions?.id ?? String(++nextId), value, 0, call as Call<I, never, never>)
        active.add(call)
        return Effect.zipRight(input.offerAll([task]), Deferred.await(finished)).pipe(
          Effect.onExit((exit) =>
            Effect.withFiberRuntime<void>((fiber) => {
              active.delete(call)
              if (Exit.isFailure(exit)) cancel(call, fiber.id())
              return Effect.void
            })
          )
        )
      })

    // Jobs of a durable queue: leased by `queue.run`, run as tasks (with the engine's retries, rate limit and
    // timeout), acknowledged when the task succeeded, handed back to the queue (its attempts, its dead letters)
    // when it failed.
    const runDurable = (
      queue: DurableQueue.DurableQueue<I>,
      durableOptions?: TaskEngine.TaskEngine.DurableOptions
    ): Effect.Effect<never, OptionError> =>
      Effect.gen(function*() {
        const prefetch = yield* check.integer("prefetch", durableOptions?.prefetch, workers, 0)
        const shutdownTimeout = yield* check.duration("shutdownTimeout", durableOptions?.shutdownTimeout, "30 seconds")
        return yield* queue.run(
          (value, job) => Effect.flatMap(apply(value, { id: job.id }), (result) => result.exit),
          { concurrency: workers + prefetch, shutdownTimeout }
        )
      })

    // ---- applyToEach --------------------------------------------------------------------------------------------

    // Tasks of one `applyToEach` submitted but not yet pulled by its consumer: the backpressure on its inputs.
    const window = workers + (resultCapacity === Infinity ? Math.max(8 * workers, 4096) : resultCapacity)
    const batchSize = Math.max(1, Math.floor(window / 2))

    const applyToEach = <E2, R2>(
      inputs: Iterable<I> | Stream.Stream<I, E2, R2>
    ): Stream.Stream<Result<I, A, E>, E2, R2> =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const permits = yield* Effect.makeSemaphore(window)
        // Results wait in a Mailbox (array-backed, and it carries the end or the input's failure).
        const out = yield* Mailbox.make<Result<I, A, E>, E2>()
        let inflight = 0
        let inputsDone = false
        const call: Call<I, A, E> = {
          cancelled: false,
          deliver: (task, exit) => {
            out.unsafeOffer(new TaskResultImpl(task.id, task.input, task.attempt, exit))
            if (--inflight === 0 && inputsDone) out.unsafeDone(Exit.void)
            return undefined
          },
          settle: () => void out.unsafeDone(Exit.interrupt(FiberId.none))
        }
        const owner = call as Call<I, never, never>
        if (closing) return yield* Effect.interrupt
        active.add(call)
        yield* Effect.addFinalizer(() =>
          Effect.withFiberRuntime<void>((fiber) => {
            active.delete(call)
            cancel(call, fiber.id())
            return Effect.void
          })
        )
        // Inputs go in batches of half the read-ahead: one wake-up of the workers per batch, not per task.
        const submit = (batch: ReadonlyArray<I>): Effect.Effect<void> =>
          Effect.suspend(() => {
            const tasks = new Array<Task<I>>(batch.length)
            for (let i = 0; i < batch.length; i++) tasks[i] = new Task(String(++nextId), batch[i]!, 0, owner)
            inflight += batch.length
            return input.offerAll(tasks)
          })
        const feed: Effect.Effect<void, E2, R2> = Stream.StreamTypeId in inputs
          ? Stream.runForEachChunk(inputs as Stream.Stream<I, E2, R2>, (chunk) =>
            Effect.suspend(() => {
              const all = Chunk.toReadonlyArray(chunk)
              const slices: Array<ReadonlyArray<I>> = []
              for (let i = 0; i < all.length; i += batchSize) slices.push(all.slice(i, i + batchSize))
              return Effect.forEach(slices, (slice) => Effect.zipRight(permits.take(slice.length), submit(slice)), {
                discard: true
              })
            }))
          : Effect.suspend(() => {
            const iterator = (inputs as Iterable<I>)[Symbol.iterator]()
            const loop: Effect.Effect<void> = Effect.flatMap(permits.take(batchSize), () => {
              const batch: Array<I> = []
              let next = iterator.next()
              while (next.done !== true) {
                batch.push(next.value)
                if (batch.length === batchSize) break
                next = iterator.next()
              }
              const unused = batchSize - batch.length
              const release = unused > 0 ? permits.release(unused) : Effect.void
              if (batch.length === 0) return release
              return Effect.zipRight(Effect.zipRight(release, submit(batch)), unused > 0 ? Effect.void : loop)
            })
            return loop
          })
        yield* feed.pipe(
          Effect.onExit((exit) =>
            Effect.sync(() => {
              if (Exit.isSuccess(exit)) {
                inputsDone = true
                if (inflight === 0) out.unsafeDone(Exit.void)
              } else {
                // Also when interrupted: the engine may be closing, and the consumer must not wait for more.
                out.unsafeDone(exit)
              }
            })
          ),
          Effect.forkScoped
        )

        const release = (chunk: Chunk.Chunk<Result<I, A, E>>) =>
          chunk.length === 0 ? Effect.succeed(chunk) : Effect.as(permits.release(chunk.length), chunk)
        // After the end, `takeAll` gives an empty chunk marked done (or fails with the input's error).
        const takeAll = Effect.mapError(out.takeAll, Option.some)
        const pull: Effect.Effect<Chunk.Chunk<Result<I, A, E>>, Option.Option<E2>> = Effect.flatMap(
          takeAll,
          ([first, done]) => {
            if (done || first.length >= 64) return first.length === 0 ? Effect.fail(Option.none()) : release(first)
            // Woken by the first result: let the workers run a turn and take what else came in, so fast tasks
            // flow downstream in chunks rather than one pull per result.
            return Effect.flatMap(Effect.yieldNow(), () => {
              const waiting = Option.getOrElse(out.unsafeSize(), () => 0)
              if (waiting <= 0) return release(first)
              return Effect.flatMap(takeAll, ([rest]) => release(Chunk.appendAll(first, rest)))
            })
          }
        )
        return Stream.repeatEffectChunkOption(pull)
      }))

    // ---- manual flow --------------------------------------------------------------------------------------------

    const finishRound = (r: Round) => {
      buffer.unsafeOffer(new RoundEnd(r))
      Deferred.unsafeDone(r.done, Effect.void)
    }

    const roundCall = (r: Round): Call<I, A, E> => ({
      cancelled: false,
      deliver: (task, exit) => {
        const put = () => {
          buffer.unsafeOffer(new TaskResultImpl(task.id, task.input, task.attempt, exit))
          if (++r.finished === r.added && r.ended) finishRound(r)
        }
        if (slots === undefined) {
          put()
          return undefined
        }
        // A full result buffer pauses the worker until someone takes a result.
        return Effect.zipRight(slots.take(1), Effect.sync(put))
      },
      settle: () => {}
    })
    let currentCall = roundCall(round)

    const endRound = () => {
      const r = round
      r.ended = true
      round = newRound()
      currentCall = roundCall(round)
      if (r.finished === r.added) finishRound(r)
      return r
    }

    const add = (value: I, addOptions?: { readonly id?: string | undefined }): Effect.Effect<string> =>
      Effect.suspend(() => {
        const r = round
        const task = new Task(addOptions?.id ?? String(++nextId), value, 0, currentCall as Call<I, never, never>)
        if (r.added++ === 0) Deferred.unsafeDone(r.started, Effect.void)
        return input.offerAll([task]).pipe(
          Effect.onInterrupt(() =>
            Effect.sync(() => {
              // Never queued: it must not keep its round from ending.
              if (--r.added === r.finished && r.ended) finishRound(r)
            })
          ),
          Effect.as(task.id)
        )
      })

    const end = Effect.sync(() => void endRound())

    // With a `startTimeout`, waiting on a round that has no task yet fails once the round has been open that long.
    const awaitStart: Effect.Effect<void, TaskEngineError> = Effect.suspend(() => {
      const r = round
      if (r.added > 0 || Option.isNone(startTimeout)) return Effect.void
      const timeout = startTimeout.value
      const left = Math.max(0, r.openedAt + Duration.toMillis(timeout) - clock.unsafeCurrentTimeMillis())
      return Deferred.await(r.started).pipe(
        Effect.timeoutFail({
          duration: left,
          onTimeout: () => {
            r.openedAt = clock.unsafeCurrentTimeMillis()
            return new TaskEngineError({ reason: "StartTimeout", timeout })
          }
        })
      )
    })

    const releaseSlot = slots === undefined ? Effect.void : slots.release(1)

    const awaitEnd: Effect.Effect<Array<Result<I, A, E>>, TaskEngineError> = Effect.zipRight(
      awaitStart,
      Effect.suspend(() => {
        const r = endRound()
        if (r.markerTaken) return Effect.succeed([])
        r.awaiting = true
        const collected: Array<Result<I, A, E>> = []
        const collect: Effect.Effect<Array<Result<I, A, E>>> = Effect.flatMap(Queue.take(buffer), (item) => {
          if (item instanceof RoundEnd) return item.round === r ? Effect.succeed(collected) : collect
          collected.push(item)
          return Effect.zipRight(releaseSlot, collect)
        })
        return Effect.ensuring(collect, Effect.sync(() => void (r.awaiting = false)))
      })
    )

    const results: Stream.Stream<Result<I, A, E>, TaskEngineError> = Stream.unwrap(Effect.as(
      awaitStart,
      Stream.repeatEffectOption(Effect.flatMap(Queue.take(buffer), (item) => {
        if (item instanceof RoundEnd) {
          // awaitEnd is collecting this round: let it see the end too.
          if (item.round.awaiting) buffer.unsafeOffer(item)
          else item.round.markerTaken = true
          return Effect.fail(Option.none())
        }
        return Effect.as(releaseSlot, item)
      }))
    ))

    const engine: TaskEngine.TaskEngine<I, A, E> = {
      apply,
      applyToAll,
      runDurable,
      applyToEach,
      add,
      end,
      awaitEnd,
      results,
      stats: Effect.sync(() => ({
        workers,
        busy: stats.busy,
        queued: input.size,
        waitingRetry: stats.waitingRetry,
        succeeded: stats.succeeded,
        failed: stats.failed,
        retried: stats.retried
      }))
    }
    return engine
  })

/** @internal */
export const layer = <Id, I, A, E, R>(
  tag: Context.Tag<Id, TaskEngine.TaskEngine<I, A, E>>,
  options: TaskEngine.TaskEngine.Options<I, A, E, R>
): Layer.Layer<Id, OptionError, R> => Layer.scoped(tag, make(options))

/** @internal */
export const applyToAll = <I, A, E, R>(
  inputs: Iterable<I>,
  handler: (input: I, task: TaskEngine.TaskEngine.TaskInfo) => Effect.Effect<A, E, R>,
  options: Omit<TaskEngine.TaskEngine.Options<I, A, E, R>, "handler">
): Effect.Effect<Array<Result<I, A, E>>, OptionError, R> =>
  Effect.scoped(Effect.flatMap(make({ ...options, handler }), (engine) => engine.applyToAll(inputs)))

/** @internal */
export const applyToEach = <I, A, E, R, E2 = never, R2 = never>(
  inputs: Iterable<I> | Stream.Stream<I, E2, R2>,
  handler: (input: I, task: TaskEngine.TaskEngine.TaskInfo) => Effect.Effect<A, E, R>,
  options: Omit<TaskEngine.TaskEngine.Options<I, A, E, R>, "handler">
): Stream.Stream<Result<I, A, E>, OptionError | E2, R | R2> =>
  Stream.unwrapScoped(Effect.map(make({ ...options, handler }), (engine) => engine.applyToEach(inputs)))

/** @internal */
export const runDurable = <I, A, E, R>(
  queue: DurableQueue.DurableQueue<I>,
  handler: (input: I, task: TaskEngine.TaskEngine.TaskInfo) => Effect.Effect<A, E, R>,
  options: Omit<TaskEngine.TaskEngine.Options<I, A, E, R>, "handler"> & TaskEngine.TaskEngine.DurableOptions
): Effect.Effect<never, OptionError, R> =>
  Effect.scoped(Effect.flatMap(make({ ...options, handler }), (engine) => engine.runDurable(queue, options)))
