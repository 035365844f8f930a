/**
 * SQLite's idle takers hear other connections' commits through `PRAGMA data_version` (sqliteWatch.ts): a store that
 * takes says it hears (`Store.hearing`), so an idle run backs off its leases to 2 s (core.ts `IdleBackoff`; it
 * leased every 100 ms: 29 µs of CPU per ms idle, bench/_idle-cpu.ts), while an offer from another connection on
 * the same file, or another store of the same client, opens its `ready` within about `pollInterval`. Real SQLite
 * files, real time (the watch is a real-time poll of a real connection).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as core from "../../src/internal/durableQueue/core.js"
import { queueSettings } from "../../src/internal/durableQueue/options.js"
import { makeStore } from "../../src/internal/durableQueue/sqlStore.js"
import type { Store } from "../../src/internal/durableQueue/store.js"
import { clientLayer, withTable } from "../fixtures/sql-client.js"
import { eventually, job } from "../helpers/storePort.js"

const storeOf = (table: string) =>
  Effect.flatMap(
    queueSettings({ name: "jobs", schema: Schema.Number }),
    (settings) => makeStore(settings, { tableName: table, notify: true })
  )

/** A second client (its own better-sqlite3 connection) on `file`, as another process would have, in the scope. */
const otherClient = (file: string) =>
  Effect.map(
    Layer.build(clientLayer("sqlite", file)),
    (context) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, context)
  )

const withSqlite = <A, E>(f: (table: string, file: string) => Effect.Effect<A, E, SqlClient.SqlClient | Scope.Scope>) =>
  withTable("sqlite", "dqw", (table, file) => Effect.scoped(f(table, file!)))

/** Whether `store.ready` completes within `millis` (real time). */
const readyWithin = (store: Store, millis: number) =>
  Effect.map(Effect.timeout(store.ready, millis), () => true).pipe(
    Effect.catchTag("TimeoutException", () => Effect.succeed(false))
  )

describe("sql DurableQueue store on SQLite: data_version watch", () => {
  it.live(
    "a store hears from its first lease on; another connection's offer opens its ready",
    () =>
      withSqlite((table, file) =>
        Effect.gen(function*() {
          const store = yield* storeOf(table)
          expect(yield* store.hearing!).toBe(false)
          expect(yield* store.lease(1)).toEqual([])
          expect(yield* store.hearing!).toBe(true)
          // Nothing changed: ready stays closed over 3 reads of the watch.
          expect(yield* readyWithin(store, 350)).toBe(false)
          const other = yield* otherClient(file)
          yield* other(Effect.flatMap(storeOf(table), (elsewhere) => elsewhere.offer([job("a")])))
          expect(yield* readyWithin(store, 2_000)).toBe(true)
          expect((yield* store.lease(5)).map((j) => j.id)).toEqual(["a"])
        })
      ),
    30_000
  )

  it.live(
    "an offer of another store on the same client (same connection: data_version stays) opens its ready",
    () =>
      withSqlite((table) =>
        Effect.gen(function*() {
          const store = yield* storeOf(table)
          const sibling = yield* storeOf(table)
          expect(yield* store.lease(1)).toEqual([])
          const sql = yield* SqlClient.SqlClient
          const version = () =>
            Effect.map(sql<{ data_version: number }>`PRAGMA data_version`, (r) => r[0]!.data_version)
          const before = yield* version()
          yield* sibling.offer([job("a")])
          expect(yield* version()).toBe(before)
          expect(yield* readyWithin(store, 2_000)).toBe(true)
        })
      ),
    30_000
  )

  it.live(
    "an idle run backed off to 2 s still starts another connection's offer within 1 s",
    () =>
      withSqlite((table, file) =>
        Effect.gen(function*() {
          // Another process's connection to the file.
          const other = yield* otherClient(file)
          const settings = yield* queueSettings({ name: "jobs", schema: Schema.Number })
          const inner = yield* makeStore(settings, { tableName: table, notify: true })
          const leases: Array<number> = []
          const store: Store = {
            ...inner,
            lease: (max) => Effect.zipRight(Effect.sync(() => leases.push(Date.now())), inner.lease(max))
          }
          const queue = yield* core.make(store, settings, Schema.Number)
          const started: Array<number> = []
          yield* Effect.forkScoped(queue.run(() => Effect.sync(() => started.push(Date.now())), { concurrency: 4 }))
          // Backed off: two empty leases 1.5 s apart or more (100, 200, 400, 800, 1,600 ms, then 2 s); polling every
          // 100 ms, as before the watch, never gets there.
          yield* eventually(
            Effect.sync(() => leases.slice(-2)),
            (last) => last.length === 2 && last[1]! - last[0]! >= 1_500,
            { message: "an empty lease 1.5 s or more after the one before", within: "12 seconds" }
          )
          const offeredAt = Date.now()
          // Through a queue: the store holds payloads as the core encodes them.
          yield* other(Effect.flatMap(storeOf(table), (elsewhere) => elsewhere.offer([job("a", { payload: "1" })])))
          yield* eventually(
            Effect.sync(() => started.length),
            (n) => n === 1,
            { within: "5 seconds" }
          )
          expect(started[0]! - offeredAt).toBeLessThan(1_000)
        })
      ),
    30_000
  )
})
