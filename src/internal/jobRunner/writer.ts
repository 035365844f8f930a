/**
 * The writer loop: refill the queue when it is under 30 % of its maximum, asking the writer for
 * `desiredCount(...)` items; skip items seen within the prevent-requeue window (recorded only once really queued);
 * back off, doubling, while the writer has nothing; with `stopWhenEmpty`, end once the writer has nothing more and
 * every queued item is done.
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as Api from "../../JobRunner.js"
import { type AnyRunner, isPromiseLike } from "./definition.js"
import { desiredCount, type JobQueue, needsRefill, type RequeueWindow } from "./jobQueue.js"
import type { WriterState } from "./stats.js"

/** @internal */
export const toStream = (out: Api.WriterOutput<unknown, unknown>): Stream.Stream<unknown, unknown, unknown> => {
  if (Stream.StreamTypeId in (out as object)) return out as Stream.Stream<unknown, unknown, unknown>
  if (Effect.isEffect(out)) {
    return Stream.unwrap(Effect.map(out as Effect.Effect<Iterable<unknown>, unknown, unknown>, Stream.fromIterable))
  }
  if (isPromiseLike(out)) {
    return Stream.unwrap(
      Effect.map(Effect.tryPromise(() => out as PromiseLike<Iterable<unknown>>), Stream.fromIterable)
    )
  }
  if (Symbol.asyncIterator in (out as object)) {
    return Stream.fromAsyncIterable(out as AsyncIterable<unknown>, (e) => e)
  }
  return Stream.fromIterable(out as Iterable<unknown>)
}

const syncIterator = (out: unknown): Iterator<unknown> | undefined => {
  if (Array.isArray(out)) return out[Symbol.iterator]()
  if (
    typeof out !== "object" || out === null || Stream.StreamTypeId in out || Effect.isEffect(out) ||
    isPromiseLike(out) || Symbol.asyncIterator in out || !(Symbol.iterator in out)
  ) return undefined
  return (out as Iterable<unknown>)[Symbol.iterator]()
}

/** @internal */
export interface WriterDeps {
  readonly runner: AnyRunner
  readonly settings: Api.Settings
  readonly queue: JobQueue
  readonly window: RequeueWindow
  readonly writerContext: Context.Context<unknown>
  readonly clock: Clock.Clock
  /** Completed when, with `stopWhenEmpty`, everything is done. */
  readonly done: Deferred.Deferred<void>
  /** Where the loop says what it is doing (the dashboard reads it). */
  readonly stats?: { writerState: WriterState } | undefined
}

/** @internal */
export class Writer {
  constructor(private readonly deps: WriterDeps) {}

  /** Offers one item: skipped if seen within the window; recorded only once it is really queued. */
  private offer(item: unknown): Effect.Effect<boolean> {
    const { clock, queue, runner, window } = this.deps
    return Effect.suspend(() => {
      const key = runner.key(item)
      if (window.enabled && window.has(key, clock.unsafeCurrentTimeMillis())) return Effect.succeed(false)
      return Effect.map(queue.waitForSpace, (room) => {
        if (!room) return false
        queue.push(item)
        if (window.enabled) window.record(key, clock.unsafeCurrentTimeMillis())
        return true
      })
    })
  }

  /**
   * The writer's usual output, an array or another sync iterable, is offered without an Effect per item while the
   * queue has room; the Clock (the fiber's, so TestClock drives it) is read once per batch, as no fiber can run
   * between two items. An item that finds the queue full goes through `offer`, which waits for room, and the rest
   * of the batch carries on here.
   */
  private offerBatch(iterator: Iterator<unknown>): Effect.Effect<number> {
    const { clock, queue, runner, window } = this.deps
    let queued = 0
    const loop = (): Effect.Effect<number> => {
      const now = window.enabled ? clock.unsafeCurrentTimeMillis() : 0
      for (;;) {
        if (queue.stopping) return Effect.succeed(queued)
        const next = iterator.next()
        if (next.done === true) return Effect.succeed(queued)
        const item: unknown = next.value
        if (queue.isFull) {
          return Effect.flatMap(this.offer(item), (ok) => {
            if (ok) queued++
            return loop()
          })
        }
        const key = runner.key(item)
        if (window.enabled) {
          if (window.has(key, now)) continue
          window.record(key, now)
        }
        queue.push(item)
        queued++
      }
    }
    return Effect.suspend(loop)
  }

  /** Asks the writer once; how many items were queued. A writer failure is logged and counts as nothing. */
  pull(desired: number): Effect.Effect<number> {
    const { clock, runner, settings, window, writerContext } = this.deps
    const writerFn = runner.writer ?? (() => [])
    return Effect.suspend(() => {
      if (window.enabled) window.prune(clock.unsafeCurrentTimeMillis())
      const out = writerFn(desired, settings)
      const iterator = syncIterator(out)
      if (iterator !== undefined) return this.offerBatch(iterator)
      let queued = 0
      return (toStream(out).pipe(
        Stream.runForEach((item) =>
          Effect.map(this.offer(item), (ok) => {
            if (ok) queued++
          })
        ),
        Effect.provide(writerContext)
      ) as Effect.Effect<void, unknown>).pipe(Effect.map(() => queued))
    }).pipe(
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.failCause(cause as Cause.Cause<never>)
          : Effect.as(Effect.logWarning(`JobRunner ${runner.name}: the writer failed`, cause), 0)
      )
    )
  }

  /** Runs until the run stops (or, with `stopWhenEmpty`, everything is done). */
  get loop(): Effect.Effect<void> {
    const { done, queue, settings } = this.deps
    const state = (now: WriterState) => {
      if (this.deps.stats !== undefined) this.deps.stats.writerState = now
    }
    return Effect.gen(this, function*() {
      const base = settings.emptyQueueSleepTime
      let backoff = base
      let emptyWhileIdle = false
      while (!queue.stopping) {
        if (!needsRefill(queue.max, queue.length)) {
          state("full")
          // Woken early as soon as readers take the queue under the threshold.
          yield* queue.belowThreshold.waitOr(Effect.sleep(settings.fullQueueSleepTime), Deferred.await(queue.stop))
          continue
        }
        state("asking")
        const queued = yield* this.pull(desiredCount(queue.max, settings.lookupBlockSize, queue.length))
        if (queued > 0) {
          backoff = base
          emptyWhileIdle = false
          continue
        }
        if (settings.stopWhenEmpty) {
          // Nothing more for now: wait until every queued item is done, then ask once more before stopping.
          if (emptyWhileIdle && queue.length === 0 && queue.inFlight === 0) {
            state("stopped")
            yield* Deferred.succeed(done, undefined)
            return
          }
          state("draining")
          while (!queue.stopping && (queue.inFlight > 0 || queue.length > 0)) {
            yield* queue.idle.waitOr(Deferred.await(queue.stop))
          }
          emptyWhileIdle = true
          continue
        }
        state("idle")
        yield* Effect.raceFirst(Effect.sleep(backoff), Deferred.await(queue.stop))
        backoff = Duration.min(Duration.times(backoff, 2), Duration.max(settings.emptyQueueMaxSleepTime, base))
      }
      state("stopped")
    })
  }
}
