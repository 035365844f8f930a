/**
 * A durable job queue in an embedded SQLite file (`effect-workers/sql`): 100 image-resize jobs are offered (one of
 * them twice, by id: queued once), two workers (two queue instances on the same file, as two processes would be)
 * run them 8 at a time; a flaky job fails once and is retried, a broken one fails every attempt and ends in the
 * dead letters with its last error. It stops once nothing is pending and prints what happened.
 *
 *   npx tsx examples/sql-durable-queue.ts
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx examples/sql-durable-queue.ts   # on PostgreSQL
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
import { DurableQueue } from "../src/sql.js"

const Resize = Schema.Struct({ image: Schema.String, width: Schema.Number })

const dir = mkdtempSync(join(tmpdir(), "sql-durable-queue-"))
const url = process.env.DATABASE_URL
const Database: Layer.Layer<SqlClient.SqlClient, unknown> = url === undefined
  ? SqliteClient.layer({ filename: join(dir, "jobs.db") })
  : PgClient.layer({ url: Redacted.make(url) })
const tableName = `example_jobs_${process.pid}`

const program = Effect.gen(function*() {
  const options = { name: "resize", tableName, schema: Resize, maxAttempts: 3, pollInterval: "20 millis" } as const
  const producer = yield* DurableQueue.make(options)
  for (let i = 1; i <= 100; i++) {
    yield* producer.offer({ image: `photo-${i}.jpg`, width: 640 }, { id: `resize:photo-${i}` })
  }
  yield* producer.offer({ image: "photo-1.jpg", width: 640 }, { id: "resize:photo-1" }) // same id: not queued again
  console.log(`offered 101 jobs, ${yield* producer.size} pending (one id was offered twice)`)

  const done = new Map<string, string>()
  const retried: Array<string> = []
  const resize = (worker: string) => (job: typeof Resize.Type, meta: DurableQueue.Job) =>
    Effect.gen(function*() {
      if (job.image === "photo-13.jpg" && meta.attempt === 1) {
        retried.push(meta.id)
        return yield* Effect.fail(`${job.image}: the image server timed out`)
      }
      if (job.image === "photo-42.jpg") {
        return yield* Effect.fail(`${job.image}: not a JPEG file (attempt ${meta.attempt})`)
      }
      yield* Effect.sleep("5 millis") // the resizing
      done.set(meta.id, worker)
    })
  // Two workers, as two processes on the same database would be; each runs 8 jobs at a time.
  for (const worker of ["worker-a", "worker-b"]) {
    const queue = yield* DurableQueue.make(options)
    yield* Effect.forkScoped(queue.run(resize(worker), { concurrency: 8 }))
  }
  const started = Date.now()
  while ((yield* producer.size) > 0) yield* Effect.sleep("50 millis")

  const byWorker = [...done.values()].reduce<Record<string, number>>(
    (acc, w) => ({ ...acc, [w]: (acc[w] ?? 0) + 1 }),
    {}
  )
  console.log(
    `done: ${done.size} jobs in ${Date.now() - started} ms (${
      Object.entries(byWorker).map(([w, n]) => `${w} ${n}`).join(", ")
    })`
  )
  console.log(`retried after a failure: ${retried.join(", ")}`)
  for (const dead of yield* producer.deadLetters) {
    console.log(`dead letter: ${dead.id} after ${dead.attempts} attempts, last error: ${dead.lastError.split("\n")[0]}`)
  }
}).pipe(
  Effect.scoped,
  // The example's table goes once the queues are closed (a real queue keeps it: it is the queue).
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
