/**
 * PostgreSQL notifications for the SQL store of `DurableQueue`: the channel of a queue, and a LISTEN that notices
 * when it stops hearing (see `listen`). An offer (or a job put back or retried) notifies the channel in the same
 * statement; every store taking from the queue LISTENs, so idle takers of every process look at once; polling
 * stays as the safety net.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"

/** How often a store checks, with a notification to itself, that its LISTEN connection still hears; how long it waits. */
const PROBE_MILLIS = 5_000
const PROBE_TIMEOUT = 2_000

/**
 * The notification channel of a queue: `ew:<table>:<queue>` when that fits a PostgreSQL identifier (63 bytes, no
 * NUL), else `ew:` and 48 hex digits of the SHA-256 of both (a table name has no ":", so the forms cannot collide).
 * @internal
 */
export const channelOf = (tableName: string, name: string): string => {
  const plain = `ew:${tableName}:${name}`
  return Buffer.byteLength(plain, "utf8") <= 63 && !plain.includes("\u0000")
    ? plain
    : `ew:${createHash("sha256").update(`${tableName}\u0000${name}`).digest("hex").slice(0, 48)}`
}

/** `@effect/sql-pg`'s `PgClient` (the `SqlClient` it provides is the same object); not imported, it is optional. @internal */
export interface Listener {
  readonly listen: (channel: string) => Stream.Stream<string, SqlError>
}
/** @internal */
export const listenerOf = (client: SqlClient.SqlClient): Listener | undefined =>
  "listen" in client && typeof client.listen === "function" ? client as unknown as Listener : undefined

/**
 * Listens on `channel` and opens `offered` on each offer notification ("o"). `@effect/sql-pg`'s LISTEN connection
 * is not re-established when it drops (a database restart, a terminated backend): its stream just goes quiet; and
 * any stream of the client ending UNLISTENs the channel for all. So the store sends the channel a probe of its own
 * (`p:<id>`, ignored by the other stores) every `PROBE_MILLIS` and, when that is not heard back within
 * `PROBE_TIMEOUT` while the notification itself went through, it listens anew and looks for jobs once
 * (notifications sent meanwhile were lost). Returns once the first probe was heard, or after 2 seconds at most
 * (then it keeps trying in the background; polling covers the gap).
 */
/** @internal */
export const listen = (
  listener: Listener,
  channel: string,
  id: string,
  offered: Effect.Latch,
  sql: SqlClient.SqlClient
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const probePayload = `p:${id}`
    const heard = yield* Effect.makeLatch(false)
    const ready = yield* Deferred.make<void>()
    const session = listener.listen(channel).pipe(
      Stream.runForEach((payload) =>
        payload === "o" ? offered.open : payload === probePayload ? heard.open : Effect.void
      )
    )
    const probe = (timeout: number) =>
      Effect.gen(function*() {
        yield* heard.close
        const sent = yield* Effect.exit(sql`SELECT pg_notify(${channel}, ${probePayload})`)
        if (Exit.isFailure(sent)) return "unsent" as const
        return Option.isSome(yield* Effect.timeout(heard.await, timeout).pipe(Effect.option))
          ? "heard" as const
          : "lost" as const
      })
    const supervise = Effect.gen(function*() {
      while (true) {
        const fiber = yield* Effect.fork(session)
        let confirmed = false
        let failed = false
        for (let tries = 0;; tries++) {
          // Until the LISTEN is confirmed, probe every 100 ms (for 5 s at most), then every PROBE_MILLIS.
          const result = yield* probe(confirmed ? PROBE_TIMEOUT : 100)
          const ended = yield* Fiber.poll(fiber)
          if (Option.isSome(ended)) {
            failed = true
            yield* Effect.logWarning(
              "DurableQueue: listening for offers failed; listening again",
              Exit.isFailure(ended.value) ? ended.value.cause : "ended"
            )
            break
          }
          if (result === "heard") {
            if (!confirmed) {
              confirmed = true
              yield* Deferred.succeed(ready, undefined)
              // Offers notified before this LISTEN took effect were not heard.
              yield* offered.open
            }
            yield* Effect.sleep(PROBE_MILLIS)
          } else if (result === "lost" && (confirmed || tries >= 50)) {
            yield* Effect.logWarning(
              "DurableQueue: the LISTEN connection stopped hearing notifications; listening again"
            )
            break
          } else if (result === "unsent") {
            // The database is away: the connection that listens may be gone too (a restart); it is checked as soon
            // as the database is back.
            yield* Effect.sleep(500)
          }
        }
        // The LISTEN connection is shared by the streams of one client, and replaced once none holds it.
        yield* Fiber.interrupt(fiber).pipe(Effect.timeout("2 seconds"), Effect.ignore)
        if (failed) yield* Effect.sleep("1 second")
      }
    })
    yield* supervise.pipe(
      // A lease waiting for the first confirmation is let go when listening stops (its scope closes).
      Effect.ensuring(Deferred.succeed(ready, undefined)),
      Effect.interruptible,
      Effect.forkScoped
    )
    // The caller is the first lease, which the core runs uninterruptibly (core.ts `Feed.fetch`), and there a timeout
    // cannot interrupt what it bounds: without `interruptible` this waited until the LISTEN was confirmed, however
    // long, and forever once the scope closed first (the supervisor, forked after the fetcher, stops before it).
    yield* Deferred.await(ready).pipe(Effect.interruptible, Effect.timeout("2 seconds"), Effect.ignore)
  })
