/**
 * The Redis store alone, through its port (no core, no Effect fiber per job): what the store's own JavaScript,
 * ioredis and Redis cost per job (issue #16, the store side). Fills a queue with `--jobs` jobs (`offer`, 1,000 a
 * call), then `--loops` loops each lease `--batch` jobs and acknowledge them in one settlement, until the queue is
 * empty; prints jobs/s and this process's CPU µs per job of the drain (`process.cpuUsage`), repeated `--rounds`
 * times. Run it in two checkouts to compare (the port is the same).
 *
 *   npx tsx bench/_redis-store-cpu.ts [--jobs 30000] [--batch 64] [--loops 2] [--rounds 3] [--profile <file>]
 *
 * `--profile <file>`: the last round's drain alone, profiled (as bench/_profile.ts) into <file>.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import { writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import * as os from "node:os"
import { queueSettings } from "../src/internal/durableQueue/options.js"
import { makeStore } from "../src/internal/durableQueue/redisStore.js"
import type { OfferedJob } from "../src/internal/durableQueue/store.js"
import { arg, cleanup } from "./_shared.js"

const JOBS = arg("jobs", 30_000)
const BATCH = arg("batch", 64)
const LOOPS = arg("loops", 2)
const ROUNDS = arg("rounds", 3)

const profileTo = process.argv.includes("--profile") ? process.argv[process.argv.indexOf("--profile") + 1] : undefined

const round = async (profile: boolean) => {
  const prefix = `storecpu-${randomUUID()}:`
  const redis = new Redis({ host: "127.0.0.1", port: 6379, enableAutoPipelining: true })
  try {
    const settings = await Effect.runPromise(queueSettings({ name: "jobs", schema: Schema.Number }))
    const store = makeStore(redis, prefix, settings)
    for (let i = 0; i < JOBS; i += 1_000) {
      const jobs: Array<OfferedJob> = Array.from({ length: Math.min(1_000, JOBS - i) }, (_, k) => ({
        id: randomUUID(),
        payload: JSON.stringify({ n: i + k }),
        custom: false,
        delayMillis: 0,
        priority: 0,
        options: undefined
      }))
      await Effect.runPromise(store.offer(jobs))
    }
    let done = 0
    const loop = Effect.gen(function*() {
      while (true) {
        const leased = yield* store.lease(BATCH)
        if (leased.length === 0) return
        for (const job of leased) JSON.parse(job.payload)
        yield* store.settle(leased.map((job) => ({
          job,
          settlement: { _tag: "Ack", result: undefined, resultTtlMillis: settings.resultTtlMillis }
        })))
        done += leased.length
      }
    })
    const session = new Session()
    if (profile) {
      session.connect()
      await session.post("Profiler.enable")
      await session.post("Profiler.start")
    }
    const cpu = process.cpuUsage()
    const t = performance.now()
    await Effect.runPromise(Effect.all(Array.from({ length: LOOPS }, () => loop), { concurrency: "unbounded" }))
    const seconds = (performance.now() - t) / 1000
    const used = process.cpuUsage(cpu)
    if (profile) writeFileSync(profileTo!, JSON.stringify((await session.post("Profiler.stop")).profile))
    if (done !== JOBS) throw new Error(`drained ${done} of ${JOBS}`)
    console.log(
      `${Math.round(JOBS / seconds)} jobs/s, ${((used.user + used.system) / JOBS).toFixed(1)} µs CPU per job (system ${
        (used.system / JOBS).toFixed(1)
      }), load ${os.loadavg()[0]!.toFixed(1)}`
    )
    await cleanup(redis, `${prefix}*`)
  } finally {
    redis.disconnect()
  }
}

const main = async () => {
  for (let r = 0; r < ROUNDS; r++) await round(profileTo !== undefined && r === ROUNDS - 1)
}

main().then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
