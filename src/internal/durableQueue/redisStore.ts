/**
 * The Redis store of `DurableQueue`: each port operation is one Lua script call (redisScripts.ts) on a connection of
 * its own with auto-pipelining (but for the lease, see `make`), so the settlements and offers issued in one tick
 * travel in one round trip. Every rule is in core.ts.
 *
 * Keys are namespaced so that no two queue names collide: `<prefix>{<name>}:<suffix>`, where `<name>` is escaped
 * (every character but `A–Z a–z 0–9 _ . -` becomes `%` and four hex digits of its UTF-16 code unit), so it holds no
 * `}`, `:` or `%` of its own and cannot end early or fake a suffix; the suffixes are a fixed set. (Before, queue
 * "x:dead" was queue "x"'s dead-letter list.) The braces also keep one queue's keys in one Redis Cluster slot, as
 * the scripts need.
 *
 * Not `@effect/experimental`'s `PersistedQueue` (neither its Redis store nor its factory): its store 0.61 loses and
 * duplicates jobs (its reset script walks `HGETALL`'s flat reply with `pairs`; its failed script declares two keys
 * and uses three), its port has no dead letters, refresh or batch settlement, and its `take` opens a Scope per job.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Redis } from "ioredis"
import { OptionError } from "../../OptionError.js"
import type * as RedisDurableQueue from "../../redis/DurableQueue.js"
import type * as RedisClientModule from "../../redis/RedisClient.js"
import { connect, defineScript, RedisClient } from "../redis/client.js"
import * as core from "./core.js"
import { type QueueSettings, queueSettings } from "./options.js"
import { redisPort } from "./redisEvents.js"
import * as scripts from "./redisScripts.js"
import type { KeyName } from "./redisScripts.js"
import * as RedisWake from "./redisWake.js"
import type { LeasedJob, OfferedJob, Settle, Store, StoredJob, StoredState, StoredStatus } from "./store.js"

/** The escaped name segment: no `}`, `:` or `%` but its own escapes, so distinct names give distinct keys. @internal */
export const escapeName = (name: string): string =>
  name.replace(/[^A-Za-z0-9_.-]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(4, "0")}`)

/** The keys of queue `name` under `prefix` (the layout is described in redisScripts.ts). @internal */
export const keysOf = (prefix: string, name: string): { readonly [K in KeyName]: string } => {
  const base = `${prefix}{${escapeName(name)}}:`
  return Object.fromEntries(scripts.keyNames.map((key) => [key, `${base}${key}`])) as {
    readonly [K in KeyName]: string
  }
}

/**
 * Settlements per script call at most: 4 leases' worth, so that a settlement call keeps up while a lease is always
 * out (`leaseWhileRunning`); ~5 ms of Redis at ~4 µs a job, as an offer call of 1,000 (`MAX_COALESCED`).
 */
const SETTLE_BATCH = 1_024

/** Jobs leased per script call: a run leases up to 4 × its concurrency ahead (core.ts); 256 keeps one call near 1 ms. */
const MAX_BATCH = 256

/**
 * The settle script's arguments for a batch (see the script): per settlement an id, a spec "<kind> <attempts>
 * <number>", and a text for the kinds with one; a run of plain acknowledgements with one time to live is a single
 * argument, its ids joined by NUL (no id holds one: encoding.ts `badId`), and "s 0 <ttl>". ioredis frames and
 * measures each argument: two a job were ~0.85 µs of the Redis consumer's CPU per job (bench/_profile.ts, 100,000 jobs, issue
 * #16), and 62 bytes a job written against 37. Only consecutive acknowledgements are packed, so the script still
 * settles an id given twice by its first settlement.
 */
const settleArgs = (token: string, recordTtl: number, batch: ReadonlyArray<Settle>): Array<string> => {
  const args: Array<string> = [token, String(recordTtl)]
  let run: Array<string> = []
  let runTtl = NaN
  const flush = () => {
    if (run.length === 0) return
    args.push(run.join("\u0000"), `s 0 ${millis(runTtl)}`)
    run = []
  }
  for (const { job, settlement } of batch) {
    if (settlement._tag === "Ack" && settlement.result === undefined) {
      if (settlement.resultTtlMillis !== runTtl) {
        flush()
        runTtl = settlement.resultTtlMillis
      }
      run.push(job.id)
      continue
    }
    flush()
    runTtl = NaN
    switch (settlement._tag) {
      case "Ack":
        args.push(job.id, `A 0 ${millis(settlement.resultTtlMillis)}`, settlement.result!)
        break
      case "Release":
        args.push(job.id, `b ${count(settlement.attempts)} 0`)
        break
      case "Retry":
        args.push(job.id, `r ${count(settlement.attempts)} ${millis(settlement.delayMillis)}`, settlement.lastError)
        break
      case "Dead":
        args.push(job.id, `d ${count(settlement.attempts)} 0`, settlement.lastError)
        break
      case "Cancelled":
        args.push(job.id, `c ${count(settlement.attempts)} 0`)
        break
    }
  }
  flush()
  return args
}

/** Attempts as the settle script's spec holds them (digits only): the core counts them, this keeps a NaN out. */
const count = (n: number): number => Number.isFinite(n) ? Math.max(0, Math.trunc(n)) : 0

/**
 * A whole number of milliseconds from 0 to 10^15 (31,000 years; Infinity is that): what the scripts add to Redis's
 * clock, exactly (under 2^53). The core validated it; this only keeps a NaN from reaching Lua, where it would stop
 * a script half-way (Redis does not roll one back).
 */
const millis = (n: number): number => Number.isNaN(n) ? 0 : Math.min(1e15, Math.max(0, Math.ceil(n)))

/** An integer priority (the core validated its range), for the same reason. */
const priority = (n: number): number => Number.isFinite(n) ? Math.trunc(n) : 0

const text = (reply: unknown): string | undefined => reply === null || reply === undefined ? undefined : String(reply)

const states: ReadonlyArray<StoredState> = ["waiting", "delayed", "running", "done", "dead", "cancelled"]

const parseStatus = (reply: unknown): StoredStatus | undefined => {
  if (!Array.isArray(reply)) return undefined
  const state = String(reply[0]) as StoredState
  if (!states.includes(state)) throw new Error(`DurableQueue: unknown state ${state} in Redis`)
  return {
    state,
    attempts: Number(reply[1]),
    progress: text(reply[2]),
    lastError: text(reply[3]),
    result: text(reply[4])
  }
}

/** The third argument of a job in the offer script: "" for the common job, else its fields (see the script). */
const offerSpec = (job: OfferedJob): string => {
  const delay = millis(job.delayMillis)
  const rank = priority(job.priority)
  return !job.custom && delay === 0 && rank === 0 && job.options === undefined
    ? ""
    : `${job.custom ? 1 : 0} ${delay} ${rank} ${job.options ?? ""}`
}

/** The offer script's arguments: a loop, not `flatMap`'s array of three per job. */
const offerArgs = (jobs: ReadonlyArray<OfferedJob>): Array<string> => {
  const args: Array<string> = []
  for (const job of jobs) args.push(job.id, job.payload, offerSpec(job))
  return args
}

/**
 * Single offers sent in one script call at most (the rest wait for the next). A script call holds Redis for all its
 * jobs (scripts are atomic: no other client is served meanwhile): at ~4.9 µs of Redis CPU per common offer (see
 * redisScripts.ts) 1,000 is ~5 ms, the order of the other scripts' bounds (1,000 expired leases, due jobs or dead
 * letters per call), and 3,000 arguments a call. Gathering more saves little: the call's fixed work (the 12 keys,
 * its clock, the wake-up, the subscriber count) is already shared by 1,000.
 */
const MAX_COALESCED = 1_000

interface Gathered {
  readonly job: OfferedJob
  readonly resume: (effect: Effect.Effect<unknown, unknown>) => void
  /** Its caller was interrupted before the job was sent: it is not sent. */
  dropped: boolean
}

/**
 * Single offers (`offer`) of concurrent callers: sent at once while no call of them is out, else gathered and sent
 * as ONE script call when it returns (their order kept; the script keeps the first of a repeated id, as calls in
 * that order would). Each call repeats the queue's 12 keys and runs the script's fixed work (its clock, the wake-up,
 * the subscriber count): an offer a call cost 44-77 µs of CPU at 16 in flight. Every caller gets its call's reply.
 * A caller interrupted while its job waits here drops it (it is never written); once sent, it may be written, as a
 * command already sent would be.
 */
const coalesce = (
  send: (jobs: ReadonlyArray<OfferedJob>) => Promise<unknown>
): (job: OfferedJob) => Effect.Effect<unknown, unknown> => {
  let pending: Array<Gathered> = []
  let out = false
  const flush = (): void => {
    // Up to MAX_COALESCED jobs not dropped; dropped ones are skipped (marked, not spliced out: O(1) per interrupt).
    const batch: Array<Gathered> = []
    let taken = 0
    while (taken < pending.length && batch.length < MAX_COALESCED) {
      const waiting = pending[taken++]!
      if (!waiting.dropped) batch.push(waiting)
    }
    pending = taken === pending.length ? [] : pending.slice(taken)
    if (batch.length === 0) return
    out = true
    const settle = (effect: Effect.Effect<unknown, unknown>) => {
      for (const waiting of batch) waiting.resume(effect)
      out = false
      if (pending.length > 0) flush()
    }
    let sent: Promise<unknown>
    try {
      sent = send(batch.map((waiting) => waiting.job))
    } catch (error) {
      sent = Promise.reject(error)
    }
    sent.then((reply) => settle(Effect.succeed(reply)), (error) => settle(Effect.fail(error)))
  }
  return (job) =>
    Effect.async((resume) => {
      const entry: Gathered = { job, resume, dropped: false }
      pending.push(entry)
      if (!out) flush()
      // Still gathered (not sent): dropped. Sent already: in `batch`, not `pending`, so this changes nothing.
      return Effect.sync(() => {
        entry.dropped = true
      })
    })
}

/** @internal */
export const makeStore = (redis: Redis, prefix: string, settings: QueueSettings): Store => {
  const k = keysOf(prefix, settings.name)
  const token = globalThis.crypto.randomUUID()
  // How long a cancelled job's record is kept: as a done one's (the queue's resultTimeToLive).
  const recordTtl = millis(settings.resultTtlMillis)
  // The lease script writes its deadline with string.format('%d') (a C long): leaseDuration has no upper bound,
  // and one past 2^63 ms came out negative (the job free to lease again at once). 10^15 ms is 31,000 years.
  const leaseMillis = millis(settings.leaseMillis)
  // A script's keys, then its arguments, then its channels (popped off ARGV's end by the script, see redisScripts.ts).
  // The arguments as an array: an offer of 12,000 jobs has 36,000, and each spread of them more on the way to
  // ioredis overflowed the call stack.
  const command = (name: string, { channels, keys, lua }: scripts.Script) => {
    const run = defineScript(redis, name, lua, keys.length)
    const keyArgs = keys.map((key) => k[key])
    const channelArgs = channels.map((channel) => k[channel])
    // The arguments go as ONE array (ioredis flattens a command's arguments one level): spread, an offerAll of
    // 20,000 jobs (60,000 arguments) overflowed the call stack ("Maximum call stack size exceeded").
    return (args: ReadonlyArray<string | number>) => run(...keyArgs, args, ...channelArgs)
  }
  const call = (name: string, script: scripts.Script) => {
    const run = command(name, script)
    return (...args: Array<string | number>) => Effect.tryPromise(() => run(args))
  }
  const offerCommand = command("ewDqOffer", scripts.offer)
  const single = coalesce((jobs) => offerCommand(offerArgs(jobs)))
  const lease = call("ewDqLease", scripts.lease)
  const refresh = call("ewDqRefresh", scripts.refresh)
  const settle = call("ewDqSettle", scripts.settle)
  const cancel = call("ewDqCancel", scripts.cancel)
  const progress = call("ewDqProgress", scripts.progress)
  const status = call("ewDqStatus", scripts.status)
  const counts = call("ewDqCounts", scripts.counts)
  const size = call("ewDqSize", scripts.size)
  const deadLetters = call("ewDqDeadLetters", scripts.deadLetters)
  const requeue = call("ewDqRequeue", scripts.requeue)
  const requeueAll = call("ewDqRequeueAll", scripts.requeueAll)
  const purge = call("ewDqPurge", scripts.purge)
  const nextDue = call("ewDqNextDue", scripts.nextDue)
  const jobs = call("ewDqJobs", scripts.jobs)

  // Each call requeues up to 1,000 (one short script); the bound, fixed by the first, lets the loop end.
  const requeueAllFrom = (bound: string, total: number): Effect.Effect<number, unknown> =>
    Effect.flatMap(requeueAll(bound), (reply) => {
      const [n, next] = reply as [number, string]
      return n < 1_000 ? Effect.succeed(total + n) : requeueAllFrom(String(next), total + n)
    })

  return {
    backend: "redis",
    maxBatch: MAX_BATCH,
    // A run whose takers wait for its leases doubles them up to 256 (core.ts `Feed.adapt`), as on SQL: each call
    // costs a fixed 70–190 µs of this process's CPU, and a run of concurrency 16 sized by its hand-out rate alone
    // leased 64–214 at a time through the first 2,000 jobs of a 5,000-job drain at load 17 (bench/_redis-trace.ts).
    leaseBatch: MAX_BATCH,
    // The lease script is left out of the connection's auto-pipelining (`make`): written at the call.
    leaseWhileRunning: true,
    settleBatch: SETTLE_BATCH,
    wakeSpacingMillis: 0,
    ready: Effect.never,
    // The script's reply: how many subscribe to the queue's events (see the script).
    offer: (jobs: ReadonlyArray<OfferedJob>) =>
      Effect.map(
        jobs.length === 1 ? single(jobs[0]!) : Effect.tryPromise(() => offerCommand(offerArgs(jobs))),
        (subscribers) => subscribers !== 0
      ),
    lease: (max) =>
      Effect.map(lease(token, leaseMillis, max, recordTtl), (reply) => {
        const flat = reply as Array<string | number | null>
        const out: Array<LeasedJob> = []
        for (let i = 0; i < flat.length; i += 4) {
          out.push({
            id: String(flat[i]),
            payload: String(flat[i + 1]),
            attempts: Number(flat[i + 2]),
            handle: null,
            options: text(flat[i + 3])
          })
        }
        return out
      }),
    refresh: (jobs: ReadonlyArray<LeasedJob>) =>
      Effect.map(
        refresh(token, settings.leaseMillis, ...jobs.map((job) => job.id)),
        (reply) => (reply as Array<string>).map(String)
      ),
    settle: (batch: ReadonlyArray<Settle>) => Effect.asVoid(settle(...settleArgs(token, recordTtl, batch))),
    cancel: (id) => Effect.map(cancel(id, recordTtl), (reply) => String(reply) as "cancelled" | "asked" | "none"),
    progress: (job, json) => Effect.asVoid(progress(token, job.id, json)),
    status: (id) => Effect.flatMap(status(id), (reply) => Effect.try(() => parseStatus(reply))),
    // Resuming wakes idle takers of every process (the jobs they skipped while paused are ready).
    setPaused: (paused) =>
      Effect.asVoid(
        Effect.tryPromise((): Promise<unknown> =>
          paused ? redis.set(k.paused, "1") : redis.multi().del(k.paused).publish(k.wake, "1").exec()
        )
      ),
    counts: Effect.map(counts(), (reply) => {
      const [waiting, delayed, running, dead, paused, done, oldest] = (reply as Array<number>).map(Number) as [
        number,
        number,
        number,
        number,
        number,
        number,
        number
      ]
      return {
        waiting,
        delayed,
        running,
        dead,
        paused: paused === 1,
        done,
        oldestWaitingMillis: oldest < 0 ? undefined : oldest
      }
    }),
    requeueAll: requeueAllFrom("", 0),
    size: Effect.map(size(), Number),
    deadLetters: Effect.map(deadLetters(), (reply) => {
      const flat = reply as Array<string>
      const out = []
      for (let i = 0; i < flat.length; i += 4) {
        out.push({ id: flat[i]!, payload: flat[i + 1]!, attempts: Number(flat[i + 2]), lastError: flat[i + 3]! })
      }
      return out
    }),
    requeue: (id) => Effect.map(requeue(id), (n) => Number(n) === 1),
    purge: Effect.map(purge(), Number),
    nextDueMillis: Effect.map(nextDue(), (reply) => reply === null ? undefined : Number(reply)),
    jobs: (state, limit, offset) =>
      Effect.map(jobs(state, limit, offset), (reply) => {
        const flat = reply as Array<string | number | null>
        const out: Array<StoredJob> = []
        for (let i = 0; i < flat.length; i += 6) {
          out.push({
            id: String(flat[i]),
            payload: text(flat[i + 1]),
            attempts: Number(flat[i + 2]),
            progress: text(flat[i + 3]),
            lastError: text(flat[i + 4]),
            ageMillis: flat[i + 5] === null ? undefined : Number(flat[i + 5])
          })
        }
        return out
      })
  }
}

/**
 * The store `make` runs the core over: a connection of its own with auto-pipelining (the settlements and other calls
 * issued in one tick travel in one round trip) and the wake-ups of idle takers (redisWake.ts). Not the lease:
 * auto-pipelined commands wait for the tick's end (setImmediate), and a run's tick is its takers running a whole
 * buffer of jobs, so the next lease left with the last settlement and Redis idled meanwhile; written at the call,
 * it is leased while the buffer runs (`leaseWhileRunning`, core.ts `Feed`).
 * @internal exported for test/redis/DurableQueue.wake.test.ts
 */
export const wakingStore = (
  clientOptions: RedisClientModule.RedisClient.Options,
  prefix: string,
  settings: QueueSettings
): Effect.Effect<{ readonly redis: Redis; readonly store: Store }, never, Scope.Scope> =>
  Effect.gen(function*() {
    const redis = yield* connect({
      ...clientOptions,
      options: {
        ...clientOptions.options,
        enableAutoPipelining: true,
        autoPipeliningIgnoredCommands: [...(clientOptions.options?.autoPipeliningIgnoredCommands ?? []), "ewDqLease"]
      }
    }).pipe(Effect.orDie)
    const store = makeStore(redis, prefix, settings)
    const wake = yield* RedisWake.make(clientOptions, keysOf(prefix, settings.name).wake)
    return {
      redis,
      store: {
        ...store,
        ready: wake.ready,
        lease: (max) => Effect.zipRight(wake.arm, store.lease(max)),
        hearing: wake.hearing
      }
    }
  })

/** @internal */
export const make = <A, I>(
  options: RedisDurableQueue.Options<A, I>
): Effect.Effect<RedisDurableQueue.DurableQueue<A>, OptionError, RedisClient | Scope.Scope> =>
  Effect.gen(function*() {
    const settings = yield* queueSettings(options)
    const prefix = options.prefix ?? "effect-workers:queue:"
    if (typeof prefix !== "string") {
      return yield* new OptionError({ module: "DurableQueue", field: "prefix", value: prefix, expected: "a string" })
    }
    const { options: clientOptions } = yield* RedisClient
    const { redis, store } = yield* wakingStore(clientOptions, prefix, settings)
    return yield* core.make(
      store,
      settings,
      options.schema,
      redisPort(redis, clientOptions, `${prefix}{${escapeName(settings.name)}}:`, settings.name)
    )
  })
