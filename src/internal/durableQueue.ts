/**
 * What every `DurableQueue` backend shares: the error, and `run` (N takers in a loop, graceful on interruption)
 * built on a backend's `take`.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import type * as DurableQueue from "../DurableQueue.js"

/** @internal */
export class DurableQueueError extends Schema.TaggedError<DurableQueueError>("effect-workers/DurableQueueError")(
  "DurableQueueError",
  {
    reason: Schema.Literal("StoreFailed", "EncodeFailed"),
    /** Which store: "redis", "sql" or "memory". */
    backend: Schema.String,
    queue: Schema.String,
    cause: Schema.optional(Schema.Defect)
  }
) {
  override get message(): string {
    const cause = this.cause === undefined ? "" : `: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
    return `DurableQueue ${this.queue}: ${
      this.reason === "StoreFailed" ? `the ${this.backend} store failed` : "cannot encode a job"
    }${cause}`
  }
}

/**
 * A backend's `take`, with `graceful`: when true, interrupting the taker does not interrupt a running handler (only
 * the wait for a job), so `run` can let running jobs finish and be acknowledged on shutdown.
 *
 * @internal
 */
export type Take<A> = <X, E, R>(
  handler: (value: A, job: DurableQueue.Job) => Effect.Effect<X, E, R>,
  graceful: boolean
) => Effect.Effect<Exit.Exit<X, E>, DurableQueueError, R>

/** `run` on top of a backend's `take`. @internal */
export const makeRun = <A>(take: Take<A>): DurableQueue.DurableQueue<A>["run"] => (handler, runOptions) =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      const concurrency = Math.max(1, runOptions?.concurrency ?? 1)
      const shutdownTimeout = Duration.decode(runOptions?.shutdownTimeout ?? "30 seconds")
      const loop = take(handler, true).pipe(
        Effect.catchAll((error) =>
          Effect.zipRight(Effect.logWarning("DurableQueue: taking a job failed; retrying", error), Effect.sleep("500 millis"))
        ),
        Effect.forever,
        Effect.interruptible
      )
      // Daemons, not children: a fiber waits for its children's interruption when it ends, so a handler still
      // running (uninterruptibly) after `shutdownTimeout` would otherwise hold `run` forever.
      const fibers = yield* Effect.forEach(Array.from({ length: concurrency }), () => Effect.forkDaemon(loop))
      return yield* restore(Fiber.joinAll(fibers)).pipe(
        Effect.zipRight(Effect.never),
        // Takers waiting for a job stop at once; running jobs finish. A job still running after
        // `shutdownTimeout` is left to its lease (it comes back once the process is gone).
        // (The wait is made interruptible: a finalizer runs uninterruptibly, where the timeout could not cut it.)
        Effect.onExit(() => Effect.ignore(Effect.timeout(Effect.interruptible(Fiber.interruptAll(fibers)), shutdownTimeout)))
      )
    })
  )
