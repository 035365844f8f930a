/**
 * A durable SQLite queue (`effect-workers/sql`) using what BullMQ, pg-boss and graphile-worker users rely on:
 * - backoff: a flaky job fails twice and is retried 200 ms, then 400 ms later (exponential, not at once);
 * - a delayed job: offered with `delay: "1500 millis"`, not started before;
 * - a schedule: `{ every: "1 second" }`, each occurrence a job `schedule:tick:<ISO time>` (run this in several
 *   processes on one database and each occurrence is still stored once);
 * - progress: handlers report progress, read back by id with `status`;
 * - events: every job's life printed as it happens, from the queue's `events` stream.
 * It stops once the flaky job is done, the delayed one ran and two ticks ran, and prints a summary.
 *
 *   node --import tsx examples/durable-advanced/main.ts
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Backoff } from "../../src/DurableQueue.js"
import * as DurableQueue from "../../src/sql/DurableQueue.js"

const databaseFile = process.env.DURABLE_ADVANCED_DB ??
  Path.join(Os.tmpdir(), `effect-workers-durable-advanced-${process.pid}.sqlite`)

const Report = Schema.Struct({ kind: Schema.Literal("flaky", "delayed", "tick") })

const program = Effect.gen(function*() {
  const queue = yield* DurableQueue.make({
    name: "reports",
    schema: Report,
    maxAttempts: 4,
    // After the n-th failure: 200 ms × 2^(n-1), at most 5 s; no jitter, so the printed gaps are predictable.
    backoff: Backoff.exponential({ base: "200 millis", factor: 2, max: "5 seconds", jitter: false }),
    pollInterval: "20 millis"
  })

  // Every event of every job, as it happens (another process on this database would see its own; on PostgreSQL
  // or Redis, every process sees all).
  yield* Effect.forkScoped(
    Stream.runForEach(queue.events, (event) =>
      Effect.logInfo(
        `event ${event._tag} ${event.id}${event.attempt === undefined ? "" : ` attempt ${event.attempt}`}`
      ))
  )

  const flakyDone = yield* Deferred.make<void>()
  const delayedDone = yield* Deferred.make<number>()
  const ticks = yield* Deferred.make<void>()
  let tickCount = 0
  const startedAt: Array<number> = []

  const offeredAt = Date.now()
  yield* queue.offer({ kind: "flaky" }, { id: "flaky" })
  yield* queue.offer({ kind: "delayed" }, { id: "delayed", delay: "1500 millis" })
  yield* queue.schedule("tick", { every: "1 second" }, { kind: "tick" })

  const running = yield* Effect.forkScoped(queue.run((report, job) =>
    Effect.gen(function*() {
      yield* job.progress({ step: "started" })
      if (report.kind === "flaky") startedAt.push(Date.now())
      if (report.kind === "flaky" && job.attempt < 3) return yield* Effect.fail(`flaky: attempt ${job.attempt} failed`)
      yield* job.progress({ step: "done", percent: 100 })
      if (report.kind === "flaky") yield* Deferred.succeed(flakyDone, undefined)
      if (report.kind === "delayed") yield* Deferred.succeed(delayedDone, Date.now() - offeredAt)
      if (report.kind === "tick" && ++tickCount === 2) yield* Deferred.succeed(ticks, undefined)
    }), { concurrency: 4 }))

  yield* Deferred.await(flakyDone)
  const waited = yield* Deferred.await(delayedDone)
  yield* Deferred.await(ticks)
  // Stop the run before reading the status back: a handler's end comes before its acknowledgement is written, and
  // interrupting `run` returns once the acknowledgements of the jobs it ran are written, so one read says done.
  yield* Fiber.interrupt(running)
  const gaps = startedAt.slice(1).map((t, i) => t - startedAt[i]!)
  yield* Effect.logInfo(
    `flaky done on attempt 3; attempts started ${gaps.join(" and ")} ms apart (backoff 200 and 400)`
  )
  yield* Effect.logInfo(`delayed started ${waited} ms after its offer (asked 1500)`)
  yield* Effect.logInfo(`ticks run: ${tickCount}`)
  const status = yield* queue.status("flaky")
  if (Option.isSome(status)) {
    yield* Effect.logInfo(
      `status of flaky: ${status.value.state} after ${status.value.attempts} attempts, progress ${
        JSON.stringify(status.value.progress)
      }`
    )
  }
}).pipe(
  Effect.scoped,
  Effect.provide(SqliteClient.layer({ filename: databaseFile })),
  Effect.ensuring(Effect.sync(() => {
    for (const suffix of ["", "-wal", "-shm"]) Fs.rmSync(databaseFile + suffix, { force: true })
  }))
)

NodeRuntime.runMain(program)
