/**
 * JobRunner with a DurableQueue as its source (Redis here; every backend shares the contract): jobs are acked
 * after their reader succeeded, failures go back to the queue and then to its dead letters, and a stop puts the
 * jobs not yet started back untried, so a second runner finishes them with nothing lost and nothing redone.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Redis } from "ioredis"
import { Backoff } from "../src/DurableQueue.js"
import * as JobRunner from "../src/JobRunner.js"
import { OptionError } from "../src/OptionError.js"
import * as DurableQueue from "../src/redis/DurableQueue.js"
import * as RedisClient from "../src/redis/RedisClient.js"
import { CEILING_MS, Phases, pollUntil, scaled, STARTUP_MS } from "./helpers/phases.js"
import { spawnFixture } from "./helpers/processes.js"
import { withRedisPrefix } from "./helpers/redis.js"
import { redis, requireService } from "./helpers/services.js"

const up = await requireService(redis)

const queueOf = (prefix: string, maxAttempts = 3) =>
  DurableQueue.make({
    name: "jobs",
    prefix,
    schema: Schema.Number,
    maxAttempts,
    pollInterval: "10 millis",
    leaseDuration: "3 seconds",
    // Not the default backoff (from 1 s, jittered): the in-process case waits out one retry, and the queue's
    // backoff is not what these cases prove.
    backoff: Backoff.fixed("50 millis")
  })

const offerAll = (prefix: string, n: number) =>
  Effect.gen(function*() {
    const queue = yield* queueOf(prefix)
    for (let i = 0; i < n; i++) yield* queue.offer(i, { id: `job-${i}` })
    return queue
  })

const completions = (raw: Redis, prefix: string) =>
  Effect.promise(() => raw.hgetall(`${prefix}done`)).pipe(
    Effect.map((h) => new Map(Object.entries(h).map(([k, v]) => [Number(k), Number(v)])))
  )

const nothingLeft = <A>(queue: DurableQueue.DurableQueue<A>) =>
  queue.take(() => Effect.void).pipe(Effect.timeout("300 millis"), Effect.option, Effect.map(Option.isNone))

// Reader processes start through tsx here, and are recycled every 40 jobs: at load 20+ on 2 cores a start takes
// 10 s or more, hence the long deadlines (the old 60 s timed out there, before and after issue 17's changes).
describe.skipIf(!up)("JobRunner with a DurableQueue source", { timeout: 400_000 }, () => {
  it.live("in-process: successes acked once, reader failures retried by the queue then dead-lettered", () =>
    withRedisPrefix("jr-durable", (prefix) =>
      Effect.gen(function*() {
        const queue = yield* Effect.scoped(offerAll(prefix, 50))
        const runs = new Map<number, number>()
        const runner = JobRunner.make({
          name: "durableInline",
          source: () => queueOf(prefix, 2),
          writerContext: RedisClient.layer(),
          reader: (item: number) => {
            runs.set(item, (runs.get(item) ?? 0) + 1)
            if (item % 10 === 0) throw new Error(`no good: ${item}`)
          },
          settings: {
            numProcesses: 2,
            concurrentTasksPerProcess: 3,
            stopWhenEmpty: true,
            emptyQueueSleepTime: "100 millis"
          }
        })
        const summary = yield* JobRunner.run(runner).pipe(Effect.provide(JobRunner.layerInline))
        expect(summary).toMatchObject({ processed: 45, failed: 10 })
        for (let i = 0; i < 50; i++) expect(runs.get(i)).toBe(i % 10 === 0 ? 2 : 1)
        const dead = yield* Effect.scoped(Effect.flatMap(queueOf(prefix), (q) => q.deadLetters))
        expect(dead.map((d) => d.value).sort((a, b) => a - b)).toEqual([0, 10, 20, 30, 40])
        expect(dead.every((d) => d.attempts === 2 && d.lastError.includes("no good"))).toBe(true)
        expect(yield* Effect.scoped(Effect.flatMap(queueOf(prefix), nothingLeft))).toBe(true)
        void queue
      }).pipe(Effect.provide(RedisClient.layer()))))

  it.live("a runner with both a writer and a source (or neither) fails with an OptionError naming `writer`", () =>
    Effect.gen(function*() {
      const neither = JobRunner.make({ name: "neither", reader: () => undefined })
      const error = yield* Effect.flip(JobRunner.run(neither).pipe(Effect.provide(JobRunner.layerInline)))
      expect(error).toBeInstanceOf(OptionError)
      expect(error.message).toContain("writer")
    }))

  it.live(
    "reader processes: every job completed once and acked; SIGTERM puts unstarted jobs back, a second runner finishes them, nothing redone",
    () =>
      withRedisPrefix("jr-durable-proc", (prefix, raw) =>
        Effect.gen(function*() {
          yield* Effect.scoped(offerAll(prefix, 300))
          const env = {
            FIXTURE_PREFIX: prefix,
            FIXTURE_SLEEP_MS: "15",
            DURABLE_NUM_PROCESSES: "2",
            DURABLE_CONCURRENT_TASKS_PER_PROCESS: "4",
            DURABLE_MAX_JOBS_PER_PROCESS: "40"
          }
          // Deadlines come from the phases measured here (test/helpers/phases.ts), not from fixed guesses.
          const phases = new Phases()
          const first = spawnFixture("test/fixtures/jobRunner-durable.ts", [], { env })
          let firstUp: number
          let firstJobs: number
          try {
            yield* Effect.promise(() => first.waitFor((l) => l === "started", STARTUP_MS))
            firstUp = phases.mark("first runner up")
            // Let it get going (its reader processes start now), then stop it mid-run.
            yield* pollUntil(
              Effect.map(completions(raw, prefix), (done) => done.size >= 60),
              "the first 60 jobs",
              scaled({ measuredMs: firstUp, measuredWork: 1, work: 1, factor: 10, floorMs: 15_000 }),
              phases,
              "20 millis"
            )
            firstJobs = phases.mark("first 60 jobs")
            first.kill("SIGTERM")
            // A stop drains the running jobs (15 ms each) and closes the readers: less than starting took.
            expect(
              yield* Effect.promise(() =>
                first.exited(scaled({ measuredMs: firstUp, measuredWork: 1, work: 1, factor: 4, floorMs: 10_000 }))
              )
            ).toBe(0)
          } finally {
            first.kill()
          }
          const stopped = phases.mark("first runner stopped")
          const afterFirst = yield* completions(raw, prefix)
          expect(afterFirst.size).toBeLessThan(300)
          const second = spawnFixture("test/fixtures/jobRunner-durable.ts", [], {
            env: { ...env, DURABLE_STOP_WHEN_EMPTY: "true" }
          })
          try {
            // Starting as the first did, then the rest at the first runner's rate (its readers starting counted in).
            const budget = scaled({
              measuredMs: firstJobs + stopped,
              measuredWork: afterFirst.size,
              work: 300 - afterFirst.size,
              extraMs: 4 * firstUp
            })
            expect(yield* Effect.promise(() => second.exited(budget))).toBe(0)
          } finally {
            second.kill()
          }
          phases.mark("second runner")
          console.log(`JobRunner durable SIGTERM: ${phases}`)
          const done = yield* completions(raw, prefix)
          // Nothing lost, nothing redone: every job completed exactly once across the two runners.
          expect(done.size).toBe(300)
          expect([...done.values()].every((n) => n === 1)).toBe(true)
          expect(yield* Effect.scoped(Effect.flatMap(queueOf(prefix), nothingLeft))).toBe(true)
        }).pipe(Effect.provide(RedisClient.layer()))),
    CEILING_MS
  )
})
