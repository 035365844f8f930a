/**
 * Closing a queue whose store stopped answering (core.ts `Settler.flushOnClose`): the settlements still to write
 * are written for 5 s at most, then let go (their leases lapse: at-least-once) and the `take` waiting on one fails
 * with a `DurableQueueError`. The flush ran as a finalizer, uninterruptible, where its 5 s timeout could not
 * interrupt a store call: a settle that never returns held the close forever (this test timed out without the fix).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as core from "../src/internal/durableQueue/core.js"
import { MemoryStore } from "../src/internal/durableQueue/memoryStore.js"
import { queueSettings } from "../src/internal/durableQueue/options.js"
import type { Settle } from "../src/internal/durableQueue/store.js"

/** A memory store whose settle never returns once `stuck` (a database that stopped answering). */
class StuckStore extends MemoryStore {
  stuck = false
  settleCalls = 0
  override settle(batch: ReadonlyArray<Settle>) {
    if (!this.stuck) return super.settle(batch)
    this.settleCalls++
    return Effect.never
  }
}

describe("DurableQueue close", () => {
  it.effect("a store that never answers holds the close 5 s at most; the take waiting on its settlement fails", () =>
    Effect.gen(function*() {
      const settings = yield* queueSettings({ name: "jobs", schema: Schema.Number })
      const store = new StuckStore(settings.leaseMillis)
      const scope = yield* Scope.make()
      const queue = yield* core.make(store, settings, Schema.Number).pipe(Scope.extend(scope))
      yield* queue.offer(1)
      yield* queue.offer(2)
      store.stuck = true
      const taking = yield* Effect.fork(queue.take((n) => Effect.succeed(n)))
      // The settlement reached the store, which holds it.
      for (let i = 0; i < 10_000 && store.settleCalls === 0; i++) yield* Effect.yieldNow()
      expect(store.settleCalls).toBe(1)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
      // The batch cut short is written again, and the store holds that too.
      expect(store.settleCalls).toBe(2)
      expect(closing.unsafePoll()).toBeNull()
      yield* TestClock.adjust("5 seconds")
      expect(Exit.isSuccess(yield* Fiber.await(closing))).toBe(true)
      const took = yield* Fiber.await(taking)
      expect(Exit.isFailure(took)).toBe(true)
      expect(String(Exit.isFailure(took) ? took.cause : "")).toContain("closed before 1 settlement(s) were written")
    }))
})

describe("DurableQueue close under a running job", () => {
  // A settlement submitted once the close's flush is over used to wait in a queue no fiber read: the take hung.
  it.effect("a take whose job ends after the queue closed fails with DurableQueueError instead of hanging", () =>
    Effect.gen(function*() {
      const settings = yield* queueSettings({ name: "jobs", schema: Schema.Number })
      const scope = yield* Scope.make()
      const queue = yield* core.make(new MemoryStore(settings.leaseMillis), settings, Schema.Number).pipe(
        Scope.extend(scope)
      )
      yield* queue.offer(1)
      const started = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      // A daemon: without the fix it never ends, and a child would hold the test's end.
      const taking = yield* Effect.forkDaemon(
        queue.take(() => Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(release)))
      )
      yield* Deferred.await(started)
      yield* Scope.close(scope, Exit.void)
      yield* Deferred.succeed(release, undefined)
      const took = yield* Fiber.await(taking).pipe(Effect.timeout("1 second"), Effect.fork)
      yield* TestClock.adjust("1 second")
      const exit = yield* Fiber.join(took)
      expect(Exit.isFailure(exit)).toBe(true)
      expect(String(Exit.isFailure(exit) ? exit.cause : "")).toContain("closed before 1 settlement(s) were written")
    }))
})

/** A memory store whose settle takes 20 ms (a round trip to a database), so the write ends after the run's end did. */
class SlowSettleStore extends MemoryStore {
  override settle(batch: ReadonlyArray<Settle>) {
    return Effect.zipRight(Effect.sleep("20 millis"), super.settle(batch))
  }
}

/** A queue of 20 jobs `s0`…`s19` whose handler holds `s0` until `release`: `started` once it runs. */
const heldQueue = (store: MemoryStore) =>
  Effect.gen(function*() {
    const settings = yield* queueSettings({ name: "jobs", schema: Schema.Number })
    const queue = yield* core.make(store, settings, Schema.Number)
    yield* queue.offerAll(Array.from({ length: 20 }, (_, i) => ({ value: i, id: `s${i}` })))
    const started = yield* Deferred.make<void>()
    const release = yield* Deferred.make<void>()
    const hold = (ids: ReadonlyArray<string>) =>
      ids.includes("s0") ? Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(release)) : Effect.void
    return { queue, started, release, hold }
  })

// The end of an interrupted run came before the settlements of the jobs it ran were written (core.ts
// `settleOnStop`): read at once, a job's status said "running" (50 of 50 times on SQLite) and the jobs leased ahead
// were still leased. With a 20 ms write both failed here without the fix.
describe("DurableQueue run stopped: its end is after its writes", () => {
  for (const kind of ["run", "runBatch"] as const) {
    it.live(`${kind}: the job it ran is done and those leased ahead wait, read once right after the interrupt`, () =>
      Effect.gen(function*() {
        const { hold, queue, release, started } = yield* heldQueue(new SlowSettleStore(30_000))
        const runner = yield* Effect.fork(
          kind === "run"
            ? queue.run((_n, job) => hold([job.id]), { concurrency: 2 })
            : queue.runBatch((_values, jobs) => hold(jobs.map((job) => job.id)), { size: 3 })
        )
        yield* Deferred.await(started)
        const stopping = yield* Effect.fork(Fiber.interrupt(runner))
        yield* Effect.yieldNow()
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(stopping)
        const counts = yield* queue.counts
        const s0 = Option.getOrThrow(yield* queue.status("s0")).state
        expect({ s0, running: counts.running }).toEqual({ s0: "done", running: 0 })
        expect(counts.waiting + counts.done).toBe(20)
      }).pipe(Effect.scoped))
  }

  // `pause` puts back the jobs leased ahead and returned before that write (a `counts` read next said them running:
  // 8 of 20 here without the wait), where a stopped run's end now waits for it.
  it.live("pause: the jobs leased ahead wait again, read once right after it returns; the running job finishes", () =>
    Effect.gen(function*() {
      const { hold, queue, release, started } = yield* heldQueue(new SlowSettleStore(30_000))
      const runner = yield* Effect.fork(queue.run((_n, job) => hold([job.id]), { concurrency: 2 }))
      yield* Deferred.await(started)
      const leasedAhead = (yield* queue.counts).running
      // s0 is let go even when an expectation below fails (the run's end would wait for it).
      yield* Effect.addFinalizer(() => Deferred.succeed(release, undefined))
      yield* queue.pause
      const counts = yield* queue.counts
      expect({ leasedAheadBefore: leasedAhead > 1, running: counts.running, paused: counts.paused }).toEqual({
        leasedAheadBefore: true,
        running: 1,
        paused: true
      })
      expect(counts.waiting + counts.done + counts.running).toBe(20)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.interrupt(runner)
      expect(Option.getOrThrow(yield* queue.status("s0")).state).toBe("done")
    }).pipe(Effect.scoped))

  // `pause` waits for the writes submitted before it and for a lease out to land, never for the caller's own job: a
  // handler pausing its own queue returns at once (well inside the 5 s bound), with the 20 ms settle of the jobs
  // other takers finished and the put-back of those leased ahead still to write.
  for (const kind of ["run", "runBatch"] as const) {
    it.live(`${kind}: pause called from a handler returns well before the 5 s bound`, () =>
      Effect.gen(function*() {
        const { queue } = yield* heldQueue(new SlowSettleStore(30_000))
        const paused = yield* Deferred.make<number>()
        const pauseHere = (ids: ReadonlyArray<string>) =>
          ids.includes("s0")
            ? Effect.timed(queue.pause).pipe(
              Effect.flatMap(([took]) => Deferred.succeed(paused, Duration.toMillis(took)))
            )
            : Effect.void
        const runner = yield* Effect.fork(
          kind === "run"
            ? queue.run((_n, job) => pauseHere([job.id]), { concurrency: 2 })
            : queue.runBatch((_values, jobs) => pauseHere(jobs.map((job) => job.id)), { size: 3 })
        )
        const took = yield* Deferred.await(paused).pipe(Effect.timeout("4 seconds"))
        expect(took).toBeLessThan(1_000)
        yield* Fiber.interrupt(runner)
        const counts = yield* queue.counts
        const s0 = Option.getOrThrow(yield* queue.status("s0")).state
        expect({ s0, paused: counts.paused, running: counts.running }).toEqual({ s0: "done", paused: true, running: 0 })
        expect(counts.waiting + counts.done).toBe(20)
      }).pipe(Effect.scoped))
  }

  // The wait is bounded: a store that stopped answering holds the run's end `CLOSE_FLUSH_MILLIS` (5 s) at most.
  it.effect("a store that never answers holds the run's end 5 s at most", () => {
    const store = new StuckStore(30_000)
    return Effect.gen(function*() {
      const { hold, queue, release, started } = yield* heldQueue(store)
      const runner = yield* Effect.fork(queue.run((_n, job) => hold([job.id])))
      yield* Deferred.await(started)
      store.stuck = true
      const stopping = yield* Effect.fork(Fiber.interrupt(runner))
      yield* Deferred.succeed(release, undefined)
      for (let i = 0; i < 10_000 && store.settleCalls === 0; i++) yield* Effect.yieldNow()
      expect(store.settleCalls).toBe(1)
      yield* TestClock.adjust("4999 millis")
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
      expect(stopping.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      expect(Exit.isSuccess(yield* Fiber.await(stopping))).toBe(true)
    }).pipe(
      // The queue's close writes what is held once the store answers again (its flush would wait 5 s of TestClock).
      Effect.ensuring(Effect.sync(() => store.stuck = false)),
      Effect.scoped
    )
  })

  // So is `pause`'s: the put-back of the jobs leased ahead, which a stuck store never writes, holds it 5 s at most.
  it.effect("a store that never answers holds pause 5 s at most", () => {
    const store = new StuckStore(30_000)
    return Effect.gen(function*() {
      const { hold, queue, release, started } = yield* heldQueue(store)
      const runner = yield* Effect.fork(queue.run((_n, job) => hold([job.id]), { concurrency: 2 }))
      yield* Deferred.await(started)
      store.stuck = true
      const pausing = yield* Effect.fork(queue.pause)
      for (let i = 0; i < 10_000 && store.settleCalls === 0; i++) yield* Effect.yieldNow()
      expect(store.settleCalls).toBe(1)
      yield* TestClock.adjust("4999 millis")
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
      expect(pausing.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      expect(Exit.isSuccess(yield* Fiber.await(pausing))).toBe(true)
      // The run's end waits its own 5 s for the settle the store holds.
      yield* Deferred.succeed(release, undefined)
      const stopping = yield* Effect.fork(Fiber.interrupt(runner))
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(stopping)
    }).pipe(
      Effect.ensuring(Effect.sync(() => store.stuck = false)),
      Effect.scoped
    )
  })
})
