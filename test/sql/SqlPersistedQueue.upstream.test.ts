/**
 * Why `effect-workers/sql` does not run on `@effect/sql`'s `SqlPersistedQueue` store: minimal reproductions of its
 * bugs on the machine's PostgreSQL, for the upstream report (see src/internal/durableQueue/sqlStore.ts). Each asserts the bug
 * as it is in @effect/sql 0.52.1; when one fails, upstream fixed it and the store's header should say so.
 */
import * as PersistedQueue from "@effect/experimental/PersistedQueue"
import * as SqlPersistedQueue from "@effect/sql/SqlPersistedQueue"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { withTable } from "../fixtures/sql-client.js"
import { postgres, requireService } from "../helpers/services.js"

const up = await requireService(postgres)

const queues = (tableName: string) =>
  Effect.gen(function*() {
    const store = yield* SqlPersistedQueue.make({
      tableName,
      lockExpiration: "1 second",
      lockRefreshInterval: "200 millis",
      pollInterval: "20 millis"
    })
    const factory = yield* Effect.provideService(PersistedQueue.makeFactory, PersistedQueue.PersistedQueueStore, store)
    return (name: string) => factory.make({ name, schema: Schema.Number })
  })

describe.skipIf(!up)("upstream SqlPersistedQueue (@effect/sql 0.52.1) on PostgreSQL: known bugs", () => {
  it.live(
    "a lease is never refreshed: a job running past lockExpiration is handed to a second taker",
    () =>
      withTable("pg", "up", (table) =>
        Effect.gen(function*() {
          const queue = yield* Effect.flatMap(queues(table), (make) => make("a"))
          yield* queue.offer(9, { id: "long-running" })
          const runs: Array<string> = []
          const first = yield* Effect.fork(
            queue.take((_n, job) =>
              Effect.zipRight(Effect.sync(() => runs.push(`first ${job.id}`)), Effect.sleep("4 seconds"))
            )
          )
          for (let i = 0; i < 500 && runs.length === 0; i++) {
            yield* Effect.sleep("10 millis")
          }
          // Refreshed every 200 ms, the 1 s lease should hold for the whole 4 s run; it lapses after about 2 s.
          const second = yield* queue.take((_n, job) => Effect.sync(() => runs.push(`second ${job.id}`))).pipe(
            Effect.timeout("3500 millis"),
            Effect.option
          )
          expect(Option.isSome(second)).toBe(true)
          expect(runs).toEqual(["first long-running", "second long-running"])
          yield* Fiber.interrupt(first)
        }).pipe(Effect.scoped)),
    20_000
  )

  it.live("ids are unique across queues: the same id offered to a second queue is silently dropped", () =>
    withTable("pg", "up", (table) =>
      Effect.gen(function*() {
        const make = yield* queues(table)
        const a = yield* make("a")
        const b = yield* make("b")
        yield* a.offer(1, { id: "same" })
        yield* b.offer(2, { id: "same" })
        const got = yield* b.take((n) => Effect.succeed(n)).pipe(Effect.timeout("1 second"), Effect.option)
        expect(Option.isNone(got)).toBe(true)
      }).pipe(Effect.scoped)))

  it.live("an id longer than 36 characters fails the offer (id VARCHAR(36))", () =>
    withTable("pg", "up", (table) =>
      Effect.gen(function*() {
        const queue = yield* Effect.flatMap(queues(table), (make) => make("a"))
        const exit = yield* Effect.exit(queue.offer(1, { id: "x".repeat(37) }))
        expect(Exit.isFailure(exit)).toBe(true)
      }).pipe(Effect.scoped)))
})
