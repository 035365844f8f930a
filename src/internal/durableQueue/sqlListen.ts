/**
 * PostgreSQL notifications for the SQL store of `DurableQueue`: the channel of a queue, and ONE LISTEN per client
 * and channel in the process that notices when it stops hearing (`listening`, for offers and job events alike). An
 * offer (or a job put back or retried) notifies the channel in the same statement; every store taking from the
 * queue LISTENs (`listen`), so idle takers of every process look at once; polling stays as the safety net.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createHash, randomInt } from "node:crypto"

/** How often a LISTEN is checked, with a notification to itself, to still hear; how long that waits. @internal */
export const PROBE_MILLIS = 5_000
/** @internal */
export const PROBE_TIMEOUT = 2_000

/**
 * The periods in use: `PROBE_MILLIS` and `PROBE_TIMEOUT`, shortened by tests only (a lost LISTEN took
 * test/sql/DurableQueue.events.test.ts 7 s to notice). Not exported by the package. @internal
 */
export const probePeriods: { millis: number; timeout: number } = { millis: PROBE_MILLIS, timeout: PROBE_TIMEOUT }

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

/** What a shared LISTEN hands its subscribers: a payload, or word that the LISTEN (again) hears. @internal */
export type Heard = string | { readonly listening: "first" | "again" }

/** One LISTEN of a client and channel, shared by every subscriber of the process (see `listening`). */
interface Shared {
  readonly hub: PubSub.PubSub<Heard>
  /** Succeeded at the first confirmation (or when the supervisor stops). */
  readonly ready: Deferred.Deferred<void>
  /** Open while nobody subscribes: wakes the supervisor from its sleeps, to stop. */
  readonly idle: Effect.Latch
  /** Succeeded once the supervisor has stopped and its LISTEN stream ended (its UNLISTEN sent). */
  readonly done: Deferred.Deferred<void>
  refs: number
  /** Set when the supervisor decides to stop (no subscriber left); a new subscriber then makes a new entry. */
  retired: boolean
  /**
   * Whether the LISTEN hears now: set by a probe heard back (the first confirms it), cleared when one is lost, the
   * stream ends or the database is away, until a probe is heard again (`Store.hearing`).
   */
  hearing: boolean
}

/** The shared LISTENs of each client (the `SqlClient` object), by channel. */
const sharedByClient = new WeakMap<object, Map<string, Shared>>()

/** Probes sent before a LISTEN is confirmed, 100 ms apart: after 5 s without one it is listened anew. */
const CONFIRM_TRIES = 50

/**
 * What the LISTEN of `channel` hears, for the scope: ONE `@effect/sql-pg` LISTEN stream per client and channel in
 * the process, reference-counted, started by the first subscriber and stopped after the last. Two faults of
 * `@effect/sql-pg` 0.53 are worked around here, for offers (`listen`) and job events (sqlEvents.ts) alike:
 *
 * - Its LISTEN connection is not re-established when it drops (a database restart, a terminated backend): the
 *   stream just goes quiet. So the channel is sent a probe of this LISTEN's own (digits only, which job-event
 *   readers and takers of every version skip) every `PROBE_MILLIS`; when that is not heard back within
 *   `PROBE_TIMEOUT` while the NOTIFY itself went through, it listens anew; subscribers are told
 *   (`{ listening: "again" }`): what was sent meanwhile was not heard.
 * - Its LISTEN stream interrupted while connecting leaks the connection: effect 3.22's `RcRef.get` (its LISTEN
 *   connection) acquires interruptibly and never closes what it acquired when interrupted there (effect PR #7109
 *   fixes that upstream), and that connection outlives even the client's layer (so the process does not exit). 80 events streams started and
 *   interrupted 0-40 ms later left 8-12 such connections. So a LISTEN stream is interrupted only once a probe
 *   confirmed it (its connection then acquired), once it ended, or after `CONFIRM_TRIES` probes without one;
 *   never merely because its last subscriber left, however soon.
 *
 * Also, any stream of the client ending UNLISTENs its channel for the whole client: one stream per channel, a new
 * one waiting for the previous one's end, keeps one subscriber's end from deafening another.
 * @internal
 */
export const listening = (
  listener: Listener,
  sql: SqlClient.SqlClient,
  channel: string
): Effect.Effect<
  {
    readonly heard: Queue.Dequeue<Heard>
    readonly ready: Effect.Effect<void>
    readonly hearing: Effect.Effect<boolean>
  },
  never,
  Scope.Scope
> =>
  Effect.uninterruptible(Effect.gen(function*() {
    // By the listener: the `PgClient` every queue of a layer shares (`sql` may be one of its `withoutTransforms()`).
    let channels = sharedByClient.get(listener)
    if (channels === undefined) sharedByClient.set(listener, channels = new Map())
    const byChannel = channels
    const { entry, fresh, previous } = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const found = byChannel.get(channel)
        if (found !== undefined && !found.retired) {
          if (found.refs++ === 0) found.idle.unsafeClose()
          return { entry: found, fresh: false, previous: undefined }
        }
        const made: Shared = {
          hub: Effect.runSync(PubSub.unbounded<Heard>()),
          ready: Deferred.unsafeMake(FiberId.none),
          idle: Effect.unsafeMakeLatch(false),
          done: Deferred.unsafeMake(FiberId.none),
          refs: 1,
          retired: false,
          hearing: false
        }
        byChannel.set(channel, made)
        return { entry: made, fresh: true, previous: found }
      }),
      ({ entry }) => Effect.sync(() => void (--entry.refs === 0 && entry.idle.unsafeOpen()))
    )
    const heard = yield* PubSub.subscribe(entry.hub)
    if (fresh) {
      // Interruptible: a fiber forked here (uninterruptible) would inherit that and never stop.
      yield* Effect.forkDaemon(Effect.interruptible(supervise(listener, sql, channel, entry, byChannel, previous)))
    }
    return { heard, ready: Deferred.await(entry.ready), hearing: Effect.sync(() => entry.hearing) }
  }))

/**
 * Keeps the LISTEN of `entry` hearing (see `listening`) until it has no subscriber left and may be stopped, after
 * the previous entry's stream of the channel ended.
 */
const supervise = (
  listener: Listener,
  sql: SqlClient.SqlClient,
  channel: string,
  entry: Shared,
  byChannel: Map<string, Shared>,
  previous: Shared | undefined
): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (previous !== undefined) yield* Deferred.await(previous.done)
    const probePayload = String(randomInt(2 ** 47))
    const heard = yield* Effect.makeLatch(false)
    const session = listener.listen(channel).pipe(
      Stream.runForEach((payload) =>
        payload === probePayload
          ? heard.open
          // Other processes' probes (digits only); and `p:<id>`, the probes of the versions before.
          : /^\d+$/.test(payload) || payload.startsWith("p:")
          ? Effect.void
          : PubSub.publish(entry.hub, payload)
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
    // Marked in the same step as the check, so a subscriber either counts or makes a new entry (which waits for
    // this one's `done`).
    const retire = Effect.sync(() => {
      if (entry.refs > 0) return false
      entry.retired = true
      return true
    })
    const pause = (millis: number) => Effect.raceFirst(Effect.sleep(millis), entry.idle.await)
    let confirmations = 0
    while (true) {
      const fiber = yield* Effect.fork(session)
      let confirmed = false
      let failed = false
      let stop = false
      for (let tries = 0;; tries++) {
        if ((confirmed || tries >= CONFIRM_TRIES) && (yield* retire)) {
          stop = true
          break
        }
        // Until the LISTEN is confirmed, probe every 100 ms (for 5 s at most), then every PROBE_MILLIS.
        const result = yield* probe(confirmed ? probePeriods.timeout : 100)
        const ended = yield* Fiber.poll(fiber)
        entry.hearing = result === "heard" && Option.isNone(ended)
        if (Option.isSome(ended)) {
          if (yield* retire) {
            stop = true
            break
          }
          failed = true
          yield* Effect.logWarning(
            `DurableQueue: listening on ${channel} failed; listening again`,
            Exit.isFailure(ended.value) ? ended.value.cause : "ended"
          )
          break
        }
        if (result === "heard") {
          if (!confirmed) {
            confirmed = true
            yield* Deferred.succeed(entry.ready, undefined)
            yield* PubSub.publish(entry.hub, { listening: confirmations++ === 0 ? "first" : "again" })
          }
          yield* pause(probePeriods.millis)
        } else if (result === "lost" && (confirmed || tries >= CONFIRM_TRIES)) {
          yield* Effect.logWarning(
            `DurableQueue: the LISTEN connection stopped hearing notifications on ${channel}; listening again`
          )
          break
        } else if (result === "unsent") {
          // The database is away: the connection that listens may be gone too (a restart); it is checked as soon
          // as the database is back.
          yield* pause(500)
        }
      }
      entry.hearing = false
      // The LISTEN connection is shared by the streams of one client, and replaced once none holds it.
      yield* Fiber.interrupt(fiber).pipe(Effect.timeout("2 seconds"), Effect.ignore)
      if (stop) return
      if (failed) yield* pause(1_000)
    }
  }).pipe(
    Effect.ensuring(Effect.suspend(() => {
      entry.hearing = false
      if (byChannel.get(channel) === entry) byChannel.delete(channel)
      return Effect.zipRight(Deferred.succeed(entry.ready, undefined), Deferred.succeed(entry.done, undefined))
    }))
  )

/**
 * Opens `offered` on each offer notification ("o") of `channel`, and whenever its LISTEN (again) hears: offers
 * notified before were not heard. Returns once the LISTEN was first confirmed, or after 2 seconds at most (then
 * it keeps trying in the background; polling covers the gap), with whether it hears now (`Store.hearing`).
 * @internal
 */
export const listen = (
  listener: Listener,
  channel: string,
  offered: Effect.Latch,
  sql: SqlClient.SqlClient
): Effect.Effect<Effect.Effect<boolean>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { heard, hearing, ready } = yield* listening(listener, sql, channel)
    yield* Queue.take(heard).pipe(
      Effect.flatMap((item) => typeof item !== "string" || item === "o" ? offered.open : Effect.void),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )
    // The caller is the first lease, which the core runs uninterruptibly (core.ts `Feed.fetch`), and there a timeout
    // cannot interrupt what it bounds: without `interruptible` this waited until the LISTEN was confirmed, however
    // long, and forever once the scope closed first.
    yield* ready.pipe(Effect.interruptible, Effect.timeout("2 seconds"), Effect.ignore)
    return hearing
  })
