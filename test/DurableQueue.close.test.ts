/**
 * Closing a queue whose store stopped answering (core.ts `Settler.flushOnClose`): the settlements still to write
 * are written for 5 s at most, then let go (their leases lapse: at-least-once) and the `take` waiting on one fails
 * with a `DurableQueueError`. The flush ran as a finalizer, uninterruptible, where its 5 s timeout could not
 * interrupt a store call: a settle that never returns held the close forever (this test timed out without the fix).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
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
