/**
 * The SQL store of `DurableQueue` (PostgreSQL and SQLite), written because the `SqlPersistedQueue` store that
 * ships with `@effect/sql` 0.52.1 (the `PersistedQueueStore` of `@effect/experimental`'s `PersistedQueue`)
 * loses leases and jobs; checked against PostgreSQL 15 and SQLite 3.53 (better-sqlite3):
 * - its leases are never refreshed: `refreshLocks` returns at once while the `elementIds` set is empty, and
 *   nothing ever adds to that set (only `delete` is called), so a job running longer than `lockExpiration`
 *   (2 minutes by default) is handed to a second taker while the first still runs it;
 * - the unique index is on `id` alone, not `(queue_name, id)`: offering id "x" to queue "b" after queue "a" got an
 *   "x" is silently dropped (`ON CONFLICT (id) DO NOTHING`), and queue "b" never sees the job;
 * - `id VARCHAR(36)` on PostgreSQL and MySQL: a custom id longer than 36 characters fails the offer;
 * - `acquired_at TIMESTAMP` (without time zone) is compared with `NOW()`: processes whose sessions use different
 *   `TimeZone` settings see each other's leases as expired (or live) for hours;
 * - the SQLite take is `UPDATE … RETURNING … ORDER BY … LIMIT`, which needs SQLite compiled with
 *   `SQLITE_ENABLE_UPDATE_DELETE_LIMIT` (better-sqlite3 is; SQLite's default build is not), and `CURRENT_TIMESTAMP`
 *   has one-second resolution, so a lease is only whole seconds and may last a second longer than asked;
 * - a job out of attempts stays a pending row (`completed = false`, `attempts >= maxAttempts`) that only the
 *   taker's `maxAttempts` keeps from running again; there is no dead-letter state to list;
 * - `PersistedQueue.take` opens a `Scope` per job and runs one `UPDATE` per acknowledgement.
 *
 * This store keeps one row per job in `tableName` (created if missing, shared by queues through `queue_name`,
 * unique on `(queue_name, id_key)` where `id_key` is the id, or the SHA-256 of an id over 128 characters):
 * `state` 0 pending, 1 acknowledged, 2 dead; `visible_at` (milliseconds, the database's clock) is when a pending
 * job may be taken: its offer time, or the end of its lease while leased. Taking a job sets `visible_at` to now
 * plus the lease and `acquired_by` to this store's id, so a killed taker's jobs come back when the lease ends with
 * no sweeper; the lease of every job held here is pushed forward every third of the lease. Offers of concurrent
 * callers are inserted in one statement; takes fetch as many jobs as there are takers waiting, in one statement
 * (`FOR UPDATE SKIP LOCKED` on PostgreSQL); acknowledgements and put-backs are written in batches by one fiber.
 * Rows of acknowledged jobs are kept, so an id offered again later is still not queued twice.
 *
 * On PostgreSQL (with `@effect/sql-pg`, whose client has `listen`), each batch of offers sends one notification in
 * the INSERT statement itself (`pg_notify` in a CTE, only when a row went in), as do retries and put-backs; every
 * store that takes LISTENs on the queue's channel (`channelOf`) and wakes its fetcher, so idle takers of all
 * processes look at once; polling (100 ms by default) stays as the safety net (notifications lost while a LISTEN
 * connection is down; see `listen` for how that is noticed).
 * SQLite has no notifications: an offer wakes the takers of its own process; others poll (100 ms by default).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createHash, randomUUID } from "node:crypto"

/** A leased job. @internal */
export interface Element {
  /** The row's primary key (a string on PostgreSQL, where it is a BIGINT). */
  readonly sequence: string | number
  readonly id: string
  /** The job, encoded by the queue's schema. */
  readonly element: unknown
  /** Attempts made before this one. */
  readonly attempts: number
}

/** @internal */
export interface DeadRow {
  readonly id: string
  readonly element: unknown
  readonly attempts: number
  readonly lastError: string
}

/** @internal */
export interface StoreOptions {
  readonly name: string
  readonly tableName: string
  readonly leaseMillis: number
  /** How often an idle taker looks; 100 milliseconds by default. */
  readonly pollMillis: number | undefined
  /** Whether offers notify other processes on PostgreSQL (LISTEN/NOTIFY). Default: true. For measurements. */
  readonly notify?: boolean | undefined
}

/** How a job is settled. "ack": done; "back": put back untouched; "retry": failed, queued again; "dead". @internal */
export type Settlement =
  | { readonly _tag: "ack" }
  | { readonly _tag: "back" }
  | { readonly _tag: "retry"; readonly lastError: string }
  | { readonly _tag: "dead"; readonly lastError: string }

/** @internal */
export interface Store {
  readonly dialect: "pg" | "sqlite"
  readonly offer: (id: string, encoded: unknown) => Effect.Effect<void, SqlError>
  /** The next leased job; waits (polling) while there is none. */
  readonly next: Effect.Effect<Element>
  /**
   * Queues the settlement of a job; the returned effect waits until it is written (or failed to be written). A
   * settlement that is not awaited is still written, at the latest when the store's scope closes.
   */
  readonly settle: (element: Element, settlement: Settlement) => Effect.Effect<Effect.Effect<void, SqlError>>
  readonly deadLetters: Effect.Effect<ReadonlyArray<DeadRow>, SqlError>
  /** Pending jobs (waiting or leased) of the queue, in every process. */
  readonly size: Effect.Effect<number, SqlError>
}

const tableNamePattern = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/

/** Whether `tableName` is an identifier, optionally schema-qualified. @internal */
export const isTableName = (tableName: string): boolean => tableNamePattern.test(tableName)

interface Waiting<A> {
  readonly item: A
  readonly done: Deferred.Deferred<void, SqlError>
}

const BATCH = 256

/**
 * The unique key of an id: the id itself, or for an id longer than 128 characters its SHA-256 (a PostgreSQL
 * B-tree entry holds at most about 2,700 bytes, so a long id could not be indexed as it is).
 */
const idKey = (id: string): string => id.length <= 128 ? id : `sha256:${createHash("sha256").update(id).digest("hex")}`

/**
 * The default poll interval, with PostgreSQL notifications (then only the safety net) and without. The same: at
 * 1 second with notifications, processing ran at 0.81× and two clients at 0.67× (a taker that found nothing waits
 * out the poll when no notification comes), for no gain in wake-up latency.
 */
const POLL_NOTIFIED = 100
const POLL_DEFAULT = 100
/** How often a store checks, with a notification to itself, that its LISTEN connection still hears; how long it waits. */
const PROBE_MILLIS = 5_000
const PROBE_TIMEOUT = 2_000
/** The shortest time between a take that found nothing and the next, when woken by an offer. */
const WAKE_SPACING = 20

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

/** `@effect/sql-pg`'s `PgClient` (the `SqlClient` it provides is the same object); not imported, it is optional. */
interface Listener {
  readonly listen: (channel: string) => Stream.Stream<string, SqlError>
}
const listenerOf = (client: SqlClient.SqlClient): Listener | undefined =>
  "listen" in client && typeof client.listen === "function" ? client as unknown as Listener : undefined

/** @internal */
export const make = (options: StoreOptions): Effect.Effect<Store, SqlError, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const client = yield* SqlClient.SqlClient
    const sql = client.withoutTransforms()
    const { leaseMillis, name, tableName } = options
    const dialect = sql.onDialectOrElse({ pg: () => "pg" as const, sqlite: () => "sqlite" as const, orElse: () => "other" as const })
    if (dialect === "other") {
      return yield* Effect.dieMessage("effect-workers/sql DurableQueue supports PostgreSQL and SQLite only")
    }
    // PostgreSQL: an offer (or a job put back or retried) notifies `channel`, and every store of the queue LISTENs
    // on it, so idle takers of every process look at once; polling stays as the safety net.
    const listener = dialect === "pg" && options.notify !== false ? listenerOf(client) : undefined
    const channel = channelOf(tableName, name)
    const pollMillis = options.pollMillis ?? (listener !== undefined ? POLL_NOTIFIED : POLL_DEFAULT)
    const table = sql(tableName)
    const base = tableName.replace(/\./g, "_")
    const indexName = (suffix: string) => sql(`${base}_${suffix}`)
    const worker = randomUUID()
    // The database's clock in milliseconds since the epoch, so the leases of processes on several machines agree.
    // (`now()`, the statement's time on PostgreSQL, is stable within a statement, so the take can use its index.)
    const now = dialect === "pg"
      ? sql.literal("(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT")
      : sql.literal("CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)")
    const lease = sql.literal(String(Math.max(1, Math.round(leaseMillis))))

    const ddl = dialect === "pg"
      ? Effect.gen(function*() {
        // Several processes starting at once would race on CREATE TABLE IF NOT EXISTS (a unique violation in
        // pg_type): one at a time, under a transaction-scoped advisory lock.
        yield* sql`SELECT pg_advisory_xact_lock(hashtext(${`effect-workers:${tableName}`}))`
        yield* sql`CREATE TABLE IF NOT EXISTS ${table} (
          sequence BIGSERIAL PRIMARY KEY,
          queue_name TEXT NOT NULL,
          id TEXT NOT NULL,
          id_key TEXT NOT NULL,
          element TEXT NOT NULL,
          state SMALLINT NOT NULL DEFAULT 0,
          attempts INTEGER NOT NULL DEFAULT 0,
          visible_at BIGINT NOT NULL,
          acquired_by TEXT NULL,
          last_failure TEXT NULL,
          created_at BIGINT NOT NULL,
          updated_at BIGINT NOT NULL,
          UNIQUE (queue_name, id_key)
        )`
        yield* sql`CREATE INDEX IF NOT EXISTS ${indexName("ready")} ON ${table} (queue_name, visible_at, sequence) WHERE state = 0`
        yield* sql`CREATE INDEX IF NOT EXISTS ${indexName("dead")} ON ${table} (queue_name, updated_at, sequence) WHERE state = 2`
      }).pipe(sql.withTransaction)
      : Effect.gen(function*() {
        yield* sql`CREATE TABLE IF NOT EXISTS ${table} (
          sequence INTEGER PRIMARY KEY AUTOINCREMENT,
          queue_name TEXT NOT NULL,
          id TEXT NOT NULL,
          id_key TEXT NOT NULL,
          element TEXT NOT NULL,
          state INTEGER NOT NULL DEFAULT 0,
          attempts INTEGER NOT NULL DEFAULT 0,
          visible_at INTEGER NOT NULL,
          acquired_by TEXT NULL,
          last_failure TEXT NULL,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          UNIQUE (queue_name, id_key)
        )`
        yield* sql`CREATE INDEX IF NOT EXISTS ${indexName("ready")} ON ${table} (queue_name, visible_at, sequence) WHERE state = 0`
        yield* sql`CREATE INDEX IF NOT EXISTS ${indexName("dead")} ON ${table} (queue_name, updated_at, sequence) WHERE state = 2`
      })
    yield* ddl

    const inList = (sequences: ReadonlyArray<string | number>) => sql.in(sequences)
    const lockClause = dialect === "pg" ? sql.literal("FOR UPDATE SKIP LOCKED") : sql.literal("")

    // Leased jobs held by this store (fetched, running, or settled but not yet written), by sequence; their leases
    // are refreshed together. A job stays here until its settlement is written, so an acknowledgement delayed by an
    // outage keeps the job's lease, and the job is not run again elsewhere meanwhile.
    const active = new Map<string, string | number>()
    const keyOf = (sequence: string | number) => String(sequence)
    // Opened when jobs may have become ready (an offer here, a notification): a fetcher waiting out its poll
    // interval looks again at once.
    const offered = yield* Effect.makeLatch(false)

    yield* Effect.suspend(() => {
      const sequences = Array.from(active.values())
      if (sequences.length === 0) return Effect.void
      return Effect.forEach(chunks(sequences, BATCH), (chunk) =>
        sql`UPDATE ${table} SET visible_at = ${now} + ${lease}
          WHERE sequence IN ${inList(chunk)} AND acquired_by = ${worker} AND state = 0`, { discard: true })
    }).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("DurableQueue: refreshing leases failed", cause)),
      Effect.zipRight(Effect.sleep(Math.max(10, Math.floor(leaseMillis / 3)))),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )

    // Offers of concurrent callers go out in one INSERT.
    // A batch that fails (a PostgreSQL text cannot hold a NUL character, say) is written again row by row, so one
    // bad offer does not fail the others.
    const offers = yield* Queue.unbounded<Waiting<{ readonly id: string; readonly element: string }>>()
    const insert = (batch: ReadonlyArray<Waiting<{ readonly id: string; readonly element: string }>>) => {
      const rows = sql.csv(batch.map(({ item: { element, id } }) => sql`(${name}, ${id}, ${idKey(id)}, ${element}, ${now}, ${now}, ${now})`))
      // With notifications, one NOTIFY per batch (in the same statement, so no round trip more), and only when a row
      // went in; it is delivered when the statement commits.
      return listener !== undefined
        ? sql`WITH inserted AS (
            INSERT INTO ${table} (queue_name, id, id_key, element, visible_at, created_at, updated_at)
            VALUES ${rows} ON CONFLICT (queue_name, id_key) DO NOTHING RETURNING 1
          ) SELECT pg_notify(${channel}, 'o') FROM (SELECT 1 FROM inserted LIMIT 1) AS one`
        : sql`INSERT INTO ${table} (queue_name, id, id_key, element, visible_at, created_at, updated_at)
          VALUES ${rows} ON CONFLICT (queue_name, id_key) DO NOTHING`
    }
    yield* drain(offers, (batch) =>
      Effect.flatMap(Effect.exit(insert(batch)), (exit) =>
        Exit.isFailure(exit) && batch.length > 1
          ? Effect.forEach(batch, (one) => Effect.flatMap(Effect.exit(insert([one])), (exit) => Deferred.done(one.done, Exit.asVoid(exit))), { discard: true })
          : settleAll(batch, exit)))

    // Settlements: acknowledgements and put-backs of a batch each in one UPDATE, failures one by one.
    const settlements = yield* Queue.unbounded<Waiting<{ readonly element: Element; readonly settlement: Settlement }>>()
    const write = (batch: ReadonlyArray<{ readonly element: Element; readonly settlement: Settlement }>) =>
      Effect.gen(function*() {
        const acks: Array<string | number> = []
        const backs: Array<string | number> = []
        let retries = 0
        for (const { element, settlement } of batch) {
          switch (settlement._tag) {
            case "ack":
              acks.push(element.sequence)
              break
            case "back":
              backs.push(element.sequence)
              break
            case "retry":
              retries++
              yield* sql`UPDATE ${table} SET state = 0, attempts = ${element.attempts + 1}, last_failure = ${settlement.lastError},
                acquired_by = NULL, visible_at = ${now}, updated_at = ${now}
                WHERE sequence = ${element.sequence} AND acquired_by = ${worker} AND state = 0`
              break
            case "dead":
              yield* sql`UPDATE ${table} SET state = 2, attempts = ${element.attempts + 1}, last_failure = ${settlement.lastError},
                acquired_by = NULL, updated_at = ${now}
                WHERE sequence = ${element.sequence} AND acquired_by = ${worker} AND state = 0`
              break
          }
        }
        if (acks.length > 0) {
          yield* sql`UPDATE ${table} SET state = 1, attempts = attempts + 1, acquired_by = NULL, updated_at = ${now}
            WHERE sequence IN ${inList(acks)} AND acquired_by = ${worker} AND state = 0`
        }
        if (backs.length > 0) {
          yield* sql`UPDATE ${table} SET acquired_by = NULL, visible_at = ${now}
            WHERE sequence IN ${inList(backs)} AND acquired_by = ${worker} AND state = 0`
        }
        // Jobs queued again: takers here, and with notifications in every process, look at once.
        if (retries + backs.length > 0) {
          if (listener !== undefined) yield* sql`SELECT pg_notify(${channel}, 'o')`
          else yield* offered.open
        }
      })
    // The database may be restarting: a batch is retried for a lease or 10 seconds, whichever is longer. Written
    // after its lease lapsed and another taker took the job, a settlement changes nothing (the `acquired_by` guard).
    const retryMillis = Math.max(leaseMillis, 10_000)
    yield* drain(settlements, (batch) =>
      Effect.flatMap(
        Effect.exit(write(batch.map((w) => w.item)).pipe(
          Effect.retry({ schedule: Schedule.spaced("200 millis").pipe(Schedule.upTo(retryMillis)) })
        )),
        (exit) =>
          Effect.zipRight(
            Effect.sync(() => batch.forEach((w) => active.delete(keyOf(w.item.element.sequence)))),
            settleAll(batch, exit)
          )
      ))

    const settle = (element: Element, settlement: Settlement) =>
      Effect.map(Deferred.make<void, SqlError>(), (done) => {
        settlements.unsafeOffer({ item: { element, settlement }, done })
        return Deferred.await(done)
      })

    // Jobs are fetched for the takers waiting, as many as there are, in one statement; jobs fetched but not yet
    // handed out are leased and refreshed like running ones, and put back when the scope closes.
    let demand = 0
    const jobs = yield* Queue.unbounded<Element>()
    const wake = yield* Effect.makeLatch(false)
    const take = (size: number) =>
      sql<{ sequence: string | number; id: string; element: string; attempts: number }>`
        UPDATE ${table} SET visible_at = ${now} + ${lease}, acquired_by = ${worker}
        WHERE sequence IN (
          SELECT sequence FROM ${table}
          WHERE queue_name = ${name} AND state = 0 AND visible_at <= ${now}
          ORDER BY visible_at, sequence
          LIMIT ${sql.literal(String(size))} ${lockClause}
        )
        RETURNING sequence, id, element, attempts`
    // A store LISTENs from its first take on (a store that only offers never does: `@effect/sql-pg` shares one
    // LISTEN connection per client, and a stream's end UNLISTENs the channel for every stream of the client); the
    // first take waits for the LISTEN to be confirmed (2 seconds at most), so an offer made anywhere after it is heard.
    let listening = listener === undefined
    const fetch = Effect.gen(function*() {
      while (true) {
        yield* wake.close
        const want = demand - (yield* Queue.size(jobs))
        if (want <= 0) {
          yield* wake.await
          continue
        }
        if (!listening) {
          listening = true
          yield* listen(listener!, channel, worker.replace(/-/g, "").slice(0, 16), offered, sql)
        }
        yield* offered.close
        const rows = yield* take(Math.min(want, BATCH)).pipe(
          Effect.catchAllCause((cause) =>
            Effect.as(
              Effect.zipRight(Effect.logWarning("DurableQueue: taking jobs failed; retrying", cause), Effect.sleep(Math.max(pollMillis, 200))),
              []
            )
          )
        )
        if (rows.length === 0) {
          const empty = Date.now()
          yield* Effect.raceFirst(Effect.sleep(pollMillis), offered.await)
          // Woken (by an offer) within WAKE_SPACING of finding nothing, it waits out the rest: an idle taker starts at
          // once, while under a stream of offers it takes them some at a time instead of a statement per offer batch.
          const early = empty + WAKE_SPACING - Date.now()
          if (early > 0) yield* Effect.sleep(early)
          continue
        }
        const elements = rows
          .map((row): Element => ({ sequence: row.sequence, id: row.id, element: parse(row.element), attempts: Number(row.attempts) }))
          .sort((a, b) => Number(a.sequence) - Number(b.sequence))
        for (const element of elements) active.set(keyOf(element.sequence), element.sequence)
        yield* Queue.offerAll(jobs, elements)
      }
    })
    yield* fetch.pipe(
      Effect.interruptible,
      Effect.onExit(() =>
        Effect.flatMap(Queue.takeAll(jobs), (left) => Effect.forEach(left, (element) => settle(element, { _tag: "back" }), { discard: true }))
      ),
      Effect.forkScoped
    )

    const next: Effect.Effect<Element> = Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        demand++
        wake.unsafeOpen()
        return restore(Queue.take(jobs)).pipe(Effect.ensuring(Effect.sync(() => demand--)))
      })
    )

    return {
      dialect,
      offer: (id, encoded) =>
        Effect.flatMap(Deferred.make<void, SqlError>(), (done) => {
          offers.unsafeOffer({ item: { id, element: JSON.stringify(encoded) }, done })
          // Once the row is in, a fetcher of this process waiting out its poll interval looks again at once.
          return Effect.zipLeft(Deferred.await(done), offered.open)
        }),
      next,
      settle,
      size: Effect.map(
        sql<{ n: number | string }>`SELECT COUNT(*) AS n FROM ${table} WHERE queue_name = ${name} AND state = 0`,
        (rows) => Number(rows[0]?.n ?? 0)
      ),
      deadLetters: sql<{ id: string; element: string; attempts: number; last_failure: string | null }>`
        SELECT id, element, attempts, last_failure FROM ${table}
        WHERE queue_name = ${name} AND state = 2 ORDER BY updated_at, sequence`.pipe(
        Effect.map((rows) =>
          rows.map((row) => ({
            id: row.id,
            element: parse(row.element),
            attempts: Number(row.attempts),
            lastError: row.last_failure ?? ""
          }))
        )
      )
    } satisfies Store
  })

/**
 * Listens on `channel` and opens `offered` on each offer notification ("o"). `@effect/sql-pg`'s LISTEN connection
 * is not re-established when it drops (a database restart, a terminated backend): its stream just goes quiet; and
 * any stream of the client ending UNLISTENs the channel for all. So the store sends the channel a probe of its own
 * (`p:<id>`, ignored by the other stores) every `PROBE_MILLIS` and, when that is not heard back within
 * `PROBE_TIMEOUT` while the notification itself went through, it listens anew and looks for jobs once
 * (notifications sent meanwhile were lost). Returns once the first probe was heard, or after 2 seconds at most
 * (then it keeps trying in the background; polling covers the gap).
 */
const listen = (
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
      Stream.runForEach((payload) => payload === "o" ? offered.open : payload === probePayload ? heard.open : Effect.void)
    )
    const probe = (timeout: number) =>
      Effect.gen(function*() {
        yield* heard.close
        const sent = yield* Effect.exit(sql`SELECT pg_notify(${channel}, ${probePayload})`)
        if (Exit.isFailure(sent)) return "unsent" as const
        return Option.isSome(yield* Effect.timeout(heard.await, timeout).pipe(Effect.option)) ? "heard" as const : "lost" as const
      })
    const supervise = Effect.gen(function*() {
      while (true) {
        const fiber = yield* Effect.fork(session)
        let confirmed = false
        let failed = false
        for (let tries = 0; ; tries++) {
          // Until the LISTEN is confirmed, probe every 100 ms (for 5 s at most), then every PROBE_MILLIS.
          const result = yield* probe(confirmed ? PROBE_TIMEOUT : 100)
          const ended = yield* Fiber.poll(fiber)
          if (Option.isSome(ended)) {
            failed = true
            yield* Effect.logWarning("DurableQueue: listening for offers failed; listening again", Exit.isFailure(ended.value) ? ended.value.cause : "ended")
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
            yield* Effect.logWarning("DurableQueue: the LISTEN connection stopped hearing notifications; listening again")
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
    yield* supervise.pipe(Effect.interruptible, Effect.forkScoped)
    yield* Deferred.await(ready).pipe(Effect.timeout("2 seconds"), Effect.ignore)
  })

const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/** A stored job that is not JSON (edited by hand) is handed on as its text: decoding fails, which counts an attempt. */
const parse = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

const settleAll = <A>(batch: ReadonlyArray<Waiting<A>>, exit: Exit.Exit<unknown, SqlError>) =>
  Effect.forEach(batch, (w) => Deferred.done(w.done, Exit.asVoid(exit)), { discard: true })

/**
 * A fiber that hands what `queue` receives to `write` in batches of up to `BATCH` items, one batch at a time;
 * `write` settles each item's `done`. When the scope closes, what is still queued is written before the fiber ends.
 */
const drain = <A>(
  queue: Queue.Queue<Waiting<A>>,
  write: (batch: ReadonlyArray<Waiting<A>>) => Effect.Effect<void>
): Effect.Effect<void, never, Scope.Scope> => {
  // Only the wait is interruptible: a batch taken from the queue is always written and its waiters settled.
  const once = Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(restore(Queue.takeBetween(queue, 1, BATCH)), (chunk) => write(Array.from(chunk)))
  )
  const flushRest = Effect.gen(function*() {
    while ((yield* Queue.size(queue)) > 0) yield* once
  })
  return once.pipe(
    Effect.forever,
    Effect.interruptible,
    Effect.onInterrupt(() => flushRest.pipe(Effect.timeout("5 seconds"), Effect.ignore)),
    Effect.forkScoped,
    Effect.asVoid
  )
}
