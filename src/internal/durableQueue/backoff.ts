/**
 * Backoff between attempts: `Backoff` data (stored with a job, since the process that retries it may not be the
 * one that offered it) or, queue-wide, any `Schedule`. Both give the delay after the n-th failed attempt, which
 * the core hands to the store as a delayed retry: the job waits in the store, holding no taker and no lease.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as Intervals from "effect/ScheduleIntervals"
import type * as DurableQueue from "../../DurableQueue.js"

/**
 * The longest delay anything of a queue accepts (an offer's `delay` or `runAt`, a backoff, a result's time to
 * live): 10 years. Beyond it a value is more likely epoch milliseconds given as a delay (`Date.now()` is 1.7e12,
 * 54 years) than a plan.
 *
 * @internal
 */
export const MAX_DELAY_MILLIS = 10 * 365 * 24 * 60 * 60 * 1000

/**
 * Milliseconds of a duration input, or NaN when it is none; a negative one stays negative (Effect would clamp it
 * to 0), so the check where the backoff is used names it.
 */
const millisOf = (input: Duration.DurationInput): number => {
  if (typeof input === "number") return Number.isFinite(input) ? Math.round(input) : input
  if (typeof input === "string" && input.trim().startsWith("-")) {
    return -millisOf(input.trim().slice(1) as Duration.DurationInput)
  }
  const decoded = Duration.decodeUnknown(input)
  return decoded._tag === "Some" ? Math.round(Duration.toMillis(decoded.value)) : Number.NaN
}

/** @internal */
export const constructors: typeof DurableQueue.Backoff = {
  none: { _tag: "None" },
  fixed: (delay) => ({ _tag: "Fixed", millis: millisOf(delay) }),
  exponential: (options) => {
    // A plain-JavaScript caller may pass nothing: the check where it is used then names `backoff.baseMillis`.
    const { base, factor, jitter, max } = options ?? {} as Partial<typeof options>
    return {
      _tag: "Exponential",
      baseMillis: base === undefined ? Number.NaN : millisOf(base),
      factor: factor ?? 2,
      maxMillis: millisOf(max ?? "5 minutes"),
      jitter: jitter ?? true
    }
  }
}

/** The default queue backoff: from 1 second, ×2, at most 5 minutes, jittered. @internal */
export const defaultBackoff: DurableQueue.Backoff = constructors.exponential({ base: "1 second" })

/** A queue's backoff: data, or a `Schedule` (queue-wide only: a schedule is code, it cannot be stored). @internal */
export type Policy = DurableQueue.Backoff | Schedule.Schedule<unknown, unknown>

/** Schedule.jittered's bounds: each delay times a random factor from 0.8 to 1.2. */
const JITTER_MIN = 0.8
const JITTER_MAX = 1.2

const dataDelay = (backoff: DurableQueue.Backoff, failures: number): Effect.Effect<number> => {
  switch (backoff._tag) {
    case "None":
      return Effect.succeed(0)
    case "Fixed":
      return Effect.succeed(backoff.millis)
    case "Exponential": {
      const raw = Math.min(backoff.maxMillis, backoff.baseMillis * Math.pow(backoff.factor, failures - 1))
      if (!backoff.jitter) return Effect.succeed(Math.round(raw))
      return Effect.map(
        Random.nextRange(JITTER_MIN, JITTER_MAX),
        (r) => Math.round(Math.min(backoff.maxMillis, raw * r))
      )
    }
  }
}

/**
 * The n-th delay of `schedule` (n = `failures`), stepped from its initial state with the failure as input, the
 * time advanced by each delay as `Effect.retry` would; undefined when the schedule ends before.
 */
const scheduleDelay = (
  schedule: Schedule.Schedule<unknown, unknown>,
  failures: number,
  input: unknown
): Effect.Effect<number | undefined> =>
  Effect.gen(function*() {
    let now = yield* Clock.currentTimeMillis
    let state: unknown = schedule.initial
    let delay = 0
    for (let i = 0; i < failures; i++) {
      const [next, , decision] = yield* schedule.step(now, input, state)
      if (ScheduleDecision.isDone(decision)) return undefined
      delay = Math.max(0, Intervals.start(decision.intervals) - now)
      now += delay
      state = next
    }
    return delay
  })

/**
 * The delay (ms) before the next attempt after `failures` failed ones, capped at `MAX_DELAY_MILLIS`; undefined
 * when a schedule ended (the job goes to the dead letters).
 *
 * @internal
 */
export const retryDelay = (policy: Policy, failures: number, input: unknown): Effect.Effect<number | undefined> =>
  Effect.map(
    Schedule.isSchedule(policy) ? scheduleDelay(policy, failures, input) : dataDelay(policy, failures),
    (delay) => delay === undefined ? undefined : Math.min(MAX_DELAY_MILLIS, Math.max(0, delay))
  )
