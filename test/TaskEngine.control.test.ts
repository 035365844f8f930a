import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { OptionError } from "../src/OptionError.js"
import * as TaskEngine from "../src/TaskEngine.js"
import * as TaskResult from "../src/TaskResult.js"

const values = <I, A, E>(results: ReadonlyArray<TaskResult.TaskResult<I, A, E>>) =>
  results.map((r) => Option.getOrUndefined(TaskResult.getSuccess(r)))

const isDone = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.map(Fiber.poll(fiber), Option.isSome)

// Lets every fiber run until it waits (TestClock's adjust does that), moving the clock by 1 ms only.
const settle = TestClock.adjust("1 millis")

// A handler that sleeps `n` seconds (0: returns at once), counting how many run at once.
const sleeper = () => {
  const state = { running: 0, max: 0, order: [] as Array<number> }
  const handler = (n: number) =>
    Effect.acquireUseRelease(
      Effect.sync(() => {
        state.order.push(n)
        state.max = Math.max(state.max, ++state.running)
      }),
      () => Effect.as(Effect.sleep(`${Math.max(1, Math.abs(n))} seconds`), n),
      () => Effect.sync(() => void state.running--)
    )
  return { state, handler }
}

describe("TaskEngine: cancelled tasks leave the queue at once", () => {
  it.scoped("an interrupted applyToAll frees its queued tasks: not counted, and a new add does not wait", () =>
    Effect.gen(function*() {
      const { handler } = sleeper()
      const engine = yield* TaskEngine.make({ handler, workers: 1, inputCapacity: 2 })
      // The only worker is busy for 10 s with another caller's task.
      const busy = yield* Effect.fork(engine.apply(10))
      yield* Effect.yieldNow()
      const victim = yield* Effect.fork(engine.applyToAll([1, 2]))
      yield* Effect.yieldNow()
      assert.strictEqual((yield* engine.stats).queued, 2)
      yield* Fiber.interrupt(victim)
      assert.strictEqual((yield* engine.stats).queued, 0, "cancelled tasks are not counted")
      // Before the fix this add waited for the worker to reach the two cancelled tasks (10 s here).
      const added = yield* Effect.fork(engine.add(3))
      yield* Effect.yieldNow()
      assert.isTrue(yield* isDone(added), "a new add does not wait behind cancelled tasks")
      yield* engine.add(4)
      assert.strictEqual((yield* engine.stats).queued, 2)
      yield* TestClock.adjust("20 seconds")
      assert.deepStrictEqual(values(yield* engine.awaitEnd), [3, 4])
      assert.deepStrictEqual((yield* Fiber.join(busy)).exit, Exit.succeed(10))
    }))

  it.scoped("interrupted applies leave the queue at once, and an offer waiting for room gets it", () =>
    Effect.gen(function*() {
      const { handler, state } = sleeper()
      const engine = yield* TaskEngine.make({ handler, workers: 1, inputCapacity: 1 })
      yield* Effect.fork(engine.apply(10))
      yield* Effect.yieldNow()
      const victim = yield* Effect.fork(engine.apply(1))
      yield* Effect.yieldNow()
      const waiting = yield* Effect.fork(engine.add(2))
      yield* Effect.yieldNow()
      assert.isFalse(yield* isDone(waiting), "the queue is full")
      yield* Fiber.interrupt(victim)
      yield* Effect.yieldNow()
      assert.isTrue(yield* isDone(waiting), "the cancelled task's room went to the waiting offer")
      assert.strictEqual((yield* engine.stats).queued, 1)
      yield* TestClock.adjust("20 seconds")
      assert.deepStrictEqual(state.order, [10, 2], "the cancelled task never ran")
    }))

  it.scoped("many cancelled calls: the queue's memory is compacted, counts stay exact", () =>
    Effect.gen(function*() {
      const { handler, state } = sleeper()
      const engine = yield* TaskEngine.make({ handler, workers: 1 })
      yield* Effect.fork(engine.apply(10))
      yield* Effect.yieldNow()
      const victims = yield* Effect.forEach(
        Array.from({ length: 50 }),
        () => Effect.fork(engine.applyToAll(Array.from({ length: 100 }, () => 1))),
        { concurrency: "unbounded" }
      )
      const kept = yield* Effect.fork(engine.applyToAll([2, 3]))
      yield* Effect.yieldNow()
      assert.strictEqual((yield* engine.stats).queued, 5002)
      yield* Fiber.interruptAll(victims)
      assert.strictEqual((yield* engine.stats).queued, 2)
      yield* TestClock.adjust("20 seconds")
      assert.deepStrictEqual(values(yield* Fiber.join(kept)), [2, 3])
      assert.deepStrictEqual(state.order, [10, 2, 3])
    }))
})

describe("TaskEngine: p-queue parity", () => {
  it.scoped("priority: higher first, ties in arrival order", () =>
    Effect.gen(function*() {
      const order: Array<string> = []
      const engine = yield* TaskEngine.make({ handler: (s: string) => Effect.sync(() => order.push(s)), workers: 1 })
      yield* engine.pause
      for (const [name, priority] of [["a", 0], ["b", 5], ["c", 1], ["d", 5], ["e", -1], ["f", 0]] as const) {
        yield* engine.add(name, { priority })
      }
      yield* engine.resume
      yield* engine.awaitEnd
      assert.deepStrictEqual(order, ["b", "d", "c", "a", "f", "e"])
    }))

  it.scoped("priority applies to apply and to a whole applyToAll batch", () =>
    Effect.gen(function*() {
      const order: Array<number> = []
      const engine = yield* TaskEngine.make({ handler: (n: number) => Effect.sync(() => order.push(n)), workers: 1 })
      yield* engine.pause
      const low = yield* Effect.fork(engine.applyToAll([1, 2]))
      const high = yield* Effect.fork(engine.applyToAll([3, 4], { priority: 2 }))
      const mid = yield* Effect.fork(engine.apply(5, { priority: 1 }))
      yield* Effect.yieldNow()
      yield* engine.resume
      yield* Fiber.join(Fiber.zip(Fiber.zip(low, high), mid))
      assert.deepStrictEqual(order, [3, 4, 5, 1, 2])
    }))

  it.scoped("pause: running tasks finish, no new one starts until resume", () =>
    Effect.gen(function*() {
      const { handler, state } = sleeper()
      const engine = yield* TaskEngine.make({ handler, workers: 2 })
      const batch = yield* Effect.fork(engine.applyToAll([1, 1, 1, 1]))
      yield* Effect.yieldNow()
      yield* engine.pause
      assert.isTrue((yield* engine.stats).paused)
      yield* TestClock.adjust("5 seconds")
      const paused = yield* engine.stats
      assert.deepStrictEqual([state.order.length, paused.busy, paused.queued, paused.succeeded], [2, 0, 2, 2])
      assert.isFalse(yield* isDone(batch))
      yield* engine.resume
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(values(yield* Fiber.join(batch)), [1, 1, 1, 1])
    }))

  it.scoped("setWorkers: more workers start at once; fewer retire after their current task", () =>
    Effect.gen(function*() {
      const { handler, state } = sleeper()
      const engine = yield* TaskEngine.make({ handler, workers: 1 })
      const batch = yield* Effect.fork(engine.applyToAll(Array.from({ length: 12 }, () => 1)))
      yield* settle
      assert.strictEqual(state.running, 1)
      yield* engine.setWorkers(4)
      yield* settle
      assert.strictEqual(state.running, 4)
      assert.strictEqual((yield* engine.stats).workers, 4)
      yield* engine.setWorkers(2)
      assert.strictEqual(state.running, 4, "running tasks are not interrupted")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(state.running, 2)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(state.running, 2)
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual(values(yield* Fiber.join(batch)).length, 12)
      assert.strictEqual(state.max, 4)
      // Growing back after a shrink works too.
      yield* engine.setWorkers(3)
      const again = yield* Effect.fork(engine.applyToAll([1, 1, 1]))
      yield* settle
      assert.strictEqual(state.running, 3)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(again)
    }))

  it.scoped("setWorkers down while workers wait idle: they retire, the rest keep serving", () =>
    Effect.gen(function*() {
      const { handler, state } = sleeper()
      const engine = yield* TaskEngine.make({ handler, workers: 4 })
      yield* settle
      yield* engine.setWorkers(1)
      const batch = yield* Effect.fork(engine.applyToAll([1, 1, 1]))
      yield* settle
      assert.strictEqual(state.running, 1)
      yield* TestClock.adjust("3 seconds")
      assert.strictEqual(values(yield* Fiber.join(batch)).length, 3)
      assert.strictEqual(state.max, 1)
    }))

  it.scoped("a per-task timeout overrides the engine's taskTimeout; Infinity lifts it", () =>
    Effect.gen(function*() {
      const { handler } = sleeper()
      const engine = yield* TaskEngine.make({ handler, workers: 3, taskTimeout: "2 seconds" })
      const longer = yield* Effect.fork(engine.apply(3, { timeout: "5 seconds" }))
      const shorter = yield* Effect.fork(engine.apply(1, { timeout: "500 millis" }))
      const unlimited = yield* Effect.fork(engine.apply(4, { timeout: Infinity }))
      const engineDefault = yield* Effect.fork(engine.apply(3))
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual((yield* Fiber.join(longer)).exit, Exit.succeed(3))
      assert.deepStrictEqual((yield* Fiber.join(unlimited)).exit, Exit.succeed(4))
      for (const [fiber, timeout] of [[shorter, "500ms"], [engineDefault, "2s"]] as const) {
        const exit = (yield* Fiber.join(fiber)).exit
        assert.isTrue(Exit.isFailure(exit))
        const error = Cause.failureOption((exit as Exit.Failure<number, unknown>).cause)
        assert.include(String(Option.getOrUndefined(Option.map(error, (e) => (e as Error).message))), timeout)
      }
    }))

  it.scoped("awaitIdle waits for queued, running and retrying tasks; returns at once when idle", () =>
    Effect.gen(function*() {
      const { handler } = sleeper()
      const engine = yield* TaskEngine.make({ handler, workers: 2 })
      yield* engine.awaitIdle
      yield* engine.add(1)
      yield* engine.add(3)
      yield* engine.add(2)
      const idle = yield* Effect.fork(engine.awaitIdle)
      yield* TestClock.adjust("2 seconds")
      assert.isFalse(yield* isDone(idle), "one task still runs")
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(idle)
      const stats = yield* engine.stats
      assert.deepStrictEqual([stats.busy, stats.queued, stats.succeeded], [0, 0, 3])
    }))

  it.scoped("awaitIdle also waits for a task in its retry backoff", () =>
    Effect.gen(function*() {
      let calls = 0
      const engine = yield* TaskEngine.make({
        handler: (_: number) => Effect.suspend(() => ++calls === 1 ? Effect.fail("once") : Effect.succeed(calls)),
        workers: 1,
        retry: { times: 1, schedule: Schedule.spaced("1 second") }
      })
      yield* engine.add(1)
      const idle = yield* Effect.fork(engine.awaitIdle)
      yield* TestClock.adjust("10 millis")
      const stats = yield* engine.stats
      assert.deepStrictEqual([stats.busy, stats.queued, stats.waitingRetry], [0, 0, 1])
      assert.isFalse(yield* isDone(idle))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(idle)
      assert.strictEqual(calls, 2)
    }))

  it.scoped("awaitSizeBelow(n) waits until fewer than n are queued (awaitSizeBelow(1) is onEmpty)", () =>
    Effect.gen(function*() {
      const { handler } = sleeper()
      const engine = yield* TaskEngine.make({ handler, workers: 1 })
      const batch = yield* Effect.fork(engine.applyToAll([1, 1, 1, 1, 1]))
      yield* Effect.yieldNow()
      const belowTwo = yield* Effect.fork(engine.awaitSizeBelow(2))
      const empty = yield* Effect.fork(engine.awaitSizeBelow(1))
      yield* TestClock.adjust("2 seconds")
      assert.isFalse(yield* isDone(belowTwo), "2 queued")
      yield* TestClock.adjust("1 second")
      assert.isTrue(yield* isDone(belowTwo), "1 queued")
      assert.isFalse(yield* isDone(empty))
      yield* TestClock.adjust("1 second")
      assert.isTrue(yield* isDone(empty), "0 queued, one running")
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(batch)
    }))

  it.scoped("waits are interrupted when the engine closes, never left hanging", () =>
    Effect.gen(function*() {
      const { handler } = sleeper()
      const idle = yield* Effect.scoped(Effect.gen(function*() {
        const engine = yield* TaskEngine.make({ handler, workers: 1 })
        yield* engine.add(5)
        const idle = yield* Effect.fork(engine.awaitIdle)
        yield* settle
        assert.isFalse(yield* isDone(idle))
        return idle
      }))
      assert.isTrue(Exit.isInterrupted(yield* Fiber.await(idle)))
    }))
})

describe("TaskEngine: options", () => {
  const handler = (n: number) => Effect.succeed(n)

  it.effect("huge, fractional and NaN counts, and unknown keys, are OptionErrors naming field and value", () =>
    Effect.gen(function*() {
      const cases: Array<[string, unknown, Record<string, unknown>]> = [
        ["workers", 1e12, { workers: 1e12 }],
        ["workers", 2 ** 53, { workers: 2 ** 53 }],
        ["workers", "8", { workers: "8" }],
        ["inputCapacity", 2 ** 53, { inputCapacity: 2 ** 53 }],
        ["wokers", 8, { wokers: 8 }],
        ["retry.tims", 2, { retry: { tims: 2 } }],
        ["retry.while", "yes", { retry: { while: "yes" } }],
        ["retry.schedule", 5, { retry: { schedule: 5 } }],
        ["rateLimiter", {}, { rateLimiter: {} }],
        ["handler", undefined, { handler: undefined }],
        ["title", 5, { title: 5 }]
      ]
      for (const [field, value, bad] of cases) {
        const options = { handler, workers: 2, ...bad } as unknown as TaskEngine.TaskEngine.Options<
          number,
          number,
          never,
          never
        >
        const error = yield* Effect.flip(Effect.scoped(TaskEngine.make(options)))
        assert.instanceOf(error, OptionError, field)
        assert.strictEqual(error.field, field)
        assert.deepStrictEqual(error.value, value)
      }
      const typo = yield* Effect.flip(Effect.scoped(TaskEngine.make({ handler, workers: 2, wokers: 8 } as never)))
      assert.include(typo.message, "did you mean `workers`")
      const none = yield* Effect.flip(Effect.scoped(TaskEngine.make(undefined as never)))
      assert.strictEqual(none.field, "options")
    }))

  it.scoped("per-call options: NaN priority, a bad timeout or id, an unknown key, bad counts", () =>
    Effect.gen(function*() {
      const engine = yield* TaskEngine.make({ handler, workers: 2 })
      const cases: Array<[string, unknown, Effect.Effect<unknown, OptionError>]> = [
        ["priority", Number.NaN, engine.apply(1, { priority: Number.NaN })],
        ["priority", Infinity, engine.add(1, { priority: Infinity })],
        ["priority", "1", engine.applyToAll([1], { priority: "1" as never })],
        ["timeout", -5, engine.apply(1, { timeout: -5 })],
        ["id", 42, engine.apply(1, { id: 42 as never })],
        ["priorty", 1, engine.add(1, { priorty: 1 } as never)],
        ["workers", 1e12, engine.setWorkers(1e12)],
        ["workers", 0, engine.setWorkers(0)],
        ["awaitSizeBelow", Number.NaN, engine.awaitSizeBelow(Number.NaN)],
        ["priority", Number.NaN, Stream.runDrain(engine.applyToEach([1], { priority: Number.NaN }))]
      ]
      for (const [field, value, call] of cases) {
        const error = yield* Effect.flip(call)
        assert.instanceOf(error, OptionError, field)
        assert.strictEqual(error.field, field)
        assert.deepStrictEqual(error.value, value)
      }
      // Inputs that are not iterable (plain JavaScript): the call dies with an OptionError naming them.
      for (const call of [engine.applyToAll(null as never), Stream.runDrain(engine.applyToEach(42 as never))]) {
        const exit = yield* Effect.exit(call)
        const defect = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.dieOption(exit.cause)) : undefined
        assert.instanceOf(defect, OptionError)
        assert.strictEqual((defect as OptionError).field, "inputs")
      }
      // Nothing was queued by the refused calls, and the engine still works.
      assert.strictEqual((yield* engine.stats).queued, 0)
      assert.deepStrictEqual((yield* engine.apply(7)).exit, Exit.succeed(7))
    }))
})

describe("TaskEngine: a user's retry predicate or schedule that throws", () => {
  it.scoped("ends that task with the throw as a defect; the worker lives and serves the next task", () =>
    Effect.gen(function*() {
      const engine = yield* TaskEngine.make({
        handler: (n: number) => n < 0 ? Effect.fail("bad") : Effect.succeed(n),
        workers: 1,
        retry: {
          times: 3,
          while: () => {
            throw new Error("predicate bug")
          }
        }
      })
      const [bad, good] = yield* engine.applyToAll([-1, 1])
      assert.strictEqual(bad!.attempts, 1)
      const cause = (bad!.exit as Exit.Failure<number, unknown>).cause
      assert.deepStrictEqual(Cause.failureOption(cause), Option.some("bad"))
      assert.include(Cause.pretty(cause), "predicate bug")
      assert.deepStrictEqual(good!.exit, Exit.succeed(1))
      assert.deepStrictEqual((yield* engine.apply(2)).exit, Exit.succeed(2))
    }))
})
