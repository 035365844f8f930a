/**
 * The manual flow: `add` queues tasks into the current round, `results` streams them in completion order,
 * `end` / `awaitEnd` close the round (the next `add` opens another). A round's end is a marker in the result
 * buffer, so a `results` stream and `awaitEnd` each see where their round stops. A bounded `resultCapacity` is a
 * semaphore the workers take before they put a result: a full buffer pauses them.
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import { TaskEngineError } from "../taskEngineError.js"
import { TaskResultImpl } from "../taskEngineResult.js"
import type { EngineCore, TaskSettings } from "./engine.js"
import type { Call, Failure, Result, Task } from "./task.js"

class Round {
  added = 0
  finished = 0
  ended = false
  // awaitEnd is collecting this round's results: a `results` stream must hand its end marker back.
  awaiting = false
  markerTaken = false
  readonly started = Deferred.unsafeMake<void>(FiberId.none)
  readonly done = Deferred.unsafeMake<void>(FiberId.none)
  constructor(public openedAt: number) {}
}

// The end of a round, in the result buffer.
class RoundEnd {
  constructor(readonly round: Round) {}
}

/** The call that owns a round's tasks: it puts their results into the buffer. */
class RoundCall<I, A, E> implements Call<I, A, E> {
  cancelled = false
  queued = 0
  constructor(private readonly rounds: Rounds<I, A, E>, readonly round: Round) {}
  deliver(task: Task<I>, exit: Exit.Exit<A, Failure<E>>): Effect.Effect<void> | undefined {
    const slots = this.rounds.slots
    if (slots === undefined) {
      this.put(task, exit)
      return undefined
    }
    // A full result buffer pauses the worker until someone takes a result.
    return Effect.zipRight(slots.take(1), Effect.sync(() => this.put(task, exit)))
  }
  private put(task: Task<I>, exit: Exit.Exit<A, Failure<E>>): void {
    this.rounds.buffer.unsafeOffer(new TaskResultImpl(task.id, task.input, task.attempt, exit))
    const r = this.round
    if (++r.finished === r.added && r.ended) this.rounds.finish(r)
  }
  settle(): void {}
}

/** @internal */
export class Rounds<I, A, E> {
  private round: Round
  private call: RoundCall<I, A, E>
  private readonly releaseSlot: Effect.Effect<void>

  constructor(
    private readonly core: EngineCore<I, A, E>,
    readonly buffer: Queue.Queue<Result<I, A, E> | RoundEnd>,
    readonly slots: Effect.Semaphore | undefined,
    private readonly startTimeout: Option.Option<Duration.Duration>,
    private readonly now: () => number
  ) {
    this.round = new Round(now())
    this.call = new RoundCall(this, this.round)
    this.releaseSlot = slots === undefined ? Effect.void : slots.release(1)
  }

  finish(r: Round): void {
    this.buffer.unsafeOffer(new RoundEnd(r))
    Deferred.unsafeDone(r.done, Effect.void)
  }

  private endRound(): Round {
    const r = this.round
    r.ended = true
    this.round = new Round(this.now())
    this.call = new RoundCall(this, this.round)
    if (r.finished === r.added) this.finish(r)
    return r
  }

  add(value: I, settings: TaskSettings, id: string | undefined): Effect.Effect<string> {
    return Effect.suspend(() => {
      const r = this.round
      const task = this.core.task(value, 0, this.call, settings, id)
      if (r.added++ === 0) Deferred.unsafeDone(r.started, Effect.void)
      return this.core.input.offerAll([task]).pipe(
        Effect.onInterrupt(() =>
          Effect.sync(() => {
            // Never queued: it must not keep its round from ending.
            if (--r.added === r.finished && r.ended) this.finish(r)
          })
        ),
        Effect.as(task.id)
      )
    })
  }

  readonly end: Effect.Effect<void> = Effect.sync(() => void this.endRound())

  // With a `startTimeout`, waiting on a round that has no task yet fails once the round has been open that long.
  private readonly awaitStart: Effect.Effect<void, TaskEngineError> = Effect.suspend(() => {
    const r = this.round
    if (r.added > 0 || Option.isNone(this.startTimeout)) return Effect.void
    const timeout = this.startTimeout.value
    const left = Math.max(0, r.openedAt + Duration.toMillis(timeout) - this.now())
    return Deferred.await(r.started).pipe(
      Effect.timeoutFail({
        duration: left,
        onTimeout: () => {
          r.openedAt = this.now()
          return new TaskEngineError({ reason: "StartTimeout", timeout })
        }
      })
    )
  })

  readonly awaitEnd: Effect.Effect<Array<Result<I, A, E>>, TaskEngineError> = Effect.zipRight(
    this.awaitStart,
    Effect.suspend(() => {
      const r = this.endRound()
      if (r.markerTaken) return Effect.succeed([])
      r.awaiting = true
      const collected: Array<Result<I, A, E>> = []
      const collect: Effect.Effect<Array<Result<I, A, E>>> = Effect.flatMap(Queue.take(this.buffer), (item) => {
        if (item instanceof RoundEnd) return item.round === r ? Effect.succeed(collected) : collect
        collected.push(item)
        return Effect.zipRight(this.releaseSlot, collect)
      })
      return Effect.ensuring(collect, Effect.sync(() => void (r.awaiting = false)))
    })
  )

  readonly results: Stream.Stream<Result<I, A, E>, TaskEngineError> = Stream.unwrap(Effect.as(
    this.awaitStart,
    Stream.repeatEffectOption(Effect.flatMap(Effect.suspend(() => Queue.take(this.buffer)), (item) => {
      if (item instanceof RoundEnd) {
        // awaitEnd is collecting this round: let it see the end too.
        if (item.round.awaiting) this.buffer.unsafeOffer(item)
        else item.round.markerTaken = true
        return Effect.fail(Option.none())
      }
      return Effect.as(this.releaseSlot, item)
    }))
  ))

  /** Part of the engine's shutdown: whoever waits on the round or the buffer is interrupted. */
  shutdown(): Effect.Effect<void> {
    return Effect.suspend(() => {
      Deferred.unsafeDone(this.round.started, Effect.interrupt)
      Deferred.unsafeDone(this.round.done, Effect.interrupt)
      return Queue.shutdown(this.buffer)
    })
  }
}

/** @internal */
export type Buffer<I, A, E> = Queue.Queue<Result<I, A, E> | RoundEnd>

/** @internal */
export const makeBuffer = <I, A, E>(): Effect.Effect<Buffer<I, A, E>> => Queue.unbounded<Result<I, A, E> | RoundEnd>()
