/**
 * WorkerQueue benchmark, one process, interleaved rounds, medians:
 *
 * 1. Time: 200k requires over 10k keys in shuffled order, all issued at once (so duplicates are in flight
 *    together), a trivial worker, a fresh cache every round. Ours (`require` in a fiber per call, and
 *    `requireAll` in one fiber) against DataLoader (`batch: false`), a Map of promises and Effect's `Cache`
 *    with `Effect.forEach`. Prints ns per require and the ratio to DataLoader.
 * 2. Memory: heap bytes per waiting item with 1M requires queued behind one blocked worker, beside p-queue.
 * 3. The in-flight map size after the run (must be 0).
 *
 *   node --expose-gc --import tsx bench/worker-queue.ts [--rounds 7] [--timing] [--waiting 1000000]
 */
import DataLoader from "dataloader"
import * as Cache from "effect/Cache"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as os from "node:os"
import PQueue from "p-queue"
import * as ResultCache from "../src/ResultCache.js"
import * as WorkerQueue from "../src/WorkerQueue.js"
import { arg, median } from "./_shared.js"

const ROUNDS = arg("rounds", 7)
const ONLY_TIMING = process.argv.includes("--timing")
const REQUIRES = 200_000
const KEYS = 10_000
const WAITING = arg("waiting", 1_000_000)

// Deterministic shuffle (mulberry32) so every implementation sees the same order.
const rng = (() => {
  let a = 42
  return () => {
    a |= 0
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
})()
const keys = Array.from({ length: REQUIRES }, (_, i) => i % KEYS)
for (let i = keys.length - 1; i > 0; i--) {
  const j = Math.floor(rng() * (i + 1))
  ;[keys[i], keys[j]] = [keys[j]!, keys[i]!]
}

let lastInFlight = -1
const check = (sum: number) => {
  const expected = keys.reduce((a, k) => a + k * 2, 0)
  if (sum !== expected) throw new Error(`wrong sum ${sum}, expected ${expected}`)
}
const sumOf = (values: ReadonlyArray<number>) => values.reduce((a, b) => a + b, 0)

// Plain TypeScript: the queue lives in a scope held open by the program; each caller gets a Promise, either from
// `unsafeRequire` (no fiber) or from `Effect.runPromise(queue.require(k))` (a fiber per call).
const oursPromise = async (mode: "unsafeRequire" | "runPromise") => {
  const scope = Effect.runSync(Scope.make())
  const queue = await Effect.runPromise(
    Effect.flatMap(
      ResultCache.memory<number, number>(),
      (cache) => WorkerQueue.make({ worker: (k: number) => Effect.succeed(k * 2), cache, concurrency: 16 })
    ).pipe(
      Scope.extend(scope)
    )
  )
  const load = mode === "unsafeRequire" ? queue.unsafeRequire : (k: number) => Effect.runPromise(queue.require(k))
  check(sumOf(await Promise.all(keys.map(load))))
  lastInFlight = Effect.runSync(queue.stats).inFlight
  await Effect.runPromise(Scope.close(scope, Exit.void))
}

const ours = (mode: "require" | "requireAll") =>
  Effect.runPromise(
    Effect.gen(function*() {
      const queue = yield* WorkerQueue.make({
        worker: (k: number) => Effect.succeed(k * 2),
        cache: yield* ResultCache.memory<number, number>(),
        concurrency: 16
      })
      const values = mode === "requireAll"
        ? yield* queue.requireAll(keys)
        : yield* Effect.forEach(keys, queue.require, { concurrency: "unbounded" })
      lastInFlight = (yield* queue.stats).inFlight
      check(sumOf(values))
    }).pipe(Effect.scoped)
  )

const dataLoader = async () => {
  const loader = new DataLoader<number, number>(async (ks) => ks.map((k) => k * 2), { batch: false })
  check(sumOf(await Promise.all(keys.map((k) => loader.load(k)))))
}

const mapOfPromises = async () => {
  const map = new Map<number, Promise<number>>()
  const load = (k: number) => {
    let p = map.get(k)
    if (p === undefined) {
      p = Promise.resolve().then(() => k * 2)
      map.set(k, p)
    }
    return p
  }
  check(sumOf(await Promise.all(keys.map(load))))
}

const effectCache = () =>
  Effect.runPromise(
    Effect.gen(function*() {
      const cache = yield* Cache.make({
        capacity: KEYS * 2,
        timeToLive: Duration.infinity,
        lookup: (k: number) => Effect.succeed(k * 2)
      })
      check(sumOf(yield* Effect.forEach(keys, (k) => cache.get(k), { concurrency: "unbounded" })))
    })
  )

// The two contenders that run a fiber per element through `Effect.forEach(..., { concurrency: "unbounded" })`
// cost tens of microseconds per element on this machine (Effect's fiber-per-element price, paid by Effect's own
// Cache as much as by us), so they are timed once; the others are timed over ROUNDS interleaved rounds.
const contenders: Array<[string, () => Promise<void>, "rounds" | "once"]> = [
  ["WorkerQueue.requireAll (one fiber)", () => ours("requireAll"), "rounds"],
  ["WorkerQueue.unsafeRequire (a Promise per call)", () => oursPromise("unsafeRequire"), "rounds"],
  ["DataLoader (batch: false)", dataLoader, "rounds"],
  ["Map of promises", mapOfPromises, "rounds"],
  ["WorkerQueue.require, Effect.runPromise per call", () => oursPromise("runPromise"), "once"],
  ["WorkerQueue.require, Effect.forEach unbounded", () => ours("require"), "once"],
  ["Effect Cache + Effect.forEach unbounded", effectCache, "once"]
]

const gc = () => (globalThis as { gc?: () => void }).gc?.()

const timing = async () => {
  const times = new Map<string, Array<number>>(contenders.map(([n]) => [n, []]))
  const cpu = new Map<string, Array<number>>(contenders.map(([n]) => [n, []]))
  const measure = async (name: string, run: () => Promise<void>) => {
    gc()
    const t0 = process.hrtime.bigint()
    const c0 = process.cpuUsage()
    await run()
    const c = process.cpuUsage(c0)
    times.get(name)!.push(Number(process.hrtime.bigint() - t0) / REQUIRES)
    cpu.get(name)!.push(((c.user + c.system) * 1000) / REQUIRES)
  }
  for (const [, run, how] of contenders) if (how === "rounds") await run() // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, run, how] of contenders) if (how === "rounds") await measure(name, run)
  }
  for (const [name, run, how] of contenders) if (how === "once") await measure(name, run)
  const base = median(times.get("DataLoader (batch: false)")!)
  const cpuBase = median(cpu.get("DataLoader (batch: false)")!)
  console.log(
    `\n${REQUIRES / 1000}k requires over ${KEYS / 1000}k keys, median of ${ROUNDS} rounds (or 1 where marked)`
  )
  console.log("| implementation | wall ns / require | vs DataLoader | CPU ns / require | vs DataLoader |")
  console.log("|---|---:|---:|---:|---:|")
  for (const [name, xs] of times) {
    const m = median(xs)
    const c = median(cpu.get(name)!)
    console.log(
      `| ${name}${xs.length === 1 ? " (1 round)" : ""} | ${m.toFixed(0)} | ${(m / base).toFixed(2)}× | ${
        c.toFixed(0)
      } | ${(c / cpuBase).toFixed(2)}× |`
    )
  }
  console.log(`\nin-flight map size after the last run: ${lastInFlight}`)
}

const heapUsed = () => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

const oursWaiting = (mode: "requireAll" | "require", waiting: number) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const items = Array.from({ length: waiting }, (_, i) => i)
      const queue = yield* WorkerQueue.make({
        worker: (k: number) => Effect.as(Deferred.await(gate), k),
        concurrency: 1,
        finishTimeout: 0
      })
      const before = heapUsed()
      const fiber = mode === "requireAll"
        ? yield* Effect.fork(Effect.asVoid(queue.requireAll(items)))
        : yield* Effect.fork(Effect.forEach(items, queue.require, { concurrency: "unbounded", discard: true }))
      while ((yield* queue.stats).inFlight < waiting) yield* Effect.sleep("10 millis")
      const bytes = (heapUsed() - before) / waiting
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(fiber)
      return bytes
    }).pipe(Effect.scoped)
  )

const pQueueWaiting = async () => {
  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  const queue = new PQueue({ concurrency: 1 })
  const before = heapUsed()
  const all = Array.from({ length: WAITING }, (_, i) => queue.add(() => gate.then(() => i)))
  const bytes = (heapUsed() - before) / WAITING
  release()
  await Promise.all(all)
  return bytes
}

const memory = async () => {
  if ((globalThis as { gc?: unknown }).gc === undefined) {
    console.log("\n(memory: run with node --expose-gc for heap figures)")
    return
  }
  console.log(`\nheap bytes per waiting item, ${WAITING / 1e6}M requires queued behind one blocked worker`)
  console.log("| implementation | bytes / waiting item |")
  console.log("|---|---:|")
  console.log(`| WorkerQueue.requireAll (one caller) | ${(await oursWaiting("requireAll", WAITING)).toFixed(0)} |`)
  // A fiber per caller is the caller's cost more than the queue's; 1M fibers take minutes, so 100k here.
  const perFiber = await oursWaiting("require", WAITING / 10)
  console.log(`| WorkerQueue.require, a fiber per caller (${WAITING / 10_000}k callers) | ${perFiber.toFixed(0)} |`)
  console.log(`| p-queue add() | ${(await pQueueWaiting()).toFixed(0)} |`)
}

console.log(`# WorkerQueue benchmark — ${os.cpus()[0]?.model ?? "cpu"} × ${os.cpus().length}, node ${process.version}`)
await timing()
if (!ONLY_TIMING) await memory()
