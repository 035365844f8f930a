/**
 * A durable job queue on Redis, on a store that implements `@effect/experimental`'s `PersistedQueueStore`: offers by id without
 * duplicates, at-least-once delivery under a lease the taker refreshes while its job runs, an acknowledgement only
 * after the handler succeeded, and after `maxAttempts` failures a dead-letter record with the last error.
 *
 * Offers go through `PersistedQueue` (its encoding and ids); takes drive the store directly (see `take`). The
 * Redis store is ours (see persistedQueueStore.ts for what is wrong with the one `@effect/experimental` ships). The last attempt's failure is caught here, recorded in the
 * dead-letter list with the decoded value, and the job acknowledged.
 */
import * as PersistedQueue from "@effect/experimental/PersistedQueue"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { OptionError } from "../../OptionError.js"
import type * as DurableQueue from "../../redis/DurableQueue.js"
import { DurableQueueError, makeRun } from "../durableQueue.js"
import { checker } from "../options.js"
import { command, connect, RedisClient } from "./client.js"
import { make as makeStore } from "./persistedQueueStore.js"

const check = checker("RedisDurableQueue")

/** @internal */
export const make = <A, I>(
  options: DurableQueue.Options<A, I>
): Effect.Effect<DurableQueue.DurableQueue<A>, OptionError, RedisClient | Scope.Scope> =>
  Effect.gen(function*() {
    const name = yield* check.require("name", options.name, typeof options.name === "string" && options.name.length > 0, "a non-empty string")
    const maxAttempts = yield* check.integer("maxAttempts", options.maxAttempts, 3, 1)
    const lease = yield* check.duration("leaseDuration", options.leaseDuration, "30 seconds")
    const leaseMillis = Duration.toMillis(lease)
    yield* check.require("leaseDuration", options.leaseDuration, leaseMillis >= 30, "a duration of 30 milliseconds or more")
    const pollInterval = yield* check.duration("pollInterval", options.pollInterval, "100 millis")
    const prefix = options.prefix ?? "effect-workers:queue:"
    const deadKey = `${prefix}${name}:dead`
    const { client, options: clientOptions } = yield* RedisClient
    // A connection of its own with auto-pipelining: the takes and acknowledgements of concurrent takers issued in
    // one tick travel in one round trip.
    const storeClient = yield* connect({
      ...clientOptions,
      options: { ...clientOptions.options, enableAutoPipelining: true }
    }).pipe(Effect.orDie)

    const store = yield* makeStore(storeClient, {
      prefix,
      leaseMillis: Math.round(leaseMillis),
      pollMillis: Math.max(1, Math.round(Duration.toMillis(pollInterval)))
    })
    const factory = yield* Effect.provideService(
      PersistedQueue.makeFactory,
      PersistedQueue.PersistedQueueStore,
      PersistedQueue.PersistedQueueStore.of(store)
    )
    const queue = yield* factory.make({ name, schema: options.schema })
    const decodeDead = Schema.decodeUnknown(Schema.Struct({
      id: Schema.String,
      value: options.schema,
      attempts: Schema.Number,
      lastError: Schema.String
    }))
    const storeFailed = (cause: unknown) => new DurableQueueError({ reason: "StoreFailed", backend: "redis", queue: name, cause })

    const deadLetterRaw = (id: string, encoded: unknown, attempts: number, cause: Cause.Cause<unknown>) =>
      command("RPUSH", () =>
        client.rpush(deadKey, JSON.stringify({ id, value: encoded, attempts, lastError: Cause.pretty(cause) }))
      ).pipe(Effect.mapError(storeFailed))

    const decodeJob = Schema.decodeUnknown(options.schema)

    // The hot path drives the store directly (next leased job, run, settle) instead of through PersistedQueue's
    // `take`, whose per-job Scope and finalizer capped throughput at about 3k jobs/s on this machine even over its
    // in-memory store. The semantics are the same: settle after the handler, requeue on failure or interruption.
    // `graceful` (used by `run`): interrupting the taker does not interrupt a running handler, so a shutdown lets
    // running jobs finish and be acknowledged; only the wait for a job is interruptible.
    const take = <X, E, R>(
      handler: (value: A, job: DurableQueue.Job) => Effect.Effect<X, E, R>,
      graceful = false
    ): Effect.Effect<Exit.Exit<X, E>, DurableQueueError, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(store.next(name)), (element) => {
          const attempt = element.attempts + 1
          const job: DurableQueue.Job = { id: element.id, attempt }
          const run = Effect.flatMap(Effect.orDie(decodeJob(element.element)), (value) =>
            Effect.map(handler(value, job), (x) => ({ value, x })))
          const guarded = graceful ? Effect.exit(run) : Effect.exit(restore(run))
          return Effect.flatMap(guarded, (exit): Effect.Effect<Exit.Exit<X, E>> => {
            if (Exit.isSuccess(exit)) return Effect.as(store.settle(name, element, "none", ""), Exit.succeed(exit.value.x))
            const cause = exit.cause
            if (Cause.isInterruptedOnly(cause)) {
              return Effect.zipRight(store.settle(name, element, "queue", JSON.stringify(element)), Effect.failCause(cause as Cause.Cause<never>))
            }
            if (attempt >= maxAttempts) {
              // The last attempt: a dead-letter record with the last error, and the job acknowledged.
              return deadLetterRaw(element.id, element.element, attempt, cause).pipe(
                Effect.catchAll((error) => Effect.logWarning("DurableQueue: writing a dead letter failed", error)),
                Effect.zipRight(store.settle(name, element, "none", "")),
                Effect.as(Exit.failCause(cause as Cause.Cause<E>))
              )
            }
            const failed = { ...element, attempts: attempt, lastFailure: Cause.pretty(cause) }
            return Effect.as(store.settle(name, element, "queue", JSON.stringify(failed)), Exit.failCause(cause as Cause.Cause<E>))
          })
        })
      )

    return {
      name,
      offer: (value, offerOptions) =>
        queue.offer(value, { id: offerOptions?.id }).pipe(
          Effect.mapError((cause) =>
            cause._tag === "ParseError"
              ? new DurableQueueError({ reason: "EncodeFailed", backend: "redis", queue: name, cause })
              : storeFailed(cause)
          )
        ),
      take,
      run: makeRun(take),
      size: command("LLEN+HLEN", () =>
        client.multi().llen(`${prefix}${name}`).hlen(`${prefix}${name}:pending`).exec()
      ).pipe(
        Effect.mapError(storeFailed),
        Effect.map((replies) => (replies ?? []).reduce((sum, [, n]) => sum + Number(n ?? 0), 0))
      ),
      deadLetters: command("LRANGE", () => client.lrange(deadKey, 0, -1)).pipe(
        Effect.mapError(storeFailed),
        Effect.flatMap((raws) =>
          Effect.forEach(raws, (raw) => decodeDead(JSON.parse(raw)).pipe(Effect.mapError(storeFailed)))
        )
      )
    } satisfies DurableQueue.DurableQueue<A>
  })
