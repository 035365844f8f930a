/**
 * A job runner whose source is a durable queue in SQLite (`effect-workers/sql`), not a writer: every job is
 * leased from the queue, run by a reader process, and acknowledged only once its reader succeeded. A job whose
 * reader fails is retried by the queue, and after `maxAttempts` it becomes a dead letter with its last error.
 * Several runners (on several machines, with PostgreSQL instead of SQLite) can share the queue.
 *
 * This module only defines the runner; it is loaded by the runner process and again by every reader process.
 *
 *   node --import tsx examples/durable-jobs/main.ts     # offers the jobs, runs until the queue is empty
 */
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import * as Os from "node:os"
import * as Path from "node:path"
import * as JobRunner from "../../src/JobRunner.js"
import * as DurableQueue from "../../src/sql/DurableQueue.js"

export const databaseFile = process.env.DURABLE_JOBS_DB ?? Path.join(Os.tmpdir(), "effect-workers-durable-jobs.sqlite")

/** The queue's database, opened in the runner process only (readers never touch it). */
export const Database = SqliteClient.layer({ filename: databaseFile })

export const Thumbnail = Schema.Struct({ file: Schema.String, size: Schema.Number })
export type Thumbnail = typeof Thumbnail.Type

/** The queue, the same for whoever offers jobs and whoever runs them. */
export const thumbnails = DurableQueue.make({
  name: "thumbnails",
  schema: Thumbnail,
  maxAttempts: 2,
  pollInterval: "50 millis"
})

export const runner = JobRunner.make({
  name: "thumbnails",
  module: import.meta.url,
  item: Thumbnail,
  settings: { numProcesses: 2, concurrentTasksPerProcess: 2, emptyQueueSleepTime: "200 millis" },
  writerContext: Database,
  source: () => thumbnails,
  // CPU work standing in for an image resize: 5,000 rounds of SHA-256. A file named "broken" always fails.
  reader: (job: Thumbnail) => {
    if (job.file.includes("broken")) throw new Error(`cannot decode ${job.file}`)
    let digest = `${job.file}@${job.size}`
    for (let i = 0; i < 5_000; i++) digest = createHash("sha256").update(digest).digest("hex")
  }
})
