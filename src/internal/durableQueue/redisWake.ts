/**
 * Wake-ups of idle takers on Redis, from any process: the offer script PUBLISHes one message on the queue's wake
 * channel (`keysOf(...).wake`) per call that queued a job, and each queue instance that takes SUBSCRIBEs to it on a
 * connection of its own, opening the fetcher's `ready` latch. Without it an idle taker waited out its poll: offer →
 * start took 55–71 ms at the median with the 100 ms default, against 3.5–4.4 ms for BullMQ's blocking wait
 * (issue #16). Pub/sub, not a blocking pop on a wake list: a pop wakes one process, a message every one, and
 * nothing piles up in Redis while nobody takes. The poll stays as the safety net (a message sent while the
 * subscriber reconnects is lost; on reconnect the latch is opened once, so jobs offered meanwhile are looked for).
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Scope from "effect/Scope"
import type * as RedisClientModule from "../../redis/RedisClient.js"
import { connect } from "../redis/client.js"

/** How long after a failed subscription the next lease tries again. */
const RETRY_MILLIS = 30_000

/** How long a lease waits for the subscription, at most (it goes on in the background; polling covers the gap). */
const ARM_WAIT = "2 seconds"

/**
 * How long a subscription may take before it counts as failed: a server that accepts the connection and never
 * answers would otherwise hold one attempt (and its connection) forever.
 */
const SUBSCRIBE_TIMEOUT = "10 seconds"

/** @internal */
export interface Wake {
  /** Completes when a message came since the last `arm`. */
  readonly ready: Effect.Effect<void>
  /** Before each lease: subscribes once (waiting at most 2 s for the subscription), then closes `ready`. */
  readonly arm: Effect.Effect<void>
}

/**
 * A subscription made at the first lease, not at construction: a queue instance that only offers never holds a
 * second connection. A failed subscription is logged and tried again 30 s later, at a lease; polling covers the gap.
 *
 * The subscription runs on a fiber of its own in the queue's scope, and the lease waits for it interruptibly: the
 * core runs `lease` uninterruptibly (core.ts `Feed.fetch`), and there a timeout cannot interrupt what it bounds, so
 * a subscription waited for inline held the lease until the server answered (forever for one that never does; the
 * same flaw as the PostgreSQL LISTEN wait fixed in sqlListen.ts).
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
    // The attempt in progress, if any: leases meanwhile wait for it (2 s at most) instead of starting another.
    let attempt: Deferred.Deferred<void> | undefined
    // After a failure, the next try waits: where SUBSCRIBE is refused (an ACL, a proxy without pub/sub) every lease
    // would otherwise pay a connection attempt (up to 2 s) and log a warning.
    let nextTry = 0
    // A connection of its own scope, closed at once when the attempt fails (not kept until the queue closes).
    const subscribeOnce = Effect.gen(function*() {
      const own = yield* Scope.fork(scope, ExecutionStrategy.sequential)
      yield* connect(options).pipe(
        Effect.flatMap((subscriber) =>
          Effect.tryPromise(async () => {
            subscriber.on("message", (from: string) => {
              if (from === channel) notified.unsafeOpen()
            })
            // ioredis subscribes again after a reconnect; what was published while it was away was not heard.
            subscriber.on("ready", () => notified.unsafeOpen())
            await subscriber.subscribe(channel)
          })
        ),
        Effect.timeout(SUBSCRIBE_TIMEOUT),
        Scope.extend(own),
        Effect.onError(() => Scope.close(own, Exit.void))
      )
      subscribed = true
    })
    const start = (done: Deferred.Deferred<void>) =>
      subscribeOnce.pipe(
        Effect.catchAllCause((cause) => {
          nextTry = Date.now() + RETRY_MILLIS
          return Effect.logWarning(
            `DurableQueue: subscribing to Redis wake-ups failed; polling, trying again in ${RETRY_MILLIS / 1000} s`,
            cause
          )
        }),
        Effect.ensuring(Effect.zipRight(Effect.sync(() => attempt = undefined), Deferred.succeed(done, undefined))),
        Effect.interruptible,
        Effect.forkIn(scope)
      )
    const subscribe = Effect.suspend(() => {
      if (subscribed || (attempt === undefined && Date.now() < nextTry)) return Effect.void
      const begin = attempt === undefined
        ? Effect.suspend(() => {
          const done = Deferred.unsafeMake<void>(FiberId.none)
          attempt = done
          return Effect.as(start(done), done)
        })
        : Effect.succeed(attempt)
      return Effect.flatMap(begin, (done) =>
        Deferred.await(done).pipe(Effect.interruptible, Effect.timeout(ARM_WAIT), Effect.ignore))
    })
    return {
      ready: notified.await,
      arm: Effect.zipRight(subscribe, notified.close)
    }
  })
