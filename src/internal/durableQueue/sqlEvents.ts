/**
 * The event port of the SQL `DurableQueue`. PostgreSQL (with `@effect/sql-pg`, whose client can LISTEN): events go
 * out with `pg_notify` on a channel of their own (`channelOf(<table>!events, <queue>)`, apart from the offer
 * channel, so an `events` stream ending, which UNLISTENs its channel for the whole client, never silences the
 * takers' wake-ups), one notification per batch of events up to 7,900 bytes (PostgreSQL refuses a payload of
 * 8,000), events joined by newlines after a first line of the payload's index in its batch; one LISTEN per client
 * and channel is shared by all `events` streams of the process. SQLite (one machine, no notifications): an
 * in-process bus per client, table and queue, so events reach the subscribers of the process that caused them only.
 *
 * Schedule marks are rows of `<table>_marks` (queue name, schedule id), created at the first `schedule` or
 * `unschedule` of a process, not in the jobs table: no job state, count or lease query ever sees them.
 */
import * as SqlClient from "@effect/sql/SqlClient"
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
          Stream.flatMap(listener.listen(channel), (payload) => Stream.fromIterable(eventsOf(payload)))
        ),
        spacingMillis: REMOTE_SPACING_MILLIS
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
