import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { OptionError } from "../src/OptionError.js"
import * as Progress from "../src/Progress.js"
import * as RateLimiter from "../src/RateLimiter.js"
import * as TaskEngine from "../src/TaskEngine.js"
import * as TaskResult from "../src/TaskResult.js"

class Boom {
  readonly _tag = "Boom"
  constructor(readonly n: number) {}
}
class Fatal {
  readonly _tag = "Fatal"
}

const values = <I, A, E>(results: ReadonlyArray<TaskResult.TaskResult<I, A, E>>) =>
  results.map((r) => Option.getOrUndefined(TaskResult.getSuccess(r)))

// Counts handler runs at once and the most seen.
const gauge = () => {
  let now = 0
  let max = 0
  return {
    get max() {
      return max
    },
    around: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.acquireUseRelease(
        Effect.sync(() => {
          now++
          max = Math.max(max, now)
        }),
        () => effect,
        () => Effect.sync(() => now--)
      )
  }
}

describe("TaskEngine", () => {
  describe("options", () => {
    it.effect("bad options fail at make with an OptionError naming the field", () =>
      Effect.gen(function*() {
        const handler = (n: number) => Effect.succeed(n)
        const cases: Array<[string, Partial<TaskEngine.TaskEngine.Options<number, number, never, never>>]> = [
          ["workers", { workers: 0 }],
          ["workers", { workers: 1.5 }],
          ["workers", { workers: Number.NaN }],
          ["inputCapacity", { inputCapacity: -1 }],
          ["resultCapacity", { resultCapacity: 0 }],
          ["startTimeout", { startTimeout: -1 }],
          ["taskTimeout", { taskTimeout: "-1 second" }],
          ["retry.times", { retry: { times: -1 } }]
        ]
        for (const [field, bad] of cases) {
          const error = yield* Effect.flip(Effect.scoped(TaskEngine.make({ handler, workers: 2, ...bad })))
          assert.instanceOf(error, OptionError)
          assert.strictEqual(error.field, field)
          assert.include(error.message, `TaskEngine: expected \`${field}\``)
        }
      }))
  })

  describe("applyToAll", () => {
    it.scoped("returns results in input order while tasks finish in another order", () =>
      Effect.gen(function*() {
        const finished: Array<number> = []
        const engine = yield* TaskEngine.make({
          handler: (n: number) =>
            Effect.sleep(Duration.millis((5 - n) * 10)).pipe(
              Effect.zipRight(Effect.sync(() => finished.push(n))),
              Effect.as(n * 2)
            ),
          workers: 5
        })
        const fiber = yield* Effect.fork(engine.applyToAll([0, 1, 2, 3, 4]))
        yield* TestClock.adjust("1 second")
        const results = yield* Fiber.join(fiber)
        assert.deepStrictEqual(finished, [4, 3, 2, 1, 0])
        assert.deepStrictEqual(values(results), [0, 2, 4, 6, 8])
        assert.deepStrictEqual(results.map((r) => r.input), [0, 1, 2, 3, 4])
        assert.isTrue(results.every((r) => r.attempts === 1 && TaskResult.isTaskResult(r)))
      }))

    it.scoped("typed failures, defects and thrown exceptions are values, and never kill a worker", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({
          handler: (n: number): Effect.Effect<number, Boom> => {
            if (n === 1) return Effect.fail(new Boom(n))
            if (n === 2) return Effect.die("bad")
            if (n === 3) throw new Error("thrown")
            return Effect.succeed(n)
          },
          workers: 1
        })
        const results = yield* engine.applyToAll([0, 1, 2, 3, 4, 5])
        assert.deepStrictEqual(values(results), [0, undefined, undefined, undefined, 4, 5])
        assert.deepStrictEqual(TaskResult.getFailure(results[1]!), Option.some(new Boom(1)))
        const defect = results[2]!.exit
        assert.isTrue(Exit.isFailure(defect) && Cause.isDie(defect.cause))
        const thrown = results[3]!.exit
        assert.isTrue(Exit.isFailure(thrown) && Cause.isDie(thrown.cause))
        const stats = yield* engine.stats
        assert.deepStrictEqual([stats.succeeded, stats.failed, stats.busy], [3, 3, 0])
      }))

    it.scoped("runs at most `workers` tasks at once", () =>
      Effect.gen(function*() {
        const g = gauge()
        const engine = yield* TaskEngine.make({
          handler: (n: number) => g.around(Effect.sleep(Duration.millis(n % 7 + 1))),
          workers: 3
        })
        const fiber = yield* Effect.fork(engine.applyToAll(Array.from({ length: 30 }, (_, i) => i)))
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* Fiber.join(fiber)).length, 30)
        assert.strictEqual(g.max, 3)
      }))

    it.scoped("an empty batch returns at once", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({ handler: (n: number) => Effect.succeed(n), workers: 2 })
        assert.deepStrictEqual(yield* engine.applyToAll([]), [])
      }))

    it.scoped("a bounded inputCapacity smaller than the batch never deadlocks (the original adds before starting)", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({
          handler: (n: number) => Effect.succeed(n + 1),
          workers: 2,
          inputCapacity: 2
        })
        const results = yield* engine.applyToAll(Array.from({ length: 50 }, (_, i) => i))
        assert.deepStrictEqual(values(results), Array.from({ length: 50 }, (_, i) => i + 1))
      }))

    it.scoped("overlapping calls share the workers and the limiter, and ids never collide", () =>
      Effect.gen(function*() {
        const g = gauge()
        const tickets: Array<RateLimiter.RateLimiter.Ticket> = []
        const limiter = yield* RateLimiter.make((ticket) => Effect.sync(() => void tickets.push(ticket)))
        const engine = yield* TaskEngine.make({
          handler: (n: number) => g.around(Effect.as(Effect.sleep("10 millis"), n)),
          workers: 2,
          rateLimiter: limiter
        })
        const a = yield* Effect.fork(engine.applyToAll([1, 2, 3, 4]))
        const b = yield* Effect.fork(engine.applyToAll([5, 6, 7, 8]))
        const manualId = yield* engine.add(9)
        yield* TestClock.adjust("1 second")
        const results = [...(yield* Fiber.join(a)), ...(yield* Fiber.join(b))]
        assert.deepStrictEqual(values(results), [1, 2, 3, 4, 5, 6, 7, 8])
        assert.strictEqual(g.max, 2)
        const ids = new Set([...results.map((r) => r.id), manualId])
        assert.strictEqual(ids.size, 9)
        assert.strictEqual(tickets.length, 9)
        assert.isTrue(tickets.every((t) => t.workerId === 0 || t.workerId === 1))
      }))

    it.scoped("interrupting a call stops its tasks and leaves the engine usable", () =>
      Effect.gen(function*() {
        const started: Array<number> = []
        const interrupted: Array<number> = []
        const engine = yield* TaskEngine.make({
          handler: (n: number) =>
            Effect.sync(() => started.push(n)).pipe(
              Effect.zipRight(Effect.sleep("1 second")),
              Effect.onInterrupt(() => Effect.sync(() => interrupted.push(n))),
              Effect.as(n)
            ),
          workers: 2
        })
        const fiber = yield* Effect.fork(engine.applyToAll([1, 2, 3, 4, 5, 6]))
        yield* TestClock.adjust("100 millis")
        yield* Fiber.interrupt(fiber)
        assert.deepStrictEqual(started, [1, 2])
        assert.deepStrictEqual(interrupted.sort(), [1, 2])
        yield* TestClock.adjust("5 seconds")
        assert.deepStrictEqual(started, [1, 2], "queued tasks of the interrupted call never start")
        // The workers were replaced: the engine serves the next batch with both of them.
        const next = yield* Effect.fork(engine.applyToAll([7, 8]))
        yield* TestClock.adjust("1 second")
        assert.deepStrictEqual(values(yield* Fiber.join(next)), [7, 8])
        assert.strictEqual(yield* Clock.currentTimeMillis, 6100)
        const stats = yield* engine.stats
        assert.deepStrictEqual([stats.busy, stats.queued], [0, 0])
      }))

    it.scoped("cancelling one call does not touch an overlapping call's running task", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({
          handler: (n: number) => Effect.as(Effect.sleep("1 second"), n),
          workers: 2
        })
        const victim = yield* Effect.fork(engine.applyToAll([1]))
        const survivor = yield* Effect.fork(engine.applyToAll([2]))
        yield* TestClock.adjust("500 millis")
        yield* Fiber.interrupt(victim)
        yield* TestClock.adjust("500 millis")
        const [result] = yield* Fiber.join(survivor)
        assert.deepStrictEqual(result!.exit, Exit.succeed(2))
        assert.strictEqual(result!.attempts, 1)
      }))
  })

  describe("retry", () => {
    it.scoped("retries typed failures `times` more times, then gives the last failure", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({
          handler: (n: number, task) => task.attempt < n ? Effect.fail(new Boom(task.attempt)) : Effect.succeed(n),
          workers: 2,
          retry: { times: 2 }
        })
        const [ok, late] = yield* engine.applyToAll([3, 4])
        assert.deepStrictEqual([ok!.exit, ok!.attempts], [Exit.succeed(3), 3])
        assert.deepStrictEqual([late!.exit, late!.attempts], [Exit.fail(new Boom(3)), 3])
        assert.strictEqual((yield* engine.stats).retried, 4)
      }))

    it.scoped("`while` picks the errors to retry, `until` the ones not to, and \"do not retry\" wins", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({
          handler: (n: number) => Effect.fail(new Boom(n)),
          workers: 1,
          retry: {
            times: 2,
            while: (e) => e instanceof Boom && e.n > 0,
            until: (e) => e instanceof Boom && e.n === 2
          }
        })
        const results = yield* engine.applyToAll([0, 1, 2])
        assert.deepStrictEqual(results.map((r) => r.attempts), [1, 3, 1])
      }))

    it.scoped("defects are not retried", () =>
      Effect.gen(function*() {
        let calls = 0
        const engine = yield* TaskEngine.make({
          handler: (_: number) => Effect.suspend(() => (calls++, Effect.die(new Fatal()))),
          workers: 1,
          retry: { times: 5 }
        })
        const [result] = yield* engine.applyToAll([1])
        assert.strictEqual(result!.attempts, 1)
        assert.strictEqual(calls, 1)
      }))

    it.scoped("follows the Schedule's backoff, and a task waiting out its backoff holds no worker", () =>
      Effect.gen(function*() {
        const starts: Array<[number, number]> = []
        const engine = yield* TaskEngine.make({
          handler: (n: number, task) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) => {
              starts.push([n, now])
              return n === 0 && task.attempt < 3 ? Effect.fail(new Boom(n)) : Effect.succeed(n)
            }),
          workers: 1,
          retry: { schedule: Schedule.exponential("1 second") }
        })
        const fiber = yield* Effect.fork(engine.applyToAll([0, 1, 2]))
        yield* TestClock.adjust("1 millis")
        const during = yield* engine.stats
        yield* TestClock.adjust("10 seconds")
        const [first] = yield* Fiber.join(fiber)
        assert.strictEqual(first!.attempts, 3)
        // Attempts of task 0 at 0, 1 s, then 1 + 2 s; tasks 1 and 2 ran at once on the only worker meanwhile.
        assert.deepStrictEqual(starts, [[0, 0], [1, 0], [2, 0], [0, 1000], [0, 3000]])
        assert.deepStrictEqual([during.waitingRetry, during.busy], [1, 0])
      }))

    it.scoped("a schedule that ends stops the retries", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({
          handler: (n: number) => Effect.fail(new Boom(n)),
          workers: 1,
          retry: { schedule: Schedule.recurs(2) }
        })
        const [result] = yield* engine.applyToAll([1])
        assert.strictEqual(result!.attempts, 3)
      }))

    it.scoped("each attempt takes a rate-limit permit, with the worker and task ids", () =>
      Effect.gen(function*() {
        const tickets: Array<RateLimiter.RateLimiter.Ticket> = []
        const limiter = yield* RateLimiter.make((ticket) => Effect.sync(() => void tickets.push(ticket)))
        const engine = yield* TaskEngine.make({
          handler: (n: number, task) => task.attempt < n ? Effect.fail(new Boom(n)) : Effect.succeed(n),
          workers: 1,
          retry: { times: 5 },
          rateLimiter: limiter
        })
        const results = yield* engine.applyToAll([1, 3])
        assert.deepStrictEqual(tickets, [
          { workerId: 0, taskId: results[0]!.id },
          { workerId: 0, taskId: results[1]!.id },
          { workerId: 0, taskId: results[1]!.id },
          { workerId: 0, taskId: results[1]!.id }
        ])
      }))

    it.scoped("with a sliding window, starts keep to the limit", () =>
      Effect.gen(function*() {
        const starts: Array<number> = []
        const engine = yield* TaskEngine.make({
          handler: (_: number) => Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => starts.push(now))),
          workers: 4,
          rateLimiter: yield* RateLimiter.slidingWindow({ limit: 2, interval: "1 second" })
        })
        const fiber = yield* Effect.fork(engine.applyToAll([1, 2, 3, 4, 5, 6, 7]))
        yield* TestClock.adjust("10 seconds")
        yield* Fiber.join(fiber)
        assert.deepStrictEqual(starts, [0, 0, 1000, 1000, 2000, 2000, 3000])
      }))
  })

  describe("timeouts", () => {
    it.scoped("taskTimeout fails the attempt with a typed TaskTimeout error, and it is retryable", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({
          handler: (n: number, task) => Effect.as(Effect.sleep(task.attempt === 1 ? "1 minute" : "1 millis"), n),
          workers: 2,
          taskTimeout: "1 second"
        })
        const fiber = yield* Effect.fork(engine.applyToAll([1]))
        yield* TestClock.adjust("2 seconds")
        const [result] = yield* Fiber.join(fiber)
        const error = Option.getOrThrow(TaskResult.getFailure(result!))
        assert.isTrue(TaskEngine.isTaskEngineError(error))
        assert.strictEqual((error as TaskEngine.TaskEngineError).reason, "TaskTimeout")
        assert.include((error as TaskEngine.TaskEngineError).message, "did not finish within 1s")

        const retrying = yield* TaskEngine.make({
          handler: (n: number, task) => Effect.as(Effect.sleep(task.attempt === 1 ? "1 minute" : "1 millis"), n),
          workers: 2,
          taskTimeout: "1 second",
          retry: { times: 1, while: (e) => TaskEngine.isTaskEngineError(e) && e.reason === "TaskTimeout" }
        })
        const again = yield* Effect.fork(retrying.applyToAll([1]))
        yield* TestClock.adjust("2 seconds")
        const [retried] = yield* Fiber.join(again)
        assert.deepStrictEqual([retried!.exit, retried!.attempts], [Exit.succeed(1), 2])
      }))

    it.scoped("startTimeout: awaitEnd with no task fails with a typed error and the engine stays usable", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({
          handler: (n: number) => Effect.succeed(n),
          workers: 2,
          startTimeout: "1 second"
        })
        const waiting = yield* Effect.fork(engine.awaitEnd)
        yield* TestClock.adjust("999 millis")
        assert.isTrue(Option.isNone(yield* Fiber.poll(waiting)))
        yield* TestClock.adjust("1 millis")
        const error = yield* Effect.flip(Fiber.join(waiting))
        assert.strictEqual(error.reason, "StartTimeout")
        yield* engine.add(1)
        const results = yield* engine.awaitEnd
        assert.deepStrictEqual(values(results), [1])
      }))

    it.scoped("startTimeout: the results stream fails the same way", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({
          handler: (n: number) => Effect.succeed(n),
          workers: 1,
          startTimeout: "2 seconds"
        })
        const consumer = yield* Effect.fork(Stream.runCollect(engine.results))
        yield* TestClock.adjust("2 seconds")
        const error = yield* Effect.flip(Fiber.join(consumer))
        assert.strictEqual(error.reason, "StartTimeout")
        assert.include(error.message, "No task was added within 2s")
      }))

    it.scoped("startTimeout: a task added in time lets awaitEnd go on", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({
          handler: (n: number) => Effect.succeed(n),
          workers: 2,
          startTimeout: "1 second"
        })
        const waiting = yield* Effect.fork(engine.awaitEnd)
        yield* TestClock.adjust("500 millis")
        yield* engine.add(7)
        yield* TestClock.adjust("1 second")
        assert.deepStrictEqual(values(yield* Fiber.join(waiting)), [7])
      }))
  })

  describe("applyToEach", () => {
    it.scoped("emits results in completion order", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({
          handler: (n: number) => Effect.as(Effect.sleep(Duration.millis((4 - n) * 10)), n),
          workers: 4
        })
        const fiber = yield* Effect.fork(Stream.runCollect(engine.applyToEach([0, 1, 2, 3])))
        yield* TestClock.adjust("1 second")
        const results = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
        assert.deepStrictEqual(values(results), [3, 2, 1, 0])
      }))

    it.scoped("reads an endless input only as fast as results are consumed, and stops when the stream ends", () =>
      Effect.gen(function*() {
        let read = 0
        function* naturals() {
          for (let i = 0;; i++) {
            read++
            yield i
          }
        }
        const engine = yield* TaskEngine.make({
          handler: (n: number) => Effect.succeed(n),
          workers: 2,
          resultCapacity: 4
        })
        const results = yield* Stream.runCollect(Stream.take(engine.applyToEach(naturals()), 10))
        assert.strictEqual(results.length, 10)
        // Read-ahead is workers + resultCapacity = 6 beyond what was consumed.
        assert.isAtMost(read, 10 + 6 + 1)
        yield* Effect.yieldNow()
        assert.strictEqual((yield* engine.stats).queued, 0)
      }))

    it.scoped("takes a Stream of inputs; a failing input stream fails the result stream after its results", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({ handler: (n: number) => Effect.succeed(n * 10), workers: 2 })
        const ok = yield* Stream.runCollect(engine.applyToEach(Stream.range(1, 5)))
        assert.deepStrictEqual(values(Chunk.toReadonlyArray(ok)).sort(), [10, 20, 30, 40, 50])
        const failing = Stream.concat(Stream.make(1, 2), Stream.fail("input broke"))
        const seen: Array<number | undefined> = []
        const error = yield* Effect.flip(
          Stream.runForEach(engine.applyToEach(failing), (r) => Effect.sync(() => void seen.push(...values([r]))))
        )
        assert.strictEqual(error, "input broke")
        assert.isAtMost(seen.length, 2)
      }))

    it.scoped("ending the stream early stops the remaining tasks; the engine stays usable", () =>
      Effect.gen(function*() {
        const started: Array<number> = []
        const interrupted: Array<number> = []
        const engine = yield* TaskEngine.make({
          handler: (n: number) =>
            Effect.sync(() => started.push(n)).pipe(
              Effect.zipRight(Effect.sleep(Duration.millis(n * 100))),
              Effect.onInterrupt(() => Effect.sync(() => interrupted.push(n))),
              Effect.as(n)
            ),
          workers: 2
        })
        const fiber = yield* Effect.fork(Stream.runCollect(Stream.take(engine.applyToEach([1, 5, 9, 9, 9]), 1)))
        yield* TestClock.adjust("100 millis")
        assert.deepStrictEqual(values(Chunk.toReadonlyArray(yield* Fiber.join(fiber))), [1])
        const startedWhenEnded = started.length
        yield* TestClock.adjust("10 seconds")
        assert.strictEqual(started.length, startedWhenEnded, "nothing starts after the stream ended")
        assert.isBelow(started.length, 5)
        // Every started task but the one consumed was interrupted.
        assert.deepStrictEqual(interrupted.sort(), started.slice(1).sort())
        assert.strictEqual((yield* engine.stats).busy, 0)
        const next = yield* Effect.fork(engine.applyToAll([2]))
        yield* TestClock.adjust("1 second")
        assert.deepStrictEqual(values(yield* Fiber.join(next)), [2])
      }))
  })

  describe("manual flow", () => {
    it.scoped("add with own ids, results in completion order, end", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({
          handler: (n: number) => Effect.as(Effect.sleep(Duration.millis(n)), n),
          workers: 3
        })
        const collector = yield* Effect.fork(Stream.runCollect(engine.results))
        assert.strictEqual(yield* engine.add(30, { id: "My task id: 30" }), "My task id: 30")
        yield* engine.add(10)
        yield* engine.add(20)
        yield* engine.end
        yield* TestClock.adjust("1 second")
        const results = Chunk.toReadonlyArray(yield* Fiber.join(collector))
        assert.deepStrictEqual(values(results), [10, 20, 30])
        assert.strictEqual(results[2]!.id, "My task id: 30")
      }))

    it.scoped("awaitEnd returns at once when everything has already finished (the original hangs)", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({ handler: (n: number) => Effect.succeed(n), workers: 2 })
        assert.deepStrictEqual(yield* engine.awaitEnd, [], "an empty round")
        yield* engine.add(1)
        yield* engine.add(2)
        yield* Effect.yieldNow()
        assert.strictEqual((yield* engine.stats).succeeded, 2)
        assert.deepStrictEqual(values(yield* engine.awaitEnd), [1, 2])
        assert.deepStrictEqual(yield* engine.awaitEnd, [])
      }))

    it.scoped("an engine runs round after round (instance reuse)", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({ handler: (n: number) => Effect.succeed(n), workers: 5 })
        for (let i = 0; i < 10; i++) yield* engine.add(i)
        const first = yield* engine.awaitEnd
        for (let i = 10; i < 20; i++) yield* engine.add(i)
        const second = yield* engine.awaitEnd
        assert.deepStrictEqual(values(first).sort((a, b) => a! - b!), Array.from({ length: 10 }, (_, i) => i))
        assert.deepStrictEqual(values(second).sort((a, b) => a! - b!), Array.from({ length: 10 }, (_, i) => i + 10))
      }))

    it.scoped("a full result buffer pauses the workers (the original runs on into an unbounded queue)", () =>
      Effect.gen(function*() {
        let calls = 0
        const engine = yield* TaskEngine.make({
          handler: (n: number) => Effect.sync(() => (calls++, n)),
          workers: 3,
          resultCapacity: 2
        })
        for (let i = 0; i < 20; i++) yield* engine.add(i)
        yield* TestClock.adjust("1 second")
        // Two results fill the buffer; each worker finishes one more task, then waits for room.
        assert.strictEqual(calls, 2 + 3)
        const taken = yield* Stream.runCollect(Stream.take(engine.results, 5))
        assert.strictEqual(taken.length, 5)
        const rest = yield* engine.awaitEnd
        assert.strictEqual(rest.length, 15)
        assert.strictEqual(calls, 20)
      }))

    it.scoped("add suspends while the input buffer is full", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({
          handler: (n: number) => Effect.as(Effect.sleep("1 second"), n),
          workers: 1,
          inputCapacity: 1
        })
        yield* engine.add(1) // taken by the worker
        yield* Effect.yieldNow()
        yield* engine.add(2) // fills the buffer
        const third = yield* Effect.fork(engine.add(3))
        yield* Effect.yieldNow()
        assert.isTrue(Option.isNone(yield* Fiber.poll(third)))
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(third)
        const all = yield* Effect.fork(engine.awaitEnd)
        yield* TestClock.adjust("5 seconds")
        assert.deepStrictEqual(values(yield* Fiber.join(all)), [1, 2, 3])
      }))
  })

  describe("lifecycle", () => {
    it.effect("closing the engine's scope settles every waiting caller", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const engine = yield* Scope.extend(
          TaskEngine.make({ handler: (n: number) => Effect.as(Effect.never, n), workers: 1 }),
          scope
        )
        const batch = yield* Effect.fork(engine.applyToAll([1, 2]))
        const stream = yield* Effect.fork(Stream.runDrain(engine.applyToEach([3])))
        yield* engine.add(4)
        const manual = yield* Effect.fork(engine.awaitEnd)
        yield* TestClock.adjust("10 millis")
        yield* Scope.close(scope, Exit.void)
        for (const fiber of [batch, stream, manual] as const) {
          const exit = yield* Fiber.await(fiber as Fiber.Fiber<unknown, unknown>)
          assert.isTrue(Exit.isInterrupted(exit))
        }
      }))

    it.scoped("stats count what is queued, running and done", () =>
      Effect.gen(function*() {
        const engine = yield* TaskEngine.make({
          handler: (n: number) => Effect.as(Effect.sleep("1 second"), n),
          workers: 2
        })
        const fiber = yield* Effect.fork(engine.applyToAll([1, 2, 3, 4, 5]))
        yield* TestClock.adjust("10 millis")
        const running = yield* engine.stats
        assert.deepStrictEqual([running.workers, running.busy, running.queued], [2, 2, 3])
        yield* TestClock.adjust("3 seconds")
        yield* Fiber.join(fiber)
        const done = yield* engine.stats
        assert.deepStrictEqual([done.busy, done.queued, done.succeeded], [0, 0, 5])
      }))

    it.effect("module-level applyToAll and applyToEach run a batch with a throwaway engine", () =>
      Effect.gen(function*() {
        const all = yield* TaskEngine.applyToAll([1, 2, 3], (n) => Effect.succeed(n * 2), { workers: 2 })
        assert.deepStrictEqual(values(all), [2, 4, 6])
        const each = yield* Stream.runCollect(
          TaskEngine.applyToEach([1, 2, 3], (n) => Effect.succeed(n), { workers: 1 })
        )
        assert.deepStrictEqual(values(Chunk.toReadonlyArray(each)), [1, 2, 3])
      }))

    it.effect("layer provides an engine under a tag, with the handler's requirements", () =>
      Effect.gen(function*() {
        class Multiplier extends Context.Tag("test/Multiplier")<Multiplier, number>() {}
        class Engine extends Context.Tag("test/Engine")<Engine, TaskEngine.TaskEngine<number, number>>() {}
        const layer = TaskEngine.layer(Engine, {
          handler: (n: number) => Effect.map(Multiplier, (m) => n * m),
          workers: 2
        })
        const results = yield* Effect.flatMap(Engine, (engine) => engine.applyToAll([1, 2])).pipe(
          Effect.provide(layer),
          Effect.provideService(Multiplier, 3)
        )
        assert.deepStrictEqual(values(results), [3, 6])
      }))
  })
})

describe("TaskEngine.apply and Progress", () => {
  it.effect("apply runs one input under the engine's retries and returns its result with the given id", () =>
    Effect.gen(function*() {
      let calls = 0
      const engine = yield* TaskEngine.make({
        handler: (n: number, task) =>
          Effect.suspend(() => {
            calls++
            return task.attempt < 2 ? Effect.fail(new Boom(n)) : Effect.succeed(n * 10)
          }),
        workers: 2,
        retry: { times: 2 }
      })
      const result = yield* engine.apply(4, { id: "job-4" })
      assert.strictEqual(result.id, "job-4")
      assert.strictEqual(result.attempts, 2)
      assert.deepStrictEqual(Exit.isSuccess(result.exit) ? result.exit.value : undefined, 40)
      assert.strictEqual(calls, 2)
      const generated = yield* engine.apply(1)
      assert.isTrue(generated.id.length > 0 && generated.id !== "job-4")
    }).pipe(Effect.scoped))

  it.effect("interrupting apply stops its task and leaves the engine usable", () =>
    Effect.gen(function*() {
      let interrupted = 0
      const engine = yield* TaskEngine.make({
        handler: (n: number) =>
          n === 0 ? Effect.never.pipe(Effect.onInterrupt(() => Effect.sync(() => interrupted++))) : Effect.succeed(n),
        workers: 1
      })
      const fiber = yield* Effect.fork(engine.apply(0))
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(interrupted, 1)
      const after = yield* engine.apply(7)
      assert.deepStrictEqual(Exit.isSuccess(after.exit) ? after.exit.value : undefined, 7)
    }).pipe(Effect.scoped))

  it.effect("reports to Progress when one is provided: total, completed, queue size and what each worker runs", () =>
    Effect.gen(function*() {
      const recording = yield* Progress.ProgressRecording
      yield* Effect.scoped(Effect.gen(function*() {
        const engine = yield* TaskEngine.make({
          handler: (n: number) => Effect.as(Effect.sleep(Duration.seconds(n)), n),
          workers: 2,
          title: "thumbnails"
        })
        const fiber = yield* Effect.fork(engine.applyToAll([1, 1, 5, 5, 5]))
        yield* TestClock.adjust("1500 millis")
        const mid = (yield* recording.last)!
        assert.strictEqual(mid.title, "thumbnails")
        assert.deepStrictEqual(mid.total, Option.some(5))
        assert.strictEqual(mid.completed, 2)
        assert.strictEqual(mid.queueSize, 1)
        assert.deepStrictEqual(mid.workers.map((w) => w.description).sort(), ["task 3", "task 4"])
        yield* TestClock.adjust("10 seconds")
        yield* Fiber.join(fiber)
      }))
      const last = (yield* recording.last)!
      assert.strictEqual(last.state, "done")
      assert.strictEqual(last.completed, 5)
      assert.deepStrictEqual(last.total, Option.some(5))
    }).pipe(Effect.provide(Progress.layerTest)))

  it.effect("without a Progress service, nothing is reported and nothing is required", () =>
    Effect.gen(function*() {
      const results = yield* TaskEngine.applyToAll([1, 2], (n) => Effect.succeed(n), { workers: 1, title: "x" })
      assert.deepStrictEqual(values(results), [1, 2])
    }))
})
