/**
 * What a dashboard costs the queue it watches (issue #15): ours on one Redis (127.0.0.1:6379) alone, against ours
 * with a dashboard attached and one Server-Sent Events client connected for the whole round (bench/_dashboard.ts),
 * rounds interleaved, medians and the ratio printed. Not part of `npm run bench`'s peer comparisons: the peers are
 * in bench/distributed.ts.
 *
 *   npx tsx bench/dashboard.ts [--jobs 10000] [--rounds 5]
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as os from "node:os"
import * as DurableQueue from "../src/redis/DurableQueue.js"
import * as RedisClient from "../src/redis/RedisClient.js"
import { attachDashboard } from "./_dashboard.js"
import { arg, cleanup, median, queueRound, type Round } from "./_shared.js"

const JOBS = arg("jobs", 10_000)
const ROUNDS = arg("rounds", 5)
const CONCURRENCY = 16

const ours = (raw: Redis, dashboard: boolean): Promise<Round> => {
  const prefix = `bench-dash-${randomUUID()}:`
  return Effect.gen(function*() {
    const queue = yield* DurableQueue.make({ name: "jobs", prefix, schema: Schema.Struct({ n: Schema.Number }) })
    if (dashboard) yield* attachDashboard(queue)
    return yield* queueRound(
      JOBS,
      CONCURRENCY,
      queue.offer,
      (handler) => Effect.forkScoped(queue.run(handler, { concurrency: CONCURRENCY }))
    )
  }).pipe(
    Effect.scoped,
    Effect.provide(RedisClient.layer()),
    Effect.ensuring(Effect.promise(() => cleanup(raw, `${prefix}*`))),
    Effect.runPromise
  )
}

const main = async () => {
  const raw = new Redis({ host: "127.0.0.1", port: 6379 })
  const fmt = (x: number) => Math.round(x).toLocaleString("en-US")
  console.log(
    `Dashboard cost: ${
      JOBS.toLocaleString("en-US")
    } jobs, concurrency ${CONCURRENCY}, median of ${ROUNDS} interleaved rounds`
  )
  console.log(`node ${process.version}, ${os.cpus().length} CPUs (nproc), load ${os.loadavg()[0]!.toFixed(1)}`)
  const rounds: Record<"alone" | "watched", Array<Round>> = { alone: [], watched: [] }
  for (let r = 0; r < ROUNDS; r++) {
    rounds.alone.push(await ours(raw, false))
    rounds.watched.push(await ours(raw, true))
  }
  console.log("\n| DurableQueue (Redis) | add jobs/s | process jobs/s | rounds (process) |")
  console.log("|---|---:|---:|---|")
  for (const [label, xs] of [["alone", rounds.alone], ["dashboard + 1 SSE client", rounds.watched]] as const) {
    console.log(
      `| ${label} | ${fmt(median(xs.map((x) => x.add)))} | ${fmt(median(xs.map((x) => x.process)))} | ${
        xs.map((x) => fmt(x.process)).join(", ")
      } |`
    )
  }
  const ratio = median(rounds.watched.map((x) => x.process)) / median(rounds.alone.map((x) => x.process))
  console.log(`\nwith dashboard / alone: process ${ratio.toFixed(2)}x`)
  await raw.quit()
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
