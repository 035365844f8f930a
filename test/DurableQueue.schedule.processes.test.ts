/**
 * Issue #11's cluster proof of schedules, on Redis and PostgreSQL: 3 real processes (compiled fixtures) run the
 * same `{ every: "200 millis" }` schedule; one is SIGKILLed after 5 occurrences seen with all 3 up; after 10 the
 * others are killed too. Then every occurrence from the first stored to the last is in the queue exactly once (no
 * gap across the kill, no duplicate), and the events show each occurrence offered by every live process (3 before
 * the kill, 2 after), which is what makes "once" a property of the store and not of a single scheduler.
 *
 * Occurrences are read from the queue's events (Offered), so the kill waits for an observed occurrence, never for a
 * sleep; each phase's budget is scaled from what was measured before it (test/helpers/phases.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { type StoreKind, withStore } from "./helpers/durableStores.js"
import { CEILING_MS, Phases, pollUntil, scaled, STARTUP_MS } from "./helpers/phases.js"
import { spawnFixture } from "./helpers/processes.js"
import { postgres, redis, requireService } from "./helpers/services.js"

const redisUp = await requireService(redis)
const pgUp = await requireService(postgres)

const EVERY = 200
const PREFIX = "schedule:tick:"

for (const [kind, up] of [["redis", redisUp], ["pg", pgUp]] as ReadonlyArray<readonly [StoreKind, boolean]>) {
  describe.skipIf(!up)(`DurableQueue schedule across processes (${kind})`, () => {
    it.live(
      `3 processes run one { every: ${EVERY} ms } schedule, one SIGKILLed after 5 occurrences: 10 occurrences, each stored once, none lost`,
      () =>
        withStore(kind, (env) =>
          Effect.gen(function*() {
            const phases = new Phases()
            const name = `sched-${process.pid}`
            const queue = yield* env.make({ name, schema: Schema.Number, pollInterval: "20 millis" })
            // Offered events per occurrence time (each live process offers each occurrence).
            const offers = new Map<number, number>()
            let heard = false
            yield* Effect.forkScoped(Stream.runForEach(queue.events, (event) =>
              Effect.sync(() => {
                if (event.id.startsWith("probe:")) heard = true
                if (event._tag !== "Offered" || !event.id.startsWith(PREFIX)) return
                const time = Date.parse(event.id.slice(PREFIX.length))
                offers.set(time, (offers.get(time) ?? 0) + 1)
              })))
            // The subscription hears once a probe offered here comes back.
            let probes = 0
            yield* pollUntil(
              Effect.suspend(() =>
                heard ? Effect.succeed(true) : Effect.as(queue.offer(0, { id: `probe:${probes++}` }), false)
              ),
              "events subscribed",
              STARTUP_MS,
              phases
            )

            const runners = Array.from(
              { length: 3 },
              () =>
                spawnFixture("test/fixtures/durable-schedule.ts", [...env.fixtureArgs!, name, "tick", String(EVERY)])
            )
            yield* Effect.addFinalizer(() => Effect.sync(() => runners.forEach((r) => r.kill())))
            yield* Effect.promise(() => Promise.all(runners.map((r) => r.waitFor((l) => l === "ready", STARTUP_MS))))
            phases.mark("schedulers up")
            const upAt = Date.now()
            const after = () => [...offers.keys()].filter((t) => t > upAt).sort((a, b) => a - b)

            yield* pollUntil(
              Effect.sync(() => after().length >= 5),
              "5 occurrences with 3 schedulers",
              scaled({ measuredMs: EVERY, measuredWork: 1, work: 5 }),
              phases
            )
            const measured = phases.mark("5 occurrences")
            runners[0]!.kill("SIGKILL")
            yield* Effect.promise(() => runners[0]!.exited(STARTUP_MS))
            const killedAt = Date.now()
            phases.mark("one killed")
            yield* pollUntil(
              Effect.sync(() => after().length >= 10),
              "10 occurrences",
              scaled({ measuredMs: measured, measuredWork: 5, work: 5 }),
              phases
            )
            phases.mark("10 occurrences")
            runners.forEach((r) => r.kill("SIGKILL"))
            yield* Effect.promise(() => Promise.all(runners.map((r) => r.exited(STARTUP_MS))))

            // What the store holds: every occurrence once, consecutive from the first to the last.
            const ids: Array<string> = []
            while ((yield* queue.size) > 0) yield* queue.take((_, job) => Effect.sync(() => ids.push(job.id)))
            const times = ids.filter((id) => id.startsWith(PREFIX)).map((id) => Date.parse(id.slice(PREFIX.length)))
              .sort((a, b) => a - b)
            expect(new Set(times).size).toBe(times.length)
            expect(times.length).toBeGreaterThanOrEqual(10)
            for (let i = 1; i < times.length; i++) {
              expect(times[i]! - times[i - 1]!, `gap after ${new Date(times[i - 1]!).toISOString()}`).toBe(EVERY)
            }
            expect(
              times.filter((t) => t > killedAt).length
            ).toBeGreaterThanOrEqual(4)
            // Every live process offered them: 3 offers of an occurrence while all ran, 2 after the kill.
            const counts = (from: number, to: number) =>
              times.filter((t) => t > from && t < to).map((t) => offers.get(t) ?? 0)
            expect(new Set(counts(upAt + EVERY, killedAt - 2 * EVERY))).toEqual(new Set([3]))
            expect(new Set(counts(killedAt + EVERY, Number.POSITIVE_INFINITY).slice(0, -1))).toEqual(new Set([2]))
            console.log(`schedule proof on ${kind}: ${times.length} occurrences stored once each (${phases})`)
          }).pipe(Effect.scoped)),
      CEILING_MS
    )
  })
}
