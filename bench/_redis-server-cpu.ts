/**
 * Where a Redis job's time goes (issue #16): our node process's CPU per job AND the redis-server's, for ours (`run`,
 * no-op handler, default settings) and the distributed bench's FLOOR, rounds interleaved. On 2 cores the node
 * process and redis-server compete, so both count. Redis's CPU is `INFO cpu` (used_cpu_user + used_cpu_sys, the
 * whole server: run it against a private server, `--port`, when others use the shared one) and `INFO commandstats`
 * (calls and µs per job of each command, script calls and the commands inside them both counted) around the drain.
 *
 * The DurableQueue and Effect are loaded from the CURRENT DIRECTORY's src and node_modules, so one copy of this file
 * measures any checkout (bench/_ab.mjs runs the command in each checkout):
 *
 *   npx tsx bench/_redis-server-cpu.ts --port 6392 --jobs 20000 --rounds 3 [--concurrency 16] [--commands] [--only-ours]
 *   node bench/_ab.mjs --a /work/wt/base --b . --runs 6 -- npx tsx /work/wt/redis/bench/_redis-server-cpu.ts --only-ours
 *
 * Its last line has the form "N jobs/s, X µs CPU per job, R µs redis CPU per job" (ours, medians over rounds).
 */
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import { join } from "node:path"
import { pathToFileURL } from "node:url"

// Not from ./_shared.js: it imports effect from THIS checkout, and a second copy of effect in one process runs
// slower (it shares the first's global singletons; bench/RESULTS.md, session 6): the base checkout measured 2x the
// CPU per job of the same commit that way.
const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}
const flag = (name: string): boolean => process.argv.includes(`--${name}`)
const median = (xs: ReadonlyArray<number>): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const pool = async (count: number, limit: number, task: (i: number) => Promise<unknown>): Promise<void> => {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, count) }, async () => {
    while (next < count) await task(next++)
  }))
}
const until = async (check: () => Promise<boolean>): Promise<void> => {
  while (!(await check())) await new Promise((resolve) => setTimeout(resolve, 2))
}
const batches = (count: number, size: number): Array<Array<number>> => {
  const out: Array<Array<number>> = []
  for (let i = 0; i < count; i += size) out.push(Array.from({ length: Math.min(size, count - i) }, (_, k) => i + k))
  return out
}
const counter = (jobs: number) => {
  let done = 0
  let resolve!: () => void
  const all = new Promise<void>((r) => (resolve = r))
  return { hit: () => void (++done === jobs && resolve()), all }
}
const cleanup = async (raw: Redis, pattern: string): Promise<void> => {
  let cursor = "0"
  do {
    const [next, keys] = await raw.scan(cursor, "MATCH", pattern, "COUNT", 1000)
    cursor = next
    if (keys.length > 0) await raw.del(...keys)
  } while (cursor !== "0")
}

const JOBS = arg("jobs", 20_000)
const ROUNDS = arg("rounds", 3)
const CONCURRENCY = arg("concurrency", 16)
const PORT = arg("port", 6379)
const connection = { host: "127.0.0.1", port: PORT }
const root = process.cwd()
const load = (path: string) => import(pathToFileURL(join(root, path)).href)

/* eslint-disable @typescript-eslint/no-explicit-any -- modules of another checkout, loaded at run time */
const Effect: any = await load("node_modules/effect/dist/esm/Effect.js")
const Fiber: any = await load("node_modules/effect/dist/esm/Fiber.js")
const Schema: any = await load("node_modules/effect/dist/esm/Schema.js")
const DurableQueue: any = await load("src/redis/DurableQueue.ts")
const RedisClient: any = await load("src/redis/RedisClient.ts")
/* eslint-enable @typescript-eslint/no-explicit-any */

const raw = new Redis(connection)

interface Server {
  readonly cpu: number
  readonly commands: Map<string, { calls: number; usec: number }>
}

const server = async (): Promise<Server> => {
  const info = await raw.info("cpu")
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(info)![1])
  const stats = await raw.info("commandstats")
  const commands = new Map<string, { calls: number; usec: number }>()
  for (const [, name, calls, usec] of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    commands.set(name!, { calls: Number(calls), usec: Number(usec) })
  }
  return { cpu: (field("used_cpu_user") + field("used_cpu_sys")) * 1e6, commands }
}

interface Measure {
  readonly rate: number
  readonly node: number
  readonly redis: number
  readonly commands: Map<string, { calls: number; usec: number }>
}

/** Times `body` (which ends once every job is acknowledged): jobs/s, node and redis-server CPU µs per job. */
const measured = async (body: () => Promise<unknown>): Promise<Measure> => {
  const before = await server()
  const cpu = process.cpuUsage()
  const t = performance.now()
  await body()
  const seconds = (performance.now() - t) / 1000
  const used = process.cpuUsage(cpu)
  const after = await server()
  const commands = new Map<string, { calls: number; usec: number }>()
  for (const [name, { calls, usec }] of after.commands) {
    const was = before.commands.get(name) ?? { calls: 0, usec: 0 }
    if (calls > was.calls) commands.set(name, { calls: (calls - was.calls) / JOBS, usec: (usec - was.usec) / JOBS })
  }
  return {
    rate: JOBS / seconds,
    node: (used.user + used.system) / JOBS,
    redis: (after.cpu - before.cpu) / JOBS,
    commands
  }
}

const schema = Schema.Struct({ n: Schema.Number })

const ours = (): Promise<Measure> => {
  const prefix = `bench-srv-${randomUUID()}:`
  return Effect.runPromise(
    Effect.gen(function*() {
      const queue = yield* DurableQueue.make({ name: "jobs", prefix, schema })
      for (const batch of batches(JOBS, 1_000)) yield* queue.offerAll(batch.map((n) => ({ value: { n } })))
      const handled = counter(JOBS)
      return yield* Effect.promise(() =>
        measured(async () => {
          const fiber = Effect.runFork(queue.run(() => Effect.sync(handled.hit), { concurrency: CONCURRENCY }))
          await handled.all
          await until(async () => (await Effect.runPromise(queue.size)) === 0)
          await Effect.runPromise(Fiber.interrupt(fiber))
        })
      )
    }).pipe(
      Effect.scoped,
      Effect.provide(RedisClient.layer({ url: `redis://127.0.0.1:${PORT}` })),
      Effect.ensuring(Effect.promise(() => cleanup(raw, `${prefix}*`)))
    )
  )
}

// The FLOOR of bench/distributed.ts, verbatim.
const floorLease = `
local ids = redis.call('LPOP', KEYS[1], ARGV[1])
if not ids then return {} end
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + 30000
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[3], deadline, id) end
return { ids, redis.call('HMGET', KEYS[2], unpack(ids)) }`
const floorAck = `
redis.call('ZREM', KEYS[3], unpack(ARGV))
redis.call('HDEL', KEYS[2], unpack(ARGV))
return 1`
const floorOffer = `
redis.call('HSET', KEYS[2], unpack(ARGV))
for i = 1, #ARGV, 2 do redis.call('RPUSH', KEYS[1], ARGV[i]) end
return 1`

const floor = async (): Promise<Measure> => {
  const prefix = `bench-srv-floor-${randomUUID()}:`
  const redis = new Redis({ ...connection, enableAutoPipelining: true })
  const keys = [`${prefix}{q}:w`, `${prefix}{q}:p`, `${prefix}{q}:l`]
  try {
    for (const batch of batches(JOBS, 1_000)) {
      await redis.eval(floorOffer, 3, ...keys, ...batch.flatMap((n) => [randomUUID(), JSON.stringify({ n })]))
    }
    const loop = async () => {
      while (true) {
        const [ids, payloads] = await redis.eval(floorLease, 3, ...keys, 100) as [Array<string>, Array<string>] | []
        if (ids === undefined || ids.length === 0) return
        await pool(ids.length, CONCURRENCY / 2, async (i) => {
          JSON.parse(payloads![i]!)
        })
        await redis.eval(floorAck, 3, ...keys, ...ids)
      }
    }
    return await measured(() => Promise.all([loop(), loop()]))
  } finally {
    await cleanup(raw, `${prefix}*`)
    redis.disconnect()
  }
}

const line = (name: string, m: Measure) =>
  `${name}: ${Math.round(m.rate)} jobs/s, ${m.node.toFixed(1)} µs CPU per job, ${
    m.redis.toFixed(1)
  } µs redis CPU per job (wall ${(1e6 / m.rate).toFixed(1)} µs per job)`

const commandTable = (m: Measure) =>
  [...m.commands].sort((a, b) => b[1].usec - a[1].usec).slice(0, 14).map(([name, { calls, usec }]) =>
    `    ${name.padEnd(24)} ${calls.toFixed(3).padStart(8)} calls/job ${usec.toFixed(2).padStart(7)} µs/job`
  ).join("\n")

const results: { ours: Array<Measure>; floor: Array<Measure> } = { ours: [], floor: [] }
for (let round = 0; round < ROUNDS; round++) {
  const order = flag("only-ours")
    ? ["ours"] as const
    : round % 2 === 0
    ? ["ours", "floor"] as const
    : ["floor", "ours"] as const
  for (const name of order) {
    const m = name === "ours" ? await ours() : await floor()
    results[name].push(m)
    console.log(`round ${round + 1} ${line(name, m)}`)
    if (flag("commands")) console.log(commandTable(m))
  }
}
const summary = (ms: Array<Measure>) => ({
  rate: median(ms.map((m) => m.rate)),
  node: median(ms.map((m) => m.node)),
  redis: median(ms.map((m) => m.redis)),
  commands: new Map()
})
if (results.floor.length > 0) console.log(line("floor (medians)", summary(results.floor)))
console.log(line("ours (medians)", summary(results.ours)))
raw.disconnect()
process.exit(0)
