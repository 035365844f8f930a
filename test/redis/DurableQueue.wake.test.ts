/**
 * Redis wake-ups (src/internal/durableQueue/redisWake.ts): an offer made through another connection (as another
 * process would) wakes an idle taker at once, not at its next poll. The poll interval is 10 s and the wait for the
 * job 5 s, so without the wake-up the job would arrive at the poll, after the wait: the test fails. So do a resume,
 * a retry without delay and a requeue made by another instance: each makes a job ready and publishes a wake-up.
 * And an idle taker backs off to 2 s between leases once it hears (core.ts `IdleBackoff`): an offer from another
 * connection still reaches it at once.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Redis } from "ioredis"
import { Backoff } from "../../src/DurableQueue.js"
import * as core from "../../src/internal/durableQueue/core.js"
import { queueSettings } from "../../src/internal/durableQueue/options.js"
import { wakingStore } from "../../src/internal/durableQueue/redisStore.js"
import * as DurableQueue from "../../src/redis/DurableQueue.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import { withRedisPrefix } from "../helpers/redis.js"
import { redis, requireService } from "../helpers/services.js"

const up = await requireService(redis)

const queueOf = (prefix: string) =>
  DurableQueue.make({ name: "jobs", prefix, schema: Schema.Number, pollInterval: "10 seconds" })

/**
 * A taker that leased (and so subscribed) goes idle; its instance's wake channel has one subscriber; an offer
 * from another instance reaches it well before its 10 s poll. `pause` lets the taker's lease find nothing first.
 */
const wakesIdleTaker = (prefix: string, raw: Redis, pause: number) =>
  Effect.gen(function*() {
    const taker = yield* queueOf(prefix)
    const offerer = yield* queueOf(prefix)
    yield* taker.offer(1)
    expect(yield* taker.take((n) => Effect.succeed(n))).toEqual(Exit.succeed(1))
    const waiting = yield* Effect.fork(taker.take((n) => Effect.succeed(n)))
    // The taker's instance subscribed (the offerer's has not taken, so none), on "<wake>" unprefixed by any client
    // keyPrefix: SUBSCRIBE takes a channel, not a key. Its first lease did not wait for the subscription (issue 16):
    // looked for up to 5 s.
    const subscribers = () =>
      Effect.map(
        Effect.promise(() => raw.pubsub("NUMSUB", `${prefix}{jobs}:wake`)),
        (reply) => Number((reply as [string, number])[1])
      )
    for (let i = 0; i < 500 && (yield* subscribers()) === 0; i++) yield* Effect.sleep("10 millis")
    expect(yield* subscribers()).toBe(1)
    if (pause > 0) yield* Effect.sleep(pause)
    yield* offerer.offer(2)
    const got = yield* Fiber.join(waiting).pipe(Effect.timeout("5 seconds"), Effect.option)
    expect(got).toEqual(Option.some(Exit.succeed(2)))
  }).pipe(Effect.scoped)

/**
 * A taker backed off to 2 s between leases (its store hears: `hearing` true once subscribed) gets a job offered by
 * another connection within 1 s of the offer, made just after a lease (without the wake-up: ~2 s). Fails on a core
 * that does not back off (the 1.6 s gap never comes) or a store that hears nothing it says it hears.
 */
const backedOffTakerWoken = (prefix: string, cut?: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const settings = yield* queueSettings({ name: "jobs", schema: Schema.Number })
    const { options } = yield* RedisClient.RedisClient
    const { store } = yield* wakingStore(options, prefix, settings)
    const leases: Array<number> = []
    const timed = {
      ...store,
      lease: (max: number) => Effect.zipRight(Effect.sync(() => leases.push(Date.now())), store.lease(max))
    }
    const taker = yield* core.make(timed, settings, Schema.Number)
    const started: Array<number> = []
    yield* Effect.forkScoped(taker.run(() => Effect.sync(() => started.push(Date.now())), { concurrency: 4 }))
    // Leases 100, 200, 400, 800, then 1,600 ms apart (the subscription holding may wake it once and start over):
    // looked for every 10 ms for up to 15 s; the wait after that lease is 2 s.
    const lastGap = () => leases.length < 2 ? 0 : leases.at(-1)! - leases.at(-2)!
    for (let i = 0; i < 1_500 && lastGap() < 1_500; i++) yield* Effect.sleep("10 millis")
    expect(lastGap()).toBeGreaterThanOrEqual(1_500)
    expect(yield* store.hearing!).toBe(true)
    if (cut !== undefined) {
      // The subscriber's connection is cut: `hearing` goes false while ioredis reconnects (its first retry is 50 ms
      // later), true once it is back, and the backoff starts over and grows again; the offer below is heard only if
      // the subscription was made again.
      yield* cut
      const hearing = store.hearing!
      for (let i = 0; i < 1_000 && (yield* hearing); i++) yield* Effect.sleep("5 millis")
      expect(yield* hearing).toBe(false)
      for (let i = 0; i < 1_000 && !(yield* hearing); i++) yield* Effect.sleep("5 millis")
      expect(yield* hearing).toBe(true)
      const from = leases.length
      for (let i = 0; i < 1_500 && (leases.length - from < 2 || lastGap() < 1_500); i++) {
        yield* Effect.sleep("10 millis")
      }
      expect(lastGap()).toBeGreaterThanOrEqual(1_500)
      expect(yield* hearing).toBe(true)
    }
    const offerer = yield* queueOf(prefix)
    const offeredAt = Date.now()
    const sinceLease = offeredAt - leases.at(-1)!
    yield* offerer.offer(1)
    for (let i = 0; i < 500 && started.length === 0; i++) yield* Effect.sleep("10 millis")
    expect(started.length).toBe(1)
    // Offered well within the 2 s wait, started well before it would have ended.
    expect(sinceLease).toBeLessThan(500)
    expect(started[0]! - offeredAt).toBeLessThan(1_000)
  }).pipe(Effect.scoped)

describe.skipIf(!up)("redis DurableQueue wake-ups", () => {
  it.live(
    "a taker backed off to 2 s between leases (it hears) gets a job offered by another connection within 1 s",
    () =>
      withRedisPrefix("dqwakeidle", (prefix) => backedOffTakerWoken(prefix).pipe(Effect.provide(RedisClient.layer()))),
    30_000
  )

  // Only this test's subscriber is cut (by its connection name): other suites may share the server. With the
  // client's `autoResubscribe: false` too: the subscriber came back deaf (the offer waited out the 2 s backoff).
  for (const autoResubscribe of [undefined, false]) {
    it.live(
      `after its wake subscriber reconnects (autoResubscribe ${autoResubscribe}), a taker backed off to 2 s again still gets another connection's offer within 1 s`,
      () =>
        withRedisPrefix("dqwakeidlerc", (prefix, raw) => {
          const connectionName = `${prefix.replace(/[^A-Za-z0-9]/g, "")}wake`
          const cut = Effect.promise(async () => {
            const list = String(await raw.call("CLIENT", "LIST", "TYPE", "pubsub"))
            const ids = list.split("\n").filter((line) => line.includes(` name=${connectionName} `)).map((line) =>
              /\bid=(\d+)/.exec(line)![1]!
            )
            expect(ids.length).toBe(1)
            await raw.call("CLIENT", "KILL", "ID", ids[0]!)
          })
          return backedOffTakerWoken(prefix, cut).pipe(Effect.provide(RedisClient.layer({
            options: autoResubscribe === undefined ? { connectionName } : { connectionName, autoResubscribe }
          })))
        }),
      30_000
    )
  }

  it.live(
    "an offer from another connection wakes an idle taker well before its 10 s poll",
    () =>
      withRedisPrefix(
        "dqwake",
        (prefix, raw) => wakesIdleTaker(prefix, raw, 0).pipe(Effect.provide(RedisClient.layer()))
      ),
    30_000
  )

  // The pause is not synchronisation (the test passes either way with the fix): without a wake-up the taker then
  // waits out its 10 s poll. Before the fix the script published on "<keyPrefix><wake>", which nobody heard (without
  // the pause the offer came during the taker's lease and it passed).
  it.live(
    "with a client keyPrefix (added to keys, not to channels) an offer from another instance still wakes a taker",
    () =>
      withRedisPrefix("dqwakekp", (prefix, raw) =>
        wakesIdleTaker(prefix, raw, 200).pipe(
          Effect.provide(RedisClient.layer({ options: { keyPrefix: `${prefix}kp:` } }))
        )),
    30_000
  )

  it.live(
    "a resume, a retry without delay and a requeue from another instance each wake an idle taker",
    () =>
      withRedisPrefix("dqwake2", (prefix) =>
        Effect.gen(function*() {
          const make = () =>
            DurableQueue.make({
              name: "jobs",
              prefix,
              schema: Schema.Number,
              pollInterval: "10 seconds",
              maxAttempts: 2,
              backoff: Backoff.none
            })
          const taker = yield* make()
          const other = yield* make()
          yield* taker.offer(0)
          expect(yield* taker.take((n) => Effect.succeed(n))).toEqual(Exit.succeed(0))
          const within = <X>(fiber: Fiber.Fiber<X, unknown>) =>
            Fiber.join(fiber).pipe(Effect.timeout("5 seconds"), Effect.option)
          // Resume: the job offered while paused was not leased; the taker waits out its poll unless woken.
          yield* other.pause
          yield* other.offer(1, { id: "paused" })
          const first = yield* Effect.fork(taker.take((n) => Effect.succeed(n)))
          yield* Effect.sleep("200 millis")
          yield* other.resume
          expect(yield* within(first)).toEqual(Option.some(Exit.succeed(1)))
          // A retry without delay: the other instance's attempt fails while the taker waits; the job is ready at once.
          yield* other.offer(3, { id: "retried" })
          const started = yield* Deferred.make<void>()
          const failing = yield* Effect.fork(other.take(() =>
            Effect.zipRight(
              Deferred.succeed(started, undefined),
              Effect.zipRight(Effect.sleep("500 millis"), Effect.fail("once"))
            )
          ))
          yield* Deferred.await(started)
          const second = yield* Effect.fork(taker.take((n, job) => Effect.succeed(`${job.id}:${job.attempt}:${n}`)))
          yield* Fiber.join(failing)
          expect(yield* within(second)).toEqual(Option.some(Exit.succeed("retried:2:3")))
          // A requeue: a dead letter queued again.
          yield* other.offer(4, { id: "doomed" })
          yield* other.take(() => Effect.fail("1"))
          yield* other.take(() => Effect.fail("2"))
          expect((yield* other.deadLetters).map((letter) => letter.id)).toEqual(["doomed"])
          const third = yield* Effect.fork(taker.take((n) => Effect.succeed(n)))
          yield* Effect.sleep("200 millis")
          expect(yield* other.requeue("doomed")).toBe(true)
          expect(yield* within(third)).toEqual(Option.some(Exit.succeed(4)))
        }).pipe(Effect.scoped, Effect.provide(RedisClient.layer()))),
    60_000
  )
})
