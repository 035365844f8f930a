/**
 * The core's `Feed` (src/internal/durableQueue/core.ts): the buffer of leased jobs takers wait on. Effect 3's
 * `Queue.take` hands an offered item to a waiting taker's Deferred at once; a taker whose interruption was queued
 * before that hand-over drops the item. For a leased job that meant: held, its lease refreshed, never run and never
 * put back. Takers now await a latch and poll, which loses nothing.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import { Feed } from "../src/internal/durableQueue/core.js"
import type { LeasedJob } from "../src/internal/durableQueue/store.js"

const job = (id: string): LeasedJob => ({ id, payload: "1", attempts: 1, handle: undefined, options: undefined })

// `wait` and `handOver` use neither the store nor the held jobs.
const makeFeed = () => new Feed(undefined as never, undefined as never, 100)

const waiting = (feed: Feed, n: number) =>
  Effect.gen(function*() {
    while (feed.demand < n) yield* Effect.yieldNow()
  })

describe("DurableQueue Feed", () => {
  it.effect("a taker interrupted as a job is handed to it loses nothing: the job stays in the buffer", () =>
    Effect.gen(function*() {
      const feed = makeFeed()
      const taker = yield* Effect.fork(feed.wait)
      yield* waiting(feed, 1)
      // The interruption is queued first, then the job handed over, in one synchronous step.
      taker.unsafeInterruptAsFork(FiberId.none)
      Effect.runSync(feed.handOver([job("a")]))
      expect(Exit.isInterrupted(yield* Fiber.await(taker))).toBe(true)
      expect(feed.jobs.poll()).toEqual(job("a"))
      expect(feed.demand).toBe(0)
    }))

  it.effect("two waiting takers and jobs handed over one at a time: each job to one taker, none twice", () =>
    Effect.gen(function*() {
      const feed = makeFeed()
      const first = yield* Effect.fork(feed.wait)
      const second = yield* Effect.fork(feed.wait)
      yield* waiting(feed, 2)
      yield* feed.handOver([job("a")])
      const one = yield* Effect.raceFirst(Fiber.join(first), Fiber.join(second))
      yield* waiting(feed, 1)
      expect(feed.demand).toBe(1)
      yield* feed.handOver([job("b"), job("c")])
      const ids = [one.id, (yield* Fiber.join(first)).id, (yield* Fiber.join(second)).id]
      // `one` is first's or second's job: the two takers got a and b, c stays buffered.
      expect(new Set(ids.slice(1))).toEqual(new Set(["a", "b"]))
      expect(feed.jobs.poll()).toEqual(job("c"))
    }))

  it.effect("a buffer shut down (the scope closes) interrupts the takers waiting on it", () =>
    Effect.gen(function*() {
      const feed = makeFeed()
      const taker = yield* Effect.fork(feed.wait)
      yield* waiting(feed, 1)
      yield* feed.shutdown()
      expect(Exit.isInterrupted(yield* Fiber.await(taker))).toBe(true)
    }))
})
