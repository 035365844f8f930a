/**
 * TaskEngine over a DurableQueue (Redis here: a real server, as every backend test): jobs run as tasks with the
 * engine's retries, are acknowledged on success, and come back to the queue (then its dead letters) on failure.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as SharedDurableQueue from "../src/DurableQueue.js"
import { OptionError } from "../src/OptionError.js"
import * as DurableQueue from "../src/redis/DurableQueue.js"
import * as RedisClient from "../src/redis/RedisClient.js"
import * as TaskEngine from "../src/TaskEngine.js"
import { withRedisPrefix } from "./helpers/redis.js"
import { redis, requireService } from "./helpers/services.js"

const up = await requireService(redis)

class Flaky extends Schema.TaggedError<Flaky>()("Flaky", { n: Schema.Number }) {}

const queueOf = (prefix: string) =>
  DurableQueue.make({
    name: "tasks",
    prefix,
    schema: Schema.Number,
    maxAttempts: 2,
    pollInterval: "10 millis",
    leaseDuration: "2 seconds",
    // Not the default backoff (from 1 s, jittered): a lasting failure waits out one retry before it is dead, and
    // the queue's backoff is not what these cases prove.
    backoff: SharedDurableQueue.Backoff.fixed("50 millis")
  })

// Polls a condition every 10 ms, for at most 10 seconds.
const until = (condition: () => boolean) =>
  Effect.suspend(() => condition() ? Effect.void : Effect.fail("not yet")).pipe(
    Effect.retry(Schedule.spaced("10 millis").pipe(Schedule.upTo("10 seconds"))),
    Effect.orDie
  )

describe.skipIf(!up)("TaskEngine.runDurable (Redis DurableQueue)", () => {
  it.live("jobs become tasks: engine retries first, the job is acked once, lasting failures become dead letters", () =>
    withRedisPrefix("te-durable", (prefix) =>
      Effect.gen(function*() {
        const queue = yield* queueOf(prefix)
        for (let n = 0; n < 60; n++) yield* queue.offer(n, { id: `job-${n}` })
        const runs = new Map<number, number>()
        const ids = new Set<string>()
        const fiber = yield* TaskEngine.runDurable(
          queue,
          (n, task) =>
            Effect.suspend(() => {
              runs.set(n, (runs.get(n) ?? 0) + 1)
              ids.add(task.id)
              // Every 10th fails always; every 7th fails its first engine attempt only.
              if (n % 10 === 0) return Effect.fail(new Flaky({ n }))
              if (n % 7 === 0 && task.attempt === 1) return Effect.fail(new Flaky({ n }))
              return Effect.succeed(n)
            }),
          { workers: 4, retry: { times: 1 } }
        ).pipe(Effect.fork)
        // 54 jobs succeed; 6 (0, 10, …, 50) fail 2 engine attempts × 2 queue attempts.
        yield* until(() => Array.from(runs.values()).reduce((a, b) => a + b, 0) >= 54 + 8 + 6 * 4)
        const dead = yield* Effect.gen(function*() {
          for (;;) {
            const letters = yield* queue.deadLetters
            if (letters.length >= 6) return letters
            yield* Effect.sleep("20 millis")
          }
        }).pipe(Effect.timeout("10 seconds"))
        yield* Fiber.interrupt(fiber)
        expect(dead.map((d) => d.value).sort((a, b) => a - b)).toEqual([0, 10, 20, 30, 40, 50])
        expect(dead.every((d) => d.attempts === 2 && d.lastError.includes("Flaky"))).toBe(true)
        for (let n = 0; n < 60; n++) {
          expect(runs.get(n)).toBe(n % 10 === 0 ? 4 : n % 7 === 0 ? 2 : 1)
        }
        // Task ids are the jobs' ids.
        expect(ids.has("job-13") && ids.size === 60).toBe(true)
        // Nothing is left: every other job was acknowledged.
        const left = yield* queue.take(() => Effect.void).pipe(Effect.timeout("300 millis"), Effect.option)
        expect(Option.isNone(left)).toBe(true)
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))))

  it.live("interruption is graceful: running jobs finish and are acknowledged, nothing is redone", () =>
    withRedisPrefix("te-durable-stop", (prefix) =>
      Effect.gen(function*() {
        const queue = yield* queueOf(prefix)
        for (let n = 0; n < 3; n++) yield* queue.offer(n, { id: `job-${n}` })
        const started = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        let finished = 0
        let runs = 0
        const engine = yield* TaskEngine.make({
          handler: (_n: number) =>
            Effect.gen(function*() {
              runs++
              yield* Deferred.succeed(started, undefined)
              yield* Deferred.await(release)
              finished++
            }),
          workers: 3
        })
        const fiber = yield* Effect.fork(engine.runDurable(queue, { prefetch: 0 }))
        yield* Deferred.await(started)
        yield* until(() => runs === 3)
        const stopping = yield* Effect.fork(Fiber.interrupt(fiber))
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(stopping)
        expect(finished).toBe(3)
        // Acknowledged: a new taker finds nothing.
        const left = yield* queue.take(() => Effect.void).pipe(Effect.timeout("300 millis"), Effect.option)
        expect(Option.isNone(left)).toBe(true)
        expect(runs).toBe(3)
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))))

  it.live("a bad prefetch is an OptionError naming the field", () =>
    withRedisPrefix("te-durable-opt", (prefix) =>
      Effect.gen(function*() {
        const queue = yield* queueOf(prefix)
        const engine = yield* TaskEngine.make({ handler: (n: number) => Effect.succeed(n), workers: 1 })
        const error = yield* Effect.flip(engine.runDurable(queue, { prefetch: -1 }))
        expect(error).toBeInstanceOf(OptionError)
        expect(error.message).toContain("prefetch")
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))))
})

describe("TaskEngine.runDurable (DurableQueue.memory)", () => {
  it.live("every job runs once, acks empty the queue, a lasting failure becomes a dead letter", () =>
    Effect.gen(function*() {
      const queue = yield* SharedDurableQueue.memory({
        name: "emails",
        schema: Schema.String,
        maxAttempts: 2,
        backoff: SharedDurableQueue.Backoff.fixed("50 millis")
      })
      yield* queue.offer("a@example.com", { id: "welcome:1" })
      yield* queue.offer("a@example.com", { id: "welcome:1" })
      yield* queue.offer("b@example.com", { id: "welcome:2" })
      yield* queue.offer("bounce@example.com", { id: "welcome:3" })
      const sent: Array<string> = []
      const fiber = yield* Effect.fork(TaskEngine.runDurable(
        queue,
        (to) => to.startsWith("bounce") ? Effect.fail(new Flaky({ n: 3 })) : Effect.sync(() => void sent.push(to)),
        { workers: 2 }
      ))
      yield* until(() => sent.length === 2)
      yield* Effect.gen(function*() {
        while ((yield* queue.size) > 0) yield* Effect.sleep("10 millis")
      }).pipe(Effect.timeout("10 seconds"))
      yield* Fiber.interrupt(fiber)
      expect(sent.sort()).toEqual(["a@example.com", "b@example.com"])
      const dead = yield* queue.deadLetters
      expect(dead.map((d) => [d.id, d.attempts])).toEqual([["welcome:3", 2]])
    }).pipe(Effect.scoped))
})

describe("TaskEngine.runDurable passes the job's progress, timeout and cancel through (DurableQueue.memory)", () => {
  const stateOf = (queue: SharedDurableQueue.DurableQueue<string>, id: string) =>
    Effect.map(
      queue.status(id),
      Option.map((status) => ({ state: status.state, attempts: status.attempts, progress: status.progress }))
    )

  it.live("task.progress is the job's progress (status by id, a Progress event); cancel interrupts the running task, never retried", () =>
    Effect.gen(function*() {
      const queue = yield* SharedDurableQueue.memory({
        name: "pass",
        schema: Schema.String,
        maxAttempts: 3,
        pollInterval: "10 millis"
      })
      const events: Array<string> = []
      yield* Effect.forkScoped(
        Stream.runForEach(queue.events, (e) => Effect.sync(() => events.push(`${e._tag}:${e.id}`)))
      )
      const release = yield* Deferred.make<void>()
      let runs = 0
      let interrupted = 0
      yield* Effect.forkScoped(TaskEngine.runDurable(
        queue,
        (name, task) =>
          Effect.gen(function*() {
            runs++
            yield* task.progress({ step: name, percent: 50 })
            if (name === "stuck") {
              return yield* Effect.never.pipe(Effect.onInterrupt(() => Effect.sync(() => interrupted++)))
            }
            yield* Deferred.await(release)
            yield* task.progress({ step: name, percent: 100 })
          }),
        { workers: 2 }
      ))
      yield* queue.offer("report", { id: "report" })
      yield* queue.offer("stuck", { id: "stuck" })
      yield* until(() => runs === 2)
      yield* Effect.gen(function*() {
        while (Option.getOrUndefined(yield* stateOf(queue, "report"))?.progress === undefined) {
          yield* Effect.sleep("10 millis")
        }
      }).pipe(Effect.timeout("10 seconds"))
      expect(yield* stateOf(queue, "report")).toEqual(
        Option.some({ state: "running", attempts: 1, progress: { step: "report", percent: 50 } })
      )
      expect(yield* queue.cancel("stuck")).toBe(true)
      yield* until(() => interrupted === 1)
      yield* Deferred.succeed(release, undefined)
      yield* queue.drain.pipe(Effect.timeout("10 seconds"))
      expect(yield* stateOf(queue, "report")).toEqual(
        Option.some({ state: "done", attempts: 1, progress: { step: "report", percent: 100 } })
      )
      expect(Option.map(yield* stateOf(queue, "stuck"), (s) => s.state)).toEqual(Option.some("cancelled"))
      expect(runs).toBe(2)
      yield* until(() => events.includes("Cancelled:stuck"))
      // (Its "Offered" may precede the subscription, which starts with the forked stream.)
      expect(events.filter((e) => e.endsWith(":report") && !e.startsWith("Offered"))).toEqual([
        "Started:report",
        "Progress:report",
        "Progress:report",
        "Completed:report"
      ])
    }).pipe(Effect.scoped))

  it.live("the job's timeout interrupts the task: a failed attempt naming the timeout, dead after maxAttempts", () =>
    Effect.gen(function*() {
      const queue = yield* SharedDurableQueue.memory({
        name: "slow",
        schema: Schema.String,
        maxAttempts: 1,
        pollInterval: "10 millis"
      })
      let interrupted = 0
      yield* Effect.forkScoped(TaskEngine.runDurable(
        queue,
        () => Effect.never.pipe(Effect.onInterrupt(() => Effect.sync(() => interrupted++))),
        { workers: 1 }
      ))
      yield* queue.offer("slow", { id: "slow", timeout: "100 millis" })
      yield* until(() => interrupted === 1)
      yield* queue.drain.pipe(Effect.timeout("10 seconds"))
      const [dead] = yield* queue.deadLetters
      expect(dead?.id).toBe("slow")
      expect(dead?.lastError).toContain("100")
    }).pipe(Effect.scoped))
})
