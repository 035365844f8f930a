/**
 * `run`'s takers run their jobs' handlers on their own fibers (core.ts `Crew`, issue #16): a graceful shutdown must
 * not interrupt a running handler, while `cancel` and a timeout must; a taker interrupted by a cancel stays
 * interrupted (Effect 3) and must be replaced, and must not carry that interruption into its next job.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as DurableQueue from "../src/DurableQueue.js"

const queueOf = () => DurableQueue.memory({ name: "jobs", schema: Schema.String, maxAttempts: 3 })

/** Lets forked fibers run until `done` holds (bounded). */
const settle = (done: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1_000 && !done(); i++) yield* Effect.yieldNow()
    expect(done()).toBe(true)
  })

const stateOf = (queue: DurableQueue.DurableQueue<string>, id: string) =>
  Effect.map(queue.status(id), (status) => Option.getOrThrow(status))

describe("DurableQueue run: handlers on the takers' fibers", () => {
  it.scoped("cancel during a graceful shutdown interrupts the running handler, and the shutdown ends then (TestClock)", () =>
    Effect.gen(function*() {
      const queue = yield* queueOf()
      yield* queue.offer("slow", { id: "slow" })
      let started = false
      let interrupted = false
      const runner = yield* Effect.fork(queue.run(() =>
        Effect.onInterrupt(
          Effect.zipRight(Effect.sync(() => (started = true)), Effect.never),
          () => Effect.sync(() => (interrupted = true))
        ), { concurrency: 2 }))
      yield* settle(() => started)
      // The shutdown waits for the running handler (30 s by default: the TestClock never gets there).
      const stopping = yield* Effect.fork(Fiber.interrupt(runner))
      for (let i = 0; i < 200; i++) yield* Effect.yieldNow()
      expect(interrupted).toBe(false)
      expect(stopping.unsafePoll()).toBeNull()
      expect(yield* queue.cancel("slow")).toBe(true)
      yield* settle(() => interrupted && stopping.unsafePoll() !== null)
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
      expect(yield* stateOf(queue, "slow")).toMatchObject({ state: "cancelled", attempts: 1 })
    }))

  it.scoped("a handler that ignores interruption: cancel lets it end, the job is not retried, a new taker runs the next job once", () =>
    Effect.gen(function*() {
      const queue = yield* queueOf()
      const events = yield* Effect.fork(
        Stream.runCollect(Stream.take(queue.events, 6))
      )
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
      yield* queue.offer("stubborn", { id: "stubborn" })
      yield* queue.offer("next", { id: "next" })
      const release = yield* Deferred.make<void>()
      const runs: Array<string> = []
      yield* Effect.forkScoped(queue.run((id) =>
        Effect.suspend(() => {
          runs.push(id)
          return id === "stubborn"
            ? Effect.uninterruptible(Effect.zipRight(Deferred.await(release), Effect.fail("failed after cancel")))
            : Effect.void
        }), { concurrency: 1 }))
      yield* settle(() => runs.length === 1)
      expect(yield* queue.cancel("stubborn")).toBe(true)
      for (let i = 0; i < 200; i++) yield* Effect.yieldNow()
      // Concurrency 1: nothing else runs while the stubborn handler does.
      expect(runs).toEqual(["stubborn"])
      yield* Deferred.succeed(release, undefined)
      yield* settle(() => runs.length === 2)
      for (let i = 0; i < 200; i++) yield* Effect.yieldNow()
      expect(runs).toEqual(["stubborn", "next"])
      expect(yield* stateOf(queue, "stubborn")).toMatchObject({ state: "cancelled", attempts: 1 })
      expect(yield* stateOf(queue, "next")).toMatchObject({ state: "done", attempts: 1 })
      // "next" started once and completed: the cancel's interruption did not follow its taker into it.
      const seen = Chunk.toArray(yield* Fiber.join(events)).map((event) => `${event._tag} ${event.id}`)
      expect(seen).toEqual([
        "Offered stubborn",
        "Offered next",
        "Started stubborn",
        "Cancelled stubborn",
        "Started next",
        "Completed next"
      ])
    }))

  it.scoped("timeout and cancel at once: the job is cancelled, not retried, and the run goes on (TestClock)", () =>
    Effect.gen(function*() {
      // Polling every 10 s: a retry (due after at most 1.2 s) would be found within the minute stepped through below.
      const queue = yield* DurableQueue.memory({
        name: "jobs",
        schema: Schema.String,
        maxAttempts: 3,
        pollInterval: "10 seconds"
      })
      yield* queue.offer("t", { id: "t", timeout: "1 second" })
      yield* queue.offer("after", { id: "after" })
      const runs: Array<string> = []
      let interrupted = 0
      yield* Effect.forkScoped(queue.run((id) =>
        Effect.suspend(() => {
          runs.push(id)
          return id === "t" ? Effect.onInterrupt(Effect.never, () => Effect.sync(() => interrupted++)) : Effect.void
        }), { concurrency: 1 }))
      yield* settle(() => runs.length === 1)
      yield* Effect.all([TestClock.adjust("1 second"), queue.cancel("t")], { concurrency: "unbounded" })
      yield* settle(() => runs.length === 2)
      // Past any backoff a retry would wait (exponential from 1 s).
      yield* TestClock.adjust("1 minute")
      for (let i = 0; i < 200; i++) yield* Effect.yieldNow()
      expect(runs).toEqual(["t", "after"])
      expect(interrupted).toBe(1)
      expect(yield* stateOf(queue, "t")).toMatchObject({ state: "cancelled", attempts: 1 })
      expect(yield* stateOf(queue, "after")).toMatchObject({ state: "done", attempts: 1 })
      expect(yield* queue.size).toBe(0)
    }))

  it.scoped("a cancelled job's taker is replaced: concurrency 2 still runs two jobs at a time after three cancels", () =>
    Effect.gen(function*() {
      const queue = yield* queueOf()
      for (const id of ["c1", "c2", "c3", "p1", "p2"]) yield* queue.offer(id, { id })
      const running = new Set<string>()
      let most = 0
      const gate = yield* Deferred.make<void>()
      yield* Effect.forkScoped(queue.run((id) =>
        Effect.suspend(() => {
          running.add(id)
          most = Math.max(most, running.size)
          return Effect.ensuring(
            id.startsWith("c") ? Effect.never : Deferred.await(gate),
            Effect.sync(() => running.delete(id))
          )
        }), { concurrency: 2 }))
      for (const id of ["c1", "c2", "c3"]) {
        yield* settle(() => running.has(id))
        expect(yield* queue.cancel(id)).toBe(true)
      }
      yield* settle(() => running.has("p1") && running.has("p2"))
      expect(most).toBe(2)
      yield* Deferred.succeed(gate, undefined)
      yield* settle(() => running.size === 0)
      for (let i = 0; i < 200; i++) yield* Effect.yieldNow()
      for (const id of ["c1", "c2", "c3"]) expect((yield* stateOf(queue, id)).state).toBe("cancelled")
      for (const id of ["p1", "p2"]) expect((yield* stateOf(queue, id)).state).toBe("done")
    }))
})
