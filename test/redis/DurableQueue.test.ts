/**
 * What only the Redis store of `DurableQueue` has: its key layout, its Lua scripts moving opaque strings, and the
 * owner check of settlements. The contract every store keeps is in test/helpers/durableContract.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { Redis } from "ioredis"
import { queueSettings } from "../../src/internal/durableQueue/options.js"
import { escapeName, keysOf, makeStore } from "../../src/internal/durableQueue/redisStore.js"
import * as DurableQueue from "../../src/redis/DurableQueue.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import { spawnFixture } from "../helpers/processes.js"
import { withRedisPrefix } from "../helpers/redis.js"
import { redis, requireService } from "../helpers/services.js"
import { eventually } from "../helpers/storePort.js"

const up = await requireService(redis)

const withPrefix = <A, E, R>(f: (prefix: string, raw: Redis) => Effect.Effect<A, E, R>) => withRedisPrefix("dq", f)

const queueOf = (prefix: string, maxAttempts = 3) =>
  DurableQueue.make({
    name: "jobs",
    prefix,
    schema: Schema.Number,
    maxAttempts,
    pollInterval: "10 millis",
    leaseDuration: "2 seconds"
  })

/** Offers probes until an events stream that collects into `seen` hears one (its subscription is then made). */
const untilHeard = (
  queue: { readonly offer: (value: number, options: { readonly id: string }) => Effect.Effect<string, unknown> },
  seen: ReadonlyArray<{ readonly id: string }>
) => {
  let probes = 0
  return eventually(
    Effect.suspend(() =>
      seen.some((event) => event.id.startsWith("probe-"))
        ? Effect.succeed(true)
        : Effect.as(queue.offer(0, { id: `probe-${probes++}` }), false)
    ),
    (heard) => heard,
    { message: "a probe offered was heard" }
  )
}

/**
 * What is PUBLISHed on the queue's events channel, heard by a pattern subscription: PUBSUB NUMSUB does not count
 * those, so it sees all that is sent without making anyone "listen".
 */
const eventsSpy = (prefix: string) =>
  Effect.gen(function*() {
    const spy = yield* Effect.acquireRelease(Effect.sync(() => new Redis()), (r) => Effect.promise(() => r.quit()))
    const sent: Array<string> = []
    spy.on("pmessage", (_pattern: string, _channel: string, message: string) => sent.push(...message.split("\n")))
    yield* Effect.promise(() => spy.psubscribe(`${prefix}{jobs}:events`))
    return sent
  })

describe("redis DurableQueue keys (no server needed)", () => {
  it("a name's segment is escaped, so no name can end it early or fake a suffix; one hash tag per queue", () => {
    expect(keysOf("p:", "jobs").dead).toBe("p:{jobs}:dead")
    expect(escapeName("x:dead")).toBe("x%003adead")
    expect(escapeName("x}:{")).toBe("x%007d%003a%007b")
    expect(escapeName("%003a")).toBe("%0025003a")
    // Lone surrogates escape too (as code units): no `encodeURIComponent` URIError.
    expect(escapeName("\ud83d")).toBe("%d83d")
    const names = ["x", "x:dead", "x:ids", "x}:dead", "{x}", "x%003adead", "x:lock:", "%0078"]
    const all = names.flatMap((name) => Object.values(keysOf("p:", name)))
    expect(new Set(all).size).toBe(all.length)
    for (const name of names) {
      const tags = Object.values(keysOf("p:", name)).map((key) => key.slice(key.indexOf("{"), key.indexOf("}") + 1))
      expect(new Set(tags).size).toBe(1)
    }
  })
})

describe.skipIf(!up)("redis DurableQueue store", () => {
  it.live("a stored job cjson could not parse (nesting 5,000 deep, not JSON at all) never takes its batch with it", () =>
    withPrefix((prefix, raw) =>
      Effect.gen(function*() {
        const k = keysOf(prefix, "jobs")
        const queue = yield* queueOf(prefix, 2)
        yield* Effect.forEach([1, 2, 3], (n) => queue.offer(n, { id: `n${n}` }), { discard: true })
        // Written beside them as another client (or an old version) might: the old take script died on these with
        // the whole popped batch lost.
        const deep = `${"[".repeat(5_000)}1${"]".repeat(5_000)}`
        yield* Effect.promise(() =>
          raw.multi().hset(k.payloads, "deep", deep, "junk", "{not json").rpush(k.waiting, "deep", "junk").exec()
        )
        yield* Effect.forEach([4, 5], (n) => queue.offer(n, { id: `n${n}` }), { discard: true })
        const done: Array<number> = []
        yield* Effect.forkScoped(queue.run((n) => Effect.sync(() => done.push(n)), { concurrency: 8 }))
        yield* eventually(queue.size, (n) => n === 0 && done.length === 5)
        expect(done.sort()).toEqual([1, 2, 3, 4, 5])
        const undecodable = yield* queue.undecodableDeadLetters
        expect(undecodable.map((letter) => [letter.id, letter.attempts]).sort()).toEqual([["deep", 2], ["junk", 2]])
        expect(undecodable.find((letter) => letter.id === "junk")!.payload).toBe("{not json")
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))

  it.live("a late settlement leaves alone a job another runner holds now: no ack, no requeue, its owner kept", () =>
    withPrefix((prefix, raw) =>
      Effect.gen(function*() {
        const k = keysOf(prefix, "jobs")
        const queue = yield* queueOf(prefix)
        yield* queue.offer(1, { id: "stale-ok" })
        yield* queue.offer(2, { id: "stale-fail" })
        yield* queue.offer(3, { id: "marker" })
        // While each handler runs, its lease "lapses" and another runner takes the job: its owner is someone else.
        const stolen = (id: string) => Effect.promise(() => raw.hset(k.owners, id, "another-runner"))
        yield* queue.take((_n, job) => stolen(job.id))
        yield* queue.take((_n, job) => Effect.zipRight(stolen(job.id), Effect.fail("boom")))
        expect(yield* queue.take(() => Effect.void)).toEqual(Exit.void)
        expect(yield* Effect.promise(() => raw.zscore(k.leased, "marker"))).toBe(null)
        for (const id of ["stale-ok", "stale-fail"]) {
          expect(yield* Effect.promise(() => raw.zscore(k.leased, id))).not.toBe(null)
          expect(yield* Effect.promise(() => raw.hget(k.owners, id))).toBe("another-runner")
          expect(yield* Effect.promise(() => raw.hget(k.attempts, id))).toBe("1")
        }
        // The failed one was not put back in the queue either: the other runner owns it.
        expect(yield* Effect.promise(() => raw.llen(k.waiting))).toBe(0)
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))

  it.live(
    "a job cancelled while leased by a runner killed with SIGKILL is settled cancelled after its lease, never run again",
    () =>
      withPrefix((prefix, raw) =>
        Effect.gen(function*() {
          const options = {
            name: "jobs",
            prefix,
            schema: Schema.Number,
            pollInterval: "20 millis",
            leaseDuration: "1 second"
          } as const
          const queue = yield* DurableQueue.make(options)
          const child = spawnFixture("test/fixtures/durable-contract.ts", [
            "redis",
            prefix,
            "-",
            "hang",
            "jobs",
            "1000",
            "3"
          ])
          yield* Effect.addFinalizer(() => Effect.sync(() => child.kill()))
          yield* Effect.promise(() => child.waitFor((l) => l === "ready"))
          yield* queue.offer(1, { id: "c" })
          yield* Effect.promise(() => child.waitFor((l) => l === "took c"))
          child.kill("SIGKILL")
          expect(yield* Effect.promise(() => child.exited())).toBe("SIGKILL")
          // Asked after the kill: the runner that holds it can never learn it; only its lapsed lease tells.
          const store = makeStore(raw, prefix, yield* queueSettings(options))
          expect(yield* store.cancel("c")).toBe("asked")
          yield* queue.offer(2, { id: "after" })
          const ran: Array<string> = []
          yield* Effect.forkScoped(queue.run((_n, job) => Effect.sync(() => ran.push(job.id)), { concurrency: 2 }))
          yield* eventually(store.status("c"), (status) => status?.state === "cancelled")
          yield* eventually(Effect.sync(() => ran.length), (n) => n === 1)
          expect(ran).toEqual(["after"])
          expect(yield* store.counts).toMatchObject({ waiting: 0, delayed: 0, running: 0, dead: 0, paused: false })
          expect(yield* Effect.promise(() => raw.hget(keysOf(prefix, "jobs").attempts, "c"))).toBe("1")
        }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
      ),
    60_000
  )

  it.live("Offered is published only once an events stream subscribed: none for offers before it, all after", () =>
    withPrefix((prefix) =>
      Effect.gen(function*() {
        const sent = yield* eventsSpy(prefix)
        const queue = yield* queueOf(prefix)
        yield* queue.offerAll([1, 2, 3].map((n) => ({ value: n, id: `before-${n}` })))
        yield* queue.offer(4, { id: "before-4" })
        const seen: Array<{ readonly id: string }> = []
        yield* Effect.forkScoped(Stream.runForEach(queue.events, (event) => Effect.sync(() => seen.push(event))))
        // Probes until the stream hears one: its subscription is then made, and every later offer must reach it.
        yield* untilHeard(queue, seen)
        yield* queue.offerAll([{ value: 5, id: "after-5" }, { value: 6, id: "after-6" }, { value: 7, id: "after-5" }])
        yield* queue.offer(8, { id: "after-8" })
        const offered = (events: ReadonlyArray<{ readonly id: string }>, start: string) =>
          events.filter((event) => event.id.startsWith(start)).map((event) => event.id)
        yield* eventually(Effect.sync(() => offered(seen, "after-").length), (n) => n === 3)
        expect(offered(seen, "after-")).toEqual(["after-5", "after-6", "after-8"])
        // One emitter publishes in order: had the "before" offers sent anything, the spy would have it by now.
        yield* eventually(Effect.sync(() => [...sent]), (texts) => texts.some((text) => text.includes("after-8")))
        expect(offered(sent.map((text) => JSON.parse(text) as { id: string }), "before-")).toEqual([])
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))

  it.live("jobs run with no events stream send nothing; once one is subscribed, it hears every Started and Completed", () =>
    withPrefix((prefix) =>
      Effect.gen(function*() {
        const sent = yield* eventsSpy(prefix)
        const queue = yield* queueOf(prefix)
        const done: Array<string> = []
        yield* Effect.forkScoped(queue.run((_n, job) => Effect.sync(() => done.push(job.id)), { concurrency: 4 }))
        yield* queue.offerAll([1, 2, 3].map((n) => ({ value: n, id: `before-${n}` })))
        yield* eventually(Effect.sync(() => done.length), (n) => n === 3)
        const seen: Array<{ readonly _tag: string; readonly id: string }> = []
        yield* Effect.forkScoped(Stream.runForEach(queue.events, (event) => Effect.sync(() => seen.push(event))))
        yield* untilHeard(queue, seen)
        yield* queue.offerAll([4, 5].map((n) => ({ value: n, id: `after-${n}` })))
        const of = (events: ReadonlyArray<{ readonly _tag: string; readonly id: string }>, start: string) =>
          events.filter((event) => event.id.startsWith(start)).map((event) => `${event._tag} ${event.id}`).sort()
        yield* eventually(Effect.sync(() => of(seen, "after-").length), (n) => n === 6)
        expect(of(seen, "after-")).toEqual([
          "Completed after-4",
          "Completed after-5",
          "Offered after-4",
          "Offered after-5",
          "Started after-4",
          "Started after-5"
        ])
        // One emitter publishes in order: had the "before" jobs sent anything, the spy would have it by now.
        yield* eventually(
          Effect.sync(() => [...sent]),
          (texts) => texts.some((text) => text.includes("Completed") && text.includes("after-5"))
        )
        expect(of(sent.map((text) => JSON.parse(text) as { _tag: string; id: string }), "before-")).toEqual([])
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))

  it.live("with a client keyPrefix (which ioredis adds to keys, not channels) an events stream hears every Offered", () =>
    withPrefix((prefix) =>
      Effect.gen(function*() {
        const queue = yield* queueOf(prefix)
        const seen: Array<{ readonly id: string }> = []
        yield* Effect.forkScoped(Stream.runForEach(queue.events, (event) => Effect.sync(() => seen.push(event))))
        // Before the fix the script counted the subscribers of "<keyPrefix><channel>": always 0, so no probe arrived.
        yield* untilHeard(queue, seen)
        yield* Effect.forEach([1, 2, 3], (n) => queue.offer(n, { id: `after-${n}` }), { concurrency: "unbounded" })
        yield* queue.offerAll([{ value: 4, id: "after-4" }, { value: 5, id: "after-5" }])
        const offered = () => seen.filter((event) => event.id.startsWith("after-")).map((event) => event.id).sort()
        yield* eventually(Effect.sync(() => offered().length), (n) => n === 5)
        expect(offered()).toEqual(["after-1", "after-2", "after-3", "after-4", "after-5"])
      }).pipe(
        Effect.scoped,
        // Under the test's prefix, so its cleanup deletes the keys.
        Effect.provide(RedisClient.layer({ options: { keyPrefix: `${prefix}kp:` } }))
      )
    ))

  it.live("single offers of concurrent callers share script calls, in call order, a repeated id queued once", () =>
    withPrefix((prefix, raw) =>
      Effect.gen(function*() {
        const k = keysOf(prefix, "jobs")
        const spy = yield* Effect.acquireRelease(Effect.sync(() => new Redis()), (r) => Effect.promise(() => r.quit()))
        // Each offer script call publishes one wake-up: the count of calls.
        const wakes: Array<string> = []
        spy.on("message", (_channel: string, message: string) => wakes.push(message))
        yield* Effect.promise(() => spy.subscribe(k.wake))
        const queue = yield* queueOf(prefix)
        const ids = Array.from({ length: 16 }, (_, i) => i === 9 ? "job-3" : `job-${i}`)
        const returned = yield* Effect.forEach(ids, (id, i) => queue.offer(i, { id }), { concurrency: 16 })
        expect(returned).toEqual(ids)
        yield* Effect.promise(() => raw.publish(k.wake, "end"))
        yield* eventually(Effect.sync(() => [...wakes]), (heard) => heard.includes("end"))
        // The first goes out alone; the others wait for it and go as one call (16 calls before).
        expect(wakes.length - 1).toBeLessThanOrEqual(4)
        const queued = yield* Effect.promise(() => raw.lrange(k.waiting, 0, -1))
        expect(queued).toEqual(ids.filter((_, i) => i !== 9))
      }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))
    ))

  it.live("a gathered single offer whose caller is interrupted before it is sent is never written", () =>
    withPrefix((prefix, raw) =>
      Effect.gen(function*() {
        const k = keysOf(prefix, "jobs")
        const conn = yield* Effect.acquireRelease(Effect.sync(() => new Redis()), (r) => Effect.promise(() => r.quit()))
        const store = makeStore(conn, prefix, yield* queueSettings({ name: "jobs", schema: Schema.Number }))
        const job = (id: string) => ({
          id,
          payload: "1",
          custom: true,
          delayMillis: 0,
          priority: 0,
          options: undefined
        })
        const suspended = (fiber: Fiber.RuntimeFiber<unknown, unknown>) =>
          eventually(Fiber.status(fiber), (status) => status._tag === "Suspended")
        // Holds the connection: the first offer goes out behind this BLPOP and stays out until it returns, so the
        // next offers are gathered for the call after it.
        const held = conn.blpop(`${prefix}hold`, 0)
        const first = yield* Effect.fork(store.offer([job("first")]))
        yield* suspended(first)
        const second = yield* Effect.fork(store.offer([job("second")]))
        yield* suspended(second)
        yield* Fiber.interrupt(second)
        const third = yield* Effect.fork(store.offer([job("third")]))
        yield* suspended(third)
        yield* Effect.promise(() => raw.rpush(`${prefix}hold`, "go"))
        yield* Effect.promise(() => held)
        yield* Fiber.join(first)
        yield* Fiber.join(third)
        // Before, the interrupted caller's job was sent with the third one's: ["first", "second", "third"].
        expect(yield* Effect.promise(() => raw.lrange(k.waiting, 0, -1))).toEqual(["first", "third"])
      }).pipe(Effect.scoped)
    ))

  it.live("a prefix that is not a string fails with OptionError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        DurableQueue.make({ name: "q", schema: Schema.Number, prefix: 7 as unknown as string })
      )
      expect(error.message).toContain("prefix")
    }).pipe(Effect.scoped, Effect.provide(RedisClient.layer())))
})
