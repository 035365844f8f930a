import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { OptionError } from "../src/OptionError.js"
import * as RateLimiter from "../src/RateLimiter.js"
import * as TaskEngine from "../src/TaskEngine.js"
import * as TaskResult from "../src/TaskResult.js"

const values = <I, A, E>(results: ReadonlyArray<TaskResult.TaskResult<I, A, E>>) =>
  results.map((r) => Option.getOrUndefined(TaskResult.getSuccess(r)))

const failureOf = <A, E>(exit: Exit.Exit<A, E>): E | undefined =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

describe("TaskEngine: async handlers (issue 13)", () => {
  it.live("an async handler works (it used to fail every task with \"Not a valid effect\")", () =>
    Effect.gen(function*() {
      const engine = yield* TaskEngine.make({
        handler: async (n: number) => {
          await new Promise((resolve) => setTimeout(resolve, 1))
          return n * 2
        },
        workers: 2
      })
      // The error channel is honest: a rejected Promise is a typed UnknownException.
      const typed: TaskEngine.TaskEngine<number, number, Cause.UnknownException> = engine
      assert.deepStrictEqual(values(yield* typed.applyToAll([1, 2, 3])), [2, 4, 6])
      assert.deepStrictEqual((yield* engine.apply(5)).exit, Exit.succeed(10))
      const streamed = yield* Stream.runCollect(engine.applyToEach([1, 2]))
      assert.deepStrictEqual(values(Array.from(streamed)).sort(), [2, 4])
    }).pipe(Effect.scoped))

  it.live("a rejected Promise is the task's typed UnknownException (the reason is its cause), and it is retried", () =>
    Effect.gen(function*() {
      let calls = 0
      const reason = new Error("upstream 503")
      const engine = yield* TaskEngine.make({
        handler: async (n: number) => {
          calls++
          if (n < 0) throw reason
          return n
        },
        workers: 1,
        retry: { times: 2, while: (e) => Cause.isUnknownException(e) }
      })
      const [bad, good] = yield* engine.applyToAll([-1, 1])
      assert.strictEqual(bad!.attempts, 3)
      const error = failureOf(bad!.exit)
      assert.isTrue(Cause.isUnknownException(error))
      assert.strictEqual((error as Cause.UnknownException).cause, reason)
      assert.deepStrictEqual(good!.exit, Exit.succeed(1))
      assert.strictEqual(calls, 4)
    }).pipe(Effect.scoped))

  it.effect("a synchronous function returning a plain value works; a synchronous throw is a defect", () =>
    Effect.gen(function*() {
      const results = yield* TaskEngine.applyToAll([1, 2, 0], (n: number) => {
        if (n === 0) throw new Error("zero")
        return n + 1
      }, { workers: 2 })
      assert.deepStrictEqual(values(results.slice(0, 2)), [2, 3])
      assert.isTrue(Exit.isFailure(results[2]!.exit) && Cause.isDie(results[2]!.exit.cause))
    }))

  it.live("module-level applyToAll, applyToEach and a layer take async handlers", () =>
    Effect.gen(function*() {
      const all = yield* TaskEngine.applyToAll([1, 2], async (n: number) => n * 3, { workers: 2 })
      assert.deepStrictEqual(values(all), [3, 6])
      const each = yield* Stream.runCollect(TaskEngine.applyToEach([4], async (n: number) => n * 3, { workers: 1 }))
      assert.deepStrictEqual(values(Array.from(each)), [12])
      class Tripler extends Context.Tag("test/Tripler")<
        Tripler,
        TaskEngine.TaskEngine<number, number, Cause.UnknownException>
      >() {}
      const viaLayer = yield* Effect.flatMap(Tripler, (engine) => engine.applyToAll([5])).pipe(
        Effect.provide(TaskEngine.layer(Tripler, { handler: async (n: number) => n * 3, workers: 1 }))
      )
      assert.deepStrictEqual(values(viaLayer), [15])
    }))
})

describe("RateLimiter.make: async acquire (issue 13)", () => {
  it.live("an async acquire gates each attempt; it sees the worker and task ids", () =>
    Effect.gen(function*() {
      const tickets: Array<RateLimiter.RateLimiter.Ticket> = []
      const limiter = yield* RateLimiter.make(async (ticket) => {
        await new Promise((resolve) => setTimeout(resolve, 1))
        tickets.push(ticket)
      })
      const engine = yield* TaskEngine.make({
        handler: (n: number) => Effect.succeed(n),
        workers: 1,
        rateLimiter: limiter
      })
      assert.deepStrictEqual(values(yield* engine.applyToAll([1, 2])), [1, 2])
      assert.deepStrictEqual(tickets.map((t) => t.workerId), [0, 0])
      assert.strictEqual(tickets.length, 2)
    }).pipe(Effect.scoped))

  it.live("a rejecting acquire is a typed UnknownException from take, and a TaskEngineError for the engine", () =>
    Effect.gen(function*() {
      const reason = new Error("quota service down")
      const limiter = yield* RateLimiter.make(async () => {
        throw reason
      })
      const error = yield* Effect.flip(limiter.take())
      assert.isTrue(Cause.isUnknownException(error))
      const engine = yield* TaskEngine.make({
        handler: (n: number) => Effect.succeed(n),
        workers: 1,
        rateLimiter: limiter
      })
      const result = yield* engine.apply(1)
      const failure = failureOf(result.exit)
      assert.isTrue(TaskEngine.isTaskEngineError(failure))
      assert.strictEqual((failure as TaskEngine.TaskEngineError).reason, "RateLimiter")
      assert.include((failure as TaskEngine.TaskEngineError).message, "before task 1: quota service down")
    }).pipe(Effect.scoped))

  it.effect("a synchronous acquire (returning nothing) lets the caller go; a non-function is an OptionError", () =>
    Effect.gen(function*() {
      let n = 0
      const limiter = yield* RateLimiter.make(() => void n++)
      yield* limiter.take()
      assert.strictEqual(n, 1)
      const error = yield* Effect.flip(RateLimiter.make(undefined as never))
      assert.instanceOf(error, OptionError)
      assert.strictEqual(error.field, "acquire")
    }).pipe(Effect.scoped))
})
