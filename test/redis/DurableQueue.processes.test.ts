/**
 * The durable queue across real processes: three runners share 4,000 jobs; one is killed (SIGKILL) or terminated
 * (SIGTERM) mid-run. Each runner logs every completion with its pid and time, and the test reads the leases the
 * dead runner left behind (their holder token and time left) right after it exits, so it can tell:
 * - completed at least once: every job has a completion;
 * - acknowledged exactly once: a survivor acknowledges every job it completes, and the killed runner every job it
 *   completed that was no longer leased when it died; each job gets exactly one of these;
 * - the killed runner's jobs come back after their lease, not before: each is completed by a survivor after the
 *   lease it held at the kill had run out;
 * - nothing lost: the queue, the leased set and the dead letters are empty at the end.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { Redis } from "ioredis"
import { keysOf } from "../../src/internal/durableQueue/redisStore.js"
import * as DurableQueue from "../../src/redis/DurableQueue.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import { CEILING_MS, Phases, pollUntil, scaled, STARTUP_MS } from "../helpers/phases.js"
import { spawnFixture } from "../helpers/processes.js"
import { withRedisPrefix } from "../helpers/redis.js"
import { redis, requireService } from "../helpers/services.js"

const up = await requireService(redis)

const withPrefix = <A, E, R>(f: (prefix: string, raw: Redis) => Effect.Effect<A, E, R>) => withRedisPrefix("dq", f)

// 4,000, not the 10,000 of the first version: every guarantee below is about the jobs the victim held when it
// stopped (at most its 8 running plus its prefetch), which 4,000 jobs give as surely; offering and draining
// 10,000 took 10 s of the SIGKILL test's 17 s at load 16 (the phases it logs).
const jobs = 4_000
// Short enough to keep the file fast, long enough that a runner starved on a loaded 2-core machine keeps its
// leases (refreshed every second): a survivor that lost one would run a job twice and fail the test.
const leaseMs = 3_000

interface Lease {
  readonly id: string
  /** No earlier than this (ms since the epoch, this machine's clock) the lease had run out. */
  readonly expiredAfter: number
}

/** The jobs leased under `token` now, with when each lease runs out (the leased set's score: Redis's clock, this machine's). */
const leasesOf = (raw: Redis, prefix: string, token: string) =>
  Effect.promise(async (): Promise<Array<Lease>> => {
    const k = keysOf(prefix, "jobs")
    const owners = await raw.hgetall(k.owners)
    const ids = Object.keys(owners).filter((id) => owners[id] === token)
    const scores = ids.length === 0 ? [] : await raw.zmscore(k.leased, ...ids)
    return ids.flatMap((id, i) => scores[i] === null ? [] : [{ id, expiredAfter: Number(scores[i]) }])
  })

/** Every completion in the runners' log: job id → [pid, time][]. */
const completions = (raw: Redis, prefix: string) =>
  Effect.promise(async () => {
    const byId = new Map<string, Array<readonly [pid: number, at: number]>>()
    for (const line of await raw.lrange(`${prefix}log`, 0, -1)) {
      const [id, pid, at] = line.split(" ") as [string, string, string]
      const list = byId.get(id) ?? []
      list.push([Number(pid), Number(at)])
      byId.set(id, list)
    }
    return byId
  })

describe.skipIf(!up)("redis DurableQueue across processes", () => {
  for (const signal of ["SIGKILL", "SIGTERM"] as const) {
    it.live(
      `3 runner processes share ${
        jobs.toLocaleString("en-US")
      } jobs, one gets ${signal} mid-run: every job acknowledged once, none lost${
        signal === "SIGTERM" ? ", none redone" : ", its jobs back after their lease"
      }`,
      () =>
        withPrefix((prefix, raw) =>
          Effect.gen(function*() {
            // Deadlines come from the phases measured here (test/helpers/phases.ts), not from fixed guesses.
            const phases = new Phases()
            const queue = yield* DurableQueue.make({ name: "jobs", prefix, schema: Schema.Number })
            yield* Effect.forEach(Array.from({ length: jobs }, (_, i) => i), (i) => queue.offer(i, { id: `j${i}` }), {
              concurrency: 64,
              discard: true
            })
            const offers = phases.mark("offers")
            const runners = Array.from(
              { length: 3 },
              () => spawnFixture("test/fixtures/redis-durableRunner.ts", [prefix, String(leaseMs)])
            )
            yield* Effect.addFinalizer(() => Effect.sync(() => runners.forEach((r) => r.kill())))
            const victim = runners[0]!
            const doneCount = Effect.promise(() => raw.hlen(`${prefix}done`))
            yield* Effect.promise(() => Promise.all(runners.map((r) => r.waitFor((l) => l === "ready", STARTUP_MS))))
            const up = phases.mark("runners up")
            const token = (yield* Effect.promise(() => victim.waitFor((l) => l.startsWith("worker "), STARTUP_MS)))
              .slice(7)
            // A job costs a few Redis round trips, as an offer does; processes starting show how busy the machine is.
            yield* pollUntil(
              Effect.map(doneCount, (n) => n >= jobs / 5),
              `the first ${jobs / 5} jobs`,
              scaled({ measuredMs: offers + up, measuredWork: 1, work: 1, factor: 10, floorMs: 15_000 }),
              phases,
              "5 millis"
            )
            const toStop = phases.mark("first fifth")

            victim.kill(signal)
            // Stopping drains at most 8 running 2 ms jobs: far less than starting took.
            expect(
              yield* Effect.promise(() =>
                victim.exited(scaled({ measuredMs: up, measuredWork: 1, work: 1, floorMs: 10_000 }))
              )
            ).toBe(
              signal === "SIGKILL" ? "SIGKILL" : 0
            )
            // What the victim still held as it died: a killed runner leaves its leases; a terminated one settled all.
            const left = yield* leasesOf(raw, prefix, token)
            if (signal === "SIGKILL") expect(left.length).toBeGreaterThan(0)
            else expect(left).toEqual([])

            // The rest at the measured rate, with two runners instead of three, after the victim's leases ran out.
            yield* pollUntil(
              Effect.map(doneCount, (n) => n >= jobs),
              `the other ${jobs - jobs / 5} jobs`,
              scaled({ measuredMs: toStop * 1.5, measuredWork: jobs / 5, work: jobs - jobs / 5, extraMs: leaseMs }),
              phases
            )
            phases.mark("the rest")
            expect(yield* doneCount).toBe(jobs)
            const k = keysOf(prefix, "jobs")
            const pendingCount = Effect.promise(() => raw.zcard(k.leased))
            yield* pollUntil(
              Effect.map(pendingCount, (n) => n === 0),
              "the last acknowledgements",
              scaled({ measuredMs: up, measuredWork: 1, work: 1 }),
              phases
            )
            console.log(`redis ${signal}: ${phases}`)
            // Nothing lost: nothing queued, nothing leased, nothing dead-lettered.
            expect(yield* pendingCount).toBe(0)
            expect(yield* Effect.promise(() => raw.llen(k.waiting))).toBe(0)
            expect(yield* Effect.promise(() => raw.zcard(k.dead))).toBe(0)

            const byId = yield* completions(raw, prefix)
            const victimPid = victim.process.pid!
            const leftIds = new Set(left.map((l) => l.id))
            const wrong: Array<string> = []
            for (let i = 0; i < jobs; i++) {
              const id = `j${i}`
              const list = byId.get(id) ?? []
              const bySurvivors = list.filter(([pid]) => pid !== victimPid).length
              const byVictim = list.length - bySurvivors
              // Acknowledgements: each survivor completion, and a victim completion unless the victim still held the
              // job when it died (then its acknowledgement never happened).
              const acks = bySurvivors + (byVictim > 0 && !leftIds.has(id) ? 1 : 0)
              if (list.length === 0 || acks !== 1) wrong.push(`${id}: ${JSON.stringify(list)}`)
            }
            expect(wrong).toEqual([])
            // The victim's leased jobs came back after their lease, and only those were done twice.
            for (const { expiredAfter, id } of left) {
              const again = byId.get(id)!.filter(([pid]) => pid !== victimPid)
              expect(again.length).toBe(1)
              expect(again[0]![1]).toBeGreaterThan(expiredAfter)
            }
            const twice = [...byId].filter(([, list]) => list.length > 1).map(([id]) => id)
            expect(twice.every((id) => leftIds.has(id))).toBe(true)
            if (signal === "SIGTERM") expect(twice).toEqual([])
          }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
        ),
      CEILING_MS
    )
  }
})
