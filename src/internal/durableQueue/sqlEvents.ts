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
 * On PostgreSQL nobody may be listening (issue #16): see `audienceOf` and `registered` for how an emitter knows.
 *
 * Schedule marks are rows of `<table>_marks` (queue name, schedule id), created at the first `schedule` or
 * `unschedule` of a process, not in the jobs table: no job state, count or lease query ever sees them.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import {
  type EventPort,
  inProcessPort,
  REMOTE_SPACING_MILLIS,
  type ScheduleMarks,
  sharedSubscription
} from "./events.js"
import { channelOf, listenerOf } from "./sqlListen.js"

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
          heard(
            client,
            channel,
            name,
            Stream.flatMap(listener.listen(channel), (p) => Stream.fromIterable(eventsOf(p)))
          )
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

/** Connections reserved by `registered` per client (each held for as long as its stream runs). */
const reservedBy = new WeakMap<SqlClient.SqlClient, number>()

/**
 * Holds the listeners' lock of `channel` for the scope, on a connection of the pool reserved for it (one per
 * process and channel: the stream is shared, `sharedSubscription`), checked every `CHECK_MILLIS`; when its session
 * is gone (a terminated backend, a database restart) it is taken again on a new connection, with a warning: events
 * in between may have been lost, as the LISTEN connection's would. Fails when the first lock cannot be taken.
 */
const registered = (client: SqlClient.SqlClient, channel: string, name: string) =>
  Effect.gen(function*() {
    // The lock's connection is reserved for as long as the stream runs, one per queue with a stream: on a pool of
    // one, or of two with streams of two queues, every statement of the process (offer, lease, settle) waited for a
    // connection forever (test/sql/DurableQueue.events.test.ts, "pool of one", "pool of two"). The last connection
    // is left to the queues.
    const poolSize = (client as { readonly config?: { readonly maxConnections?: unknown } }).config?.maxConnections
    const max = typeof poolSize === "number" ? poolSize : PG_POOL_DEFAULT
    const reserved = reservedBy.get(client) ?? 0
    if (reserved + 1 >= max) {
      return yield* Effect.fail(
        new SqlError({
          cause: new Error(`maxConnections ${max}`),
          message: `DurableQueue ${name}: an events stream on PostgreSQL holds one connection of the pool while it ` +
            `runs (one per queue with a stream); ${reserved} held already would leave none of maxConnections ${max}` +
            ` to the queues: give the PgClient more`
        })
      )
    }
    reservedBy.set(client, reserved + 1)
    yield* Effect.addFinalizer(() => Effect.sync(() => reservedBy.set(client, (reservedBy.get(client) ?? 1) - 1)))
    const ready = yield* Deferred.make<void, SqlError>()
    const params = [LISTENERS_CLASS, channel]
    const session = Effect.scoped(Effect.gen(function*() {
      const connection = yield* client.reserve
      yield* Effect.acquireRelease(
        connection.execute("SELECT pg_advisory_lock_shared(hashtext($1), hashtext($2))", params, undefined),
        // Back to the pool without it: a lock left on a pooled session would count a listener forever.
        () =>
          Effect.ignore(
            connection.execute("SELECT pg_advisory_unlock_shared(hashtext($1), hashtext($2))", params, undefined)
          )
      )
      yield* Deferred.succeed(ready, undefined)
      while (true) {
        yield* Effect.sleep(CHECK_MILLIS)
        yield* connection.execute("SELECT 1", [], undefined)
      }
    }))
    yield* Effect.gen(function*() {
      while (true) {
        const ended = yield* Effect.flip(session)
        if (!(yield* Deferred.isDone(ready))) return yield* Deferred.fail(ready, ended)
        yield* Effect.logWarning(
          `DurableQueue ${name}: the session counting this process as an events listener ended; registering again (events in between may be lost)`,
          ended
        )
        yield* Effect.sleep(1_000)
      }
    }).pipe(Effect.interruptible, Effect.forkScoped)
    yield* Deferred.await(ready)
  })

/**
 * What the LISTEN of `channel` hears, once this process counts as a listener: from `HOLD_MILLIS` after its lock
 * was taken, every event any emitter sends reaches the LISTEN, so an event delivered then (the "subscription is
 * made" of `events`) is followed by all later ones. Heard earlier is kept and delivered after the hold.
 */
const heard = (
  client: SqlClient.SqlClient,
  channel: string,
  name: string,
  source: Stream.Stream<string, SqlError>
): Stream.Stream<string, SqlError> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    yield* registered(client, channel, name)
    const queue = yield* Stream.toQueue(source, { strategy: "unbounded" })
    yield* Effect.sleep(HOLD_MILLIS)
    return Stream.flattenTake(Stream.fromQueue(queue))
  }))
