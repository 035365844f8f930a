/**
 * PostgreSQL job events sent only when someone listens (issue #16): an `events` stream counts as a listener by a
 * lock its session holds (src/internal/durableQueue/sqlEvents.ts), emitters look whether anyone holds it. What is
 * sent is seen by a spy: a raw LISTEN on the events channel, which hears every NOTIFY without counting as one. The
 * locks of all queues' streams of one client are held on one reserved connection (`ListenerLocks`): the tests on
 * pools of 2, 3 and 10 connections check that several queues share it, that it goes back to the pool, and that its
 * session is replaced, with every lock, when it is lost.
 */
import { PgClient } from "@effect/sql-pg"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestContext from "effect/TestContext"
import * as Tracer from "effect/Tracer"
import { eventsOf, LISTENERS_CLASS, lockPeriods } from "../../src/internal/durableQueue/sqlEvents.js"
import { channelOf, listenerOf, probePeriods } from "../../src/internal/durableQueue/sqlListen.js"
import * as DurableQueue from "../../src/sql/DurableQueue.js"
import { clientLayer, withTable } from "../fixtures/sql-client.js"
import { spawnFixture } from "../helpers/processes.js"
import { postgres, requireService } from "../helpers/services.js"
import { eventually } from "../helpers/storePort.js"

const pgUp = await requireService(postgres)

type Queue = DurableQueue.DurableQueue<number>

/** The periods of the lock session's check and of the LISTEN's probe (and its time-out) in the tests that wait them out. */
const CHECK = 400
const PROBE = 400
const PROBE_TIMEOUT = 1_000

/** `CHECK`, `PROBE` and `PROBE_TIMEOUT` in force for the scope; the defaults (5 s, 5 s, 2 s) took 6-7 s a test. */
const shortPeriods = Effect.acquireRelease(
  Effect.sync(() => {
    const defaults = { check: lockPeriods.checkMillis, probe: probePeriods.millis, timeout: probePeriods.timeout }
    lockPeriods.checkMillis = CHECK
    probePeriods.millis = PROBE
    probePeriods.timeout = PROBE_TIMEOUT
    return defaults
  }),
  (defaults) =>
    Effect.sync(() => {
      lockPeriods.checkMillis = defaults.check
      probePeriods.millis = defaults.probe
      probePeriods.timeout = defaults.timeout
    })
)

/** `self` with a tracer of its own: Effect's, keeping every span it starts in `spans`. */
const recordingIn = (spans: Array<Tracer.Span>) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.tracer, (native) =>
    Effect.withTracer(
      self,
      Tracer.make({
        span: (name, parent, context, links, startTime, kind, options) => {
          const span = native.span(name, parent, context, links, startTime, kind, options)
          spans.push(span)
          return span
        },
        context: (f, fiber) => native.context(f, fiber)
      })
    ))

/** The program's own logger (Effect's default one replaced), which keeps the warnings' text in `warnings`. */
const warningsTo = (warnings: Array<string>) =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ logLevel, message }) => {
      if (logLevel._tag !== "Warning") return
      warnings.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
    })
  )

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
    yield* eventually(
      Effect.suspend(() =>
        sent.some((line) => line.startsWith("spy-probe"))
          ? Effect.succeed(true)
          : Effect.as(sql`SELECT pg_notify(${channel}, ${`spy-probe-${probes++}`})`, false)
      ),
      (heard) => heard,
      { message: "the spy heard a probe notification" }
    )
    return sent
  })

/** The sessions holding the listeners' lock of the queue "jobs" of `table`: those its emitters count. */
const listeners = (context: Context.Context<SqlClient.SqlClient>, table: string) =>
  Effect.map(holders(context, table), (pids) => pids.length)

/** The backends holding the listeners' lock of the queue `name` of `table`. */
const holders = (context: Context.Context<SqlClient.SqlClient>, table: string, name = "jobs") =>
  Effect.flatMap(Effect.provide(SqlClient.SqlClient, context), (sql) =>
    Effect.map(
      sql<{ readonly pid: number }>`SELECT pid FROM pg_locks WHERE locktype = 'advisory'
        AND mode = 'ShareLock' AND granted AND classid = hashtext(${LISTENERS_CLASS})::oid
        AND objid = hashtext(${channelOf(`${table}!events`, name)})::oid AND objsubid = 2`,
      (rows) => rows.map((row) => row.pid)
    ))

/** The backends holding the listeners' locks of each of `names`, in order. */
const holdersOf = (context: Context.Context<SqlClient.SqlClient>, table: string, names: ReadonlyArray<string>) =>
  Effect.forEach(names, (name) => holders(context, table, name))

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

/** A PostgreSQL client of its own named `app` (its pool's and its LISTEN connection's application_name), for `scope`. */
const namedClient = (app: string, scope: Scope.Scope) =>
  Layer.buildWithScope(
    PgClient.layer({
      host: "127.0.0.1",
      port: 5432,
      database: "test",
      username: "postgres",
      connectTimeout: "5 seconds",
      applicationName: app,
      maxConnections: 5
    }),
    scope
  )

/** A unique application_name for this process and test. */
const appName = (label: string) => `ew-${label}-${process.pid}-${Date.now()}`

/**
 * The backends of `app` that are LISTEN connections of `@effect/sql-pg`: those whose last statement was LISTEN or
 * UNLISTEN, or that never ran one (a connection made for a LISTEN that was never sent; the pool's always run one).
 */
const listenBackends = (sql: SqlClient.SqlClient, app: string) =>
  Effect.map(
    sql<{ readonly pid: number }>`SELECT pid FROM pg_stat_activity WHERE application_name = ${app}
      AND (query ~ '^(UN)?LISTEN' OR query = '')`,
    (rows) => rows.map((row) => row.pid)
  )

/**
 * Whether `n` connections of the client's pool can be reserved at once within 5 s (all of them: no stream kept
 * one). Only to be asked when it should: a reservation still waiting at the time-out is not cancelled
 * (`@effect/sql-pg`'s reserve), and keeps its connection once it has one.
 */
const poolGives = (context: Context.Context<SqlClient.SqlClient>, n: number) =>
  Effect.flatMap(Effect.provide(SqlClient.SqlClient, context), (sql) =>
    Effect.scoped(
      Effect.forEach(Array.from({ length: n }), () => sql.reserve, { concurrency: "unbounded" })
    ).pipe(Effect.timeoutOption("5 seconds"), Effect.map(Option.isSome)))

/** Offers probes through `through` until `heard` says a listener has one: its subscription is then made. */
const untilHeard = (through: Queue, heard: (id: string) => boolean) => {
  let probes = 0
  const offered: Array<string> = []
  return eventually(
    Effect.suspend(() => {
      if (offered.some(heard)) return Effect.succeed(true)
      const id = `probe-${probes++}`
      offered.push(id)
      return Effect.as(through.offer(0, { id }), false)
    }),
    (done) => done,
    { message: "a probe offered was heard" }
  )
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
    // 10 s, as the 30 tries of 300 ms and more before.
    yield* eventually(
      Effect.gen(function*() {
        const id = `${label}-${tries++}`
        yield* queue.offer(0, { id })
        yield* Effect.sleep("300 millis")
        return sentIds(sent, id)
      }),
      (sentForProbe) => sentForProbe.length === 0,
      { message: `a probe offer ("${label}-<n>") sent nothing within 300 ms` }
    )
    yield* queue.offerAll([1, 2, 3, 4, 5].map((n) => ({ value: n, id: `${label}-quiet-${n}` })))
    yield* Effect.sleep("300 millis")
    expect(sentIds(sent, `${label}-quiet-`)).toEqual([])
  })

describe.skipIf(!pgUp)("sql DurableQueue on PostgreSQL: job events only when someone listens", () => {
  it.live(
    "a stream whose program runs under TestClock hears events",
    () =>
      withTable("pg", "evs", (table) =>
        Effect.gen(function*() {
          const context = yield* client()
          const a = yield* instance(context, table, "jobs")
          const real = yield* Effect.clock
          const { seen } = yield* collect(a).pipe(Effect.provide(TestContext.TestContext))
          // `Effect.provide` of the layer leaves its TestClock on this fiber too (effect 3.22): the test's own waits
          // (`eventually`'s sleeps) stay on real time, only the stream's fiber has the TestClock.
          yield* untilHeard(a, (id) => seen.some((event) => event.id === id)).pipe(Effect.withClock(real))
          expect(seen.some((event) => event.tag === "Offered")).toBe(true)
        }).pipe(Effect.scoped)),
    30_000
  )

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
          yield* eventually(Effect.sync(() => done.length), (n) => n === 4)
          const { seen } = yield* collect(b)
          yield* untilHeard(a, (id) => seen.some((event) => event.id === id))
          yield* a.offerAll([5, 6].map((n) => ({ value: n, id: `after-${n}` })))
          const of = (events: ReadonlyArray<{ readonly id: string; readonly tag: string }>) =>
            events.filter((event) => event.id.startsWith("after-")).map((event) => `${event.tag} ${event.id}`).sort()
          yield* eventually(Effect.sync(() => of(seen).length), (n) => n === 6)
          expect(of(seen)).toEqual([
            "Completed after-5",
            "Completed after-6",
            "Offered after-5",
            "Offered after-6",
            "Started after-5",
            "Started after-6"
          ])
          // One emitter publishes in order: had the "before" jobs sent anything, the spy would have it by now.
          yield* eventually(
            Effect.sync(() => sentIds(sent, "after-6")),
            (events) => events.some((event) => event._tag === "Completed")
          )
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
          yield* eventually(Effect.sync(() => starts.length), (n) => n > 20)
          const context = yield* client()
          const watcher = yield* instance(context, table, "jobs")
          const { seen } = yield* collect(watcher)
          // The prober's emitter looks first once the stream's lock is taken: it hears the stream at once.
          yield* eventually(listeners(context, table), (n) => n === 1)
          const prober = yield* instance(context, table, "jobs")
          yield* untilHeard(prober, (id) => seen.some((event) => event.id === id))
          const heardAt = seen.find((event) => event.id.startsWith("probe-"))!.at
          // Offers for 1.5 s after the first event heard, more than an emitter trusts its last look, and until over
          // 20 were due (each instance's last one is left out below: 4 more): 1.5 s alone gave 15 at load 20.
          yield* eventually(
            Effect.sync(() => ({
              lastAfterHeard: Math.max(...starts.map((start) => start.at)) - heardAt,
              offersAfterHeard: starts.filter((start) => start.at > heardAt).length
            })),
            (now) => now.lastAfterHeard > 1_500 && now.offersAfterHeard > 20 + 4
          )
          yield* Fiber.interrupt(offering)
          // The last offer of each instance may have been cut short; the ones before it were made. Each emitter
          // publishes in order: once an instance's last due offer is heard, its earlier ones were sent.
          const instanceOf = (id: string) => id.slice(0, id.indexOf("-"))
          const cut = new Set(new Map(starts.map((start) => [instanceOf(start.id), start.id])).values())
          const due = starts.filter((start) => start.at > heardAt && !cut.has(start.id))
          const lastDue = [...new Map(due.map((start) => [instanceOf(start.id), start.id])).values()]
          const offered = () => new Set(seen.filter((event) => event.tag === "Offered").map((event) => event.id))
          yield* eventually(
            Effect.sync(() => lastDue.filter((id) => !offered().has(id))),
            (unheard) => unheard.length === 0,
            { message: "every instance's last due offer was heard" }
          )
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
          yield* eventually(Effect.sync(() => sentIds(sent, "while-listening").length), (n) => n === 1)
          expect(yield* listeners(context, table)).toBe(1)
          yield* Scope.close(scope, Exit.void)
          // Had the stream's connection gone back to the pool with its lock, it would count a listener forever (and
          // an emitter's look on that very connection would not see it: a session's own lock never conflicts).
          yield* eventually(listeners(context, table), (n) => n === 0)
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
          yield* eventually(listeners(context, table), (n) => n === 0)
          yield* eventually(listeners(context, table), (n) => n === 0)
          yield* untilSilent(a, sent, "killed")
        }).pipe(Effect.scoped)),
    60_000
  )

  it.live(
    "the session holding the locks of three queues' streams is terminated: one new session takes them all, all hear",
    () =>
      withTable("pg", "evr", (table) => {
        const warnings: Array<string> = []
        return Effect.gen(function*() {
          const defaults = yield* shortPeriods
          const names = ["jobs", "other", "third"]
          const emitters = yield* Effect.forEach(names, (name) =>
            Effect.flatMap(client(), (c) => instance(c, table, name)))
          const context = yield* poolOf(10)
          const streams = yield* Effect.forEach(names, (name) =>
            Effect.flatMap(instance(context, table, name), collect))
          yield* Effect.forEach(names, (_, i) =>
            untilHeard(emitters[i]!, (id) =>
              streams[i]!.seen.some((event) => event.id === id)), {
            concurrency: "unbounded"
          })
          // Before: a session (and a pooled connection) per queue with a stream.
          const held = (yield* holdersOf(context, table, names)).flat()
          expect(held).toHaveLength(3)
          expect(new Set(held).size).toBe(1)
          const sql = yield* Effect.provide(SqlClient.SqlClient, context)
          const killedAt = Date.now()
          yield* sql`SELECT pg_terminate_backend(${held[0]!})`
          // Found gone at the next check (every CHECK ms), then one new session takes all three: 3 s of margin.
          yield* eventually(
            holdersOf(context, table, names),
            (pids) =>
              pids.every((p) =>
                p.length === 1 && p[0] !== held[0]
              ) && new Set(pids.flat()).size === 1,
            { message: "one new session holds the three queues' locks" }
          )
          expect(Date.now() - killedAt).toBeLessThan(CHECK + 3_000)
          const heardBefore = streams.map((stream) => stream.seen.length)
          yield* Effect.forEach(names, (_, i) =>
            untilHeard(emitters[i]!, (id) =>
              streams[i]!.seen.slice(heardBefore[i]).some((event) => event.id === id)), {
            concurrency: "unbounded"
          })
          yield* Effect.forEach(names, (_, i) =>
            emitters[i]!.offer(1, { id: `after-restart-${i}` }))
          yield* eventually(
            Effect.sync(() =>
              streams.flatMap((stream, i) =>
                stream.seen.some((event) => event.id === `after-restart-${i}`) ? [] : [i]
              )
            ),
            (deaf) => deaf.length === 0,
            { message: "every stream heard its after-restart offer (observed: the streams that did not)" }
          )
          // Terminated again, and a stream of a fourth queue starts at once (long before the next check): it finds
          // the session gone and takes a new one for all four rather than failing. The check back at its default
          // and seen run since (its `SELECT 1` on the session), so the next one is that far away.
          const [second] = yield* holders(context, table, names[0])
          lockPeriods.checkMillis = defaults.check
          const [{ since }] = yield* sql<{ readonly since: string }>`SELECT clock_timestamp()::text AS since`
          yield* eventually(
            sql`SELECT 1 AS one FROM pg_stat_activity WHERE pid = ${second!} AND query = 'SELECT 1'
              AND query_start > ${since}::timestamptz`,
            (rows) => rows.length === 1
          )
          yield* sql`SELECT pg_terminate_backend(${second!})`
          const fourth = yield* instance(context, table, "fourth")
          const late = yield* collect(fourth)
          yield* untilHeard(fourth, (id) => late.seen.some((event) => event.id === id))
          const now = (yield* holdersOf(context, table, [...names, "fourth"])).flat()
          expect(now).toHaveLength(4)
          expect(new Set(now).size).toBe(1)
          expect(now[0]).not.toBe(second)
          expect(Option.isNone(yield* Fiber.poll(late.fiber))).toBe(true)
          for (const stream of streams) expect(Option.isNone(yield* Fiber.poll(stream.fiber))).toBe(true)
          // Both losses said to the program's logger: by the check, then by the fourth stream's start.
          expect(warnings.filter((line) => line.includes("events listener") && line.includes("may be lost")).length)
            .toBeGreaterThanOrEqual(2)
        }).pipe(Effect.scoped, Effect.provide(warningsTo(warnings)))
      }),
    30_000
  )

  it.live(
    "a stream that finds the session lost (before the check saw it) takes every lock again and warns, as the check does",
    () =>
      withTable("pg", "evw", (table) => {
        const warnings: Array<string> = []
        return Effect.gen(function*() {
          const emitter = yield* instance(yield* client(), table, "jobs")
          const context = yield* poolOf(10)
          const first = yield* collect(yield* instance(context, table, "jobs"))
          yield* untilHeard(emitter, (id) => first.seen.some((event) => event.id === id))
          const [lost] = yield* holders(context, table)
          const sql = yield* Effect.provide(SqlClient.SqlClient, context)
          yield* sql`SELECT pg_terminate_backend(${lost!})`
          const other = yield* instance(context, table, "other")
          const second = yield* collect(other)
          yield* untilHeard(other, (id) => second.seen.some((event) => event.id === id))
          expect((yield* holders(context, table)).filter((pid) => pid !== lost)).toHaveLength(1)
          // Before: the stream replaced the session, dropping and re-taking the lock of "jobs", and nothing was logged
          // (the check found the new session alive): "jobs"'s stream had lost events without a word. Then: said to
          // Effect's default logger only (the streams' shared fibers ran on the default runtime), not the program's.
          expect(warnings.some((line) => line.includes("events listener") && line.includes("may be lost"))).toBe(true)
        }).pipe(Effect.scoped, Effect.provide(warningsTo(warnings)))
      }),
    30_000
  )

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
    "15 queues' streams on a pool of 10 all hear, on one session, and 9 connections are left to the queues",
    () =>
      withTable("pg", "ev15", (table) =>
        Effect.gen(function*() {
          const context = yield* poolOf(10)
          const names = Array.from({ length: 15 }, (_, i) => `q${i}`)
          const queues = yield* Effect.forEach(names, (name) => instance(context, table, name))
          const streams = yield* Effect.forEach(queues, collect)
          // Before: a connection of the pool per queue with a stream; the 10th stream failed naming maxConnections.
          yield* Effect.forEach(
            queues,
            (queue, i) => untilHeard(queue, (id) => streams[i]!.seen.some((event) => event.id === id)),
            {
              concurrency: "unbounded"
            }
          )
          const held = (yield* holdersOf(context, table, names)).flat()
          expect(held).toHaveLength(15)
          expect(new Set(held).size).toBe(1)
          expect(yield* poolGives(context, 9)).toBe(true)
          yield* Effect.forEach(queues, (queue, i) => queue.offer(i, { id: `beside-${i}` }), { concurrency: 4 })
          yield* eventually(
            Effect.sync(() =>
              streams.flatMap((stream, i) => stream.seen.some((event) => event.id === `beside-${i}`) ? [] : [i])
            ),
            (deaf) => deaf.length === 0,
            { message: "every stream heard its beside offer (observed: the streams that did not)" }
          )
          expect(Option.isSome(yield* queues[14]!.status("beside-14"))).toBe(true)
          for (const stream of streams) expect(Option.isNone(yield* Fiber.poll(stream.fiber))).toBe(true)
        }).pipe(Effect.scoped)),
    60_000
  )

  it.live(
    "one queue's stream ends: the other queue's stream keeps its lock and hears, its emitter still publishes",
    () =>
      withTable("pg", "eve", (table) =>
        Effect.gen(function*() {
          const sentA = yield* spyOn(table, "a")
          const sentB = yield* spyOn(table, "b")
          const context = yield* poolOf(2)
          const a = yield* instance(context, table, "a")
          const b = yield* instance(context, table, "b")
          const scopeA = yield* Scope.make()
          const streamA = yield* collect(a).pipe(Scope.extend(scopeA))
          const streamB = yield* collect(b)
          // Before: on a pool of two, the second queue's stream failed at once (a connection per queue's stream).
          yield* untilHeard(a, (id) => streamA.seen.some((event) => event.id === id))
          yield* untilHeard(b, (id) => streamB.seen.some((event) => event.id === id))
          const [pidB] = yield* holders(context, table, "b")
          expect(yield* holders(context, table, "a")).toEqual([pidB])
          yield* Scope.close(scopeA, Exit.void)
          yield* eventually(holders(context, table, "a"), (pids) => pids.length === 0)
          expect(yield* holders(context, table, "b")).toEqual([pidB])
          // Past the 1 s an emitter trusts its last look: b's emitter looked again and still found its listener.
          yield* Effect.sleep("1500 millis")
          yield* b.offerAll([1, 2, 3].map((n) => ({ value: n, id: `b-after-${n}` })))
          yield* eventually(Effect.sync(() => sentIds(sentB, "b-after-").length), (n) => n >= 3)
          yield* eventually(
            Effect.sync(() => [1, 2, 3].filter((n) => !streamB.seen.some((event) => event.id === `b-after-${n}`))),
            (unheard) => unheard.length === 0,
            { message: "b's stream heard b-after-1..3 (observed: those it did not)" }
          )
          yield* untilSilent(a, sentA, "a-ended")
          expect(yield* holders(context, table, "b")).toEqual([pidB])
        }).pipe(Effect.scoped)),
    60_000
  )

  it.live(
    "the last stream's end unlocks and gives the connection back: the whole pool serves again",
    () =>
      withTable("pg", "evg", (table) =>
        Effect.gen(function*() {
          const context = yield* poolOf(2)
          const names = ["a", "b", "c"]
          const queues = yield* Effect.forEach(names, (name) => instance(context, table, name))
          const scope = yield* Scope.make()
          const streams = yield* Effect.forEach(queues, collect).pipe(Scope.extend(scope))
          // Before: the second queue's stream failed at once on a pool of two.
          yield* Effect.forEach(
            queues,
            (queue, i) => untilHeard(queue, (id) => streams[i]!.seen.some((event) => event.id === id)),
            {
              concurrency: "unbounded"
            }
          )
          expect(new Set((yield* holdersOf(context, table, names)).flat()).size).toBe(1)
          yield* Scope.close(scope, Exit.void)
          yield* eventually(holdersOf(context, table, names), (pids) => pids.flat().length === 0)
          expect(yield* poolGives(context, 2)).toBe(true)
          yield* Effect.timeout(queues[0]!.offer(1, { id: "served" }), "10 seconds")
        }).pipe(Effect.scoped)),
    60_000
  )

  it.live(
    "60 streams of 5 queues started and ended at once on many fibers leave one lock (the stream kept), then none",
    () =>
      withTable("pg", "evc", (table) =>
        Effect.gen(function*() {
          const context = yield* poolOf(3)
          const names = ["k0", "k1", "k2", "k3", "k4"]
          const queues = yield* Effect.forEach(names, (name) => instance(context, table, name))
          const keptScope = yield* Scope.make()
          let kept: { readonly seen: ReadonlyArray<{ readonly id: string }> } | undefined
          let failed = 0
          // Two rounds from no stream at all (so the first streams race to reserve the session), the second
          // starting streams of channels whose locks the first is releasing; one stream of k0, started amid the
          // second round, is kept.
          for (let round = 0; round < 2; round++) {
            yield* Effect.forEach(Array.from({ length: 60 }, (_, i) => i), (i) =>
              Effect.gen(function*() {
                if (round === 1) yield* Effect.sleep(Math.floor(Math.random() * 100))
                if (round === 1 && i === 30) {
                  kept = yield* collect(queues[0]!).pipe(Scope.extend(keptScope))
                  return
                }
                const scope = yield* Scope.make()
                const { fiber } = yield* collect(queues[i % 5]!).pipe(Scope.extend(scope))
                yield* Effect.sleep(Math.floor(Math.random() * 300))
                if (Option.isSome(yield* Fiber.poll(fiber))) failed++
                yield* Scope.close(scope, Exit.void)
              }), { concurrency: "unbounded", discard: true })
          }
          // Before: streams of a second queue failed at once on a pool of three (a connection per queue's stream).
          expect(failed).toBe(0)
          yield* eventually(
            holdersOf(context, table, names),
            (pids) => pids[0]!.length === 1 && pids.slice(1).every((p) => p.length === 0)
          )
          yield* untilHeard(queues[0]!, (id) => kept!.seen.some((event) => event.id === id))
          yield* Scope.close(keptScope, Exit.void)
          yield* eventually(holdersOf(context, table, names), (pids) => pids.flat().length === 0)
          expect(yield* poolGives(context, 3)).toBe(true)
        }).pipe(Effect.scoped)),
    60_000
  )

  it.live(
    "80 events streams started and interrupted 0-39 ms later leave no LISTEN connection, and none once the client closes",
    () =>
      withTable("pg", "evk", (table) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const app = appName("evk")
          const scope = yield* Scope.make()
          const context = yield* namedClient(app, scope)
          const queue = yield* instance(context, table, "jobs")
          for (let i = 0; i < 80; i++) {
            const fiber = yield* Effect.fork(Stream.runDrain(queue.events))
            yield* Effect.sleep(i % 40)
            yield* Fiber.interrupt(fiber)
          }
          // A LISTEN not yet confirmed when its last stream ends is stopped once it is (100 ms probes).
          yield* eventually(listenBackends(sql, app), (pids) => pids.length === 0, { within: "3 seconds" })
          // Before: 8-12 connections of LISTENs interrupted while connecting, never closed, even by the client's
          // layer (and the process did not exit).
          yield* Scope.close(scope, Exit.void)
          yield* eventually(
            sql<
              { readonly n: number }
            >`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = ${app}`,
            (rows) => rows[0]!.n === 0,
            { within: "3 seconds" }
          )
        }).pipe(Effect.scoped)),
    60_000
  )

  it.live(
    "the LISTEN backend of an events stream is terminated: events flow again within a probe period, with a warning to the program's logger",
    () =>
      withTable("pg", "evt", (table) => {
        const warnings: Array<string> = []
        return Effect.gen(function*() {
          yield* shortPeriods
          const sql = yield* SqlClient.SqlClient
          const app = appName("evt")
          const emitter = yield* instance(yield* client(), table, "jobs")
          const context = yield* namedClient(app, yield* Effect.scope)
          const watched = yield* instance(context, table, "jobs")
          // The shared LISTEN is started by a first stream that ends before the kill: it serves the one left.
          const firstScope = yield* Scope.make()
          const first = yield* collect(watched).pipe(Scope.extend(firstScope))
          const stream = yield* collect(watched)
          yield* untilHeard(emitter, (id) => stream.seen.some((event) => event.id === id))
          yield* eventually(Effect.sync(() => first.seen.length), (n) => n > 0)
          yield* Scope.close(firstScope, Exit.void)
          const [backend, ...others] = yield* listenBackends(sql, app)
          expect(others).toEqual([])
          yield* sql`SELECT pg_terminate_backend(${backend!})`
          const killedAt = Date.now()
          const before = stream.seen.length
          yield* untilHeard(emitter, (id) => stream.seen.slice(before).some((event) => event.id === id))
          // Found lost at the first probe after the kill (every PROBE ms, waiting PROBE_TIMEOUT), then listened
          // anew and confirmed; 3 s of margin. Before: nothing was heard again, ever.
          expect(Date.now() - killedAt).toBeLessThan(PROBE + PROBE_TIMEOUT + 3_000)
          // Said when the new LISTEN is confirmed, which may come after the first events it hears. Before: to
          // Effect's default logger only (the stream's shared fiber ran on the default runtime), not the program's.
          yield* eventually(
            Effect.sync(() => [...warnings]),
            (lines) =>
              lines.some((line) => line.includes("LISTEN connection of its events stream") && line.includes("lost"))
          )
          const now = yield* listenBackends(sql, app)
          expect(now).toHaveLength(1)
          expect(now[0]).not.toBe(backend)
          expect(Option.isNone(yield* Fiber.poll(stream.fiber))).toBe(true)
        }).pipe(Effect.scoped, Effect.provide(warningsTo(warnings)))
      }),
    60_000
  )

  it.live(
    "an events stream's background statements (its LISTEN's probes) are spans of the program's tracer, not of the span that started it",
    () =>
      withTable("pg", "evn", (table) => {
        const spans: Array<Tracer.Span> = []
        return Effect.gen(function*() {
          const emitter = yield* instance(yield* client(), table, "jobs")
          const watched = yield* instance(yield* client(), table, "jobs")
          const stream = yield* collect(watched).pipe(Effect.withSpan("subscriber"))
          yield* untilHeard(emitter, (id) => stream.seen.some((event) => event.id === id))
          // The probes of the stream's LISTEN (sqlListen.ts `supervise`); no queue here runs, so none of a taker's.
          const probes = spans.filter((span) => span.attributes.get("db.query.text") === "SELECT pg_notify($1, $2)")
          // Before: none (the stream's shared fiber ran on the default runtime, with Effect's own tracer).
          expect(probes.length).toBeGreaterThan(0)
          // The subscriber's span ended long ago; the probes go on for as long as anyone listens.
          const under = (span: Tracer.Span) =>
            Option.isSome(span.parent) && span.parent.value._tag === "Span" && span.parent.value.name === "subscriber"
          expect(probes.filter(under)).toEqual([])
        }).pipe(Effect.scoped, recordingIn(spans))
      }),
    30_000
  )
})
