/**
 * What the tests of DurableQueue's stores at the port (test/redis/DurableQueue.store.test.ts,
 * test/sql/DurableQueue.store.test.ts) and the suites over queues share: a job as the core offers it, a poll for a
 * state to reach, and short reads of leased jobs and states.
 */
import { expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type { LeasedJob, OfferedJob, Store } from "../../src/internal/durableQueue/store.js"

/** A job offered with a custom id, its payload the id as JSON, no delay, priority or options unless given. */
export const job = (id: string, extra: Partial<OfferedJob> = {}): OfferedJob => ({
  id,
  payload: JSON.stringify(id),
  custom: true,
  delayMillis: 0,
  priority: 0,
  options: undefined,
  ...extra
})

/**
 * Polls `check` every 10 ms until it holds (at most `tries` times, 10 s by default), then asserts it: a state to
 * reach, not a delay standing in for an event.
 */
export const eventually = <E, R>(check: Effect.Effect<boolean, E, R>, tries = 1_000) =>
  Effect.gen(function*() {
    let ok = yield* check
    for (let i = 0; i < tries && !ok; i++) {
      yield* Effect.sleep("10 millis")
      ok = yield* check
    }
    expect(ok).toBe(true)
  })

/** The ids of leased jobs, in lease order. */
export const ids = (jobs: ReadonlyArray<LeasedJob>): Array<string> => jobs.map((j) => j.id)

/** A job's state in `store`, or `undefined` when it is unknown. */
export const stateOf = (store: Store, id: string) => Effect.map(store.status(id), (status) => status?.state)
