/**
 * What only the SQL store of `DurableQueue` has (long ids, one table shared by queues, offer order, PostgreSQL
 * LISTEN/NOTIFY, its own options), on the machine's PostgreSQL and on a SQLite file, each test on its own table.
 * The contract every store keeps is in test/helpers/durableContract.ts.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { sqlPort } from "../../src/internal/durableQueue/sqlEvents.js"
import { channelOf } from "../../src/internal/durableQueue/sqlListen.js"
import { OptionError } from "../../src/OptionError.js"
import * as DurableQueue from "../../src/sql/DurableQueue.js"
import { type Backend, clientLayer, withTable } from "../fixtures/sql-client.js"
import { postgres, requireService } from "../helpers/services.js"
import { eventually } from "../helpers/storePort.js"

const pgUp = await requireService(postgres)

const queueOf = (tableName: string, maxAttempts = 3, name = "jobs") =>
  DurableQueue.make({
    name,
    tableName,
    schema: Schema.Number,
    maxAttempts,
    pollInterval: "10 millis",
    leaseDuration: "2 seconds"
  })

const backends: ReadonlyArray<readonly [Backend, boolean]> = [["pg", pgUp], ["sqlite", true]]

for (const [backend, up] of backends) {
  describe.skipIf(!up)(`sql DurableQueue on ${backend === "pg" ? "PostgreSQL" : "SQLite"}`, () => {
    const withQueueTable = <A, E, R>(f: (table: string, target: string | undefined) => Effect.Effect<A, E, R>) =>
      withTable(backend, "dq", (table, target) => Effect.scoped(f(table, target)))

    it.live("ids longer than 36 characters work, up to 10,000 (upstream VARCHAR(36); a B-tree entry holds ~2.7 kB)", () =>
      withQueueTable((table) =>
        Effect.gen(function*() {
          const queue = yield* queueOf(table)
          const id = `order:${"x".repeat(200)}`
          const huge = `order:${"y".repeat(10_000)}`
          expect(yield* queue.offer(4, { id })).toBe(id)
          expect(yield* queue.offer(5, { id: huge })).toBe(huge)
          yield* queue.offer(5, { id: huge })
          // Long ids differing only at the end are different jobs.
          yield* queue.offer(6, { id: `${huge}z` })
          expect(yield* queue.size).toBe(3)
          expect(yield* queue.take((n, job) => Effect.succeed([n, job.id]))).toEqual(Exit.succeed([4, id]))
          expect(yield* queue.take((n, job) => Effect.succeed([n, job.id]))).toEqual(Exit.succeed([5, huge]))
          expect(yield* queue.take((n, job) => Effect.succeed([n, job.id]))).toEqual(Exit.succeed([6, `${huge}z`]))
        })
      ))

    if (backend === "pg") {
      it.live("an offer refused (an id PostgreSQL text cannot hold) fails alone, not the offers batched with it", () =>
        withQueueTable((table) =>
          Effect.gen(function*() {
            const queue = yield* queueOf(table)
            const ids = Array.from({ length: 20 }, (_, i) => (i === 7 ? "bad\u0000id" : `ok-${i}`))
            const exits = yield* Effect.forEach(ids, (id, i) => Effect.exit(queue.offer(i, { id })), {
              concurrency: "unbounded"
            })
            expect(exits.filter(Exit.isFailure).length).toBe(1)
            expect(Exit.isFailure(exits[7]!)).toBe(true)
            expect(yield* queue.size).toBe(19)
          })
        ))
    }

    it.live("the same id in two queues on one table is two jobs (upstream unique index on id alone)", () =>
      withQueueTable((table) =>
        Effect.gen(function*() {
          const a = yield* queueOf(table, 3, "a")
          const b = yield* queueOf(table, 3, "b")
          yield* a.offer(1, { id: "same" })
          yield* b.offer(2, { id: "same" })
          expect(yield* a.take((n) => Effect.succeed(n))).toEqual(Exit.succeed(1))
          expect(yield* b.take((n) => Effect.succeed(n)).pipe(Effect.timeout("5 seconds"))).toEqual(Exit.succeed(2))
        })
      ))

    it.live("jobs come out in offer order, and an offer wakes a waiting taker before the poll interval", () =>
      withQueueTable((table) =>
        Effect.gen(function*() {
          const queue = yield* DurableQueue.make({
            name: "jobs",
            tableName: table,
            schema: Schema.Number,
            pollInterval: "1 minute"
          })
          const waiting = yield* Effect.fork(queue.take((n) => Effect.succeed(n)))
          yield* Effect.sleep("50 millis")
          yield* queue.offer(0)
          expect(yield* Fiber.join(waiting).pipe(Effect.timeout("5 seconds"))).toEqual(Exit.succeed(0))
          yield* Effect.forEach([1, 2, 3, 4, 5], (n) => queue.offer(n), { discard: true })
          const order: Array<number> = []
          for (let i = 0; i < 5; i++) yield* queue.take((n) => Effect.sync(() => order.push(n)))
          expect(order).toEqual([1, 2, 3, 4, 5])
        })
      ))
  })
}

describe("sql DurableQueue options", () => {
  it.live("bad options fail with OptionError naming the field", () =>
    Effect.gen(function*() {
      const bad = [
        [{ maxAttempts: 0 }, "maxAttempts"],
        [{ leaseDuration: "10 millis" }, "leaseDuration"],
        [{ pollInterval: -1 }, "pollInterval"],
        [{ tableName: "jobs; DROP TABLE x" }, "tableName"],
        // 49 characters: the index and table names made from it would pass PostgreSQL's 63 bytes.
        [{ tableName: `app.${"j".repeat(45)}` }, "tableName"],
        [{ name: "" }, "name"],
        [{ notify: "yes" as unknown as boolean }, "notify"]
      ] as const
      for (const [options, field] of bad) {
        const error = yield* Effect.flip(DurableQueue.make({ name: "q", schema: Schema.Number, ...options }))
        expect(error).toBeInstanceOf(OptionError)
        expect(error.message).toContain(field)
      }
    }).pipe(Effect.scoped, Effect.provide(clientLayer("sqlite", ":memory:"))))
})

describe.skipIf(!pgUp)("sql DurableQueue on PostgreSQL: LISTEN/NOTIFY across processes", () => {
  // Two stores on two PgClients (two pools, two LISTEN connections), as two processes would have them.
  const twoClients = (table: string, name: string, notify = true) =>
    Effect.gen(function*() {
      const contextA = yield* Layer.build(clientLayer("pg"))
      const contextB = yield* Layer.build(clientLayer("pg"))
      const options = { name, tableName: table, schema: Schema.Number, pollInterval: "1 minute", notify } as const
      const a = yield* Effect.provide(DurableQueue.make(options), contextA)
      const b = yield* Effect.provide(DurableQueue.make(options), contextB)
      return { a, b, contextB, options }
    })

  // How long from an offer through `a` until a taker waiting on `b` (it looked and found nothing) has the job.
  const latency = (
    a: DurableQueue.DurableQueue<number>,
    b: DurableQueue.DurableQueue<number>,
    n: number,
    within: Duration.DurationInput
  ) =>
    Effect.gen(function*() {
      let started = 0
      const waiting = yield* Effect.fork(b.take((got) => Effect.sync(() => (started = performance.now(), got))))
      // b's fetcher looks once (finding nothing) and waits out its minute; were the offer in before that look, this
      // test could only pass more easily, not fail.
      yield* Effect.sleep("300 millis")
      const offered = performance.now()
      yield* a.offer(n)
      const exit = yield* Fiber.join(waiting).pipe(Effect.timeout(within), Effect.option)
      if (Option.isNone(exit)) yield* Fiber.interrupt(waiting)
      return { exit, millis: started - offered }
    })

  it.live(
    "an offer through another client wakes a taker polling once a minute at once (a NOTIFY per batch)",
    () =>
      withTable("pg", "ln", (table) =>
        Effect.gen(function*() {
          const { a, b } = yield* twoClients(table, "jobs")
          const times: Array<number> = []
          for (let i = 0; i < 5; i++) {
            const { exit, millis } = yield* latency(a, b, i, "2 seconds")
            expect(exit).toEqual(Option.some(Exit.succeed(i)))
            times.push(millis)
          }
          console.log(
            `LISTEN/NOTIFY: offer through client A -> handler start on client B: ${
              times.map((t) => t.toFixed(1)).join(", ")
            } ms`
          )
        }).pipe(Effect.scoped)),
    30_000
  )

  it.live(
    "a closing queue waits 5 s at most for an offer the database holds (a table locked by another session); the offer fails",
    () =>
      withTable("pg", "cl", (table) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const queue = yield* queueOf(table).pipe(Scope.extend(scope))
          yield* queue.offer(0)
          const locked = yield* Deferred.make<void>()
          const release = yield* Deferred.make<void>()
          const holder = yield* Effect.fork(
            Effect.flatMap(SqlClient.SqlClient, (sql) =>
              sql.withTransaction(Effect.gen(function*() {
                yield* sql`LOCK TABLE ${sql(table)} IN ACCESS EXCLUSIVE MODE`
                yield* Deferred.succeed(locked, undefined)
                yield* Deferred.await(release)
              }))).pipe(Effect.provide(Layer.fresh(clientLayer("pg"))))
          )
          yield* Deferred.await(locked)
          const offering = yield* Effect.fork(queue.offer(1))
          // The offer's INSERT waits for the lock.
          const sql = yield* SqlClient.SqlClient
          yield* eventually(
            sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
                WHERE wait_event_type = 'Lock' AND query LIKE ${`%INSERT INTO%${table}%`}`,
            (rows) => rows[0]!.n > 0
          )
          const started = Date.now()
          // Before the fix the close waited for the lock (forever here: the test timed out).
          yield* Scope.close(scope, Exit.void)
          expect(Date.now() - started).toBeLessThan(20_000)
          const offered = yield* Fiber.await(offering)
          expect(Exit.isFailure(offered)).toBe(true)
          yield* Deferred.succeed(release, undefined)
          yield* Fiber.join(holder)
        })),
    40_000
  )

  it.live(
    "identical event payloads of one batch all arrive (PostgreSQL delivers identical notifications of one transaction once)",
    () =>
      withTable("pg", "ev", (table) =>
        Effect.gen(function*() {
          const { bus } = yield* sqlPort("jobs", table, true)
          const seen: Array<string> = []
          yield* Effect.forkScoped(Stream.runForEach(bus.subscribe, (line) => Effect.sync(() => seen.push(line))))
          // Probes until the LISTEN is made: every later notification must reach it.
          let probes = 0
          yield* eventually(
            Effect.suspend(() =>
              seen.some((line) => line.startsWith("probe"))
                ? Effect.succeed(true)
                : Effect.as(bus.publish([`probe${probes++}`]), false)
            ),
            (heard) => heard,
            { message: "a probe published was heard" }
          )
          // Each over half of a 7,900-byte payload: three payloads, identical (before: 1 of 3 delivered).
          const big = JSON.stringify({ _tag: "Progress", id: "same", at: 0, progress: "x".repeat(5_000) })
          yield* bus.publish([big, big, big])
          yield* bus.publish(["end"])
          yield* eventually(Effect.sync(() => [...seen]), (lines) => lines.includes("end"))
          expect(seen.filter((line) => line === big).length).toBe(3)
        }).pipe(Effect.scoped)),
    30_000
  )

  it.live(
    "a store that only offers, on the taker's client, does not LISTEN: closing it leaves the taker hearing",
    () =>
      withTable("pg", "ln", (table) =>
        Effect.gen(function*() {
          const { a, b, contextB, options } = yield* twoClients(table, "jobs")
          yield* latency(a, b, 0, "2 seconds")
          // Were it listening, its end would UNLISTEN the channel on the connection b's store shares.
          yield* Effect.scoped(Effect.flatMap(DurableQueue.make(options), (c) => c.offer(1))).pipe(
            Effect.provide(contextB)
          )
          expect(yield* b.take((n) => Effect.succeed(n)).pipe(Effect.timeout("2 seconds"))).toEqual(Exit.succeed(1))
          const { exit } = yield* latency(a, b, 2, "2 seconds")
          expect(exit).toEqual(Option.some(Exit.succeed(2)))
        }).pipe(Effect.scoped)),
    30_000
  )

  it.live(
    "a second taking store on the taker's client closes: the taker still hears the next offer at once (one LISTEN)",
    () =>
      withTable("pg", "ln", (table) =>
        Effect.gen(function*() {
          const { a, b, contextB, options } = yield* twoClients(table, "jobs")
          yield* latency(a, b, 0, "2 seconds")
          // c takes (so it listens) on b's client, and closes. Before: each store had its LISTEN stream, and c's end
          // UNLISTENed the channel on the connection b's shares; b was deaf until its probe noticed, 2-7 s later.
          yield* Effect.scoped(Effect.gen(function*() {
            const c = yield* DurableQueue.make(options)
            yield* a.offer(1)
            expect(yield* c.take((n) => Effect.succeed(n)).pipe(Effect.timeout("2 seconds"))).toEqual(Exit.succeed(1))
          })).pipe(Effect.provide(contextB))
          const { exit } = yield* latency(a, b, 2, "1 second")
          expect(exit).toEqual(Option.some(Exit.succeed(2)))
        }).pipe(Effect.scoped)),
    30_000
  )

  it.live(
    "with notify: false, the same taker waits for its poll (the test above fails without the NOTIFY)",
    () =>
      withTable("pg", "ln", (table) =>
        Effect.gen(function*() {
          const { a, b } = yield* twoClients(table, "jobs", false)
          const { exit } = yield* latency(a, b, 1, "2 seconds")
          expect(exit).toEqual(Option.none())
        }).pipe(Effect.scoped)),
    30_000
  )

  it.live(
    "queue names that need quoting, or hashing (over 63 bytes), get working channels",
    () =>
      withTable("pg", "ln", (table) =>
        Effect.gen(function*() {
          const quoted = `Jobs "x"; DROP TABLE y; --'`
          const long = `${"ü".repeat(40)} queue`
          expect(channelOf(table, quoted)).toBe(`ew:${table}:${quoted}`)
          expect(Buffer.byteLength(channelOf(table, long))).toBeLessThanOrEqual(63)
          expect(channelOf(table, long)).toMatch(/^ew:[0-9a-f]{48}$/)
          expect(channelOf(table, `${long}2`)).not.toBe(channelOf(table, long))
          for (const name of [quoted, long]) {
            const { a, b } = yield* twoClients(table, name)
            const { exit } = yield* latency(a, b, 3, "2 seconds")
            expect(exit).toEqual(Option.some(Exit.succeed(3)))
          }
        }).pipe(Effect.scoped)),
    30_000
  )

  // The client with a LISTEN that never hears (a LISTEN connection that cannot be had, or a slow one): its stores'
  // probes go out and are never heard back, so the first lease never sees its LISTEN confirmed. `listening` opens
  // once a store listens, that is, during its first lease.
  const deaf = (client: SqlClient.SqlClient, listening: Effect.Latch): SqlClient.SqlClient =>
    new Proxy(client, {
      get: (target, key) =>
        key === "listen"
          ? () => Stream.unwrap(Effect.as(listening.open, Stream.never))
          : Reflect.get(target, key, target)
    })
  const deafQueue = (table: string, listening: Effect.Latch) =>
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      Effect.provideService(
        DurableQueue.make({ name: "jobs", tableName: table, schema: Schema.Number, pollInterval: "10 millis" }),
        SqlClient.SqlClient,
        deaf(sql, listening)
      ))

  it.live(
    "a LISTEN never confirmed holds the first lease 2 s at most, and closing a queue while it waits ends (it hung)",
    () =>
      withTable("pg", "ln", (table) =>
        Effect.gen(function*() {
          // The core leases uninterruptibly; the store's 2-second bound on the wait for its LISTEN did not apply there.
          const listening = yield* Effect.makeLatch(false)
          const ran = yield* Effect.makeLatch(false)
          const queue = yield* deafQueue(table, listening)
          yield* queue.offer(1)
          const running = yield* Effect.fork(queue.run(() => ran.open))
          expect(yield* ran.await.pipe(Effect.timeout("10 seconds"), Effect.option)).toEqual(Option.some(undefined))
          yield* Fiber.interrupt(running)
          // The scope closing during the first lease stops the LISTEN's supervisor (forked last, closed first): the
          // lease must not wait for a confirmation that can no longer come. Before the fix this close never ended.
          const heard = yield* Effect.makeLatch(false)
          const scope = yield* Scope.make()
          const other = yield* deafQueue(table, heard).pipe(Scope.extend(scope))
          yield* Effect.forkIn(other.run(() => Effect.void), scope)
          yield* heard.await
          const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
          expect(yield* Fiber.await(closing).pipe(Effect.timeout("10 seconds"), Effect.option)).toEqual(
            Option.some(Exit.void)
          )
        }).pipe(Effect.scoped)),
    30_000
  )

  it.live(
    "a LISTEN connection cut (as by a restart) is noticed and listened again; the missed offer is taken then",
    () =>
      withTable("pg", "ln", (table) =>
        Effect.gen(function*() {
          const { a, b } = yield* twoClients(table, "jobs")
          const sql = yield* SqlClient.SqlClient
          // b's LISTEN connection (a's store only offered: it never listened); its last statement was its LISTEN.
          yield* latency(a, b, 0, "2 seconds")
          const cut = sql<{ pid: number }>`SELECT pg_terminate_backend(pid), pid FROM pg_stat_activity
          WHERE pid <> pg_backend_pid() AND query = ${`LISTEN "ew:${table}:jobs"`}`
          expect((yield* cut).length).toBe(1)
          // Offered while b hears nothing: b notices within a probe (5 s) and its timeout (2 s), listens again and looks.
          const missed = yield* latency(a, b, 1, "15 seconds")
          expect(missed.exit).toEqual(Option.some(Exit.succeed(1)))
          // Listening again, b is woken at once.
          const { exit, millis } = yield* latency(a, b, 2, "2 seconds")
          expect(exit).toEqual(Option.some(Exit.succeed(2)))
          console.log(
            `LISTEN cut: the offer made meanwhile was taken after ${missed.millis.toFixed(0)} ms; then ${
              millis.toFixed(1)
            } ms`
          )
        }).pipe(Effect.scoped)),
    40_000
  )
})
