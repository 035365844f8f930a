/**
 * Runs a test body under a fresh Redis key prefix, with a raw connection for assertions; every key under the
 * prefix is deleted afterwards, so suites never see each other's keys.
 */
import * as Effect from "effect/Effect"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"

export const withRedisPrefix = <A, E, R>(
  label: string,
  f: (prefix: string, raw: Redis) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.acquireUseRelease(
    Effect.sync(() => ({ prefix: `test:${label}:${randomUUID()}:`, raw: new Redis() })),
    ({ prefix, raw }) => f(prefix, raw),
    ({ prefix, raw }) =>
      Effect.promise(async () => {
        const keys = await raw.keys(`${prefix}*`)
        if (keys.length > 0) await raw.del(...keys)
        await raw.quit()
      })
  )
