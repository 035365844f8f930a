/**
 * Repeatable jobs of `DurableQueue` (issue #11): `schedule(id, spec, value)` offers `value` at each occurrence of
 * `spec` with the id `schedule:<id>:<occurrence as ISO string>`. Every process running the schedule computes the
 * same occurrences (a cron expression, or `{ every }` anchored at the epoch: occurrence k at k × interval) and
 * offers the same ids, which the store keeps once: N processes store each occurrence once, and as long as one of
 * them lives none is missed. No leader, no lock, no store round trip beyond the offer and one marker read.
 *
 * A general `Schedule` cannot work this way: `Schedule.spaced` counts from when its process started, so two
 * processes would offer at different times, under different ids. It is refused with an `OptionError` saying so.
 */
import * as Clock from "effect/Clock"
import * as Cron from "effect/Cron"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as DurableQueue from "../../DurableQueue.js"
import type { OptionError } from "../../OptionError.js"
import { checker } from "../options.js"
import { badId } from "./encoding.js"
import type { DurableQueueError } from "./error.js"
import { type EventPort, type ScheduleMarks, subscribe } from "./events.js"
import { offerSettings } from "./options.js"

const check = checker("DurableQueue")

/**
 * How long an occurrence's offer is retried while the store is away (every 200 ms). Past it the occurrence is left
 * to the other processes running the schedule (logged): one process's store outage does not stall its schedule.
 */
const OFFER_RETRY_MILLIS = 10_000

/** The next occurrence strictly after `after` (epoch ms). */
type Next = (after: number) => number

/** The occurrences of a spec; every bad spec an `OptionError` naming what is wrong. @internal */
export const occurrences = (
  spec: DurableQueue.ScheduleSpec,
  timeZone: string | undefined
): Effect.Effect<Next, OptionError> => {
  if (typeof spec === "string") {
    const parsed = Cron.parse(spec, timeZone ?? "UTC")
    return Either.isLeft(parsed)
      ? check.require(
        "spec",
        spec,
        false,
        `a cron expression (5 fields, or 6 with seconds first): ${parsed.left.message}`
      ) as Effect.Effect<never, OptionError>
      : Effect.succeed(cronNext(parsed.right))
  }
  if (Cron.isCron(spec)) return Effect.succeed(cronNext(spec))
  if (Schedule.isSchedule(spec)) {
    return check.require(
      "spec",
      spec,
      false,
      "a cron expression, a Cron or { every } (a Schedule runs from when its process started, so processes would not agree on its occurrences)"
    ) as Effect.Effect<never, OptionError>
  }
  if (typeof spec !== "object" || spec === null || !("every" in spec)) {
    return check.require("spec", spec, false, "a cron expression, a Cron or { every: Duration }") as Effect.Effect<
      never,
      OptionError
    >
  }
  return Effect.flatMap(check.duration("every", spec.every, 0), (every) => {
    const millis = Duration.toMillis(every)
    // Occurrence ids carry milliseconds: a shorter interval would give two occurrences one id.
    return Number.isFinite(millis) && millis >= 1 && Number.isInteger(millis)
      ? Effect.succeed<Next>((after) => (Math.floor(after / millis) + 1) * millis)
      : check.require("every", spec.every, false, "a whole number of milliseconds, at least 1") as Effect.Effect<
        never,
        OptionError
      >
  })
}

const cronNext = (cron: Cron.Cron): Next => (after) => Cron.next(cron, new Date(after)).getTime()

/** The job id of the occurrence of schedule `id` at `time`: the same in every process. @internal */
export const occurrenceId = (id: string, time: number): string => `schedule:${id}:${new Date(time).toISOString()}`

/** A schedule's id, checked: an `OptionError` naming it. @internal */
export const scheduleId = (id: unknown): Effect.Effect<string, OptionError> => {
  // 256: the SQL marks table keys on it (a B-tree entry holds about 2,700 bytes; 256 UTF-16 units fit in 1,024).
  const why = badId(id) ?? ((id as string).length > 256 ? "a string of at most 256 characters" : undefined)
  return why === undefined ? Effect.succeed(id as string) : check.require("id", id as string, false, why)
}

/**
 * Validates, clears the cluster-wide "unscheduled" mark of `id` (a `schedule` call starts it anew), and forks the
 * loop into the caller's scope. The loop sleeps to each occurrence (through `Clock`, so `TestClock` drives it),
 * stops when the mark is set, and offers the occurrence; occurrences its process slept through (a long pause) are
 * offered late, one after the other, so none is skipped while the process lives.
 * @internal
 */
export const schedule = <A>(
  offer: (value: A, options: DurableQueue.OfferOptions) => Effect.Effect<unknown, DurableQueueError | OptionError>,
  marks: ScheduleMarks,
  failed: (cause: unknown) => DurableQueueError,
  id: string,
  spec: DurableQueue.ScheduleSpec,
  value: A,
  options: DurableQueue.ScheduleOptions | undefined
): Effect.Effect<void, DurableQueueError | OptionError, Scope.Scope> =>
  Effect.gen(function*() {
    const checked = yield* scheduleId(id)
    yield* check.knownKeys(options, ["timeZone", "priority", "timeout", "backoff"], "schedule options")
    const timeZone = yield* check.require(
      "timeZone",
      options?.timeZone,
      options?.timeZone === undefined || typeof options.timeZone === "string",
      "a time zone name"
    )
    const next = yield* occurrences(spec, timeZone)
    // The occurrences' offer options, checked now (an OptionError at `schedule`, not at the first occurrence).
    const { priority, timeout, backoff } = options ?? {}
    const perJob: DurableQueue.OfferOptions = { priority, timeout, backoff }
    yield* offerSettings(perJob)
    yield* Effect.mapError(marks.clear(checked), failed)
    const loop = Effect.gen(function*() {
      let at = next(yield* Clock.currentTimeMillis)
      while (true) {
        const wait = at - (yield* Clock.currentTimeMillis)
        if (wait > 0) yield* Effect.sleep(wait)
        const stopped = yield* marks.isMarked(checked).pipe(
          Effect.retry(Schedule.spaced("200 millis").pipe(Schedule.upTo(OFFER_RETRY_MILLIS))),
          Effect.orElseSucceed(() => false)
        )
        if (stopped) return
        yield* offer(value, { ...perJob, id: occurrenceId(checked, at) }).pipe(
          Effect.retry(Schedule.spaced("200 millis").pipe(Schedule.upTo(OFFER_RETRY_MILLIS))),
          Effect.catchAll((error) =>
            Effect.logWarning(
              `DurableQueue: schedule ${checked}: offering ${
                occurrenceId(checked, at)
              } failed; left to the other processes`,
              error
            )
          )
        )
        at = next(at)
      }
    })
    yield* Effect.forkScoped(Effect.interruptible(loop))
  })

/** The queue members of this port: `events`, `schedule`, `unschedule`. @internal */
export const members = <A>(
  port: EventPort,
  backend: string,
  name: string,
  failed: (cause: unknown) => DurableQueueError,
  offer: (value: A, options: DurableQueue.OfferOptions) => Effect.Effect<unknown, DurableQueueError | OptionError>
): Pick<DurableQueue.DurableQueue<A>, "events" | "schedule" | "unschedule"> => ({
  events: subscribe(port.bus, backend, name),
  schedule: (id, spec, value, options) => schedule(offer, port.marks, failed, id, spec, value, options),
  unschedule: (id) => Effect.flatMap(scheduleId(id), (checked) => Effect.mapError(port.marks.mark(checked), failed))
})
