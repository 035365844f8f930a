/**
 * A job runner over a SQLite table: the writer claims pending jobs (`UPDATE … RETURNING`, so a job is claimed
 * once), reader processes do CPU work (an iterated SHA-256 of the payload) and mark their job done. This module
 * only defines the runner; it is loaded by the writer process and again by every reader process.
 *
 *   node --import tsx examples/jobs/main.ts                        # creates the database, runs until every job is done
 *   npx effect-workers run examples/jobs/jobs.ts         # the same runner under the CLI (the database must exist)
 *
 * Settings come from env variables prefixed with the runner's name: HASH_JOBS_NUM_PROCESSES=4, …
 */
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import * as Os from "node:os"
import * as Path from "node:path"
import * as JobRunner from "../../src/JobRunner.js"

export const databaseFile = process.env.JOBS_DB ?? Path.join(Os.tmpdir(), "effect-workers-jobs.sqlite")

/** One SQLite connection per process: the writer's, and one in each reader process. */
export const Database = SqliteClient.layer({ filename: databaseFile })

export const Job = Schema.Struct({ id: Schema.Number, payload: Schema.String })
export type Job = typeof Job.Type

/** CPU work: 20 000 rounds of SHA-256. */
export const hash = (payload: string, rounds = 20_000): string => {
  let digest = payload
  for (let i = 0; i < rounds; i++) digest = createHash("sha256").update(digest).digest("hex")
  return digest
}

export const runner = JobRunner.make({
  name: "hashJobs",
  module: import.meta.url,
  item: Job,
  key: (job) => String(job.id),
  settings: { numProcesses: 2, concurrentTasksPerProcess: 1, lookupBlockSize: 20, emptyQueueSleepTime: "200 millis" },
  writerContext: Database,
  // Claims up to `desired` pending jobs; claiming marks them so that no other writer takes them.
  writer: (desired) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      return yield* sql<Job>`
        UPDATE jobs SET status = 'claimed'
        WHERE id IN (SELECT id FROM jobs WHERE status = 'pending' ORDER BY id LIMIT ${desired})
        RETURNING id, payload`
    }),
  context: Database,
  reader: (job: Job, ctx: Context.Context<SqlClient.SqlClient>) =>
    Effect.gen(function*() {
      const sql = Context.get(ctx, SqlClient.SqlClient)
      const digest = hash(job.payload)
      yield* sql`UPDATE jobs SET status = 'done', result = ${digest}, pid = ${process.pid} WHERE id = ${job.id}`
    }),
  onError: (failure) =>
    Effect.logError(`job ${JSON.stringify(failure.item)} failed: ${failure.reason}: ${failure.message}`)
})
