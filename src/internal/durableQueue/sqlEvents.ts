/**
 * The event port of the SQL `DurableQueue`. PostgreSQL (with `@effect/sql-pg`, whose client can LISTEN): events go
 * out with `pg_notify` on a channel of their own (`channelOf(<table>!events, <queue>)`, apart from the offer
 * channel, so an `events` stream ending, which UNLISTENs its channel for the whole client, never silences the
 * takers' wake-ups), one notification per batch of events up to 7,900 bytes (PostgreSQL refuses a payload of
 * 8,000), events joined by newlines after a first line of the payload's index in its batch; one LISTEN per client
 * and channel is shared by all `events` streams of the process. SQLite (one machine, no notifications): an
 * in-process bus per client, table and queue, so events reach the subscribers of the process that caused them only
 * (and, with none, are not even kept: `inProcessBus`'s `listening`).
 *
 * On PostgreSQL nobody may be listening (issue #16): see `audienceOf` and `ListenerLocks` for how an emitter knows.
 *
 * Schedule marks are rows of `<table>_marks` (queue name, schedule id), created at the first `schedule` or
 * `unschedule` of a process, not in the jobs table: no job state, count or lease query ever sees them.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import type * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import {
  type EventPort,
  inProcessPort,
  REMOTE_SPACING_MILLIS,
  type ScheduleMarks,
  sharedSubscription
} from "./events.js"
import { channelOf, type Listener, listenerOf, listening } from "./sqlListen.js"

/** PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more; the rest is margin. */
const MAX_PAYLOAD_BYTES = 7_900

/** An event too large for one notification (a very long id, a large progress value) loses its id's tail and its progress. */
const fitEvent = (event: string): string => {
  if (Buffer.byteLength(event, "utf8") <= MAX_PAYLOAD_BYTES) return event
  const parsed = JSON.parse(event) as Record<string, unknown>
  return JSON.stringify({ ...parsed, id: `${String(parsed.id).slice(0, 1_000)}…(truncated)`, progress: undefined })
}

/** Events packed into payloads under `MAX_PAYLOAD_BYTES`, newline-separated. @internal */
export const payloads = (events: ReadonlyArray<string>): Array<string> => {
  const out: Array<string> = []
  let current = ""
  let bytes = 0
  for (const raw of events) {
    const event = fitEvent(raw)
    const size = Buffer.byteLength(event, "utf8") + 1
    if (bytes > 0 && bytes + size > MAX_PAYLOAD_BYTES) {
      out.push(current)
      current = ""
      bytes = 0
    }
    current = bytes === 0 ? event : `${current}\n${event}`
    bytes += size
  }
  if (bytes > 0) out.push(current)
  return out
}

/**
 * The events of a notification: its lines but a first one of digits, the payload's index in its batch (see
 * `publish`), which only makes the payloads of one batch distinct. Events are JSON objects, never digits alone.
 * @internal
 */
export const eventsOf = (payload: string): Array<string> => {
  const lines = payload.split("\n")
  return /^\d+$/.test(lines[0]!) ? lines.slice(1) : lines
}

/** @internal */
export const sqlPort = (
  name: string,
  tableName: string,
  notify: boolean
): Effect.Effect<EventPort, never, SqlClient.SqlClient> =>
  Effect.map(SqlClient.SqlClient, (client) => {
    // Created once per port; a failure (the database away) is tried again at the next use, not remembered.
    let exists = false
    const created = Effect.suspend(() =>
      exists ? Effect.void : Effect.tap(createMarks(client, tableName), () => exists = true)
    )
    const sql = client.withoutTransforms()
    const pg = sql.onDialectOrElse({ pg: () => true, orElse: () => false })
    const table = sql(`${tableName}_marks`)
    const marks: ScheduleMarks = {
      mark: (id) =>
        Effect.zipRight(
          created,
          sql`INSERT INTO ${table} (queue_name, id) VALUES (${name}, ${id}) ON CONFLICT DO NOTHING`
        ),
      clear: (id) => Effect.zipRight(created, sql`DELETE FROM ${table} WHERE queue_name = ${name} AND id = ${id}`),
      isMarked: (id) =>
        Effect.zipRight(
          created,
          Effect.map(
            sql`SELECT 1 AS one FROM ${table} WHERE queue_name = ${name} AND id = ${id}`,
            (rows) => rows.length > 0
          )
        )
    }
    const listener = pg && notify ? listenerOf(client) : undefined
    if (listener === undefined) return { bus: inProcessPort(client, `${tableName}\u0000${name}`).bus, marks }
    const channel = channelOf(`${tableName}!events`, name)
    return {
      bus: {
        // One statement for the whole batch, its notifications in order (a function scan WITH ORDINALITY): a
        // statement per notification was ~12 commits per 1,000 offers, as many as the offers' own. An `offerAll`
        // of 1,000 spent more on its events than on its INSERT (bench/_offer-cpu.ts --store pg). Each payload
        // starts with its index in the batch (`indexed`): PostgreSQL delivers identical notifications of one
        // transaction on one channel once (sent A, A, B, A: A, B delivered).
        publish: (events) =>
          sql`SELECT pg_notify(${channel}, i || chr(10) || p) FROM json_array_elements_text(${
            JSON.stringify(payloads(events))
          }::json) WITH ORDINALITY AS t(p, i) ORDER BY i`.pipe(
            Effect.asVoid,
            Effect.catchAll((error) =>
              Effect.logWarning(
                `DurableQueue ${name}: publishing ${events.length} job event(s) failed; they are lost`,
                error
              )
            )
          ),
        subscribe: sharedSubscription(
          client,
          channel,
          heard(client, listener, channel, name)
        ),
        spacingMillis: REMOTE_SPACING_MILLIS,
        ...audienceOf(sql, channel)
      },
      marks
    }
  })

/**
 * The marks table, if missing. On PostgreSQL under an advisory lock: processes starting a schedule at once would
 * race on CREATE TABLE IF NOT EXISTS (a unique violation in pg_type), as the jobs table would (sqlStore.ts).
 */
const createMarks = (client: SqlClient.SqlClient, tableName: string) => {
  const sql = client.withoutTransforms()
  const create = sql`CREATE TABLE IF NOT EXISTS ${
    sql(`${tableName}_marks`)
  } (queue_name TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (queue_name, id))`
  return sql.onDialectOrElse({
    pg: () =>
      Effect.zipRight(sql`SELECT pg_advisory_xact_lock(hashtext(${`effect-workers:${tableName}_marks`}))`, create).pipe(
        sql.withTransaction
      ),
    orElse: () => create
  })
}

/**
 * Who listens to a queue's events on PostgreSQL, which has no `PUBSUB NUMSUB`: `pg_listening_channels()` shows the
 * own session only. Every process with an `events` stream of the queue holds a session-level advisory lock, shared,
 * keyed by this class and the channel (two int4 keys: apart from the one-bigint keys of the DDL locks); an emitter
 * asks whether an exclusive one is free. A listener that crashes loses its session and so its lock: no heartbeat
 * to miss, no expiry to wait for, no table (a table of listeners with heartbeats was the alternative: a write per
 * listener every few seconds, a lag of an expiry after a crash, and a stalled listener's entry expiring while it
 * still listens). Keys of two channels may collide on their hash: an emitter then publishes for nobody, never the
 * reverse. @internal
 */
export const LISTENERS_CLASS = "effect-workers:events"

/**
 * How long an emitter trusts its last answer. A look per batch (every 10 ms, as Redis asks) is a statement per
 * batch, as the NOTIFY it saves was: trusting it for 1 s instead was 0.90x the consumer's CPU per job and 0.89x
 * (1.52x jobs/s) bulk offer's (bench/_profile.ts, bench/_offer-cpu.ts --store pg, 20,000 jobs, A/B of 6 runs at load
 * 6-7.5). The price is `HOLD_MILLIS`.
 */
const AUDIENCE_MILLIS = 1_000

/**
 * How long an `events` stream holds back what it hears after its lock is taken: an emitter may have seen "nobody"
 * just before and trust that for `AUDIENCE_MILLIS`, so events it sends after this are guaranteed to be published;
 * the margin covers timers firing late. What was heard meanwhile is delivered after, not dropped.
 */
const HOLD_MILLIS = AUDIENCE_MILLIS + 100

/** How often a listener checks that the session holding its lock is alive (a terminated backend lost it). */
const CHECK_MILLIS = 5_000

/**
 * The periods in use: `CHECK_MILLIS`, shortened by tests only (test/sql/DurableQueue.events.test.ts waited 5 s per
 * lost session). Not exported by the package. @internal
 */
export const lockPeriods: { checkMillis: number } = { checkMillis: CHECK_MILLIS }

/**
 * Whether anyone listens, asked at most once per `AUDIENCE_MILLIS` (the time taken before asking, so an answer is
 * never trusted past `AUDIENCE_MILLIS` after the registry was read). The exclusive try-lock is taken and released in
 * its own statement; two emitters asking at once may see each other's and publish a batch for nobody. A failed
 * look publishes (a lost event is worse) and is not remembered.
 */
const audienceOf = (
  sql: SqlClient.SqlClient,
  channel: string
): { readonly audience: Effect.Effect<boolean>; readonly listening: () => boolean } => {
  let answer = true
  let until = Number.NEGATIVE_INFINITY
  const look = sql<{ readonly free: boolean }>`SELECT
    pg_try_advisory_xact_lock(hashtext(${LISTENERS_CLASS}), hashtext(${channel})) AS free`
  return {
    audience: Effect.flatMap(Clock.currentTimeMillis, (now) =>
      now < until ? Effect.succeed(answer) : look.pipe(
        Effect.map((rows) => {
          answer = rows[0]?.free !== true
          until = now + AUDIENCE_MILLIS
          return answer
        }),
        Effect.orElseSucceed(() => true)
      )),
    // While "nobody" is trusted, events are not even kept: the publish would drop them (they were the offer's
    // `emit`, 4.6 % of a bulk offer's CPU, CPU profile). An event emitted then falls within a new listener's
    // `HOLD_MILLIS`, which promises nothing before its end, so nothing promised is lost. (`Date.now`, the
    // default `Clock`'s time: under a test clock `until` lies in 1970 and every event is kept, as before.)
    listening: () => answer || Date.now() >= until
  }
}

/** node-postgres's pool size when `maxConnections` is not given. */
const PG_POOL_DEFAULT = 10

const LOCK = "SELECT pg_advisory_lock_shared(hashtext($1), hashtext($2))"
const UNLOCK = "SELECT pg_advisory_unlock_shared(hashtext($1), hashtext($2))"

/** The session holding the locks: a connection reserved from the pool, and the scope that gives it back. */
interface Session {
  readonly connection: Connection
  readonly scope: Scope.CloseableScope
}

/**
 * The listeners' locks of the `events` streams of one client in this process, all on ONE connection reserved from
 * its pool while any stream runs: a connection per queue with a stream let a process on the default pool of 10
 * follow 9 queues, and the 10th stream failed (test/sql/DurableQueue.events.test.ts, "15 queues on a pool of 10").
 * A channel's lock is taken when its first stream starts and released when its last ends; the connection goes back
 * to the pool when the last stream of any channel ends. The session is checked every `CHECK_MILLIS`; when it is gone
 * (a terminated backend, a database restart) every held lock is taken again on a new connection, with a warning:
 * events in between may have been lost, as the LISTEN connection's would. Every change of the state runs under
 * `mutex`, so streams starting and ending at once on several fibers keep the counts and the locks in step.
 */
class ListenerLocks {
  /** The streams of each channel with a lock. */
  private readonly held = new Map<string, number>()
  private streams = 0
  private session: Session | undefined = undefined
  private watcher: Fiber.RuntimeFiber<void> | undefined = undefined
  private readonly mutex = Effect.unsafeMakeSemaphore(1)

  constructor(private readonly client: SqlClient.SqlClient) {}

  /** Counts a stream of `channel` (of the queue `name`) as a listener for the scope; fails if its lock cannot be taken. */
  hold(channel: string, name: string): Effect.Effect<void, SqlError, Scope.Scope> {
    return Effect.acquireRelease(
      this.mutex.withPermits(1)(this.add(channel, name)),
      () => this.mutex.withPermits(1)(this.remove(channel))
    )
  }

  private add(channel: string, name: string): Effect.Effect<void, SqlError> {
    return Effect.gen(this, function*() {
      if (!this.held.has(channel)) {
        const lock = (session: Session) => session.connection.execute(LOCK, [LISTENERS_CLASS, channel], undefined)
        let locked = yield* Effect.exit(Effect.flatMap(this.open(name), lock))
        if (Exit.isFailure(locked) && this.session !== undefined) {
          // The session may have gone since the last check (up to CHECK_MILLIS ago: a terminated backend): once
          // more on a new one, which takes the other channels' locks again, rather than failing this stream. Their
          // streams may have lost events meanwhile: said as `check` says it, which finds the new session alive.
          if (this.held.size > 0) yield* this.warnLost(locked.cause)
          yield* this.close()
          locked = yield* Effect.exit(Effect.flatMap(this.open(name), lock))
        }
        if (Exit.isFailure(locked)) {
          if (this.streams === 0) yield* this.close()
          return yield* locked
        }
      } else {
        yield* this.open(name)
      }
      this.held.set(channel, (this.held.get(channel) ?? 0) + 1)
      if (this.streams++ === 0) {
        // Interruptible: a fiber forked here (an acquire, uninterruptible) would inherit that and never stop.
        this.watcher = yield* Effect.forkDaemon(Effect.interruptible(this.watch()))
      }
    })
  }

  private remove(channel: string): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const left = (this.held.get(channel) ?? 1) - 1
      if (left > 0) this.held.set(channel, left)
      else this.held.delete(channel)
      if (--this.streams === 0) {
        // Not awaited: its check of the session runs uninterruptibly (an interrupted statement is cancelled with
        // pg_cancel_backend, which could hit the unlock below instead), and it does nothing once there are no streams.
        if (this.watcher !== undefined) yield* Fiber.interruptFork(this.watcher)
        this.watcher = undefined
        yield* this.close()
      } else if (left === 0 && this.session !== undefined) {
        // A failure leaves a lock on a session that goes on: its emitters publish for nobody, never the reverse.
        yield* Effect.ignore(this.session.connection.execute(UNLOCK, [LISTENERS_CLASS, channel], undefined))
      }
    })
  }

  /** The session, reserved (with every held channel's lock taken) if there is none. */
  private open(name: string): Effect.Effect<Session, SqlError> {
    return Effect.gen(this, function*() {
      if (this.session !== undefined) return this.session
      // The last connection is left to the queues: on a pool of one, every statement of the process (offer, lease,
      // settle) waited for a connection forever (test/sql/DurableQueue.events.test.ts, "pool of one").
      const poolSize = (this.client as { readonly config?: { readonly maxConnections?: unknown } }).config
        ?.maxConnections
      const max = typeof poolSize === "number" ? poolSize : PG_POOL_DEFAULT
      if (max < 2) {
        return yield* new SqlError({
          cause: new Error(`maxConnections ${max}`),
          message: `DurableQueue ${name}: the events streams on PostgreSQL of a process hold one connection of the ` +
            `pool while any runs (one for all queues of the client), which would leave none of maxConnections ` +
            `${max} to the queues: give the PgClient more`
        })
      }
      const scope = yield* Scope.make()
      const opened = yield* Effect.exit(Effect.gen(this, function*() {
        const connection = yield* Scope.extend(this.client.reserve, scope)
        for (const channel of this.held.keys()) {
          yield* connection.execute(LOCK, [LISTENERS_CLASS, channel], undefined)
        }
        return { connection, scope }
      }))
      if (Exit.isFailure(opened)) {
        yield* Scope.close(scope, Exit.void)
        return yield* opened
      }
      return this.session = opened.value
    })
  }

  /** Gives the session back to the pool without its locks: a lock left on a pooled session counts a listener forever. */
  private close(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const session = this.session
      if (session === undefined) return Effect.void
      this.session = undefined
      return Effect.zipRight(
        Effect.ignore(session.connection.execute("SELECT pg_advisory_unlock_all()", [], undefined)),
        Scope.close(session.scope, Exit.void)
      )
    })
  }

  /** Every `CHECK_MILLIS` (every second while there is no session), checks the session and replaces it if it is gone. */
  private watch(): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      while (true) {
        yield* Effect.sleep(this.session === undefined ? 1_000 : lockPeriods.checkMillis)
        yield* Effect.uninterruptible(this.check())
      }
    })
  }

  /** Checks the session (on its own connection, outside the mutex) and replaces it if it is gone or missing. */
  private check(): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const session = this.session
      if (session !== undefined) {
        const alive = yield* Effect.exit(session.connection.execute("SELECT 1", [], undefined))
        if (Exit.isSuccess(alive)) return
        yield* this.warnLost(alive.cause)
      }
      yield* this.mutex.withPermits(1)(this.replace(session))
    })
  }

  private warnLost(cause: Cause.Cause<unknown>): Effect.Effect<void> {
    return Effect.logWarning(
      `DurableQueue: the session counting this process as an events listener of ${this.held.size} queue(s) ` +
        `ended; registering again (events in between may be lost)`,
      cause
    )
  }

  /** Replaces `lost` (if it is still the session and streams remain), taking every held lock again. */
  private replace(lost: Session | undefined): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      if (this.streams === 0 || this.session !== lost) return
      // Unlocked first, in case the session is alive after all (a statement cancelled): see `close`.
      yield* this.close()
      const opened = yield* Effect.exit(this.open("(events)"))
      if (Exit.isFailure(opened)) {
        yield* Effect.logWarning(
          "DurableQueue: taking the events listeners' locks again failed; retrying",
          opened.cause
        )
      }
    })
  }
}

/** One `ListenerLocks` per client (the `SqlClient` object every queue of a layer shares). */
const locksByClient = new WeakMap<SqlClient.SqlClient, ListenerLocks>()

const locksOf = (client: SqlClient.SqlClient): ListenerLocks => {
  let locks = locksByClient.get(client)
  if (locks === undefined) locksByClient.set(client, locks = new ListenerLocks(client))
  return locks
}

/**
 * What the LISTEN of `channel` hears, once this process counts as a listener: from `HOLD_MILLIS` after its lock
 * was taken, every event any emitter sends reaches the LISTEN, so an event delivered then (the "subscription is
 * made" of `events`) is followed by all later ones. Heard earlier is kept and delivered after the hold. The LISTEN
 * is the process's one for the client and channel (sqlListen.ts `listening`), listened anew when it stops hearing
 * (a terminated backend, a database restart): said with a warning, as a lost lock's session is.
 */
const heard = (
  client: SqlClient.SqlClient,
  listener: Listener,
  channel: string,
  name: string
): Stream.Stream<string, SqlError> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    yield* locksOf(client).hold(channel, name)
    const { heard } = yield* listening(listener, client, channel)
    yield* Effect.sleep(HOLD_MILLIS)
    return Stream.fromQueue(heard).pipe(
      Stream.mapConcatEffect((item) =>
        typeof item === "string"
          ? Effect.succeed(eventsOf(item))
          : item.listening === "again"
          ? Effect.as(
            Effect.logWarning(
              `DurableQueue ${name}: the LISTEN connection of its events stream stopped hearing and listens ` +
                `again (events in between may be lost)`
            ),
            []
          )
          : Effect.succeed([])
      )
    )
  }))
