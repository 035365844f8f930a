/**
 * Job events and schedules of `DurableQueue` (issue #11) on every store: the events of a job's life seen by another
 * instance of the queue (another connection: Redis pub/sub, PostgreSQL LISTEN/NOTIFY; in-process on memory and
 * SQLite), a schedule's occurrences stored once however many instances run it (TestClock on memory), `unschedule`
 * reaching another instance through the store, and the bounds that keep a slow bus or subscriber from growing
 * memory. The 3-process proof (one SIGKILLed) is test/DurableQueue.schedule.processes.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cron from "effect/Cron"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type * as DurableQueue from "../src/DurableQueue.js"
import { Backoff } from "../src/DurableQueue.js"
import { Emitter, type EventBus, subscribe } from "../src/internal/durableQueue/events.js"
import { payloads } from "../src/internal/durableQueue/sqlEvents.js"
import { OptionError } from "../src/OptionError.js"
import { type Env, numberQueue, type StoreKind, withStore } from "./helpers/durableStores.js"
import { postgres, redis, requireService } from "./helpers/services.js"
import { eventually } from "./helpers/storePort.js"

const redisUp = await requireService(redis)
const pgUp = await requireService(postgres)
const stores: ReadonlyArray<readonly [StoreKind, boolean]> = [["memory", true], ["redis", redisUp], ["pg", pgUp], [
  "sqlite",
  true
]]

/**
 * A 50 ms backoff, not the default (from 1 s, jittered): the events case waits out two retries, and those two
 * waits made it 2.1-2.9 s on every store; backoff has its own cases in the contract.
 */
const numbers = (env: Env, name: string, maxAttempts = 2) =>
  numberQueue(env, name, maxAttempts, Backoff.fixed("50 millis"))

/**
 * For TestClock: every sleep of the core wakes TestClock.adjust, which yields to the real event loop each time, so
 * a 2-second lease (a refresh every 667 ms) over a simulated hour is 5,400 wake-ups, about 30 s on this machine.
 */
const slowClock = (env: Env, name: string) =>
  env.make({ name, schema: Schema.Number, pollInterval: "1 minute", leaseDuration: "30 minutes" })

/**
 * Collects `queue.events` into an array from a fiber of the scope, and returns once the subscription hears: probe
 * jobs are offered (by `offerer`, another instance) until one's "Offered" arrives, so nothing later is missed.
 */
const collect = (queue: DurableQueue.DurableQueue<number>, offerer: DurableQueue.DurableQueue<number>) =>
  Effect.gen(function*() {
    const seen: Array<DurableQueue.JobEvent> = []
    yield* Effect.forkScoped(Stream.runForEach(queue.events, (event) => Effect.sync(() => seen.push(event))))
    let probes = 0
    yield* eventually(
      Effect.suspend(() => {
        if (seen.some((event) => event.id.startsWith("probe:"))) return Effect.succeed(true)
        return Effect.as(offerer.offer(0, { id: `probe:${probes++}` }), false)
      }),
      (heard) => heard,
      { message: "a probe offered was heard" }
    )
    return seen
  })

const lifeOf = (seen: ReadonlyArray<DurableQueue.JobEvent>, id: string) =>
  seen.filter((event) => event.id === id).map((event) =>
    `${event._tag}${event.attempt === undefined ? "" : `:${event.attempt}`}`
  )

/** Takes jobs until `id` was run once more; probes succeed, `id` runs `handler`. */
const runJob = (
  queue: DurableQueue.DurableQueue<number>,
  id: string,
  handler: (attempt: number) => Effect.Effect<void, string>
) =>
  Effect.gen(function*() {
    while (true) {
      let ran = false
      yield* queue.take((_, job) => {
        if (job.id !== id) return Effect.void
        ran = true
        return handler(job.attempt)
      })
      if (ran) return
    }
  })

for (const [kind, up] of stores) {
  describe.skipIf(!up)(`DurableQueue events and schedules on ${kind}`, () => {
    const test = (name: string, body: (env: Env) => Effect.Effect<void, unknown, Scope.Scope>, timeout = 30_000) =>
      it.live(name, () => withStore(kind, body), timeout)

    test("events: another instance sees a job offered, started, failed and retried, then completed; and one dead", (env) =>
      Effect.gen(function*() {
        const watcher = yield* numbers(env, "ev")
        const worker = yield* numbers(env, "ev")
        const seen = yield* collect(watcher, worker)
        yield* worker.offer(1, { id: "flaky" })
        yield* runJob(worker, "flaky", (attempt) => attempt === 1 ? Effect.fail("boom") : Effect.void)
        yield* runJob(worker, "flaky", (attempt) => attempt === 1 ? Effect.fail("boom") : Effect.void)
        yield* worker.offer(2, { id: "doomed" })
        yield* runJob(worker, "doomed", () => Effect.fail("always"))
        yield* runJob(worker, "doomed", () => Effect.fail("always"))
        yield* eventually(Effect.sync(() => lifeOf(seen, "doomed").length), (n) => n === 7)
        expect(lifeOf(seen, "flaky")).toEqual([
          "Offered",
          "Started:1",
          "Failed:1",
          "Retried:1",
          "Started:2",
          "Completed:2"
        ])
        expect(lifeOf(seen, "doomed")).toEqual([
          "Offered",
          "Started:1",
          "Failed:1",
          "Retried:1",
          "Started:2",
          "Failed:2",
          "Dead:2"
        ])
        const dead = seen.find((event) => event._tag === "Dead")!
        expect(dead.error).toContain("always")
        expect(typeof dead.at).toBe("number")
      }))

    test("events: offerAll sends Offered for each job it queues (a duplicate id in the batch once)", (env) =>
      Effect.gen(function*() {
        const watcher = yield* numbers(env, "ev-all")
        const worker = yield* numbers(env, "ev-all")
        const seen = yield* collect(watcher, worker)
        yield* worker.offerAll([{ value: 1, id: "all-a" }, { value: 2, id: "all-b", delay: "1 minute" }, {
          value: 3,
          id: "all-a"
        }])
        yield* eventually(Effect.sync(() => seen.filter((event) => event.id.startsWith("all-")).length), (n) => n >= 2)
        yield* Effect.sleep("100 millis")
        expect(lifeOf(seen, "all-a")).toEqual(["Offered"])
        expect(lifeOf(seen, "all-b")).toEqual(["Offered"])
      }))

    test("events: offerAll of 1,500 sends every Offered, in offer order (PostgreSQL: over several notifications)", (env) =>
      Effect.gen(function*() {
        const watcher = yield* numbers(env, "ev-many")
        const worker = yield* numbers(env, "ev-many")
        const seen = yield* collect(watcher, worker)
        const ids = Array.from({ length: 1_500 }, (_, i) => `many-${String(i).padStart(4, "0")}`)
        yield* worker.offerAll(ids.map((id, i) => ({ value: i, id })))
        const heard = () => seen.filter((event) => event.id.startsWith("many-")).map((event) => event.id)
        yield* eventually(Effect.sync(() => heard().length), (n) => n >= ids.length)
        expect(heard()).toEqual(ids)
      }))

    test("unschedule in one instance stops the schedule another instance runs (a mark the store keeps)", (env) =>
      Effect.gen(function*() {
        const a = yield* numbers(env, "unsched")
        const b = yield* numbers(env, "unsched")
        const seen = yield* collect(b, b)
        const offered = (prefix: string) =>
          Effect.sync(() =>
            new Set(seen.filter((e) => e._tag === "Offered" && e.id.startsWith(prefix)).map((e) => e.id)).size
          )
        yield* a.schedule("tick", { every: "100 millis" }, 1)
        yield* eventually(offered("schedule:tick:"), (n) => n >= 2)
        yield* b.unschedule("tick")
        // A scheduler checks the mark after its occurrence's time, so an occurrence checked before the mark was
        // written is older than this; none after it may be offered.
        const marked = Date.now()
        const after = (prefix: string) =>
          Effect.sync(() =>
            seen.filter((e) =>
              e._tag === "Offered" && e.id.startsWith(prefix) && Date.parse(e.id.slice(prefix.length)) >= marked
            ).length
          )
        // A second schedule is the clock: three of its occurrences after the mark (300 ms), and no "tick" among them.
        yield* a.schedule("clock", { every: "100 millis" }, 2)
        yield* eventually(after("schedule:clock:"), (n) => n >= 3)
        expect(yield* after("schedule:tick:")).toBe(0)
        // Scheduling it again clears the mark.
        yield* b.schedule("tick", { every: "100 millis" }, 1)
        yield* eventually(after("schedule:tick:"), (n) => n >= 2)
      }))
  })
}

describe("DurableQueue schedules on memory (TestClock)", () => {
  it.effect("10 occurrences of { every }, each offered once though 3 schedulers run it in one process", () =>
    withStore("memory", (env) =>
      Effect.gen(function*() {
        const queues = [yield* slowClock(env, "sched"), yield* slowClock(env, "sched"), yield* slowClock(env, "sched")]
        const seen: Array<DurableQueue.JobEvent> = []
        yield* Effect.forkScoped(Stream.runForEach(queues[0]!.events, (event) => Effect.sync(() => seen.push(event))))
        yield* Effect.yieldNow()
        for (const queue of queues) yield* queue.schedule("report", { every: "1 minute" }, 7)
        for (let minute = 1; minute <= 10; minute++) yield* TestClock.adjust("1 minute")
        expect(yield* queues[0]!.size).toBe(10)
        const ids: Array<string> = []
        for (let i = 0; i < 10; i++) {
          yield* queues[1]!.take((value, job) => Effect.sync(() => ids.push(`${job.id}=${value}`)))
        }
        expect(ids).toEqual(
          Array.from({ length: 10 }, (_, k) => `schedule:report:${new Date((k + 1) * 60_000).toISOString()}=7`)
        )
        // Each of the 3 offered every occurrence; the store kept one.
        yield* Effect.yieldNow()
        expect(seen.filter((event) => event._tag === "Offered").length).toBe(30)
        yield* queues[2]!.unschedule("report")
        for (let minute = 1; minute <= 5; minute++) yield* TestClock.adjust("1 minute")
        expect(yield* queues[0]!.size).toBe(0)
      })))

  it.effect("a cron expression (UTC by default, or a Cron with its own zone) offers at its times", () =>
    withStore("memory", (env) =>
      Effect.gen(function*() {
        const queue = yield* slowClock(env, "cron")
        yield* queue.schedule("even-minutes", "*/2 * * * *", 1)
        yield* queue.schedule("seconds", "*/30 * * * * *", 2)
        yield* queue.schedule("cron", Cron.unsafeParse("0 * * * *", "UTC"), 3)
        yield* TestClock.adjust("1 hour")
        const ids: Array<string> = []
        const n = yield* queue.size
        for (let i = 0; i < n; i++) yield* queue.take((_, job) => Effect.sync(() => ids.push(job.id)))
        expect(ids.filter((id) => id.startsWith("schedule:even-minutes:")).length).toBe(30)
        expect(ids.filter((id) => id.startsWith("schedule:seconds:")).length).toBe(120)
        expect(ids.filter((id) => id.startsWith("schedule:cron:"))).toEqual(["schedule:cron:1970-01-01T01:00:00.000Z"])
        expect(ids).toContain("schedule:even-minutes:1970-01-01T00:02:00.000Z")
      })))

  it.effect("an occurrence is offered with the schedule's priority, timeout and backoff", () =>
    withStore("memory", (env) =>
      Effect.gen(function*() {
        const queue = yield* slowClock(env, "prio")
        yield* queue.offer(0, { id: "plain" })
        yield* queue.schedule("urgent", { every: "1 minute" }, 1, { priority: 10, timeout: "5 seconds" })
        yield* TestClock.adjust("1 minute")
        const order: Array<string> = []
        yield* queue.take((_, job) => Effect.sync(() => order.push(job.id)))
        yield* queue.take((_, job) => Effect.sync(() => order.push(job.id)))
        expect(order).toEqual(["schedule:urgent:1970-01-01T00:01:00.000Z", "plain"])
      })))

  it.effect("bad id, cron expression, every or a Schedule: OptionError naming it; unschedule checks its id", () =>
    withStore("memory", (env) =>
      Effect.gen(function*() {
        const queue = yield* numbers(env, "bad")
        const fieldOf = (effect: Effect.Effect<unknown, unknown, Scope.Scope>) =>
          Effect.map(Effect.flip(effect), (error) => {
            expect(error).toBeInstanceOf(OptionError)
            return (error as OptionError).field
          })
        expect(yield* fieldOf(queue.schedule("", { every: "1 second" }, 1))).toBe("id")
        expect(yield* fieldOf(queue.schedule("x", "not a cron", 1))).toBe("spec")
        expect(yield* fieldOf(queue.schedule("x", "61 * * * *", 1))).toBe("spec")
        expect(yield* fieldOf(queue.schedule("x", { every: 0 }, 1))).toBe("every")
        expect(yield* fieldOf(queue.schedule("x", { every: "1.5 millis" }, 1))).toBe("every")
        expect(yield* fieldOf(queue.schedule("x", { every: Number.NaN }, 1))).toBe("every")
        expect(yield* fieldOf(queue.schedule("x", Schedule.spaced("1 second") as never, 1))).toBe("spec")
        expect(yield* fieldOf(queue.schedule("x", { every: "1 second" }, 1, { timeZone: 3 as never }))).toBe("timeZone")
        expect(yield* fieldOf(queue.schedule("x", { every: "1 second" }, 1, { timezone: "UTC" } as never))).toBe(
          "schedule options.timezone"
        )
        expect(yield* fieldOf(queue.unschedule("a\u0000b"))).toBe("id")
        expect(yield* fieldOf(queue.schedule("x", { every: "1 second" }, 1, { priority: 1.5 }))).toBe("priority")
        expect(yield* fieldOf(queue.schedule("x".repeat(257), { every: "1 second" }, 1))).toBe("id")
      })))
})

describe("events: bounded when the bus or a subscriber is slow", () => {
  it.effect("a bus that stalls: at most 10,000 events wait; the oldest are dropped", () =>
    Effect.gen(function*() {
      const first = yield* Deferred.make<void>()
      const unblock = yield* Deferred.make<void>()
      const batches: Array<ReadonlyArray<string>> = []
      const bus: EventBus = {
        publish: (events) =>
          Effect.zipRight(
            Deferred.succeed(first, undefined),
            batches.length === 0 ? Deferred.await(unblock) : Effect.void
          ).pipe(
            Effect.zipRight(Effect.sync(() => batches.push(events)))
          ),
        subscribe: Stream.empty
      }
      const emitter = new Emitter(bus, "q")
      yield* Effect.forkScoped(emitter.loop())
      emitter.emit("Offered", "first")
      yield* Deferred.await(first)
      for (let i = 0; i < 10_005; i++) emitter.emit("Offered", `e${i}`)
      yield* Deferred.succeed(unblock, undefined)
      for (let i = 0; i < 100 && batches.length < 2; i++) yield* Effect.yieldNow()
      expect(batches.length).toBe(2)
      expect(batches[1]!.length).toBe(10_000)
      expect(JSON.parse(batches[1]![0]!).id).toBe("e5")
    }).pipe(Effect.scoped))

  it.effect("a subscriber that does not read: it keeps the newest events of its buffer, not all", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const fed = yield* Deferred.make<void>()
      const event = (id: string) => JSON.stringify({ _tag: "Offered", id, at: 0 })
      // "first", then (once the subscriber holds it and stops reading) 100 events, a malformed message and "end".
      const bus: EventBus = {
        publish: () => Effect.void,
        subscribe: Stream.make(event("first")).pipe(
          Stream.concat(Stream.execute(Deferred.await(gate))),
          Stream.concat(
            Stream.fromIterable([...Array.from({ length: 100 }, (_, i) => event(`e${i}`)), "not json", event("end")])
          ),
          Stream.concat(Stream.execute(Deferred.succeed(fed, undefined)))
        )
      }
      const got: Array<string> = []
      const warnings: Array<string> = []
      const logger = Logger.make(({ message }) => warnings.push(String(Array.isArray(message) ? message[0] : message)))
      yield* subscribe(bus, "memory", "q", 10).pipe(
        Stream.tap((e) => Effect.sync(() => got.push(e.id))),
        Stream.tap((e) =>
          e.id === "first" ? Effect.zipRight(Deferred.succeed(gate, undefined), Deferred.await(fed)) : Effect.void
        ),
        Stream.takeUntil((e) => e.id === "end"),
        Stream.runDrain,
        Effect.provide(Logger.replace(Logger.defaultLogger, logger))
      )
      expect(got).toEqual(["first", "e91", "e92", "e93", "e94", "e95", "e96", "e97", "e98", "e99", "end"])
      // Said under this test's TestClock, which nobody moves (the report's time is real time).
      expect(warnings).toEqual([
        "DurableQueue q: events subscriber fell 10 behind and lost the 91 oldest event(s); skipped 1 message(s) that are not job events"
      ])
    }))

  it("PostgreSQL payloads stay under 8,000 bytes: batches split, an oversized event truncated", () => {
    const small = JSON.stringify({ _tag: "Offered", id: "x".repeat(100), at: 0 })
    const huge = JSON.stringify({ _tag: "Progress", id: "y".repeat(20_000), at: 0, progress: "z".repeat(9_000) })
    const out = payloads([...Array.from({ length: 200 }, () => small), huge])
    for (const payload of out) expect(Buffer.byteLength(payload)).toBeLessThan(8_000)
    const events = out.flatMap((payload) => payload.split("\n")).map((line) => JSON.parse(line))
    expect(events.length).toBe(201)
    expect(events[200].id).toMatch(/^y{1000}…\(truncated\)$/)
    expect(events[200].progress).toBeUndefined()
  })
})
