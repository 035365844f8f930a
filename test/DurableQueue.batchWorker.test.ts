/**
 * `runBatch`'s taker (src/internal/durableQueue/batch.ts `BatchWorker`) over the core's real `Feed`: every job the
 * feed hands it is run or settled, whatever the moment its `maxWait` ends. A job the gathering's wait took as the
 * timer side of its race won was dropped by `Effect.raceFirst` (the loser's result is discarded): held, its lease
 * refreshed for as long as the process lives, never run, never put back.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as DurableQueue from "../src/DurableQueue.js"
import { type BatchPort, BatchWorker } from "../src/internal/durableQueue/batch.js"
import { Feed } from "../src/internal/durableQueue/core.js"
import { codec } from "../src/internal/durableQueue/encoding.js"
import { Emitter, inProcessBus } from "../src/internal/durableQueue/events.js"
import type { QueueSettings } from "../src/internal/durableQueue/options.js"
import type { LeasedJob, Settlement } from "../src/internal/durableQueue/store.js"
import { eventually } from "./helpers/storePort.js"

const job = (id: string): LeasedJob => ({ id, payload: "1", attempts: 1, handle: undefined, options: undefined })

const settings = {
  name: "batch-worker",
  maxAttempts: 3,
  leaseMillis: 30_000,
  pollMillis: 100,
  timeoutMillis: undefined,
  resultTtlMillis: 60_000
} as unknown as QueueSettings

/** A port over a real `Feed` (its `wait` and buffer; no store): what is submitted is recorded. */
const portOver = (feed: Feed, submitted: Array<[string, Settlement["_tag"]]>): BatchPort<number> => {
  const ack: Settlement = { _tag: "Ack", result: undefined, resultTtlMillis: 60_000 }
  return {
    settings,
    backend: "memory",
    codec: codec(Schema.Number),
    emitter: new Emitter(inProcessBus(), "batch-worker"),
    ack,
    poll: () => feed.jobs.shut ? undefined : feed.pollNow(),
    wait: feed.wait,
    runnable: () => true,
    shut: () => feed.jobs.shut,
    ended: () => false,
    complete: (failed) => Effect.succeed({ _tag: "Release", attempts: failed.attempts - 1 }),
    submit: (settled, settlement) => void submitted.push([settled.id, settlement._tag]),
    handle: (job) => ({ id: job.id, attempt: job.attempts, progress: () => Effect.void }),
    gathering: new Set(),
    unsettled: (failed) => ({ _tag: "Release", attempts: failed.attempts - 1 })
  }
}

describe("DurableQueue runBatch taker", () => {
  it.effect(
    "a job handed over as the run stops (at any step of the race) is run or stays buffered, never dropped",
    () =>
      Effect.gen(function*() {
        const lost: Array<number> = []
        // The window is a few scheduler steps wide; which step depends on Effect's internals, so every offset is
        // tried (without the fix, offset 2 lost the job on effect 3.22).
        for (let steps = 0; steps < 16; steps++) {
          const feed = new Feed(undefined as never, undefined as never, 100)
          const submitted: Array<[string, Settlement["_tag"]]> = []
          const ran: Array<string> = []
          const stop = yield* Deferred.make<void>()
          const worker = new BatchWorker(
            portOver(feed, submitted),
            (_values, jobs) => Effect.sync(() => jobs.forEach((handle) => ran.push(handle.id))),
            { size: 10, maxWaitMillis: 60_000 },
            (effect) => effect,
            Deferred.await(stop)
          )
          const taker = yield* Effect.fork(Effect.interruptible(worker.run(job("first"))))
          while (feed.demand < 1) yield* Effect.yieldNow()
          yield* Deferred.succeed(stop, undefined)
          for (let i = 0; i < steps; i++) yield* Effect.yieldNow()
          yield* feed.handOver([job("second")])
          expect(Exit.isSuccess(yield* Fiber.await(taker))).toBe(true)
          const buffered = feed.jobs.takeAll().map((left) => left.id)
          const accounted = [...ran, ...buffered]
          if (!accounted.includes("second")) lost.push(steps)
          expect(ran).toContain("first")
          expect(submitted.map(([id]) => id).sort()).toEqual([...ran].sort())
        }
        expect(lost).toEqual([])
      })
  )

  it.live(
    "a queue backoff Schedule that dies (a hostile one) still settles every job of a failed batch, as run does",
    () =>
      Effect.gen(function*() {
        const queue = yield* DurableQueue.memory({
          name: "jobs",
          schema: Schema.Number,
          maxAttempts: 2,
          backoff: Schedule.recurWhile(() => {
            throw new Error("a schedule that throws")
          })
        })
        yield* queue.offerAll([{ value: 1, id: "a" }, { value: 2, id: "b" }])
        yield* Effect.forkScoped(queue.runBatch(() => Effect.fail("refused"), { size: 2 }))
        const states = Effect.forEach(["a", "b"], (id) =>
          Effect.map(queue.status(id), (status) => Option.getOrThrow(status).state))
        // Before: the retry delay's defect failed `settle`, and `settleLeft` asked it again for the same job: both
        // jobs stayed "running", their leases refreshed for as long as the process lives.
        yield* eventually(states, (both) =>
          both.every((state) => state === "dead"), { within: "5 seconds" })
      }).pipe(Effect.scoped),
    20_000
  )

  it.live(
    "a payload whose schema's decode throws fails alone; the other jobs of its batch run and are acknowledged",
    () =>
      Effect.gen(function*() {
        const picky = Schema.transform(Schema.Number, Schema.Number, {
          strict: true,
          decode: (n) => {
            if (n === 13) throw new Error("unlucky")
            return n
          },
          encode: (n) => n
        })
        const queue = yield* DurableQueue.memory({ name: "jobs", schema: picky, maxAttempts: 1 })
        yield* queue.offerAll([1, 13, 2].map((value) => ({ value, id: `n${value}` })))
        const handed: Array<number> = []
        yield* Effect.forkScoped(
          queue.runBatch((values) => Effect.sync(() => handed.push(...values)), { size: 3, maxWait: "1 second" })
        )
        const states = Effect.forEach(["n1", "n13", "n2"], (id) =>
          Effect.map(queue.status(id), (status) => Option.getOrThrow(status).state))
        yield* eventually(states, (all) =>
          all.every((state) => state === "done" || state === "dead"))
        // Before: the throw escaped `start` and `settleLeft` failed the whole batch: n1 and n2, never run, were
        // dead letters with n13.
        expect(yield* states).toEqual(["done", "dead", "done"])
        expect(handed.sort()).toEqual([1, 2])
      }).pipe(Effect.scoped),
    20_000
  )
})
