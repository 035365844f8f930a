/**
 * `DurableQueue.memory`: the `DurableQueue` contract in one process, with no store, for tests of code that takes a
 * `DurableQueue`. Jobs are kept encoded by the schema (so a value that does not encode fails the offer, as on a
 * real backend) and decoded when taken. There is no lease: an in-process taker cannot die without settling its
 * job, so `leaseDuration` and `pollInterval` are checked and otherwise unused. Nothing outlives the scope.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as DurableQueue from "../DurableQueue.js"
import type { OptionError } from "../OptionError.js"
import { DurableQueueError, makeRun } from "./durableQueue.js"
import { checker } from "./options.js"

const check = checker("DurableQueue")

interface Entry<I> {
  readonly id: string
  readonly encoded: I
  /** Attempts made. */
  attempts: number
}

/** @internal */
export const make = <A, I>(
  options: DurableQueue.Options<A, I>
): Effect.Effect<DurableQueue.DurableQueue<A>, OptionError, Scope.Scope> =>
  Effect.gen(function*() {
    const name = yield* check.require("name", options.name, typeof options.name === "string" && options.name.length > 0, "a non-empty string")
    const maxAttempts = yield* check.integer("maxAttempts", options.maxAttempts, 3, 1)
    yield* check.duration("leaseDuration", options.leaseDuration, "30 seconds")
    yield* check.duration("pollInterval", options.pollInterval, "100 millis")
    const encode = Schema.encode(options.schema)
    const decode = Schema.decodeUnknown(options.schema)

    const ready = yield* Effect.acquireRelease(Queue.unbounded<Entry<I>>(), Queue.shutdown)
    const ids = new Set<string>()
    const dead: Array<DurableQueue.DeadLetter<I>> = []
    let leased = 0

    const take = <X, E, R>(
      handler: (value: A, job: DurableQueue.Job) => Effect.Effect<X, E, R>,
      graceful = false
    ): Effect.Effect<Exit.Exit<X, E>, DurableQueueError, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(Queue.take(ready)), (entry) => {
          leased++
          const attempt = entry.attempts + 1
          const run = Effect.flatMap(Effect.orDie(decode(entry.encoded)), (value) => handler(value, { id: entry.id, attempt }))
          return Effect.flatMap(graceful ? Effect.exit(run) : Effect.exit(restore(run)), (exit): Effect.Effect<Exit.Exit<X, E>> => {
            leased--
            if (Exit.isSuccess(exit)) return Effect.succeed(exit)
            if (Cause.isInterruptedOnly(exit.cause)) {
              return Effect.zipRight(Queue.offer(ready, entry), Effect.failCause(exit.cause as Cause.Cause<never>))
            }
            entry.attempts = attempt
            if (attempt >= maxAttempts) {
              dead.push({ id: entry.id, value: entry.encoded, attempts: attempt, lastError: Cause.pretty(exit.cause) })
              return Effect.succeed(exit)
            }
            return Effect.as(Queue.offer(ready, entry), exit)
          })
        })
      )

    return {
      name,
      offer: (value, offerOptions) =>
        encode(value).pipe(
          Effect.mapError((cause) => new DurableQueueError({ reason: "EncodeFailed", backend: "memory", queue: name, cause })),
          Effect.flatMap((encoded) => {
            const id = offerOptions?.id ?? globalThis.crypto.randomUUID()
            if (ids.has(id)) return Effect.succeed(id)
            ids.add(id)
            return Effect.as(Queue.offer(ready, { id, encoded, attempts: 0 }), id)
          })
        ),
      take,
      run: makeRun(take),
      size: Effect.map(Queue.size(ready), (waiting) => Math.max(0, waiting) + leased),
      deadLetters: Effect.forEach(dead, (letter) =>
        decode(letter.value).pipe(
          Effect.map((value) => ({ ...letter, value })),
          Effect.mapError((cause) => new DurableQueueError({ reason: "StoreFailed", backend: "memory", queue: name, cause }))
        ))
    } satisfies DurableQueue.DurableQueue<A>
  })
