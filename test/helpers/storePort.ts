/**
 * What the tests of DurableQueue's stores at the port (test/redis/DurableQueue.store.test.ts,
 * test/sql/DurableQueue.store.test.ts) and the suites over queues share: a job as the core offers it, a poll for a
 * state to reach, and short reads of leased jobs and states.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { inspect } from "node:util"
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

/** How `eventually` waits: what it waits for, said when it never comes, and for how long. */
export interface EventuallyOptions {
  /** What was awaited, said on failure; by default the source of `until`. */
  readonly message?: string
  /** How long to keep trying, in real time; 10 seconds by default. */
  readonly within?: Duration.DurationInput
}

/**
 * Real time whatever Clock the caller's fiber has: `eventually` under a TestClock that nobody moves would wait
 * forever (or as long as vitest lets it), and one provided to a part of a test may leak to the fiber that waits.
 */
const realClock = Clock.make()

/**
 * Observes `observe` every 10 ms (real time) until `until` holds for what it saw, and returns that: a state to
 * reach, not a delay standing in for an event. Bounded by time, not tries: 1,000 tries of 10 ms were 10 s plus
 * 1,000 observations, 60 s for a 50 ms query (past a test's 30 s time-out, which then said nothing of what was seen).
 * After `within` the test fails (a defect, "EventuallyTimeout") with the message, the tries and the last value
 * observed, and a stack at the caller.
 */
export const eventually = <A, E, R>(
  observe: Effect.Effect<A, E, R>,
  until: (a: A) => boolean,
  options: EventuallyOptions = {}
): Effect.Effect<A, E, R> => {
  // Made at the call: its stack names the caller's line (the one failing later would name only this file).
  const site = new Error()
  return Effect.gen(function*() {
    const withinMillis = Duration.toMillis(options.within ?? "10 seconds")
    const deadline = realClock.unsafeCurrentTimeMillis() + withinMillis
    let last = yield* observe
    let tries = 1
    while (!until(last)) {
      if (realClock.unsafeCurrentTimeMillis() >= deadline) {
        return yield* Effect.die(eventuallyTimeout(site, options.message ?? String(until), withinMillis, tries, last))
      }
      yield* realClock.sleep(Duration.millis(10))
      last = yield* observe
      tries++
    }
    return last
  })
}

const eventuallyTimeout = (site: Error, awaited: string, withinMillis: number, tries: number, last: unknown) => {
  const seen = inspect(last, { depth: 5, breakLength: Infinity, maxArrayLength: 50, maxStringLength: 2_000 })
  const error = new Error(
    `eventually: ${awaited} did not hold within ${withinMillis} ms (${tries} tries); last observed: ${seen}`
  )
  error.name = "EventuallyTimeout"
  // Without its first frame (this file's `new Error()`): vitest then shows the caller's line.
  error.stack = [`${error.name}: ${error.message}`, ...(site.stack ?? "").split("\n").slice(2)].join("\n")
  return error
}

/** The ids of leased jobs, in lease order. */
export const ids = (jobs: ReadonlyArray<LeasedJob>): Array<string> => jobs.map((j) => j.id)

/** A job's state in `store`, or `undefined` when it is unknown. */
export const stateOf = (store: Store, id: string) => Effect.map(store.status(id), (status) => status?.state)
