/**
 * The bulk offer path alone, for `node --cpu-prof`-style profiles: `--jobs` jobs offered with `offerAll` (`--batch` a
 * call, default 1,000, 4 calls in flight, as bench/distributed*.ts), `--rounds` times; prints jobs/s and this process's
 * CPU µs per job of each round (`process.cpuUsage`). `--store redis|pg|sqlite`; `--single`: `offer` one by one, 16 in
 * flight, instead. With `--profile <file>`, the last round alone is profiled (the inspector's CPU profiler) into
 * <file>; with `--heap`, the last round's allocations are sampled (objects collected by scavenges kept) and the top
 * allocating functions printed, in bytes per job.
 *
 *   npx tsx bench/_offer-cpu.ts --store redis --jobs 50000 --rounds 3 --profile /tmp/offer.cpuprofile
 *   node bench/_profile-summary.mjs /tmp/offer.cpuprofile
 */
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { mkdtempSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import * as os from "node:os"
import { join } from "node:path"
import * as RedisClient from "../src/redis/RedisClient.js"
import { benchQueue } from "./_benchQueue.js"
import { arg, batches, flag, pool, timed } from "./_shared.js"

const JOBS = arg("jobs", 50_000)
const ROUNDS = arg("rounds", 3)
const BATCH = arg("batch", 1_000)
const store = process.argv.includes("--store") ? process.argv[process.argv.indexOf("--store") + 1]! : "redis"
const profileTo = process.argv.includes("--profile") ? process.argv[process.argv.indexOf("--profile") + 1] : undefined
const heap = flag("heap")

interface HeapNode {
  readonly callFrame: {
    readonly functionName: string
    readonly url: string
    readonly lineNumber: number
    readonly columnNumber: number
  }
  readonly selfSize: number
  readonly children: ReadonlyArray<HeapNode>
}

/** Bytes allocated per job by function (self), the top 25, from a sampling heap profile. */
const printHeap = (root: HeapNode) => {
  const by = new Map<string, number>()
  const walk = (node: HeapNode) => {
    const { columnNumber, functionName, lineNumber, url } = node.callFrame
    // tsx's output is one line a file: the column places a function of src (bench/_profile-summary.mjs maps it back).
    const key = `${functionName || "(anonymous)"} ${
      url.replace(/^.*node_modules\//, "").replace(/^.*\/src\//, "src/")
    }:${lineNumber + 1}:${columnNumber + 1}`
    by.set(key, (by.get(key) ?? 0) + node.selfSize)
    node.children.forEach(walk)
  }
  walk(root)
  const total = [...by.values()].reduce((a, b) => a + b, 0)
  console.log(`heap: ${(total / JOBS).toFixed(0)} bytes allocated per job (sampled)`)
  for (const [key, bytes] of [...by].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
    console.log(`  ${(bytes / JOBS).toFixed(0).padStart(5)} B/job  ${key}`)
  }
}
const schema = Schema.Struct({ n: Schema.Number })

const round = (last: boolean) =>
  Effect.gen(function*() {
    const queue = yield* benchQueue(store, "offer-cpu", schema)
    const all = batches(JOBS, BATCH)
    const session = new Session()
    if (last && profileTo !== undefined) {
      session.connect()
      yield* Effect.promise(() => session.post("Profiler.enable"))
      yield* Effect.promise(() => session.post("Profiler.start"))
    }
    if (last && heap) {
      session.connect()
      yield* Effect.promise(() =>
        session.post("HeapProfiler.startSampling", {
          samplingInterval: 256,
          includeObjectsCollectedByMinorGC: true,
          includeObjectsCollectedByMajorGC: true
        })
      )
    }
    const sample = yield* Effect.promise(() =>
      flag("single")
        ? timed(
          JOBS,
          () => Effect.runPromise(Effect.forEach(all.flat(), (n) => queue.offer({ n }), { concurrency: 16 }))
        )
        : timed(
          JOBS,
          () => pool(all.length, 4, (b) => Effect.runPromise(queue.offerAll(all[b]!.map((n) => ({ value: { n } })))))
        )
    )
    if (last && profileTo !== undefined) {
      const { profile } = yield* Effect.promise(() => session.post("Profiler.stop"))
      writeFileSync(profileTo, JSON.stringify(profile))
    }
    if (last && heap) {
      const { profile } = yield* Effect.promise(() => session.post("HeapProfiler.stopSampling"))
      printHeap(profile.head as unknown as HeapNode)
    }
    console.log(
      `${store} ${flag("single") ? "offer" : `offerAll of ${BATCH}`}: ${Math.round(sample.rate)} jobs/s, ${
        sample.cpu.toFixed(1)
      } µs CPU per job, load ${os.loadavg()[0]!.toFixed(1)}`
    )
  }).pipe(Effect.scoped)

const program = Effect.gen(function*() {
  for (let r = 0; r < ROUNDS; r++) yield* round(r === ROUNDS - 1)
})

const layer: Layer.Layer<SqlClient.SqlClient | RedisClient.RedisClient, unknown> = store === "redis"
  ? RedisClient.layer() as unknown as Layer.Layer<SqlClient.SqlClient | RedisClient.RedisClient, unknown>
  : (store === "pg"
    ? PgClient.layer({ host: "127.0.0.1", port: 5432, database: "test", username: "postgres" })
    : SqliteClient.layer({
      filename: join(mkdtempSync(join(os.tmpdir(), "offer-cpu-")), "q.db")
    })) as unknown as Layer.Layer<SqlClient.SqlClient | RedisClient.RedisClient, unknown>

Effect.runPromise(program.pipe(Effect.provide(layer))).then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
