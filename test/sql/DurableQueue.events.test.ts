/**
 * PostgreSQL job events sent only when someone listens (issue #16): an `events` stream counts as a listener by a
 * lock its session holds (src/internal/durableQueue/sqlEvents.ts), emitters look whether anyone holds it. What is
 * sent is seen by a spy: a raw LISTEN on the events channel, which hears every NOTIFY without counting as one.
 */
import { PgClient } from "@effect/sql-pg"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { eventsOf, LISTENERS_CLASS } from "../../src/internal/durableQueue/sqlEvents.js"
import { channelOf, listenerOf } from "../../src/internal/durableQueue/sqlListen.js"
import * as DurableQueue from "../../src/sql/DurableQueue.js"
import { clientLayer, withTable } from "../fixtures/sql-client.js"
import { spawnFixture } from "../helpers/processes.js"
import { postgres, requireService } from "../helpers/services.js"
import { eventually } from "../helpers/storePort.js"

const pgUp = await requireService(postgres)

type Queue = DurableQueue.DurableQueue<number>

/** A queue instance on a client of its own (a pool and a LISTEN connection), as another process would have. */
const instance = (context: Context.Context<SqlClient.SqlClient>, table: string, name: string) =>
  Effect.provide(
    DurableQueue.make({ name, tableName: table, schema: Schema.Number, pollInterval: "20 millis" }),
    context
  )

const client = () =>
  Layer.build(Layer.fresh(clientLayer("pg"))) as Effect.Effect<
    Context.Context<SqlClient.SqlClient>,
    unknown,
    Scope.Scope
  >

/** The ids of what was NOTIFYed on the events channel, heard by a LISTEN of its own, confirmed by a probe it hears. */
const spyOn = (table: string, name: string) =>
  Effect.gen(function*() {
    const context = yield* client()
    const sql = yield* Effect.provide(SqlClient.SqlClient, context)
    const channel = channelOf(`${table}!events`, name)
    const sent: Array<string> = []
    yield* Effect.forkScoped(Stream.runForEach(listenerOf(sql)!.listen(channel), (payload) =>
      Effect.sync(() => {
        for (const line of eventsOf(payload)) sent.push(line)
      })))
    let probes = 0
    yield* eventually(Effect.suspend(() =>
      sent.some((line) => line.startsWith("spy-probe"))
        ? Effect.succeed(true)
        : Effect.as(sql`SELECT pg_notify(${channel}, ${`spy-probe-${probes++}`})`, false)
    ))
    return sent
  })

/** The sessions holding the listeners' lock of the queue "jobs" of `table`: those its emitters count. */
const listeners = (context: Context.Context<SqlClient.SqlClient>, table: string) =>
  Effect.map(holders(context, table), (pids) => pids.length)

/** The backends holding that lock. */
const holders = (context: Context.Context<SqlClient.SqlClient>, table: string) =>
  Effect.flatMap(Effect.provide(SqlClient.SqlClient, context), (sql) =>
    Effect.map(
      sql<{ readonly pid: number }>`SELECT pid FROM pg_locks WHERE locktype = 'advisory'
        AND mode = 'ShareLock' AND granted AND classid = hashtext(${LISTENERS_CLASS})::oid
        AND objid = hashtext(${channelOf(`${table}!events`, "jobs")})::oid AND objsubid = 2`,
      (rows) => rows.map((row) => row.pid)
    ))

/** Offers probes through `through` until `heard` says a listener has one: its subscription is then made. */
const untilHeard = (through: Queue, heard: (id: string) => boolean) => {
  let probes = 0
  const offered: Array<string> = []
  return eventually(Effect.suspend(() => {
    if (offered.some(heard)) return Effect.succeed(true)
    const id = `probe-${probes++}`
    offered.push(id)
    return Effect.as(through.offer(0, { id }), false)
  }))
}

/** Collects a stream of `queue.events` with the time each event arrived. */
const collect = (queue: Queue) =>
  Effect.gen(function*() {
    const seen: Array<{ readonly id: string; readonly tag: string; readonly at: number }> = []
    const fiber = yield* Effect.forkScoped(Stream.runForEach(queue.events, (event) =>
      Effect.sync(() => {
        seen.push({ id: event.id, tag: event._tag, at: Date.now() })
      })))
    return { seen, fiber }
  })

const sentIds = (sent: ReadonlyArray<string>, start: string) =>
  sent.filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as { id: string; _tag: string })
    .filter((event) => event.id.startsWith(start))

/**
 * Offers through `queue` until one offer's "Offered" is not NOTIFYed (the emitter found nobody listening; it trusts
 * an answer for 1 s, so a few are sent first), then 5 more: none of those may be sent. Absence is waited for (300 ms,
 * 30 of the emitter's 10 ms spacings).
 */
const untilSilent = (queue: Queue, sent: ReadonlyArray<string>, label: string) =>
  Effect.gen(function*() {
    let tries = 0
    yield* eventually(
      Effect.gen(function*() {
        const id = `${label}-${tries++}`
        yield* queue.offer(0, { id })
        yield* Effect.sleep("300 millis")
        return sentIds(sent, id).length === 0
      }),
      30
    )
    yield* queue.offerAll([1, 2, 3, 4, 5].map((n) => ({ value: n, id: `${label}-quiet-${n}` })))
    yield* Effect.sleep("300 millis")
    expect(sentIds(sent, `${label}-quiet-`)).toEqual([])
  })

describe.skipIf(!pgUp)("sql DurableQueue on PostgreSQL: job events only when someone listens", () => {
  it.live(
    "jobs offered and run with no events stream NOTIFY nothing; a stream from another client hears all after",
    () =>
      withTable("pg", "evl", (table) =>
        Effect.gen(function*() {
          const sent = yield* spyOn(table, "jobs")
          const a = yield* instance(yield* client(), table, "jobs")
          const b = yield* instance(yield* client(), table, "jobs")
          const done: Array<string> = []
          yield* Effect.forkScoped(a.run((_n, job) => Effect.sync(() => done.push(job.id)), { concurrency: 4 }))
          yield* a.offerAll([1, 2, 3].map((n) => ({ value: n, id: `before-${n}` })))
          yield* a.offer(4, { id: "before-4" })
          yield* eventually(Effect.sync(() => done.length === 4))
          const { seen } = yield* collect(b)
          yield* untilHeard(a, (id) => seen.some((event) => event.id === id))
          yield* a.offerAll([5, 6].map((n) => ({ value: n, id: `after-${n}` })))
          const of = (events: ReadonlyArray<{ readonly id: string; readonly tag: string }>) =>
            events.filter((event) => event.id.startsWith("after-")).map((event) => `${event.tag} ${event.id}`).sort()
          yield* eventually(Effect.sync(() => of(seen).length === 6))
          expect(of(seen)).toEqual([
            "Completed after-5",
            "Completed after-6",
            "Offered after-5",
            "Offered after-6",
            "Started after-5",
            "Started after-6"
          ])
          // One emitter publishes in order: had the "before" jobs sent anything, the spy would have it by now.
          yield* eventually(Effect.sync(() => sentIds(sent, "after-6").some((event) => event._tag === "Completed")))
          expect(sentIds(sent, "before-")).toEqual([])
        }).pipe(Effect.scoped)),
    30_000
  )

  it.live(
    "an emitter that found nobody a moment before a stream subscribed still reaches it from the stream's first event",
    () =>
      withTable("pg", "evh", (table) =>
        Effect.gen(function*() {
          // Four instances (four emitters, each trusting its own last look for 1 s) offer every 20 ms throughout:
          // when the stream subscribes, their last looks ("nobody") are of different ages under 1 s, so without the
          // hold at least one loses offers (it passed 1 run in 2 with one instance).
          const xContext = yield* client()
          const starts: Array<{ readonly id: string; readonly at: number }> = []
          const offering = yield* Effect.forkScoped(Effect.forEach([0, 1, 2, 3], (k) =>
            Effect.gen(function*() {
              const x = yield* instance(xContext, table, "jobs")
              for (let i = 0;; i++) {
                const id = `x${k}-${i}`
                starts.push({ id, at: Date.now() })
                yield* x.offer(i, { id })
                yield* Effect.sleep("20 millis")
              }
            }), { concurrency: "unbounded", discard: true }))
          yield* eventually(Effect.sync(() => starts.length > 20))
          const context = yield* client()
          const watcher = yield* instance(context, table, "jobs")
          const { seen } = yield* collect(watcher)
          // The prober's emitter looks first once the stream's lock is taken: it hears the stream at once.
          yield* eventually(Effect.map(listeners(context, table), (n) => n === 1))
          const prober = yield* instance(context, table, "jobs")
          yield* untilHeard(prober, (id) => seen.some((event) => event.id === id))
          const heardAt = seen.find((event) => event.id.startsWith("probe-"))!.at
          // Offers for 1.5 s after the first event heard, more than an emitter trusts its last look.
          yield* eventually(Effect.sync(() => starts.some((start) => start.at > heardAt + 1_500)))
          yield* Fiber.interrupt(offering)
          // The last offer of each instance may have been cut short; the ones before it were made. Each emitter
          // publishes in order: once an instance's last due offer is heard, its earlier ones were sent.
          const instanceOf = (id: string) => id.slice(0, id.indexOf("-"))
          const cut = new Set(new Map(starts.map((start) => [instanceOf(start.id), start.id])).values())
          const due = starts.filter((start) => start.at > heardAt && !cut.has(start.id))
          const lastDue = [...new Map(due.map((start) => [instanceOf(start.id), start.id])).values()]
          const offered = () => new Set(seen.filter((event) => event.tag === "Offered").map((event) => event.id))
          yield* eventually(Effect.sync(() => lastDue.every((id) => offered().has(id))))
          const heard = offered()
          // Before the stream held back its first 1.1 s, x's offers of up to a second after it were lost.
          expect(due.filter((start) => !heard.has(start.id)).map((start) => start.id)).toEqual([])
          expect(due.length).toBeGreaterThan(20)
        }).pipe(Effect.scoped)),
    30_000
  )

  it.live(
    "a stream that ends stops counting: its instance's client goes on, and nothing is NOTIFYed any more",
    () =>
      withTable("pg", "evs", (table) =>
        Effect.gen(function*() {
          const sent = yield* spyOn(table, "jobs")
          const context = yield* client()
          const a = yield* instance(context, table, "jobs")
          const scope = yield* Scope.make()
          const { seen } = yield* collect(a).pipe(Scope.extend(scope))
          yield* untilHeard(a, (id) => seen.some((event) => event.id === id))
          yield* a.offer(1, { id: "while-listening" })
          yield* eventually(Effect.sync(() => sentIds(sent, "while-listening").length === 1))
          expect(yield* listeners(context, table)).toBe(1)
          yield* Scope.close(scope, Exit.void)
          // Had the stream's connection gone back to the pool with its lock, it would count a listener forever (and
          // an emitter's look on that very connection would not see it: a session's own lock never conflicts).
          yield* eventually(Effect.map(listeners(context, table), (n) => n === 0))
          yield* untilSilent(a, sent, "ended")
        }).pipe(Effect.scoped)),
    30_000
  )

  it.live(
    "another process's stream counts; SIGKILLed, its session and so its registration go: NOTIFY stops",
    () =>
      withTable("pg", "evp", (table) =>
        Effect.gen(function*() {
          const sent = yield* spyOn(table, "jobs")
          const context = yield* client()
          const a = yield* instance(context, table, "jobs")
          const child = spawnFixture("test/fixtures/durable-events.ts", ["pg", table, "-", "jobs"])
          yield* Effect.addFinalizer(() => Effect.sync(() => child.kill()))
          yield* untilHeard(a, (id) => child.lines.includes(`Offered ${id}`))
          expect(yield* listeners(context, table)).toBe(1)
          yield* a.offer(1, { id: "to-the-child" })
          yield* Effect.promise(() => child.waitFor((line) => line === "Offered to-the-child", 10_000))
          child.kill("SIGKILL")
          yield* Effect.promise(() => child.exited(10_000))
          yield* eventually(Effect.map(listeners(context, table), (n) => n === 0))
          yield* eventually(Effect.map(listeners(context, table), (n) => n === 0))
          yield* untilSilent(a, sent, "killed")
        }).pipe(Effect.scoped)),
    60_000
  )

  it.live(
    "a stream whose lock session is terminated takes the lock again on a new session, and hears events again",
    () =>
      withTable("pg", "evr", (table) =>
        Effect.gen(function*() {
          const context = yield* client()
          const a = yield* instance(yield* client(), table, "jobs")
          const b = yield* instance(context, table, "jobs")
          const { seen } = yield* collect(b)
          yield* untilHeard(a, (id) => seen.some((event) => event.id === id))
          const [before] = yield* holders(context, table)
          const sql = yield* Effect.provide(SqlClient.SqlClient, context)
          yield* sql`SELECT pg_terminate_backend(${before!})`
          // Checked every 5 s: a new session holds it within about 6 s (the wait allows 10).
          yield* eventually(
            Effect.map(holders(context, table), (pids) => pids.length === 1 && pids[0] !== before),
            1_000
          )
          const heardBefore = seen.length
          yield* untilHeard(a, (id) => seen.slice(heardBefore).some((event) => event.id === id))
          yield* a.offer(1, { id: "after-restart" })
          yield* eventually(Effect.sync(() => seen.some((event) => event.id === "after-restart")))
        }).pipe(Effect.scoped)),
    30_000
  )

  /** A PostgreSQL client of its own with a pool of `maxConnections`, for the scope. */
  const poolOf = (maxConnections: number) =>
    Layer.build(PgClient.layer({
      host: "127.0.0.1",
      port: 5432,
      database: "test",
      username: "postgres",
      connectTimeout: "5 seconds",
      maxConnections
    }))

  it.live(
    "on a pool of one connection a stream fails at once naming maxConnections; the queue goes on (it held the pool)",
    () =>
      withTable("pg", "ev1", (table) =>
        Effect.gen(function*() {
          const context = yield* poolOf(1)
          const queue = yield* instance(context, table, "jobs")
          const stream = yield* Effect.forkScoped(Stream.runDrain(queue.events))
          // Before: the stream reserved the pool's only connection for its lock, and every statement of the queue
          // (offer, lease, settle) waited for it forever.
          const ended = yield* Effect.timeoutOption(Fiber.await(stream), "10 seconds")
          expect(Option.isSome(ended) && Exit.isFailure(ended.value)).toBe(true)
          expect(String(Option.isSome(ended) && Exit.isFailure(ended.value) ? ended.value.cause : "")).toMatch(
            /maxConnections 1/
          )
          yield* Effect.timeout(queue.offer(1, { id: "still-served" }), "10 seconds")
          expect(Option.isSome(yield* Effect.timeoutOption(queue.status("still-served"), "10 seconds"))).toBe(true)
        }).pipe(Effect.scoped)),
    30_000
  )

  it.live(
    "streams of two queues on a pool of two: the second fails naming maxConnections, the first still hears, all go on",
    () =>
      withTable("pg", "ev2", (table) =>
        Effect.gen(function*() {
          const context = yield* poolOf(2)
          const first = yield* instance(context, table, "jobs")
          const second = yield* instance(context, table, "other")
          const { seen } = yield* collect(first)
          yield* untilHeard(first, (id) => seen.some((event) => event.id === id))
          const stream = yield* Effect.forkScoped(Stream.runDrain(second.events))
          // Before: each queue's stream reserved a connection of its own for its lock; two took the whole pool.
          const ended = yield* Effect.timeoutOption(Fiber.await(stream), "10 seconds")
          expect(String(Option.isSome(ended) && Exit.isFailure(ended.value) ? ended.value.cause : "")).toMatch(
            /maxConnections 2/
          )
          yield* Effect.timeout(second.offer(1, { id: "still-served" }), "10 seconds")
          yield* Effect.timeout(first.offer(1, { id: "still-heard" }), "10 seconds")
          yield* eventually(Effect.sync(() => seen.some((event) => event.id === "still-heard")))
        }).pipe(Effect.scoped)),
    30_000
  )
})
