/**
 * The three kinds of call that own tasks outside the manual flow: `applyToAll` (results in input order), `apply`
 * (one task) and `applyToEach` (a stream in completion order, reading its inputs only as fast as results are
 * consumed). Each is a `Call` the workers deliver to; `EngineCore.track` cancels it when its caller goes away.
 */
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"
import { TaskResultImpl } from "../taskEngineResult.js"
import type { EngineCore, TaskSettings } from "./engine.js"
import type { Call, Failure, Result, Task } from "./task.js"

const resultOf = <I, A, E>(task: Task<I>, exit: Exit.Exit<A, Failure<E>>): Result<I, A, E> =>
  new TaskResultImpl(task.id, task.input, task.attempt, exit)

/** Offers tasks, then sets the engine's queued gauge (an offer into a full queue waits for room first). */
const offered = <I, A, E>(core: EngineCore<I, A, E>, tasks: ReadonlyArray<Task<I>>): Effect.Effect<void> =>
  Effect.zipRight(core.input.offerAll(tasks), Effect.sync(() => core.gauges()))

/** Collects a batch's results in input order. */
class AllCall<I, A, E> implements Call<I, A, E> {
  cancelled = false
  queued = 0
  span: Tracer.AnySpan | undefined = undefined
  readonly finished = Deferred.unsafeMake<Array<Result<I, A, E>>>(FiberId.none)
  private readonly results: Array<Result<I, A, E>>
  constructor(private remaining: number) {
    this.results = new Array(remaining)
  }
  deliver(task: Task<I>, exit: Exit.Exit<A, Failure<E>>): undefined {
    this.results[task.index] = resultOf(task, exit)
    if (--this.remaining === 0) Deferred.unsafeDone(this.finished, Exit.succeed(this.results))
    return undefined
  }
  settle(): void {
    Deferred.unsafeDone(this.finished, Exit.interrupt(FiberId.none))
  }
}

/** @internal */
export const applyToAll = <I, A, E>(
  core: EngineCore<I, A, E>,
  inputs: Iterable<I>,
  settings: TaskSettings
): Effect.Effect<Array<Result<I, A, E>>> =>
  Effect.withFiberRuntime((fiber) => {
    const array = Array.isArray(inputs) ? inputs as ReadonlyArray<I> : Array.from(inputs)
    const total = array.length
    if (core.closing) return Effect.interrupt
    if (total === 0) return Effect.succeed([])
    const call = new AllCall<I, A, E>(total)
    call.span = fiber.currentSpan
    const tasks = core.tasks(array, call, settings, true)
    // Workers run from `make` on, so offering into a bounded queue only waits for them: no deadlock.
    return core.track(call, Effect.zipRight(offered(core, tasks), Deferred.await(call.finished)))
  })

/** One input, one result. */
class OneCall<I, A, E> implements Call<I, A, E> {
  cancelled = false
  queued = 0
  span: Tracer.AnySpan | undefined = undefined
  readonly finished = Deferred.unsafeMake<Result<I, A, E>>(FiberId.none)
  deliver(task: Task<I>, exit: Exit.Exit<A, Failure<E>>): undefined {
    Deferred.unsafeDone(this.finished, Exit.succeed(resultOf(task, exit)))
    return undefined
  }
  settle(): void {
    Deferred.unsafeDone(this.finished, Exit.interrupt(FiberId.none))
  }
}

/** @internal */
export const apply = <I, A, E>(
  core: EngineCore<I, A, E>,
  input: I,
  settings: TaskSettings,
  id: string | undefined,
  /** Sets up the task before it is queued (`runDurable`: the job's progress). */
  prepare?: (task: Task<I>) => void
): Effect.Effect<Result<I, A, E>> =>
  Effect.withFiberRuntime((fiber) => {
    const call = new OneCall<I, A, E>()
    call.span = fiber.currentSpan
    const task = core.task(input, 0, call, settings, id)
    prepare?.(task)
    return core.track(call, Effect.zipRight(offered(core, [task]), Deferred.await(call.finished)))
  })

/** Results of one `applyToEach`, waiting in a Mailbox (array-backed; it carries the end or the input's failure). */
class EachCall<I, A, E, E2> implements Call<I, A, E> {
  cancelled = false
  queued = 0
  span: Tracer.AnySpan | undefined = undefined
  inflight = 0
  inputsDone = false
  constructor(readonly out: Mailbox.Mailbox<Result<I, A, E>, E2>) {}
  deliver(task: Task<I>, exit: Exit.Exit<A, Failure<E>>): undefined {
    this.out.unsafeOffer(resultOf(task, exit))
    if (--this.inflight === 0 && this.inputsDone) this.out.unsafeDone(Exit.void)
    return undefined
  }
  settle(): void {
    this.out.unsafeDone(Exit.interrupt(FiberId.none))
  }
  /** The inputs ended: with success, the stream ends after the last result; otherwise at once. */
  inputsEnded(exit: Exit.Exit<void, E2>): void {
    if (exit._tag === "Success") {
      this.inputsDone = true
      if (this.inflight === 0) this.out.unsafeDone(Exit.void)
    } else {
      // Also when interrupted: the engine may be closing, and the consumer must not wait for more.
      this.out.unsafeDone(exit)
    }
  }
}

// Feeds an iterable or a stream to `submit` in batches of `batchSize`, each taking that many read-ahead permits.
const feed = <I, E2, R2>(
  inputs: Iterable<I> | Stream.Stream<I, E2, R2>,
  batchSize: number,
  permits: Effect.Semaphore,
  submit: (batch: ReadonlyArray<I>) => Effect.Effect<void>
): Effect.Effect<void, E2, R2> => {
  if (Stream.StreamTypeId in inputs) {
    return Stream.runForEachChunk(inputs as Stream.Stream<I, E2, R2>, (chunk) =>
      Effect.suspend(() => {
        const all = Chunk.toReadonlyArray(chunk)
        const slices: Array<ReadonlyArray<I>> = []
        for (let i = 0; i < all.length; i += batchSize) slices.push(all.slice(i, i + batchSize))
        return Effect.forEach(slices, (slice) => Effect.zipRight(permits.take(slice.length), submit(slice)), {
          discard: true
        })
      }))
  }
  return Effect.suspend(() => {
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
}

/**
 * @param window tasks of one `applyToEach` submitted but not yet pulled by its consumer: the backpressure on its
 *   inputs. Inputs go in batches of half of it: one wake-up of the workers per batch, not per task.
 * @internal
 */
export const applyToEach = <I, A, E, E2, R2>(
  core: EngineCore<I, A, E>,
  inputs: Iterable<I> | Stream.Stream<I, E2, R2>,
  settings: TaskSettings,
  window: number
): Stream.Stream<Result<I, A, E>, E2, R2> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const batchSize = Math.max(1, Math.floor(window / 2))
    const permits = yield* Effect.makeSemaphore(window)
    const call = new EachCall<I, A, E, E2>(yield* Mailbox.make<Result<I, A, E>, E2>())
    call.span = yield* Effect.withFiberRuntime<Tracer.AnySpan | undefined>((fiber) => Effect.succeed(fiber.currentSpan))
    if (core.closing) return yield* Effect.interrupt
    core.active.add(call)
    yield* Effect.addFinalizer(() =>
      Effect.withFiberRuntime<void>((fiber) => Effect.sync(() => core.cancel(call, fiber.id())))
    )
    const submit = (batch: ReadonlyArray<I>): Effect.Effect<void> =>
      Effect.suspend(() => {
        call.inflight += batch.length
        return offered(core, core.tasks(batch, call, settings, false))
      })
    yield* feed(inputs, batchSize, permits, submit).pipe(
      Effect.onExit((exit) => Effect.sync(() => call.inputsEnded(exit))),
      Effect.forkScoped
    )
    const release = (chunk: Chunk.Chunk<Result<I, A, E>>) =>
      chunk.length === 0 ? Effect.succeed(chunk) : Effect.as(permits.release(chunk.length), chunk)
    // After the end, `takeAll` gives an empty chunk marked done (or fails with the input's error).
    const takeAll = Effect.mapError(call.out.takeAll, Option.some)
    const pull: Effect.Effect<Chunk.Chunk<Result<I, A, E>>, Option.Option<E2>> = Effect.flatMap(
      takeAll,
      ([first, done]) => {
        if (done || first.length >= 64) return first.length === 0 ? Effect.fail(Option.none()) : release(first)
        // Woken by the first result: let the workers run a turn and take what else came in, so fast tasks flow
        // downstream in chunks rather than one pull per result.
        return Effect.flatMap(Effect.yieldNow(), () => {
          const waiting = Option.getOrElse(call.out.unsafeSize(), () => 0)
          if (waiting <= 0) return release(first)
          return Effect.flatMap(takeAll, ([rest]) => release(Chunk.appendAll(first, rest)))
        })
      }
    )
    return Stream.repeatEffectChunkOption(pull)
  }))
