/**
 * A timeline of one drain's store calls on Redis (issue #16): when each lease and settlement was asked for, how many
 * jobs had been handled then, when its reply came and what it carried. It showed the lease of the next 256 and the
 * run of the last 256 alternating (each side idle while the other worked), then settlements falling behind once
 * leases overlapped the run. The store is built as redisStore.ts `make` builds it, its lease and settle wrapped.
 *
 *   npx tsx bench/_redis-trace.ts --jobs 10000 [--port 6379] [--concurrency 16]
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as core from "../src/internal/durableQueue/core.js"
import { queueSettings } from "../src/internal/durableQueue/options.js"
import { redisPort } from "../src/internal/durableQueue/redisEvents.js"
import { keysOf, makeStore } from "../src/internal/durableQueue/redisStore.js"
import * as RedisWake from "../src/internal/durableQueue/redisWake.js"
import type { Settle, Store } from "../src/internal/durableQueue/store.js"
import { connect, RedisClient } from "../src/internal/redis/client.js"
import * as RedisClientLayer from "../src/redis/RedisClient.js"
import { arg, batches, cleanup, counter, until } from "./_shared.js"

const JOBS = arg("jobs", 10_000)
const PORT = arg("port", 6379)
const CONCURRENCY = arg("concurrency", 16)
const schema = Schema.Struct({ n: Schema.Number })
const prefix = `trace-${randomUUID()}:`
const lines: Array<[number, string]> = []
let start = 0
let handled = 0
const now = () => performance.now() - start
const note = (at: number, text: string) => lines.push([at, `${at.toFixed(2)} ms  ${text}`])

const program = Effect.gen(function*() {
  const settings = yield* queueSettings({ name: "jobs", schema })
  const { options } = yield* RedisClient
  // As redisStore.ts `make`: auto-pipelined but for the lease.
  const redis = yield* connect({
    ...options,
    options: { ...options.options, enableAutoPipelining: true, autoPipeliningIgnoredCommands: ["ewDqLease"] }
  })
  const store = makeStore(redis, prefix, settings)
  const wake = yield* RedisWake.make(options, keysOf(prefix, settings.name).wake)
  const traced: Store = {
    ...store,
    ready: wake.ready,
    lease: (max) =>
      Effect.suspend(() => {
        const at = now()
        const before = handled
        return Effect.tap(
          Effect.zipRight(wake.arm, store.lease(max)),
          (jobs) => note(at, `lease ${max} (handled ${before}) -> ${now().toFixed(2)} got ${jobs.length}`)
        )
      }),
    settle: (batch: ReadonlyArray<Settle>) =>
      Effect.suspend(() => {
        const at = now()
        const before = handled
        return Effect.tap(
          store.settle(batch),
          () => note(at, `settle ${batch.length} (handled ${before}) -> ${now().toFixed(2)}`)
        )
      })
  }
  const queue = yield* core.make(traced, settings, schema, redisPort(redis, options, `${prefix}{jobs}:`, "jobs"))
  for (const batch of batches(JOBS, 1_000)) yield* queue.offerAll(batch.map((n) => ({ value: { n } })))
  const all = counter(JOBS)
  start = performance.now()
  const fiber = Effect.runFork(queue.run(() =>
    Effect.sync(() => {
      handled++
      all.hit()
    }), { concurrency: CONCURRENCY }))
  yield* Effect.promise(() => all.all)
  note(now(), "all handled")
  yield* Effect.promise(() => until(async () => (await Effect.runPromise(queue.size)) === 0))
  note(now(), "size 0")
  yield* Fiber.interrupt(fiber)
})

await Effect.runPromise(
  program.pipe(Effect.scoped, Effect.provide(RedisClientLayer.layer({ url: `redis://127.0.0.1:${PORT}` })))
)
const raw = new Redis({ port: PORT })
await cleanup(raw, `${prefix}*`)
raw.disconnect()
console.log(lines.sort((a, b) => a[0] - b[0]).map(([, text]) => text).join("\n"))
process.exit(0)
