/**
 * An idle `DurableQueue` consumer (issue #16: an idle `run` of concurrency 16 cost 39 µs of CPU per ms on Redis, 56
 * on PostgreSQL, 44 on SQLite, bench/_idle-cpu.ts). A lease that finds nothing wakes no waiting taker (each woke
 * all of them, to find the buffer empty); where the store hears changes (`Store.hearing`), the fetcher's wait after
 * empty leases doubles from `pollInterval` to 2 s (core.ts `IdleBackoff`), starts again from `pollInterval` at any
 * news, and never passes the next due time; a store that does not hear keeps polling every `pollInterval`. The
 * memory store under TestClock: every time below is exact.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import type * as DurableQueue from "../src/DurableQueue.js"
import * as core from "../src/internal/durableQueue/core.js"
import { MemoryStore } from "../src/internal/durableQueue/memoryStore.js"
import { queueSettings } from "../src/internal/durableQueue/options.js"
import type { LeasedJob } from "../src/internal/durableQueue/store.js"

/** A memory store that records the time (TestClock) of each lease. */
class TimedStore extends MemoryStore {
  readonly leaseTimes: Array<number> = []
  override lease(max: number): Effect.Effect<ReadonlyArray<LeasedJob>> {
    return Effect.zipRight(
      Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => this.leaseTimes.push(now))),
      super.lease(max)
    )
  }
}

/** A store whose `ready` hears nothing it says it hears: `hearing` absent (SQLite) or false (a lost subscription). */
class DeafStore extends TimedStore {
  constructor(leaseMillis: number, override readonly hearing: Effect.Effect<boolean> | undefined) {
    super(leaseMillis)
  }
}

/** Lets forked fibers run (bounded); TestClock does not move. */
const yieldMany = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
})

/**
 * Moves TestClock `millis` forward. TestClock wakes the sleeps due one at a time, each at its own time, after the
 * fibers it woke before are suspended again: a lease and the wait it starts are timed exactly in one adjustment.
 */
const advance = (millis: number) => Effect.zipRight(TestClock.adjust(millis), yieldMany)

/** The gaps between consecutive leases. */
const gaps = (times: ReadonlyArray<number>) => times.slice(1).map((t, i) => t - times[i]!)

/**
 * Runs `queue` (concurrency 2) with `handler` for 6 s of TestClock; the times (ms after `t0`) its handler started.
 */
const startsWithin6s = <A>(
  queue: DurableQueue.DurableQueue<A>,
  t0: number,
  handler: (started: ReadonlyArray<number>) => Effect.Effect<void, string> = () => Effect.void
) =>
  Effect.gen(function*() {
    const started: Array<number> = []
    yield* Effect.forkScoped(
      queue.run(() =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          started.push(now)
          return handler(started)
        }), { concurrency: 2 })
    )
    yield* yieldMany
    yield* advance(6_000)
    return started.map((t) => t - t0)
  })

const settingsOf = (pollInterval: Duration.DurationInput = "100 millis") =>
  queueSettings({ name: "jobs", schema: Schema.Number, pollInterval, leaseDuration: "1 hour" })

describe("DurableQueue idle fetcher", () => {
  it.scoped("a lease that found nothing wakes none of the takers waiting for a job (TestClock)", () =>
    Effect.gen(function*() {
      const settings = yield* settingsOf()
      const store = new TimedStore(settings.leaseMillis)
      // `Held` only gets `add`: an empty lease adds nothing, the job below is added and forgotten.
      const feed = new core.Feed(store, { add: () => {} } as never, settings.pollMillis)
      // Every poll of the buffer by a waiting taker (it polls once as it starts waiting, then once per wake-up).
      let polls = 0
      const poll = feed.jobs.poll.bind(feed.jobs)
      feed.jobs.poll = () => {
        polls++
        return poll()
      }
      yield* Effect.forkScoped(feed.loop())
      const takers = yield* Effect.forEach(Array.from({ length: 4 }), () => Effect.fork(feed.wait))
      yield* yieldMany
      expect(feed.demand).toBe(4)
      const before = polls
      yield* advance(3_000)
      // Leases at 0, 100, 300, 700, 1,500 (backing off), each finding nothing; before, each woke all 4 takers.
      expect(store.leaseTimes.length).toBeGreaterThanOrEqual(5)
      expect(polls - before).toBe(0)
      // A job offered elsewhere on the store (no offer through this core): `ready` wakes the fetcher, a taker gets it.
      yield* store.offer([{ id: "a", payload: "1", custom: true, delayMillis: 0, priority: 0, options: undefined }])
      yield* yieldMany
      const exits = yield* Effect.forEach(takers, (taker) => Fiber.poll(taker))
      const got = exits.flatMap((exit) =>
        exit._tag === "Some" && exit.value._tag === "Success" ? [exit.value.value.id] : []
      )
      expect(got).toEqual(["a"])
      for (const taker of takers) yield* Fiber.interrupt(taker)
    }))

  it.scoped("empty leases in a row wait 100, 200, … 2,000 ms; an offer leases at once and starts again from 100 (TestClock)", () =>
    Effect.gen(function*() {
      const settings = yield* settingsOf()
      const store = new TimedStore(settings.leaseMillis)
      const queue = yield* core.make(store, settings, Schema.Number)
      const started: Array<number> = []
      yield* Effect.forkScoped(
        queue.run(() => Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => started.push(now))), {
          concurrency: 2
        })
      )
      yield* yieldMany
      const t0 = store.leaseTimes[0]!
      yield* advance(9_000)
      expect(gaps(store.leaseTimes)).toEqual([100, 200, 400, 800, 1_600, 2_000, 2_000])
      // 1.9 s into a 2 s wait (the last lease was at 7,100 ms): the offer wakes the fetcher, the job starts now.
      expect(store.leaseTimes.at(-1)! - t0).toBe(9_100 - 2_000)
      const offeredAt = yield* Clock.currentTimeMillis
      expect(offeredAt - t0).toBe(9_000)
      const before = store.leaseTimes.length
      yield* queue.offer(1)
      yield* yieldMany
      expect(started).toEqual([offeredAt])
      expect(store.leaseTimes[before]).toBe(offeredAt)
      yield* advance(2_000)
      // The lease that found the job waits the poll, then the empty ones back off again from 100 ms.
      expect(gaps(store.leaseTimes.slice(before))).toEqual([100, 100, 200, 400, 800])
    }))

  it.scoped("news that finds no job (a resume) starts the backoff again from 100 ms too (TestClock)", () =>
    Effect.gen(function*() {
      const settings = yield* settingsOf()
      const store = new TimedStore(settings.leaseMillis)
      const queue = yield* core.make(store, settings, Schema.Number)
      yield* Effect.forkScoped(queue.run(() => Effect.void, { concurrency: 2 }))
      yield* yieldMany
      const t0 = store.leaseTimes[0]!
      yield* advance(9_000)
      const before = store.leaseTimes.length
      yield* queue.resume
      yield* yieldMany
      yield* advance(1_000)
      expect(store.leaseTimes.slice(before).map((t) => t - t0)).toEqual([9_000, 9_100, 9_300, 9_700])
    }))

  for (const [label, hearing] of [["absent", undefined], ["false", Effect.succeed(false)]] as const) {
    it.scoped(`a store whose hearing is ${label} is polled every pollInterval, idle or not (TestClock)`, () =>
      Effect.gen(function*() {
        const settings = yield* settingsOf("250 millis")
        const store = new DeafStore(settings.leaseMillis, hearing)
        const queue = yield* core.make(store, settings, Schema.Number)
        yield* Effect.forkScoped(queue.run(() => Effect.void, { concurrency: 2 }))
        yield* yieldMany
        yield* advance(5_000)
        // Leases at 0, 250, … 5,000: no backoff.
        expect(store.leaseTimes.length).toBeGreaterThanOrEqual(20)
        expect(new Set(gaps(store.leaseTimes))).toEqual(new Set([250]))
      }))
  }

  it.scoped("a delayed job due during a 2 s backoff starts at its due time (TestClock)", () =>
    Effect.gen(function*() {
      const settings = yield* settingsOf()
      const store = new TimedStore(settings.leaseMillis)
      const queue = yield* core.make(store, settings, Schema.Number)
      const t0 = yield* Clock.currentTimeMillis
      yield* queue.offer(1, { delay: "5 seconds" })
      const started = yield* startsWithin6s(queue, t0)
      // Leases at 0, 100, 300, 700, 1,500, 3,100; the next wait would be 2 s (to 5,100), and is cut to the job's time.
      expect(store.leaseTimes.slice(0, 7).map((t) => t - t0)).toEqual([0, 100, 300, 700, 1_500, 3_100, 5_000])
      expect(started).toEqual([5_000])
    }))
})

describe("DurableQueue idle fetcher: jobs made ready without an offer", () => {
  // A process that leased a job and died sends nothing: the idle fetcher finds the job by reading the lease's
  // deadline (`nextDueMillis` covers leases), not at its next 2 s poll.
  it.scoped("a job whose lease lapses (its runner died) during a 2 s backoff starts at the lapse (TestClock)", () =>
    Effect.gen(function*() {
      const settings = yield* queueSettings({
        name: "jobs",
        schema: Schema.Number,
        pollInterval: "100 millis",
        leaseDuration: "5 seconds"
      })
      const store = new TimedStore(settings.leaseMillis)
      const t0 = yield* Clock.currentTimeMillis
      yield* store.offer([{ id: "a", payload: "1", custom: true, delayMillis: 0, priority: 0, options: undefined }])
      // The dead process: leased at t0, never refreshed nor settled.
      expect((yield* store.lease(1)).map((job) => job.id)).toEqual(["a"])
      store.leaseTimes.length = 0
      const queue = yield* core.make(store, settings, Schema.Number)
      const started = yield* startsWithin6s(queue, t0)
      // Leases at 0, 100, 300, 700, 1,500, 3,100, then at the lapse (5,000) instead of 5,100.
      expect(store.leaseTimes.slice(0, 7).map((t) => t - t0)).toEqual([0, 100, 300, 700, 1_500, 3_100, 5_000])
      expect(started).toEqual([5_000])
    }))

  // A retry without delay by this process is written by its settler, which wakes the fetcher (`onRequeued`):
  // without that, it would wait out the backoff the fetcher entered while the job ran. The store's `ready` is made
  // deaf (it says it hears), so only this core's own wake-up is tested.
  it.scoped("a job retried here at once after a 5 s attempt starts again at once, not after the backoff (TestClock)", () =>
    Effect.gen(function*() {
      const settings = yield* queueSettings({
        name: "jobs",
        schema: Schema.Number,
        pollInterval: "100 millis",
        leaseDuration: "1 hour",
        backoff: { _tag: "Fixed", millis: 0 }
      })
      const store = new (class extends TimedStore {
        override readonly ready = Effect.never
      })(settings.leaseMillis)
      const queue = yield* core.make(store, settings, Schema.Number)
      const t0 = yield* Clock.currentTimeMillis
      yield* queue.offer(1)
      const started = yield* startsWithin6s(
        queue,
        t0,
        (runs) => runs.length === 1 ? Effect.zipRight(Effect.sleep("5 seconds"), Effect.fail("once")) : Effect.void
      )
      // Empty leases back off while the job runs (at 100, 200, 400, … 3,200, which waits to 5,200); it fails at
      // 5,000 and is retried then (5,200 without the settler's wake-up).
      expect(started).toEqual([0, 5_000])
    }))
})
