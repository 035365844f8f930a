/**
 * Batch handlers (`runBatch`) on a durable queue in an embedded SQLite file (`effect-workers/sql`): 1,000 click
 * events are offered in one `offerAll`, and a loader inserts them into a "warehouse" that takes up to 100 rows per
 * insert, so the handler is called once per batch, not once per event. The warehouse is down for the first insert
 * (the whole batch fails and each of its events is retried by its own attempts), and refuses the rows of one broken event
 * (a `BatchFailure` fails those alone: the rest of their batch is done; the broken one ends in the dead letters
 * after 3 attempts). Each event keeps the warehouse row it became as its result (`result: Schema.Number`: the handler
 * gives one key per event, in order), read back by id. It stops once nothing is pending and prints what happened.
 *
 *   npx tsx examples/durable-batch.ts
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx examples/durable-batch.ts   # on PostgreSQL
 */
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Backoff } from "../src/DurableQueue.js"
import { DurableQueue } from "../src/sql.js"

const Click = Schema.Struct({ user: Schema.String, page: Schema.String })

const dir = mkdtempSync(join(tmpdir(), "durable-batch-"))
const url = process.env.DATABASE_URL
const Database: Layer.Layer<SqlClient.SqlClient, unknown> = url === undefined
  ? SqliteClient.layer({ filename: join(dir, "events.db") })
  : PgClient.layer({ url: Redacted.make(url) })
const tableName = `example_clicks_${process.pid}`

/**
 * The warehouse: one insert of many rows, returning each row's key (-1 for a row refused); down for its first call;
 * refuses a row without a page.
 */
const warehouse = { calls: 0, rows: 0, largest: 0 }
const insertRows = (
  rows: ReadonlyArray<typeof Click.Type>
): Effect.Effect<ReadonlyArray<number>, string | DurableQueue.BatchFailure<string>> =>
  Effect.suspend((): Effect.Effect<ReadonlyArray<number>, string | DurableQueue.BatchFailure<string>> => {
    warehouse.calls++
    warehouse.largest = Math.max(warehouse.largest, rows.length)
    if (warehouse.calls === 1) return Effect.fail("the warehouse is down (connection refused)")
    const refused = rows.flatMap((row, index) => row.page === "" ? [{ index, error: "a click without a page" }] : [])
    const keys = rows.map((row) => row.page === "" ? -1 : ++warehouse.rows)
    // The rows inserted keep their keys (`results`), the refused ones fail alone.
    return refused.length === 0
      ? Effect.succeed(keys)
      : Effect.fail(new DurableQueue.BatchFailure({ failures: refused, results: keys }))
  })

const program = Effect.gen(function*() {
  const queue = yield* DurableQueue.make({
    name: "clicks",
    tableName,
    schema: Click,
    maxAttempts: 3,
    backoff: Backoff.fixed("20 millis")
  })
  yield* queue.offerAll(Array.from({ length: 1_000 }, (_, i) => ({
    id: `click:${i}`,
    value: { user: `user-${i % 37}`, page: i === 500 ? "" : `/page/${i % 11}` }
  })))
  console.log(`offered 1000 events, ${yield* queue.size} pending`)

  // Up to 100 events a call, two calls at once; a call waits up to 50 ms to fill its batch; each event keeps its key.
  yield* Effect.forkScoped(
    queue.runBatch((clicks) => insertRows(clicks), {
      size: 100,
      maxWait: "50 millis",
      concurrency: 2,
      result: Schema.Number
    })
  )
  while ((yield* queue.size) > 0) yield* Effect.sleep("20 millis")

  console.log(`warehouse: ${warehouse.rows} rows in ${warehouse.calls} inserts (at most ${warehouse.largest} a call)`)
  for (const id of ["click:0", "click:999", "click:500"]) {
    const key = yield* queue.result(id, Schema.Number)
    console.log(`${id}: ${key._tag === "Some" ? `warehouse row ${key.value}` : "no row"}`)
  }
  for (const dead of yield* queue.deadLetters) {
    console.log(`dead letter: ${dead.id} after ${dead.attempts} attempts, last error: ${dead.lastError.split("\n")[0]}`)
  }
}).pipe(
  Effect.scoped,
  // The example's table goes once the queue is closed (a real queue keeps it: it is the queue).
  Effect.ensuring(
    Effect.ignore(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP TABLE IF EXISTS ${sql(tableName)}`))
  ),
  Effect.provide(Layer.orDie(Database)),
  Effect.ensuring(Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
)

Effect.runPromise(program).then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
