/**
 * Lease cases on a loaded machine: a lease refreshed every third of its time lapses only when the refresh is late by
 * more than the other two thirds, which an event loop stalled that long does (beside 15-22 busy processes on 2 cores a
 * 600 ms lease lapsed; the 30 s time-outs of the several-leases cases at load 20 were a wait for "3 runs" that a 4th
 * run made never true). `watchStalls` measures the longest gap of a 20 ms timer in this process, so a case can ask
 * exactly-once only when no stall could have lapsed a lease, and tell a lapse from a lost job.
 */
import { expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { performance } from "node:perf_hooks"

/** Starts a 20 ms timer for the scope; `longest()` is the longest gap between its ticks (ms) so far. */
export const watchStalls = Effect.acquireRelease(
  Effect.sync(() => {
    let last = performance.now()
    let longest = 0
    const timer = setInterval(() => {
      const now = performance.now()
      longest = Math.max(longest, now - last)
      last = now
    }, 20)
    return { timer, longest: () => Math.max(longest, performance.now() - last) }
  }),
  ({ timer }) => Effect.sync(() => clearInterval(timer))
)

/**
 * Waits (polling, at most `deadlineMs` of real time, under the case's time-out so a failure names what it saw) until
 * the queue is empty and every expected job ran, then asks each ran exactly once, or, when the process stalled for
 * `lapseMs` or more (a lease may have lapsed and its job run again elsewhere), each at most twice. A job never run or
 * a queue never empty fails either way: that would be a lost job, not load.
 */
export const expectRunsThroughLeases = <E, R>(
  size: Effect.Effect<number, E, R>,
  runs: ReadonlyArray<string | number>,
  expected: ReadonlyArray<string | number>,
  stalls: { readonly longest: () => number },
  lapseMs: number,
  deadlineMs = 20_000
) =>
  Effect.gen(function*() {
    const start = performance.now()
    let left = yield* size
    while ((left > 0 || !expected.every((id) => runs.includes(id))) && performance.now() - start < deadlineMs) {
      yield* Effect.sleep("10 millis")
      left = yield* size
    }
    const stalled = stalls.longest()
    const sorted = [...runs].sort()
    if (stalled < lapseMs) {
      expect({ left, runs: sorted, stalled }).toEqual({ left: 0, runs: [...expected].sort(), stalled })
    } else {
      console.log(`lease case: the process stalled ${Math.round(stalled)} ms; runs ${JSON.stringify(sorted)}`)
      expect({ left, ran: [...new Set(sorted)] }).toEqual({ left: 0, ran: [...expected].sort() })
      expect(sorted.every((id) => sorted.filter((other) => other === id).length <= 2)).toBe(true)
    }
  })
