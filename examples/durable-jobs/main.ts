/**
 * Offers 200 thumbnail jobs (and a broken one) to a durable SQLite queue, offers them all a second time (an id is
 * queued once), runs the `thumbnails` runner until the queue is empty, and prints the summary and the dead
 * letters.
 *
 *   node --import tsx examples/durable-jobs/main.ts
 *   JOBS=2000 THUMBNAILS_NUM_PROCESSES=4 node --import tsx examples/durable-jobs/main.ts
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as JobRunner from "../../src/JobRunner.js"
import { Database, databaseFile, runner, thumbnails } from "./jobs.js"

const jobs = Number(process.env.JOBS ?? "200")

const offer = Effect.gen(function*() {
  const queue = yield* thumbnails
  const files = [...Array.from({ length: jobs }, (_, i) => `photo-${i}.jpg`), "broken.jpg"]
  // Offered twice: the second round finds every id already queued, so nothing is added.
  for (let round = 0; round < 2; round++) {
    for (const file of files) yield* queue.offer({ file, size: 128 }, { id: `thumb:${file}` })
  }
  yield* Effect.logInfo(`offered ${files.length} jobs twice; ${yield* queue.size} in the queue`)
}).pipe(Effect.scoped, Effect.provide(Database))

const report = Effect.gen(function*() {
  const queue = yield* thumbnails
  for (const dead of yield* queue.deadLetters) {
    yield* Effect.logInfo(`dead letter ${dead.id} after ${dead.attempts} attempts: ${dead.lastError.split("\n")[0]}`)
  }
  yield* Effect.logInfo(`${yield* queue.size} jobs left in the queue`)
}).pipe(Effect.scoped, Effect.provide(Database))

const program = Effect.gen(function*() {
  for (const suffix of ["", "-wal", "-shm"]) Fs.rmSync(databaseFile + suffix, { force: true })
  yield* offer
  const start = performance.now()
  const summary = yield* JobRunner.run(runner, { settings: { stopWhenEmpty: true } })
  yield* Effect.logInfo(
    `${summary.processed} processed, ${summary.failed} failed attempts, ${summary.processesStarted} reader processes ` +
      `in ${((performance.now() - start) / 1000).toFixed(1)} s`
  )
  yield* report
})

NodeRuntime.runMain(program)
