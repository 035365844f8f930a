/**
 * WorkerQueue from a plain async program: de-duplicated, cached fetches from a local HTTP server.
 *
 * The program starts a small server on 127.0.0.1 that answers `/square/<n>` slowly and counts its hits, then
 * asks for 300 squares over 30 distinct numbers, all at once, through a WorkerQueue held by a ManagedRuntime.
 * Each number reaches the server once: concurrent requests for the same number share one fetch, later ones come
 * from the cache. Run it with `npx tsx examples/worker-queue-promise.ts`.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { ResultCache, WorkerQueue } from "../src/index.js"

// --- a slow little server -------------------------------------------------------------------------------------
let serverHits = 0
const server = createServer((req, res) => {
  serverHits++
  const n = Number(req.url?.split("/").pop())
  setTimeout(() => res.end(JSON.stringify({ n, square: n * n })), 50)
})
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

// --- the queue, as a service ----------------------------------------------------------------------------------
class FetchError extends Error {}

class Squares extends Context.Tag("Squares")<Squares, WorkerQueue.WorkerQueue<number, number, FetchError>>() {}

const SquaresLive = Layer.scoped(
  Squares,
  Effect.gen(function*() {
    const cache = yield* ResultCache.memory<number, number>({ capacity: 1_000, timeToLive: "5 minutes" })
    return yield* WorkerQueue.make({
      name: "squares",
      cache,
      concurrency: 8,
      worker: (n: number) =>
        Effect.tryPromise({
          try: (signal) =>
            fetch(`${base}/square/${n}`, { signal }).then((r) => r.json() as Promise<{ square: number }>),
          catch: (cause) => new FetchError(`fetching ${n} failed: ${String(cause)}`)
        }).pipe(Effect.map((body) => body.square))
    })
  })
)

// One runtime for the whole program: the queue lives until `runtime.dispose()`.
const runtime = ManagedRuntime.make(SquaresLive)
const square = (n: number): Promise<number> => runtime.runPromise(Effect.flatMap(Squares, (q) => q.require(n)))

const started = performance.now()
const numbers = Array.from({ length: 300 }, (_, i) => i % 30)
const results = await Promise.all(numbers.map(square))
const again = await square(7) // answered from the cache
const stats = await runtime.runPromise(Effect.flatMap(Squares, (q) => q.stats))

console.log(`asked for ${numbers.length + 1} squares of ${new Set(numbers).size} numbers`)
console.log(`server hits: ${serverHits}`)
console.log(`sum of squares: ${results.reduce((a, b) => a + b, 0)}, 7² = ${again}`)
console.log(`stats: ${stats.misses} runs, ${stats.deduplicated} joined a run in flight, ${stats.hits} cache hits`)
console.log(`elapsed: ${Math.round(performance.now() - started)} ms`)

await runtime.dispose() // closes the queue (finish timeout 3 s) and everything else the layer built
server.close()
if (serverHits !== 30) {
  console.error(`expected 30 server hits, got ${serverHits}`)
  process.exitCode = 1
}
