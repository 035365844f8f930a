/**
 * A durable job queue on PostgreSQL or SQLite (`@effect/sql`), on our store (see store.ts for why not
 * `SqlPersistedQueue`): offers by id without duplicates, at-least-once delivery under a lease the taker refreshes
 * while its job runs, an acknowledgement only after the handler succeeded, and after `maxAttempts` failures a
 * dead-letter row with the last error. The taker that runs the last attempt decides, by its own `maxAttempts`.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { randomUUID } from "node:crypto"
import type { OptionError } from "../../OptionError.js"
import type * as DurableQueue from "../../sql/DurableQueue.js"
import { DurableQueueError, makeRun } from "../durableQueue.js"
import { checker } from "../options.js"
import { isTableName, make as makeStore, type Settlement } from "./store.js"

const check = checker("SqlDurableQueue")

/** @internal */
export const make = <A, I>(
  options: DurableQueue.Options<A, I>
): Effect.Effect<DurableQueue.DurableQueue<A>, OptionError | DurableQueueError, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const name = yield* check.require("name", options.name, typeof options.name === "string" && options.name.length > 0, "a non-empty string")
    const maxAttempts = yield* check.integer("maxAttempts", options.maxAttempts, 3, 1)
    const lease = yield* check.duration("leaseDuration", options.leaseDuration, "30 seconds")
    const leaseMillis = Duration.toMillis(lease)
    yield* check.require("leaseDuration", options.leaseDuration, leaseMillis >= 100, "a duration of 100 milliseconds or more")
    // Without a value, the store picks (100 milliseconds).
    const pollInterval = yield* check.optionalDuration("pollInterval", options.pollInterval)
    const notify = yield* check.require("notify", options.notify, options.notify === undefined || typeof options.notify === "boolean", "a boolean")
    const tableName = options.tableName ?? "effect_workers_queue"
    yield* check.require("tableName", options.tableName, typeof tableName === "string" && isTableName(tableName), "an SQL identifier, optionally schema-qualified (letters, digits, _)")
    const storeFailed = (cause: unknown) => new DurableQueueError({ reason: "StoreFailed", backend: "sql", queue: name, cause })

    const store = yield* makeStore({
      name,
      tableName,
      leaseMillis: Math.round(leaseMillis),
      pollMillis: Option.isSome(pollInterval) ? Math.max(1, Math.round(Duration.toMillis(pollInterval.value))) : undefined,
      notify: notify ?? true
    }).pipe(Effect.mapError(storeFailed))

    const encode = Schema.encode(options.schema)
    const decodeJob = Schema.decodeUnknown(options.schema)
    const decodeValue = Schema.decodeUnknown(options.schema)

    // `graceful` (used by `run`): interrupting the taker does not interrupt a running handler, so a shutdown lets
    // running jobs finish and be acknowledged; only the wait for a job is interruptible. `run` does not wait for its
    // acknowledgements to be written (they go out in batches, and before the scope closes); `take` does.
    const take = <X, E, R>(
      handler: (value: A, job: DurableQueue.Job) => Effect.Effect<X, E, R>,
      graceful = false
    ): Effect.Effect<Exit.Exit<X, E>, DurableQueueError, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(store.next), (element) => {
          const attempt = element.attempts + 1
          const job: DurableQueue.Job = { id: element.id, attempt }
          const run = Effect.flatMap(Effect.orDie(decodeJob(element.element)), (value) => handler(value, job))
          return Effect.flatMap(graceful ? Effect.exit(run) : Effect.exit(restore(run)), (exit) => {
            const interrupted = Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
            const settlement: Settlement = Exit.isSuccess(exit)
              ? { _tag: "ack" }
              : interrupted
              ? { _tag: "back" }
              : { _tag: attempt >= maxAttempts ? "dead" : "retry", lastError: Cause.pretty(exit.cause) }
            return Effect.flatMap(store.settle(element, settlement), (written) => {
              if (interrupted) return Effect.failCause(exit.cause as Cause.Cause<never>)
              if (graceful) return Effect.succeed(exit)
              return Effect.as(Effect.mapError(written, storeFailed), exit)
            })
          })
        })
      )

    return {
      name,
      offer: (value, offerOptions) =>
        encode(value).pipe(
          Effect.mapError((cause) => new DurableQueueError({ reason: "EncodeFailed", backend: "sql", queue: name, cause })),
          Effect.flatMap((encoded) => {
            const id = offerOptions?.id ?? randomUUID()
            return Effect.as(Effect.mapError(store.offer(id, encoded), storeFailed), id)
          })
        ),
      take,
      run: makeRun(take),
      size: Effect.mapError(store.size, storeFailed),
      deadLetters: store.deadLetters.pipe(
        Effect.mapError(storeFailed),
        Effect.flatMap((rows) =>
          Effect.forEach(rows, (row) =>
            Effect.map(Effect.mapError(decodeValue(row.element), storeFailed), (value) => ({
              id: row.id,
              value,
              attempts: row.attempts,
              lastError: row.lastError
            })))
        )
      )
    } satisfies DurableQueue.DurableQueue<A>
  })
