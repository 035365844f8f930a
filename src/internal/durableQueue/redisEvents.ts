/**
 * The event port of the Redis `DurableQueue`: events go out on the pub/sub channel `<prefix>{<escaped name>}:events`
 * (one PUBLISH per batch, its events joined by newlines, which JSON text never holds unescaped), on the store's
 * auto-pipelined connection; each `events` stream listens on a subscriber connection of its own (a connection in
 * subscriber mode can run no other command), opened when the stream starts and closed when it ends. Schedule marks
 * are the members of the set `<prefix>{<escaped name>}:unscheduled`.
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { Redis } from "ioredis"
import type * as RedisClientModule from "../../redis/RedisClient.js"
import { connect } from "../redis/client.js"
import { type EventPort, REMOTE_SPACING_MILLIS } from "./events.js"

/** @internal */
export const redisPort = (
  redis: Redis,
  clientOptions: RedisClientModule.RedisClient.Options,
  /** The queue's key base, `<prefix>{<escaped name>}:` (redisStore.ts). */
  base: string,
  name: string
): EventPort => {
  const channel = `${base}events`
  const unscheduled = `${base}unscheduled`
  return {
    bus: {
      publish: (events) =>
        Effect.tryPromise(() => redis.publish(channel, events.join("\n"))).pipe(
          Effect.catchAll((error) =>
            Effect.logWarning(
              `DurableQueue ${name}: publishing ${events.length} job event(s) failed; they are lost`,
              error
            )
          ),
          Effect.asVoid
        ),
      subscribe: Stream.asyncScoped<string, unknown>((emit) =>
        Effect.gen(function*() {
          const subscriber = yield* connect(clientOptions)
          subscriber.on("message", (from: string, message: string) => {
            if (from === channel) void emit.chunk(chunkOf(message.split("\n")))
          })
          yield* Effect.tryPromise(() => subscriber.subscribe(channel))
          // "unbounded": drained at once into `subscribe`'s bounded buffer (events.ts).
        }), "unbounded"),
      spacingMillis: REMOTE_SPACING_MILLIS,
      // One command per batch (every 10 ms at most). PUBSUB takes channels, which ioredis does not prefix with a
      // client keyPrefix, as SUBSCRIBE does not. If it fails, the batch is published (a lost event is worse).
      audience: Effect.tryPromise(() => redis.pubsub("NUMSUB", channel)).pipe(
        Effect.map((reply) => Number((reply as Array<unknown>)[1]) !== 0),
        Effect.orElseSucceed(() => true)
      )
    },
    marks: {
      mark: (id) => Effect.tryPromise(() => redis.sadd(unscheduled, id)),
      clear: (id) => Effect.tryPromise(() => redis.srem(unscheduled, id)),
      isMarked: (id) => Effect.map(Effect.tryPromise(() => redis.sismember(unscheduled, id)), (n) => n === 1)
    }
  }
}

const chunkOf = <A>(items: ReadonlyArray<A>): Chunk.Chunk<A> => Chunk.unsafeFromArray(items as Array<A>)
