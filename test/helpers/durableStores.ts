/**
 * The four `DurableQueue` stores for the contract suite (test/helpers/durableContract.ts, run by
 * test/DurableQueue.contract.<store>.test.ts) and its fixture (test/fixtures/durable-contract.ts): each runs a test body in a fresh namespace (a Redis key prefix, a
 * PostgreSQL table, a SQLite file) with a `make` that builds queues there exactly as production does (the public
 * constructor; for memory the core over one `MemoryStore` per name, so two instances of a name share jobs as on a
 * real store), and a `rawStore` that is a second lease holder on the same queue with no core: what a runner that
 * leases a job and dies leaves behind.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { expect } from "@effect/vitest"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as DurableQueue from "../../src/DurableQueue.js"
import { Backoff } from "../../src/DurableQueue.js"
import * as core from "../../src/internal/durableQueue/core.js"
import { MemoryStore } from "../../src/internal/durableQueue/memoryStore.js"
import { type QueueSettings, queueSettings } from "../../src/internal/durableQueue/options.js"
import * as RedisStore from "../../src/internal/durableQueue/redisStore.js"
import * as SqlStore from "../../src/internal/durableQueue/sqlStore.js"
import type { LeasedJob, Store } from "../../src/internal/durableQueue/store.js"
import { connect } from "../../src/internal/redis/client.js"
import type { OptionError } from "../../src/OptionError.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import { type Backend, clientLayer, withTable } from "../fixtures/sql-client.js"
import { withRedisPrefix } from "./redis.js"

export type StoreKind = "memory" | "redis" | "pg" | "sqlite"

export interface Env {
  readonly kind: StoreKind
  readonly make: <A, I>(
    options: DurableQueue.Options<A, I>
  ) => Effect.Effect<DurableQueue.DurableQueue<A>, OptionError | DurableQueue.DurableQueueError, Scope.Scope>
  readonly rawStore: (settings: QueueSettings) => Effect.Effect<Store, unknown, Scope.Scope>
  /** The argv that points test/fixtures/durable-contract.ts at this namespace (none for memory: no process shares it). */
  readonly fixtureArgs: ReadonlyArray<string> | undefined
}

/** Queues of namespace `target` on `kind` in a context already built (`clients`). */
export const envOf = (
  kind: Exclude<StoreKind, "memory">,
  target: string,
  clients: Context.Context<never>,
  file?: string
): Env => ({
  kind,
  make: <A, I>(options: DurableQueue.Options<A, I>) => {
    const made: Effect.Effect<
      DurableQueue.DurableQueue<A>,
      OptionError | DurableQueue.DurableQueueError,
      Scope.Scope | RedisClient.RedisClient | SqlClient.SqlClient
    > = kind === "redis"
      ? RedisStore.make({ ...options, prefix: target })
      : SqlStore.make({ ...options, tableName: target })
    return Effect.provide(made, clients as Context.Context<RedisClient.RedisClient | SqlClient.SqlClient>)
  },
  rawStore: (settings) =>
    kind === "redis"
      ? Effect.map(connect({}), (redis) => RedisStore.makeStore(redis, target, settings))
      : SqlStore.makeStore(settings, { tableName: target, notify: true }).pipe(
        Effect.provide(clients as Context.Context<SqlClient.SqlClient>)
      ),
  fixtureArgs: kind === "sqlite" ? [kind, target, file!] : [kind, target, "-"]
})

const memoryEnv = (): Env => {
  const stores = new Map<string, MemoryStore>()
  const storeOf = (settings: QueueSettings) => {
    const store = stores.get(settings.name) ?? new MemoryStore(settings.leaseMillis)
    stores.set(settings.name, store)
    return store
  }
  return {
    kind: "memory",
    make: (options) =>
      Effect.flatMap(queueSettings(options), (settings) => core.make(storeOf(settings), settings, options.schema)),
    rawStore: (settings) => Effect.succeed(storeOf(settings)),
    fixtureArgs: undefined
  }
}

/** Runs `f` in a fresh namespace of `kind`, everything it made closed and removed afterwards. */
export const withStore = <A, E>(
  kind: StoreKind,
  f: (env: Env) => Effect.Effect<A, E, Scope.Scope>
): Effect.Effect<A, unknown> => {
  if (kind === "memory") return Effect.scoped(f(memoryEnv()))
  if (kind === "redis") {
    return withRedisPrefix(
      "dqc",
      (prefix) =>
        Effect.scoped(Effect.flatMap(Layer.build(RedisClient.layer()), (clients) => f(envOf("redis", prefix, clients))))
    )
  }
  return withTable(
    kind as Backend,
    "dqc",
    (table, file) =>
      Effect.scoped(
        Effect.flatMap(
          Layer.build(clientLayer(kind as Backend, file)),
          (clients) => f(envOf(kind, table, clients, file))
        )
      )
  )
}

/** The client context of a fixture process: argv as `Env.fixtureArgs`. */
export const fixtureEnv = (argv: ReadonlyArray<string>): Effect.Effect<Env, unknown, Scope.Scope> => {
  const [kind, target, file] = argv as [Exclude<StoreKind, "memory">, string, string]
  const layer = kind === "redis" ? RedisClient.layer() : clientLayer(kind, kind === "sqlite" ? file : undefined)
  return Effect.map(
    Layer.build(layer as Layer.Layer<unknown, unknown>),
    (clients) => envOf(kind, target, clients as Context.Context<never>, file)
  )
}

/**
 * A queue of numbers on `env` as the contract and events cases use it: a 10 ms poll, a 2 s lease, `maxAttempts`, and
 * no backoff unless given (those cases are about attempts and order; backoff has its own cases).
 */
export const numberQueue = (env: Env, name: string, maxAttempts: number, backoff: Backoff = Backoff.none) =>
  env.make({
    name,
    schema: Schema.Number,
    maxAttempts,
    pollInterval: "10 millis",
    leaseDuration: "2 seconds",
    backoff
  })

/** Leases `id` through a raw store (a runner with no core) and never settles it: a runner that died running it. */
export const leaseAndDie = (env: Env, settings: Parameters<Env["rawStore"]>[0], id: string) =>
  Effect.gen(function*() {
    const store = yield* env.rawStore(settings)
    let got: ReadonlyArray<LeasedJob> = []
    for (let i = 0; i < 2_000 && !got.some((job) => job.id === id); i++) {
      got = yield* store.lease(1)
      if (got.length === 0) yield* Effect.sleep("10 millis")
    }
    expect(got.map((job) => job.id)).toEqual([id])
    return got[0]!
  })
