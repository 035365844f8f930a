import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Logger from "effect/Logger"
import * as MutableHashMap from "effect/MutableHashMap"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { OptionError } from "../src/OptionError.js"
import * as ResultCache from "../src/ResultCache.js"
import * as WorkerQueue from "../src/WorkerQueue.js"

class Boom extends Data.TaggedError("Boom")<{ readonly item: number }> {}

/** A worker that counts its runs and, per item, waits for the test to release it. */
const gatedWorker = <I>() => {
  const gates = MutableHashMap.empty<I, Deferred.Deferred<void>>()
  const runs: Array<I> = []
  let running = 0
  let maxRunning = 0
  const gate = (item: I) => {
    const found = MutableHashMap.get(gates, item)
    if (Option.isSome(found)) return found.value
    const d = Deferred.unsafeMake<void>(FiberId.none)
    MutableHashMap.set(gates, item, d)
    return d
  }
  return {
    runs,
    get maxRunning() {
      return maxRunning
    },
    release: (item: I) => Deferred.succeed(gate(item), undefined),
    worker: (item: I) =>
      Effect.gen(function*() {
        runs.push(item)
        running++
        maxRunning = Math.max(maxRunning, running)
        yield* Deferred.await(gate(item)).pipe(Effect.ensuring(Effect.sync(() => running--)))
        return `value:${String(item)}`
      })
  }
}

const waitFor = (condition: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1000; i++) {
      if (yield* condition) return
      yield* Effect.yieldNow()
    }
    throw new Error("condition never held")
  })

describe("WorkerQueue", () => {
  describe("cache", () => {
    it.scoped("a cache hit is any Option.some, even of 0, null or undefined (the original re-runs on None)", () =>
      Effect.gen(function*() {
        const cache = yield* ResultCache.memory<string, number | null | undefined>()
        yield* cache.set("zero", 0)
        yield* cache.set("null", null)
        yield* cache.set("undefined", undefined)
        let runs = 0
        const queue = yield* WorkerQueue.make({
          worker: (_: string) => Effect.sync(() => ++runs),
          cache
        })
        expect(yield* queue.require("zero")).toBe(0)
        expect(yield* queue.require("null")).toBe(null)
        expect(yield* queue.require("undefined")).toBe(undefined)
        expect(runs).toBe(0)
        const stats = yield* queue.stats
        expect(stats.hits).toBe(3)
        expect(stats.misses).toBe(0)
      }))

    it.scoped("a miss runs the worker and the next require is a hit", () =>
      Effect.gen(function*() {
        let runs = 0
        const queue = yield* WorkerQueue.make({
          worker: (n: number) => Effect.sync(() => (runs++, n * 2)),
          cache: yield* ResultCache.memory<number, number>()
        })
        expect(yield* queue.require(5)).toBe(10)
        expect(yield* queue.require(5)).toBe(10)
        expect(runs).toBe(1)
        const stats = yield* queue.stats
        expect([stats.misses, stats.hits, stats.completed]).toEqual([1, 1, 1])
      }))

    it.scoped("failures are not cached: the next require runs again", () =>
      Effect.gen(function*() {
        let runs = 0
        const queue = yield* WorkerQueue.make({
          worker: (n: number) =>
            Effect.suspend(() => (++runs === 1 ? Effect.fail(new Boom({ item: n })) : Effect.succeed(n))),
          cache: yield* ResultCache.memory<number, number>()
        })
        const first = yield* Effect.exit(queue.require(1))
        expect(first).toEqual(Exit.fail(new Boom({ item: 1 })))
        expect(yield* queue.require(1)).toBe(1)
        expect(runs).toBe(2)
        expect((yield* queue.stats).failed).toBe(1)
      }))

    it.scoped("the cache is written before the in-flight entry goes, so no second run starts in between", () =>
      Effect.gen(function*() {
        const store = new Map<number, number>()
        const writing = yield* Deferred.make<void>()
        const finishWrite = yield* Deferred.make<void>()
        const cache = yield* ResultCache.make<number, number>({
          get: (k) => Effect.sync(() => (store.has(k) ? Option.some(store.get(k)!) : Option.none())),
          set: (k, v) =>
            Deferred.succeed(writing, undefined).pipe(
              Effect.zipRight(Deferred.await(finishWrite)),
              Effect.tap(() => Effect.sync(() => store.set(k, v)))
            )
        })
        let runs = 0
        const queue = yield* WorkerQueue.make({ worker: (n: number) => Effect.sync(() => (runs++, n + 1)), cache })
        const first = yield* Effect.fork(queue.require(1))
        yield* Deferred.await(writing)
        // The run is done and its cache write is under way: a require now must join, not start a new run.
        const second = yield* Effect.fork(queue.require(1))
        yield* waitFor(Effect.map(queue.stats, (s) => s.deduplicated === 1))
        yield* Deferred.succeed(finishWrite, undefined)
        expect(yield* Fiber.join(first)).toBe(2)
        expect(yield* Fiber.join(second)).toBe(2)
        expect(runs).toBe(1)
      }))

    it.scoped("a failing cache is logged and bypassed, never failing the work", () =>
      Effect.gen(function*() {
        const cache = yield* ResultCache.make<number, number>({
          get: () => Promise.reject(new Error("cache down")),
          set: () => {
            throw new Error("cache down")
          }
        })
        const queue = yield* WorkerQueue.make({ worker: (n: number) => Effect.succeed(n), cache })
        expect(yield* queue.require(3)).toBe(3)
        const stats = yield* queue.stats
        expect(stats.cacheErrors).toBe(2)
        expect(stats.inFlight).toBe(0)
      }))
  })

  describe("robustness", () => {
    it.scoped("a worker that throws instead of returning an Effect fails its run, and the queue goes on", () =>
      Effect.gen(function*() {
        const queue = yield* WorkerQueue.make({
          worker: (n: number) => {
            if (n === 0) throw new Error("sync throw")
            return Effect.succeed(n)
          },
          concurrency: 1
        })
        const exit = yield* Effect.exit(queue.require(0))
        expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
        expect(yield* queue.requireAll([1, 2, 3])).toEqual([1, 2, 3])
      }))

    it.scoped("a cache that dies on write is logged and bypassed; the waiter still gets the value", () =>
      Effect.gen(function*() {
        const cache: ResultCache.ResultCache<number, number> = {
          get: () => Effect.succeedNone,
          set: () => Effect.die(new Error("cache exploded"))
        }
        const queue = yield* WorkerQueue.make({ worker: (n: number) => Effect.succeed(n * 3), cache, concurrency: 1 })
        expect(yield* queue.require(2)).toBe(6)
        expect(yield* queue.require(3)).toBe(9)
        expect((yield* queue.stats).cacheErrors).toBe(2)
      }))
  })

  describe("a cache that throws, dies or is not a cache (issue #12)", () => {
    const logs = () => {
      const lines: Array<string> = []
      const logger = Logger.make(({ message }) => void lines.push(String(message)))
      return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
    }
    const broken: Array<[string, () => ResultCache.ResultCache<number, number>]> = [
      ["get throws synchronously", () => ({
        get: () => {
          throw new Error("get exploded")
        },
        set: () => Effect.void
      })],
      ["set throws synchronously", () => ({
        get: () => Effect.succeedNone,
        set: () => {
          throw new Error("set exploded")
        }
      })],
      ["get and set are missing", () => ({}) as ResultCache.ResultCache<number, number>],
      [
        "get is not a function, set returns a Promise",
        () => ({ get: 5, set: () => Promise.resolve() }) as unknown as ResultCache.ResultCache<number, number>
      ],
      ["unsafeGet throws synchronously", () => ({
        get: () => Effect.succeedNone,
        unsafeGet: () => {
          throw new Error("unsafeGet exploded")
        },
        set: () => Effect.void
      })]
    ]
    for (const [name, cache] of broken) {
      it.scoped(`${name}: logged, bypassed; the worker fiber lives on and unsafeRequire settles`, () => {
        const log = logs()
        return Effect.gen(function*() {
          const queue = yield* WorkerQueue.make({
            worker: (n: number) => Effect.succeed(n * 2),
            cache: cache(),
            concurrency: 1
          })
          expect(yield* queue.require(1)).toBe(2)
          // One worker: had the cache killed its fiber, these would hang.
          expect(yield* queue.requireAll([2, 3])).toEqual([4, 6])
          expect(yield* Effect.promise(() => queue.unsafeRequire(4))).toBe(8)
          const stats = yield* queue.stats
          expect(stats.cacheErrors).toBeGreaterThanOrEqual(4)
          expect(stats.completed).toBe(4)
          expect(stats.inFlight).toBe(0)
          expect(log.lines.some((line) => line.includes("going on without the cache"))).toBe(true)
        }).pipe(Effect.provide(log.layer))
      })
    }

    it.scoped("a waiter can leave while the cache read hangs; the others still get the result", () =>
      Effect.gen(function*() {
        const read = yield* Deferred.make<Option.Option<number>>()
        const cache: ResultCache.ResultCache<number, number> = {
          get: () => Deferred.await(read),
          set: () => Effect.void
        }
        const queue = yield* WorkerQueue.make({ worker: (n: number) => Effect.succeed(n + 1), cache })
        const leaver = yield* Effect.fork(queue.require(1))
        const stayer = yield* Effect.fork(queue.require(1))
        yield* waitFor(Effect.map(queue.stats, (s) => s.deduplicated === 1))
        yield* Fiber.interrupt(leaver)
        yield* Deferred.succeed(read, Option.none())
        expect(yield* Fiber.join(stayer)).toBe(2)
      }))
  })

  describe("async workers (issue #13)", () => {
    it.scoped("an async worker works; its rejection is a typed UnknownException for every waiter", () =>
      Effect.gen(function*() {
        const queue: WorkerQueue.WorkerQueue<number, number, Cause.UnknownException> = yield* WorkerQueue.make({
          worker: async (n: number) => {
            await Promise.resolve()
            if (n < 0) throw new Error(`negative ${n}`)
            return n * 2
          }
        })
        expect(yield* queue.requireAll([1, 2, 1])).toEqual([2, 4, 2])
        const error = yield* Effect.flip(queue.require(-1))
        expect(error).toBeInstanceOf(Cause.UnknownException)
        expect(String((error.cause as Error).message)).toBe("negative -1")
        const rejected = yield* Effect.promise(() => queue.unsafeRequire(-2).then(() => undefined, (e: unknown) => e))
        expect(rejected).toBeInstanceOf(Cause.UnknownException)
        expect((yield* queue.stats).inFlight).toBe(0)
      }))

    it.scoped("a worker returning neither an Effect nor a Promise is a defect naming the item", () =>
      Effect.gen(function*() {
        const queue = yield* WorkerQueue.make({
          worker: ((n: number) => n) as unknown as (n: number) => Effect.Effect<number>,
          concurrency: 1
        })
        const exit = yield* Effect.exit(queue.require(7))
        expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
        expect(Cause.pretty((exit as Exit.Failure<number, never>).cause)).toContain(
          "neither an Effect nor a Promise for item 7"
        )
      }))
  })

  describe("de-duplication", () => {
    it.scoped("equal items in flight share one run, and every waiter gets the same value", () =>
      Effect.gen(function*() {
        const w = gatedWorker<number>()
        const queue = yield* WorkerQueue.make({ worker: w.worker })
        const waiters = yield* Effect.forEach([1, 1, 1, 1], (n) => Effect.fork(queue.require(n)))
        yield* waitFor(Effect.map(queue.stats, (s) => s.deduplicated === 3 && s.running === 1))
        yield* w.release(1)
        const values = yield* Effect.forEach(waiters, Fiber.join)
        expect(values).toEqual(["value:1", "value:1", "value:1", "value:1"])
        expect(w.runs).toEqual([1])
      }))

    it.scoped("items equal by Effect Equal/Hash (Data structs) share one run", () =>
      Effect.gen(function*() {
        const w = gatedWorker<{ readonly id: number }>()
        const queue = yield* WorkerQueue.make({ worker: w.worker })
        const a = yield* Effect.fork(queue.require(Data.struct({ id: 7 })))
        const b = yield* Effect.fork(queue.require(Data.struct({ id: 7 })))
        const c = yield* Effect.fork(queue.require(Data.struct({ id: 8 })))
        yield* waitFor(Effect.map(queue.stats, (s) => s.running === 2))
        yield* w.release(Data.struct({ id: 7 }))
        yield* w.release(Data.struct({ id: 8 }))
        yield* Fiber.join(a)
        yield* Fiber.join(b)
        yield* Fiber.join(c)
        expect(w.runs.length).toBe(2)
        expect((yield* queue.stats).deduplicated).toBe(1)
      }))

    it.scoped("every waiter gets the same failure, typed errors and defects alike", () =>
      Effect.gen(function*() {
        const gate = yield* Deferred.make<void>()
        let runs = 0
        const queue = yield* WorkerQueue.make({
          worker: (n: number) =>
            Effect.zipRight(
              Effect.sync(() => runs++),
              Effect.zipRight(Deferred.await(gate), n === 1 ? Effect.fail(new Boom({ item: n })) : Effect.die("kaput"))
            )
        })
        const failures = yield* Effect.forEach([1, 1, 2, 2], (n) => Effect.fork(Effect.exit(queue.require(n))))
        yield* waitFor(Effect.map(queue.stats, (s) => s.deduplicated === 2))
        yield* Deferred.succeed(gate, undefined)
        const exits = yield* Effect.forEach(failures, Fiber.join)
        expect(exits[0]).toEqual(Exit.fail(new Boom({ item: 1 })))
        expect(exits[1]).toEqual(exits[0])
        expect(Exit.isFailure(exits[2]!) && Cause.isDie(exits[2].cause)).toBe(true)
        expect(exits[3]).toEqual(exits[2])
        expect(runs).toBe(2)
        expect((yield* queue.stats).inFlight).toBe(0)
      }))

    it.scoped("an interrupted waiter does not cancel the run for the others", () =>
      Effect.gen(function*() {
        const w = gatedWorker<string>()
        const queue = yield* WorkerQueue.make({ worker: w.worker })
        const first = yield* Effect.fork(queue.require("x"))
        const second = yield* Effect.fork(queue.require("x"))
        yield* waitFor(Effect.map(queue.stats, (s) => s.deduplicated === 1 && s.running === 1))
        yield* Fiber.interrupt(first)
        yield* w.release("x")
        expect(yield* Fiber.join(second)).toBe("value:x")
        expect(w.runs).toEqual(["x"])
      }))

    it.scoped("the in-flight map is empty when idle, after successes and failures", () =>
      Effect.gen(function*() {
        const queue = yield* WorkerQueue.make({
          worker: (n: number) => (n % 2 === 0 ? Effect.succeed(n) : Effect.fail(new Boom({ item: n }))),
          concurrency: 4
        })
        yield* Effect.forEach(Array.from({ length: 100 }, (_, i) => i % 10), (n) => Effect.exit(queue.require(n)), {
          concurrency: "unbounded"
        })
        const stats = yield* queue.stats
        expect(stats.inFlight).toBe(0)
        expect(stats.queued + stats.running + stats.waiting).toBe(0)
      }))
  })

  describe("requireAll", () => {
    it.scoped("returns results in input order, de-duplicates within the batch and uses the cache", () =>
      Effect.gen(function*() {
        const runs: Array<number> = []
        const queue = yield* WorkerQueue.make({
          worker: (n: number) => Effect.as(Effect.sync(() => runs.push(n)), n * 10),
          cache: yield* ResultCache.memory<number, number>(),
          concurrency: 2
        })
        expect(yield* queue.requireAll([3, 1, 3, 2, 1])).toEqual([30, 10, 30, 20, 10])
        expect(runs.sort()).toEqual([1, 2, 3])
        expect(yield* queue.requireAll([2, 4])).toEqual([20, 40])
        const stats = yield* queue.stats
        expect([stats.misses, stats.deduplicated, stats.hits, stats.inFlight]).toEqual([4, 2, 1, 0])
      }))

    it.scoped("fails with the first failure in input order", () =>
      Effect.gen(function*() {
        const queue = yield* WorkerQueue.make({
          worker: (n: number) => (n < 0 ? Effect.fail(new Boom({ item: n })) : Effect.succeed(n))
        })
        expect(yield* Effect.flip(queue.requireAll([1, -2, -3]))).toEqual(new Boom({ item: -2 }))
      }))
  })

  describe("DataLoader parity: clear, clearAll, prime, key, requireAllExit (issue #12)", () => {
    it.scoped("clear forgets a cached result: the next require runs the worker again", () =>
      Effect.gen(function*() {
        let runs = 0
        const queue = yield* WorkerQueue.make({
          worker: (n: number) => Effect.sync(() => n * 10 + ++runs),
          cache: yield* ResultCache.memory<number, number>()
        })
        expect(yield* queue.require(1)).toBe(11)
        expect(yield* queue.require(1)).toBe(11)
        yield* queue.clear(1)
        expect(yield* queue.require(1)).toBe(12)
        yield* queue.require(2)
        yield* queue.clearAll
        expect(yield* queue.requireAll([1, 2])).toEqual([14, 25])
      }))

    it.scoped("clear during a run detaches it: its waiters get its result, it writes no cache, the next require runs anew", () =>
      Effect.gen(function*() {
        const gate = yield* Deferred.make<void>()
        let runs = 0
        const cache = yield* ResultCache.memory<string, number>()
        const queue = yield* WorkerQueue.make({
          worker: (_: string) =>
            Effect.sync(() => ++runs).pipe(Effect.tap((n) => (n === 1 ? Deferred.await(gate) : Effect.void))),
          cache
        })
        const old = yield* Effect.fork(queue.require("k"))
        yield* waitFor(Effect.map(queue.stats, (s) => s.running === 1))
        yield* queue.clear("k")
        expect(yield* queue.require("k")).toBe(2) // a new run, not a join of the detached one
        yield* Deferred.succeed(gate, undefined)
        expect(yield* Fiber.join(old)).toBe(1)
        expect(yield* cache.get("k")).toEqual(Option.some(2)) // the detached run did not overwrite it
        expect((yield* queue.stats).inFlight).toBe(0)
      }))

    it.effect("close settles detached runs too: nothing hangs", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const queue = yield* WorkerQueue.make({ worker: (_: number) => Effect.never, finishTimeout: "1 second" }).pipe(
          Scope.extend(scope)
        )
        const waiter = yield* Effect.fork(queue.require(1))
        yield* waitFor(Effect.map(queue.stats, (s) => s.running === 1))
        yield* queue.clear(1)
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(closing)
        const error = yield* Effect.flip(Fiber.join(waiter))
        expect(error).toBeInstanceOf(WorkerQueue.WorkerQueueError)
        expect((error as WorkerQueue.WorkerQueueError).reason).toBe("FinishTimeout")
      }))

    it.scoped("prime fills the cache without a run, and leaves a key already cached or in flight as it is", () =>
      Effect.gen(function*() {
        const w = gatedWorker<number>()
        const queue = yield* WorkerQueue.make({ worker: w.worker, cache: yield* ResultCache.memory<number, string>() })
        yield* queue.prime(1, "primed")
        yield* queue.prime(1, "again")
        expect(yield* queue.require(1)).toBe("primed")
        const running = yield* Effect.fork(queue.require(2))
        yield* waitFor(Effect.map(queue.stats, (s) => s.running === 1))
        yield* queue.prime(2, "too late")
        yield* w.release(2)
        expect(yield* Fiber.join(running)).toBe("value:2")
        expect(yield* queue.require(2)).toBe("value:2")
        expect(w.runs).toEqual([2])
        // Without a cache there is nothing to prime: the worker still runs.
        const bare = yield* WorkerQueue.make({ worker: (n: number) => Effect.succeed(n) })
        yield* bare.prime(5, 50)
        expect(yield* bare.require(5)).toBe(5)
      }))

    it.scoped("key maps items to one cache and in-flight key (cacheKeyFn): the first item's run serves all", () =>
      Effect.gen(function*() {
        interface User {
          readonly id: number
          readonly requestedBy: string
        }
        const runs: Array<string> = []
        const cache = yield* ResultCache.memory<number, string>()
        const queue = yield* WorkerQueue.make({
          worker: (u: User) => Effect.sync(() => (runs.push(u.requestedBy), `user ${u.id}`)),
          key: (u: User) => u.id,
          cache
        })
        const values = yield* queue.requireAll([{ id: 1, requestedBy: "a" }, { id: 1, requestedBy: "b" }, {
          id: 2,
          requestedBy: "c"
        }])
        expect(values).toEqual(["user 1", "user 1", "user 2"])
        expect(runs).toEqual(["a", "c"])
        expect(yield* cache.get(1)).toEqual(Option.some("user 1"))
        yield* queue.clear({ id: 1, requestedBy: "anyone" })
        expect(yield* cache.get(1)).toEqual(Option.none())
        // A key function that throws fails that require with a defect; the queue goes on.
        const throwing = yield* WorkerQueue.make({
          worker: (n: number) => Effect.succeed(n),
          key: (n: number) => {
            if (n < 0) throw new Error("bad key")
            return n
          }
        })
        const exit = yield* Effect.exit(throwing.require(-1))
        expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
        const outcomes = yield* throwing.requireAllExit([1, -1, 2])
        expect(outcomes.map(Exit.isSuccess)).toEqual([true, false, true])
      }))

    it.scoped("requireAllExit gives each item's outcome in input order instead of failing on the first (loadMany)", () =>
      Effect.gen(function*() {
        const queue = yield* WorkerQueue.make({
          worker: (n: number) => (n < 0 ? Effect.fail(new Boom({ item: n })) : Effect.succeed(n * 2))
        })
        const outcomes = yield* queue.requireAllExit([1, -2, 3, -2])
        expect(outcomes).toEqual([
          Exit.succeed(2),
          Exit.fail(new Boom({ item: -2 })),
          Exit.succeed(6),
          Exit.fail(new Boom({ item: -2 }))
        ])
        yield* queue.close
        const closed = yield* queue.requireAllExit([1])
        expect(Exit.isFailure(closed[0]!)).toBe(true)
      }))
  })

  describe("unsafeRequire (Promise API)", () => {
    it.scoped("shares runs and cache with require, resolves with the value, rejects with the typed failure", () =>
      Effect.gen(function*() {
        const w = gatedWorker<number>()
        const queue = yield* WorkerQueue.make({ worker: w.worker, cache: yield* ResultCache.memory<number, string>() })
        const a = queue.unsafeRequire(1)
        const b = queue.unsafeRequire(1)
        const c = yield* Effect.fork(queue.require(1))
        yield* waitFor(Effect.map(queue.stats, (s) => s.deduplicated === 2 && s.running === 1))
        yield* w.release(1)
        expect(yield* Effect.promise(() => Promise.all([a, b]))).toEqual(["value:1", "value:1"])
        expect(yield* Fiber.join(c)).toBe("value:1")
        expect(yield* Effect.promise(() => queue.unsafeRequire(1))).toBe("value:1") // a cache hit
        expect(w.runs).toEqual([1])
        const failing = yield* WorkerQueue.make({ worker: (n: number) => Effect.fail(new Boom({ item: n })) })
        const rejected = yield* Effect.promise(() => failing.unsafeRequire(5).then(() => "resolved", (e) => e))
        expect(rejected).toEqual(new Boom({ item: 5 }))
      }))

    it.effect("a Promise waiter settles when the queue closes: FinishTimeout for its item, Closed after", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const queue = yield* WorkerQueue.make({ worker: (_: number) => Effect.never, finishTimeout: 0, name: "p" })
          .pipe(
            Scope.extend(scope)
          )
        const pending = queue.unsafeRequire(1).then(() => "resolved", (e: WorkerQueue.WorkerQueueError) => e.reason)
        yield* waitFor(Effect.map(queue.stats, (s) => s.running === 1))
        yield* Scope.close(scope, Exit.void)
        expect(yield* Effect.promise(() => pending)).toBe("FinishTimeout")
        const after = yield* Effect.promise(() => queue.unsafeRequire(2).then(() => "resolved", (e) => e.reason))
        expect(after).toBe("Closed")
      }))
  })

  describe("concurrency and capacity", () => {
    it.scoped("at most `concurrency` runs at once, and a slow item never holds back the others (no batches)", () =>
      Effect.gen(function*() {
        const w = gatedWorker<number>()
        const queue = yield* WorkerQueue.make({ worker: w.worker, concurrency: 2 })
        const slow = yield* Effect.fork(queue.require(0))
        const fast = yield* Effect.forEach([1, 2, 3, 4, 5], (n) => Effect.fork(queue.require(n)))
        // Release the fast items one by one: each finishes while item 0 is still running.
        for (const n of [1, 2, 3, 4, 5]) {
          yield* waitFor(Effect.sync(() => w.runs.includes(n)))
          yield* w.release(n)
          expect(yield* Fiber.join(fast[n - 1]!)).toBe(`value:${n}`)
        }
        expect(slow.unsafePoll()).toBe(null)
        yield* w.release(0)
        yield* Fiber.join(slow)
        expect(w.maxRunning).toBe(2)
      }))

    it.scoped("`capacity` bounds the queued items; more requires of new items wait for room, in order", () =>
      Effect.gen(function*() {
        const w = gatedWorker<number>()
        const queue = yield* WorkerQueue.make({ worker: w.worker, concurrency: 1, capacity: 2 })
        const fibers = yield* Effect.forEach([1, 2, 3, 4, 5], (n) => Effect.fork(queue.require(n)))
        yield* waitFor(Effect.map(queue.stats, (s) => s.running === 1 && s.queued === 2 && s.waiting === 2))
        for (const n of [1, 2, 3, 4, 5]) yield* w.release(n)
        yield* Effect.forEach(fibers, Fiber.join)
        expect(w.runs).toEqual([1, 2, 3, 4, 5])
      }))

    it.scoped("the last waiter leaving the waiting room withdraws its item before it runs", () =>
      Effect.gen(function*() {
        const w = gatedWorker<number>()
        const queue = yield* WorkerQueue.make({ worker: w.worker, concurrency: 1, capacity: 1 })
        const one = yield* Effect.fork(queue.require(1))
        const two = yield* Effect.fork(queue.require(2))
        const three = yield* Effect.fork(queue.require(3))
        yield* waitFor(Effect.map(queue.stats, (s) => s.waiting === 1))
        yield* Fiber.interrupt(three)
        expect((yield* queue.stats).waiting).toBe(0)
        yield* w.release(1)
        yield* w.release(2)
        yield* Fiber.join(one)
        yield* Fiber.join(two)
        expect(w.runs).toEqual([1, 2])
        expect((yield* queue.stats).inFlight).toBe(0)
      }))
    it.scoped("waiters that join during an async cache read count too: when the last leaves the room, the item is withdrawn", () =>
      Effect.gen(function*() {
        const reading = yield* Deferred.make<void>()
        const finishRead = yield* Deferred.make<void>()
        const cache = yield* ResultCache.make<number, string>({
          // Item 3's read hangs until released, then misses; the others miss at once.
          get: (k) =>
            k === 3
              ? Deferred.succeed(reading, undefined).pipe(
                Effect.zipRight(Deferred.await(finishRead)),
                Effect.as(Option.none())
              )
              : Effect.succeedNone,
          set: () => Effect.void
        })
        const w = gatedWorker<number>()
        const queue = yield* WorkerQueue.make({ worker: w.worker, concurrency: 1, capacity: 1, cache })
        const one = yield* Effect.fork(queue.require(1))
        const two = yield* Effect.fork(queue.require(2))
        yield* waitFor(Effect.map(queue.stats, (s) => s.running === 1 && s.queued === 1))
        // Two waiters for 3 while its cache read is under way: the second joins the entry in "lookup".
        const threeA = yield* Effect.fork(queue.require(3))
        yield* Deferred.await(reading)
        const threeB = yield* Effect.fork(queue.require(3))
        yield* waitFor(Effect.map(queue.stats, (s) => s.deduplicated === 1))
        yield* Deferred.succeed(finishRead, undefined)
        yield* waitFor(Effect.map(queue.stats, (s) => s.waiting === 1))
        // One leaves: the other still wants it, so it stays in the room.
        yield* Fiber.interrupt(threeA)
        expect((yield* queue.stats).waiting).toBe(1)
        // The last leaves: withdrawn before it ever runs.
        yield* Fiber.interrupt(threeB)
        expect((yield* queue.stats).waiting).toBe(0)
        yield* w.release(1)
        yield* w.release(2)
        yield* Fiber.join(one)
        yield* Fiber.join(two)
        expect(w.runs).toEqual([1, 2])
        expect((yield* queue.stats).inFlight).toBe(0)
      }))
  })

  describe("giving up while waiting for room (issue #12)", () => {
    it.scoped("20k callers that give up leave nothing behind in the waiting room", () =>
      Effect.gen(function*() {
        const w = gatedWorker<number>()
        const queue = yield* WorkerQueue.make({ worker: w.worker, concurrency: 1, capacity: 1 })
        const running = yield* Effect.fork(queue.require(0))
        const queued = yield* Effect.fork(queue.require(1))
        yield* waitFor(Effect.map(queue.stats, (s) => s.running === 1 && s.queued === 1))
        for (let round = 0; round < 4; round++) {
          const fibers = yield* Effect.forEach(
            Array.from({ length: 5_000 }, (_, i) => 2 + round * 5_000 + i),
            (n) => Effect.fork(queue.require(n))
          )
          yield* waitFor(Effect.map(queue.stats, (s) => s.waiting === 5_000))
          yield* Fiber.interruptAll(fibers)
          const stats = yield* queue.stats
          expect([stats.waiting, stats.inFlight]).toEqual([0, 2])
          // The room itself holds nothing: before the fix it kept every dead entry until the queue drained
          // (~1 KB each, and each later batch slower: 0.51 s → 1.03 s per 1,000 requires at 20k).
          expect((queue as unknown as { readonly room: { readonly length: number } }).room.length).toBe(0)
        }
        yield* w.release(0)
        yield* w.release(1)
        yield* Fiber.join(running)
        yield* Fiber.join(queued)
        expect(w.runs).toEqual([0, 1])
      }), 60_000)

    it.scoped("an interrupted requireAll withdraws the items it alone waited for", () =>
      Effect.gen(function*() {
        const w = gatedWorker<number>()
        const queue = yield* WorkerQueue.make({ worker: w.worker, concurrency: 1, capacity: 1 })
        const batch = yield* Effect.fork(queue.requireAll([1, 2, 3, 4]))
        const other = yield* Effect.fork(queue.require(4))
        yield* waitFor(Effect.map(queue.stats, (s) => s.running === 1 && s.waiting === 2))
        yield* Fiber.interrupt(batch)
        // 1 runs, 2 is queued (a run goes on once queued), 3 is withdrawn, 4 stays: `other` still wants it.
        expect((yield* queue.stats).waiting).toBe(1)
        for (const n of [1, 2, 4]) yield* w.release(n)
        expect(yield* Fiber.join(other)).toBe("value:4")
        expect(w.runs).toEqual([1, 2, 4])
      }))
  })

  describe("close", () => {
    it.effect("running and queued items get `finishTimeout`, then fail with FinishTimeout; nothing hangs", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const queue = yield* WorkerQueue.make({
          worker: (n: number) => Effect.as(Effect.sleep(`${n} seconds`), n),
          concurrency: 1,
          finishTimeout: "3 seconds",
          name: "slow"
        }).pipe(Scope.extend(scope))
        const quick = yield* Effect.fork(queue.require(2))
        const late = yield* Effect.fork(queue.require(10))
        yield* waitFor(Effect.map(queue.stats, (s) => s.running === 1 && s.queued === 1))
        const closing = yield* Effect.fork(queue.close)
        yield* waitFor(Effect.map(TestClock.sleeps(), (sleeps) => sleeps.length === 2))
        expect(yield* queue.isRunning).toBe(false)
        yield* TestClock.adjust("2 seconds")
        expect(yield* Fiber.join(quick)).toBe(2)
        yield* TestClock.adjust("1 second")
        const lateExit = yield* Fiber.await(late)
        expect(lateExit).toEqual(
          Exit.fail(new WorkerQueue.WorkerQueueError({ reason: "FinishTimeout", queue: "slow", item: "10" }))
        )
        yield* Fiber.join(closing)
        expect((yield* queue.stats).inFlight).toBe(0)
        yield* Scope.close(scope, Exit.void)
      }))

    it.effect("close returns as soon as the work is done, not after the whole finishTimeout", () =>
      Effect.gen(function*() {
        const queue = yield* WorkerQueue.make({
          worker: (n: number) => Effect.as(Effect.sleep("1 second"), n),
          finishTimeout: "1 minute"
        }).pipe(Effect.provideService(Scope.Scope, yield* Scope.make()))
        const waiter = yield* Effect.fork(queue.require(1))
        yield* waitFor(Effect.map(queue.stats, (s) => s.running === 1))
        const closing = yield* Effect.fork(queue.close)
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(closing)
        expect(yield* Fiber.join(waiter)).toBe(1)
      }))

    it.scoped("require after close fails with Closed at once", () =>
      Effect.gen(function*() {
        const queue = yield* WorkerQueue.make({ worker: (n: number) => Effect.succeed(n), name: "q" })
        yield* queue.close
        yield* queue.close
        const exit = yield* Effect.exit(queue.require(1))
        expect(exit).toEqual(Exit.fail(new WorkerQueue.WorkerQueueError({ reason: "Closed", queue: "q", item: "1" })))
        expect(Exit.isFailure(exit) && Cause.pretty(exit.cause)).toContain("WorkerQueue q is closed")
      }))

    it.effect("closing the scope closes the queue: waiting-room items fail Closed, the rest FinishTimeout", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const queue = yield* WorkerQueue.make({
          worker: (_: number) => Effect.never,
          concurrency: 1,
          capacity: 1,
          finishTimeout: "1 second"
        }).pipe(Scope.extend(scope))
        const fibers = yield* Effect.forEach([1, 2, 3], (n) => Effect.fork(Effect.flip(queue.require(n))))
        yield* waitFor(Effect.map(queue.stats, (s) => s.running === 1 && s.queued === 1 && s.waiting === 1))
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* waitFor(Effect.map(TestClock.sleeps(), (sleeps) => sleeps.length === 1))
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(closing)
        const reasons = yield* Effect.forEach(fibers, (f) => Effect.map(Fiber.join(f), (e) => e.reason))
        expect(reasons).toEqual(["FinishTimeout", "FinishTimeout", "Closed"])
      }))
  })

  describe("Registry", () => {
    it.effect("queues register themselves; closeAll closes every live one, idle or busy, and empties it", () =>
      Effect.gen(function*() {
        const registry = yield* WorkerQueue.Registry
        const scope = yield* Scope.make()
        const idle = yield* WorkerQueue.make({ worker: (n: number) => Effect.succeed(n), name: "idle" }).pipe(
          Scope.extend(scope)
        )
        const busy = yield* WorkerQueue.make({
          worker: (_: number) => Effect.never,
          name: "busy",
          finishTimeout: 0
        }).pipe(Scope.extend(scope))
        const waiter = yield* Effect.fork(busy.require(1))
        yield* waitFor(Effect.map(busy.stats, (s) => s.running === 1))
        expect(yield* registry.names).toEqual(["idle", "busy"])
        yield* registry.closeAll
        expect(yield* registry.size).toBe(0)
        expect(yield* idle.isRunning).toBe(false)
        expect(yield* busy.isRunning).toBe(false)
        expect((yield* Effect.flip(Fiber.join(waiter))).reason).toBe("FinishTimeout")
        yield* Scope.close(scope, Exit.void)
      }).pipe(Effect.provide(WorkerQueue.Registry.layer)))

    it.effect("a queue closed on its own leaves the registry", () =>
      Effect.gen(function*() {
        const registry = yield* WorkerQueue.Registry
        yield* Effect.scoped(WorkerQueue.make({ worker: (n: number) => Effect.succeed(n) }))
        expect(yield* registry.size).toBe(0)
      }).pipe(Effect.provide(WorkerQueue.Registry.layer)))
  })

  describe("options", () => {
    const bad: Array<[string, Partial<WorkerQueue.Options<number, number>>, string]> = [
      ["concurrency", { concurrency: 0 }, "got `0`"],
      ["concurrency", { concurrency: -1 }, "got `-1`"],
      ["concurrency", { concurrency: Number.NaN }, "got `NaN`"],
      ["concurrency", { concurrency: 1.5 }, "got `1.5`"],
      ["capacity", { capacity: 0 }, "got `0`"],
      // Huge counts crashed with "Invalid array length" (one worker fiber each).
      ["concurrency", { concurrency: 1e12 }, "got `1000000000000`"],
      ["concurrency", { concurrency: 2 ** 53 }, "got `9007199254740992`"],
      ["capacity", { capacity: 2 ** 53 }, "got `9007199254740992`"],
      ["concurrency", { concurrency: "8" as unknown as number }, "got `\"8\"`"],
      ["concurency", { concurency: 8 } as Partial<WorkerQueue.Options<number, number>>, "did you mean `concurrency`?"],
      ["name", { name: 5 as unknown as string }, "got `5`"],
      ["key", { key: "id" as unknown as (n: number) => number }, "got `\"id\"`"],
      ["finishTimeout", { finishTimeout: -1 }, "got `-1`"],
      ["finishTimeout", { finishTimeout: "-2 seconds" }, "got `\"-2 seconds\"`"]
    ]
    it.scoped("a missing or non-function worker is an OptionError at make, not a TypeError at the first require", () =>
      Effect.gen(function*() {
        for (const worker of [undefined, 5, "double"]) {
          const error = yield* Effect.flip(
            WorkerQueue.make({ worker } as unknown as WorkerQueue.Options<number, number>)
          )
          expect(error).toBeInstanceOf(OptionError)
          expect(error.field).toBe("worker")
          expect(error.message).toContain("a function")
        }
      }))

    for (const [field, options, got] of bad) {
      it.scoped(`rejects ${field} = ${JSON.stringify(options[field as keyof typeof options]) ?? "NaN"}`, () =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(WorkerQueue.make({ worker: (n: number) => Effect.succeed(n), ...options }))
          expect(error).toBeInstanceOf(OptionError)
          expect(error.field).toBe(field)
          expect(error.message).toContain(`\`${field}\``)
          expect(error.message).toContain(got)
        }))
    }
  })

  describe("layers", () => {
    class Doubler extends Context.Tag("test/Doubler")<Doubler, WorkerQueue.WorkerQueue<number, number>>() {}

    it.effect("layerTest gives a queue with a memory cache and a registry", () =>
      Effect.gen(function*() {
        let runs = 0
        const program = Effect.gen(function*() {
          const q = yield* Doubler
          yield* q.require(2)
          yield* q.require(2)
          return [(yield* q.stats).hits, yield* (yield* WorkerQueue.Registry).size] as const
        })
        const result = yield* program.pipe(
          Effect.provide(WorkerQueue.layerTest(Doubler, { worker: (n: number) => Effect.sync(() => (runs++, n * 2)) }))
        )
        expect(result).toEqual([1, 1])
        expect(runs).toBe(1)
      }))
  })
})
