/**
 * Redis commands and bytes per job of DurableQueue on Redis (issue #16, the store side): fills a queue with `--jobs`
 * jobs (offerAll, 1,000 a call), drains it with `run` at `--concurrency` and a no-op handler, and counts, per phase,
 * the commands Redis ran for this queue (a MONITOR connection: a script call and every command inside it; commands
 * of other clients on the same server are told apart by this queue's prefix, scripts being atomic) and the bytes
 * this process wrote to and read from Redis (every socket's counters).
 *
 *   npx tsx bench/_redis-commands.ts [--jobs 2000] [--concurrency 16] [--ttl <ms>]
 *
 * `--ttl`: the queue's resultTimeToLive (default 1 day); a short one counts the commands that drop done records.
 *
 * MONITOR slows Redis down: read the counts, not the time.
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as net from "node:net"
import * as RedisDurableQueue from "../src/redis/DurableQueue.js"
import * as RedisClient from "../src/redis/RedisClient.js"
import { arg, cleanup, counter, sleep, until } from "./_shared.js"

const JOBS = arg("jobs", 2_000)
const CONCURRENCY = arg("concurrency", 16)
const TTL = arg("ttl", 86_400_000)
const prefix = `cmds-${randomUUID()}:`

// Every socket this process opens, for its byte counters.
const sockets: Array<net.Socket> = []
const connect = net.Socket.prototype.connect
net.Socket.prototype.connect = function(this: net.Socket, ...args: Array<unknown>) {
  sockets.push(this)
  return (connect as (...a: Array<unknown>) => net.Socket).apply(this, args)
} as typeof connect
// Socket writes (a syscall each, waking Redis on this 2-core machine), of every socket but MONITOR's.
let writes = 0
const write = net.Socket.prototype.write
net.Socket.prototype.write = function(this: net.Socket, ...args: Array<unknown>) {
  if (this !== monitorSocket) writes++
  return (write as (...a: Array<unknown>) => boolean).apply(this, args)
} as typeof write
const bytes = () =>
  sockets.filter((s) => s !== monitorSocket).reduce(
    (acc, s) => ({ out: acc.out + s.bytesWritten, in: acc.in + s.bytesRead }),
    { out: 0, in: 0 }
  )

let monitorSocket: unknown
const counts = new Map<string, number>()
let ours = false
let scripts = 0
const watch = async () => {
  const monitor = await new Redis({ host: "127.0.0.1", port: 6379 }).monitor()
  monitorSocket = (monitor as unknown as { stream: unknown }).stream
  monitor.on("monitor", (_time: string, args: Array<string>, source: string) => {
    // A script's commands follow its call with source "lua"; nothing else runs in between.
    if (!source.includes("lua")) ours = args.some((a) => typeof a === "string" && a.includes(prefix))
    if (!ours) return
    const name = source.includes("lua") ? args[0]!.toUpperCase() : `(call) ${args[0]!.toUpperCase()}`
    if (!source.includes("lua")) scripts++
    counts.set(name, (counts.get(name) ?? 0) + 1)
  })
  return monitor
}

const report = (phase: string, jobs: number, before: { out: number; in: number }) => {
  const after = bytes()
  const total = [...counts.values()].reduce((a, b) => a + b, 0)
  console.log(
    `${phase}: ${(total / jobs).toFixed(2)} commands/job (${scripts} calls), ${
      ((after.out - before.out) / jobs).toFixed(0)
    } bytes/job sent, ${((after.in - before.in) / jobs).toFixed(0)} bytes/job received, ${
      (writes / jobs).toFixed(3)
    } socket writes/job`
  )
  for (const [name, n] of [...counts].sort((a, b) => b[1] - a[1])) {
    console.log(`  ${name.padEnd(24)} ${(n / jobs).toFixed(3)}`)
  }
  counts.clear()
  scripts = 0
  writes = 0
}

const program = Effect.gen(function*() {
  const monitor = yield* Effect.promise(watch)
  const queue = yield* RedisDurableQueue.make({
    name: "jobs",
    prefix,
    schema: Schema.Struct({ n: Schema.Number }),
    resultTimeToLive: TTL
  })
  yield* Effect.promise(() => sleep(200))
  counts.clear()
  writes = 0
  let before = bytes()
  for (let i = 0; i < JOBS; i += 1_000) {
    yield* queue.offerAll(Array.from({ length: Math.min(1_000, JOBS - i) }, (_, k) => ({ value: { n: i + k } })))
  }
  yield* Effect.promise(() => sleep(200))
  report("offer", JOBS, before)
  before = bytes()
  const handled = counter(JOBS)
  const fiber = Effect.runFork(queue.run(() => Effect.sync(handled.hit), { concurrency: CONCURRENCY }))
  yield* Effect.promise(async () => {
    await handled.all
    await until(async () => (await Effect.runPromise(queue.size)) === 0)
    await sleep(200)
  })
  report("drain (size polls included)", JOBS, before)
  yield* Fiber.interrupt(fiber)
  monitor.disconnect()
  const raw = new Redis({ host: "127.0.0.1", port: 6379 })
  yield* Effect.promise(() => cleanup(raw, `${prefix}*`))
  raw.disconnect()
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(RedisClient.layer()))).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
