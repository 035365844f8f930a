/**
 * The queue of the one-store benches (`_profile.ts`, `_offer-cpu.ts`): a fresh Redis prefix or SQL table per call,
 * deleted (keys) or dropped (tables) when the scope closes. They were left before: session 7 found 739 tables
 * (2.9 GB) in the test database and 900 MB of Redis keys, which slowed the test suite run beside them.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import type * as Schema from "effect/Schema"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as RedisDurableQueue from "../src/redis/DurableQueue.js"
import * as SqlDurableQueue from "../src/sql/DurableQueue.js"
import { cleanup, dropSqlQueue } from "./_shared.js"

export const benchQueue = <A, I>(store: string, name: string, schema: Schema.Schema<A, I>) =>
  Effect.gen(function*() {
    const id = randomUUID()
    if (store === "redis") {
      const prefix = `${name}-${id}:`
      yield* Effect.addFinalizer(() =>
        Effect.promise(async () => {
          const raw = new Redis({ host: "127.0.0.1", port: 6379, lazyConnect: false })
          try {
            await cleanup(raw, `${prefix}*`)
          } finally {
            raw.disconnect()
          }
        })
      )
      return yield* RedisDurableQueue.make({ name: "jobs", prefix, schema })
    }
    const tableName = `${name.replace(/-/g, "_")}_${id.replace(/-/g, "").slice(0, 12)}`
    yield* Effect.addFinalizer(() => Effect.flatMap(SqlClient.SqlClient, (sql) => dropSqlQueue(sql, tableName)))
    return yield* SqlDurableQueue.make({ name: "jobs", tableName, schema })
  })
