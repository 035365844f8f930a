/**
 * Wake-ups of idle takers on Redis, from any process: the offer script PUBLISHes one message on the queue's wake
 * channel (`keysOf(...).wake`) per call that queued a job, and each queue instance that takes SUBSCRIBEs to it on a
 * connection of its own, opening the fetcher's `ready` latch. Without it an idle taker waited out its poll: offer →
 * start took 55–71 ms at the median with the 100 ms default, against 3.5–4.4 ms for BullMQ's blocking wait
 * (issue #16). Pub/sub, not a blocking pop on a wake list: a pop wakes one process, a message every one, and
 * nothing piles up in Redis while nobody takes. The poll stays as the safety net (a message sent while the
 * subscriber reconnects is lost; on reconnect the latch is opened once, so jobs offered meanwhile are looked for).
 */
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type * as RedisClientModule from "../../redis/RedisClient.js"
import { connect } from "../redis/client.js"

/** How long after a failed subscription the next lease tries again. */
const RETRY_MILLIS = 30_000

/**
 * How long a subscription may take before it counts as failed: a server that accepts the connection and never
 * answers would otherwise hold one attempt (and its connection) forever.
 */
const SUBSCRIBE_TIMEOUT = "10 seconds"

/** @internal */
export interface Wake {
  /** Completes when a message came since the last `arm`. */
  readonly ready: Effect.Effect<void>
  /** Before each lease: starts the subscription once (not waiting for it), then closes `ready`. */
  readonly arm: Effect.Effect<void>
  /**
   * Whether the subscription holds and its connection is up (`Store.hearing`): an idle fetcher then backs off from
   * its poll to 2 s (core.ts `IdleBackoff`); while ioredis reconnects it polls.
   */
  readonly hearing: Effect.Effect<boolean>
}

/**
 * A subscription made at the first lease, not at construction: a queue instance that only offers never holds a
 * second connection. A failed subscription is logged and tried again 30 s later, at a lease; polling covers the gap.
 *
 * The lease does not wait for it (it waited up to 2 s: a new connection and a SUBSCRIBE, 3-17 ms at load 1-7, were
 * 3-11 % of a 5,000-job drain, issue #16): the subscription runs on a fiber of its own in the queue's scope and
 * opens `ready` once it holds, so a fetcher whose lease found nothing before it held looks again then, and an offer
 * made meanwhile is not missed. A lease that waited for it (the core runs `lease` uninterruptibly, core.ts
 * `Feed.fetch`) also held the lease until the server answered or a timeout ran out (forever for one that never
 * answers, before that timeout; the same flaw as the PostgreSQL LISTEN wait fixed in sqlListen.ts).
 *
 * @internal
 */
export const make = (
  options: RedisClientModule.RedisClient.Options,
  channel: string
): Effect.Effect<Wake, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const notified = yield* Effect.makeLatch(false)
    let subscribed = false
    // The subscribed connection, once it holds: `hearing` reads its status (ioredis reconnects and subscribes again).
    let connection: { readonly status: string } | undefined
    // An attempt in progress: leases meanwhile start no other.
    let trying = false
    // After a failure, the next try waits: where SUBSCRIBE is refused (an ACL, a proxy without pub/sub) every lease
    // would otherwise pay a connection attempt and log a warning.
    let nextTry = 0
    // A connection of its own scope, closed at once when the attempt fails (not kept until the queue closes).
    const subscribeOnce = Effect.gen(function*() {
      const own = yield* Scope.fork(scope, ExecutionStrategy.sequential)
      // Subscribed again after a reconnect whatever the client's options say: with `autoResubscribe: false` it came
      // back deaf while `hearing` said true, and every offer from another process waited out the 2 s backoff.
      yield* connect({ ...options, options: { ...options.options, autoResubscribe: true } }).pipe(
        Effect.flatMap((subscriber) =>
          Effect.tryPromise(async () => {
            subscriber.on("message", (from: string) => {
              if (from === channel) notified.unsafeOpen()
            })
            // ioredis subscribes again after a reconnect; what was published while it was away was not heard.
            subscriber.on("ready", () => notified.unsafeOpen())
            await subscriber.subscribe(channel)
            connection = subscriber
          })
        ),
        Effect.timeout(SUBSCRIBE_TIMEOUT),
        Scope.extend(own),
        Effect.onError(() => Scope.close(own, Exit.void))
      )
      subscribed = true
      // Offers made before it held were not heard: a fetcher waiting after an empty lease looks again.
      notified.unsafeOpen()
    })
    const subscribe = Effect.suspend(() => {
      if (subscribed || trying || Date.now() < nextTry) return Effect.void
      trying = true
      return subscribeOnce.pipe(
        Effect.catchAllCause((cause) => {
          nextTry = Date.now() + RETRY_MILLIS
          return Effect.logWarning(
            `DurableQueue: subscribing to Redis wake-ups failed; polling, trying again in ${RETRY_MILLIS / 1000} s`,
            cause
          )
        }),
        Effect.ensuring(Effect.sync(() => trying = false)),
        Effect.interruptible,
        Effect.forkIn(scope),
        Effect.asVoid
      )
    })
    return {
      ready: notified.await,
      arm: Effect.zipRight(subscribe, notified.close),
      hearing: Effect.sync(() => subscribed && connection?.status === "ready")
    }
  })
