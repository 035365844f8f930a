/**
 * A timeline of one drain's store calls on PostgreSQL or SQLite (issue #16), as `_redis-trace.ts` does on Redis: when
 * each lease and settlement was asked for, how many jobs had been handled then, when its reply came and what it
 * carried, then a summary (calls, rows per call, the most in flight at once). It shows whether the lease of the next
 * batch overlaps the run of the last (`Store.leaseWhileRunning`) and whether settlements keep up. The store is built
 * as sqlStore.ts `make` builds it, its lease and settle wrapped.
 *
 *   npx tsx bench/_sql-trace.ts --store pg|sqlite --jobs 10000 [--concurrency 16] [--lines]
 */
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { randomUUID } from "node:crypto"
import { mkdtempSync } from "node:fs"
import * as os from "node:os"
import { join } from "node:path"
import * as core from "../src/internal/durableQueue/core.js"
import { queueSettings } from "../src/internal/durableQueue/options.js"
import { sqlPort } from "../src/internal/durableQueue/sqlEvents.js"
import { makeStore } from "../src/internal/durableQueue/sqlStore.js"
import type { Settle, Store } from "../src/internal/durableQueue/store.js"
import { arg, batches, counter, dropSqlQueue, flag, until } from "./_shared.js"

const JOBS = arg("jobs", 10_000)
const CONCURRENCY = arg("concurrency", 16)
const kind = process.argv[process.argv.indexOf("--store") + 1] === "sqlite" ? "sqlite" : "pg"
const schema = Schema.Struct({ n: Schema.Number })
const tableName = `trace_${randomUUID().replace(/-/g, "").slice(0, 12)}`
const lines: Array<[number, string]> = []
let start = 0
let handled = 0
const now = () => performance.now() - start
const note = (at: number, text: string) => lines.push([at, `${at.toFixed(2)} ms  ${text}`])
const inFlight = { lease: 0, settle: 0, maxLease: 0, maxSettle: 0, both: 0 }
const sizes = { lease: [] as Array<number>, settle: [] as Array<number> }

const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* Effect.addFinalizer(() => dropSqlQueue(sql, tableName))
  const settings = yield* queueSettings({ name: "jobs", schema })
  const store = yield* makeStore(settings, { tableName, notify: true })
  const begin = (k: "lease" | "settle") => {
    inFlight[k]++
    if (k === "lease") inFlight.maxLease = Math.max(inFlight.maxLease, inFlight.lease)
    else inFlight.maxSettle = Math.max(inFlight.maxSettle, inFlight.settle)
    if (inFlight.lease > 0 && inFlight.settle > 0) inFlight.both++
  }
  const traced: Store = {
    ...store,
    lease: (max) =>
      Effect.suspend(() => {
        const at = now()
        const before = handled
        begin("lease")
        return Effect.tap(store.lease(max), (jobs) => {
          inFlight.lease--
          sizes.lease.push(jobs.length)
          note(at, `lease ${max} (handled ${before}) -> ${now().toFixed(2)} got ${jobs.length}`)
        })
      }),
    settle: (batch: ReadonlyArray<Settle>) =>
      Effect.suspend(() => {
        const at = now()
        const before = handled
        begin("settle")
        return Effect.tap(store.settle(batch), () => {
          inFlight.settle--
          sizes.settle.push(batch.length)
          note(at, `settle ${batch.length} (handled ${before}) -> ${now().toFixed(2)}`)
        })
      })
  }
  const queue = yield* core.make(traced, settings, schema, yield* sqlPort(settings.name, tableName, true))
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

const layer = (kind === "pg"
  ? PgClient.layer({ host: "127.0.0.1", port: 5432, database: "test", username: "postgres" })
  : SqliteClient.layer({
    filename: join(mkdtempSync(join(os.tmpdir(), "sqltrace-")), "q.db")
  })) as unknown as Layer.Layer<
    SqlClient.SqlClient,
    unknown
  >
await Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(layer)))
if (flag("lines")) console.log(lines.sort((a, b) => a[0] - b[0]).map(([, text]) => text).join("\n"))
const avg = (xs: ReadonlyArray<number>) => (xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)).toFixed(0)
console.log(
  `${kind}: ${sizes.lease.length} leases (avg ${avg(sizes.lease)} rows), ${sizes.settle.length} settlements (avg ${
    avg(sizes.settle)
  } rows); at most ${inFlight.maxLease} lease(s) and ${inFlight.maxSettle} settlement(s) in flight; a lease and a settlement both out at ${inFlight.both} call start(s); ${
    lines.find(([, t]) => t.includes("all handled"))?.[1]
  }`
)
process.exit(0)
