/**
 * What an idle `run` costs this process (issue #16, branch pgcpu): a queue with no job left, `run` at concurrency 16
 * with a no-op handler, this process's CPU (`process.cpuUsage`) over `--seconds` after 1 s of settling, printed as µs
 * per ms of wall time; and, for reference, the same process doing nothing (`--store none`). A cost per second weighs
 * per job in inverse proportion to the drain's rate (3-4x more at PostgreSQL's 4-5k jobs/s than at Redis' 18k).
 *
 *   npx tsx bench/_idle-cpu.ts --store pg|redis|sqlite|none [--seconds 5]
 */
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { mkdtempSync } from "node:fs"
import * as os from "node:os"
import { join } from "node:path"
import * as RedisClient from "../src/redis/RedisClient.js"
import { benchQueue } from "./_benchQueue.js"
import { arg } from "./_shared.js"

const store = process.argv[process.argv.indexOf("--store") + 1] ?? "redis"
const SECONDS = arg("seconds", 5)

const program = Effect.gen(function*() {
  if (store !== "none") {
    const queue = yield* benchQueue(store, "idle", Schema.Struct({ n: Schema.Number }))
    yield* Effect.forkScoped(queue.run(() => Effect.void, { concurrency: 16 }))
  }
  yield* Effect.sleep(1_000)
  const cpu = process.cpuUsage()
  yield* Effect.sleep(SECONDS * 1_000)
  const used = process.cpuUsage(cpu)
  console.log(
    `${store}, idle run (concurrency 16): ${
      ((used.user + used.system) / (SECONDS * 1_000)).toFixed(1)
    } µs CPU per ms, load ${os.loadavg()[0]!.toFixed(1)}`
  )
})

const layer: Layer.Layer<SqlClient.SqlClient | RedisClient.RedisClient, unknown> = (store === "redis"
  ? RedisClient.layer()
  : store === "pg"
  ? PgClient.layer({ host: "127.0.0.1", port: 5432, database: "test", username: "postgres" })
  : store === "sqlite"
  ? SqliteClient.layer({ filename: join(mkdtempSync(join(os.tmpdir(), "idle-")), "q.db") })
  : Layer.empty) as unknown as Layer.Layer<SqlClient.SqlClient | RedisClient.RedisClient, unknown>

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(layer))).then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
