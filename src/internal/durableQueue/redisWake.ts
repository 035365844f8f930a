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
import * as Scope from "effect/Scope"
import type * as RedisClientModule from "../../redis/RedisClient.js"
import { connect } from "../redis/client.js"

/** How long after a failed subscription the next lease tries again. */
const RETRY_MILLIS = 30_000

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
    // After a failure, the next try waits: where SUBSCRIBE is refused (an ACL, a proxy without pub/sub) every lease
    // would otherwise pay a connection attempt (up to 2 s) and log a warning.
    let nextTry = 0
    const subscribe = connect(options).pipe(
      Effect.flatMap((subscriber) =>
        Effect.tryPromise(async () => {
          subscriber.on("message", (from: string) => {
            if (from === channel) notified.unsafeOpen()
          })
          // ioredis subscribes again after a reconnect; what was published while it was away was not heard.
          subscriber.on("ready", () => notified.unsafeOpen())
          await subscriber.subscribe(channel)
          subscribed = true
        })
      ),
      Effect.timeout("2 seconds"),
      Effect.catchAllCause((cause) => {
        nextTry = Date.now() + RETRY_MILLIS
        return Effect.logWarning(
          `DurableQueue: subscribing to Redis wake-ups failed; polling, trying again in ${RETRY_MILLIS / 1000} s`,
          cause
        )
      }),
      Scope.extend(scope)
    )
    return {
      ready: notified.await,
      arm: Effect.zipRight(
        Effect.suspend(() => subscribed || Date.now() < nextTry ? Effect.void : subscribe),
        notified.close
      )
    }
  })
