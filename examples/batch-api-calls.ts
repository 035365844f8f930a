/**
 * Batch API calls: 120 requests to a flaky local HTTP API (started here, on 127.0.0.1) with 10 workers, at most 50
 * calls in any second (an exact sliding window), and retries with exponential backoff on 503 only. Some answers
 * are slow, some are 503 a few times before they succeed, and a few are 404, which is final. Prints a summary.
 *
 *   npx tsx examples/batch-api-calls.ts
 */
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import * as RateLimiter from "../src/RateLimiter.js"
import * as TaskEngine from "../src/TaskEngine.js"
import * as TaskResult from "../src/TaskResult.js"

class HttpError extends Data.TaggedError("HttpError")<{ readonly status: number }> {}
class NetworkError extends Data.TaggedError("NetworkError")<{ readonly cause: unknown }> {}

// The flaky API: item n is slow when n % 10 == 0, answers 503 twice first when n % 7 == 0, and is 404 when
// n % 25 == 24.
const startServer = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly close: () => void; readonly hits: () => number }>((resume) => {
    const seen = new Map<number, number>()
    let hits = 0
    const server = createServer((req, res) => {
      if (req.url !== "/health") hits++
      const n = Number(req.url?.split("/").pop())
      const count = (seen.get(n) ?? 0) + 1
      seen.set(n, count)
      const reply = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" })
        res.end(JSON.stringify(body))
      }
      if (Number.isNaN(n)) return reply(200, { ok: true })
      if (n % 25 === 24) return reply(404, { error: "not found" })
      if (n % 7 === 0 && count <= 2) return reply(503, { error: "busy, try later" })
      setTimeout(() => reply(200, { id: n, square: n * n }), n % 10 === 0 ? 300 : 5)
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resume(Effect.succeed({ url: `http://127.0.0.1:${port}`, close: () => server.close(), hits: () => hits }))
    })
  }),
  (server) => Effect.sync(() => server.close())
)

const program = Effect.gen(function*() {
  const server = yield* startServer
  // Node loads its HTTP client on the first `fetch`, blocking the event loop for a while; do that before timing.
  yield* Effect.promise(() => fetch(`${server.url}/health`).then((response) => response.text()))
  const started = yield* Clock.currentTimeMillis

  const fetchItem = (n: number) =>
    Effect.tryPromise({
      try: (signal) => fetch(`${server.url}/items/${n}`, { signal }),
      catch: (cause) => new NetworkError({ cause })
    }).pipe(
      Effect.flatMap((response) =>
        response.ok
          ? Effect.promise(() => response.json() as Promise<{ readonly id: number; readonly square: number }>)
          : Effect.fail(new HttpError({ status: response.status }))
      )
    )

  const engine = yield* TaskEngine.make({
    handler: fetchItem,
    workers: 10,
    // At most 50 attempts (retries included) start in any span of one second.
    rateLimiter: yield* RateLimiter.slidingWindow({ limit: 50, interval: "1 second" }),
    retry: {
      times: 4,
      // Only "503 Service Unavailable" is worth another try.
      while: (error) => error._tag === "HttpError" && error.status === 503,
      schedule: Schedule.exponential("50 millis")
    },
    taskTimeout: "5 seconds"
  })

  const results = yield* engine.applyToAll(Array.from({ length: 120 }, (_, i) => i))
  const elapsed = (yield* Clock.currentTimeMillis) - started

  const ok = results.filter(TaskResult.isSuccess)
  const failed = results.filter(TaskResult.isFailure)
  const retried = results.filter((r) => r.attempts > 1)
  console.log(`${results.length} calls in ${(elapsed / 1000).toFixed(2)} s (${server.hits()} requests to the API)`)
  console.log(`  (${server.hits()} attempts at 50 per second need at least ${Math.floor((server.hits() - 1) / 50)} s)`)
  console.log(`  succeeded: ${ok.length} (${retried.filter(TaskResult.isSuccess).length} after retrying a 503)`)
  console.log(`  failed:    ${failed.length}`)
  for (const r of failed) {
    const reason = Option.match(TaskResult.getFailure(r), {
      onNone: () => "defect or interruption",
      onSome: (error) => error._tag === "HttpError" ? `HTTP ${error.status}` : error._tag
    })
    console.log(`    item ${r.input}: ${reason} after ${r.attempts} attempt(s)`)
  }
  const sum = ok.reduce((acc, r) => acc + (Exit.isSuccess(r.exit) ? r.exit.value.square : 0), 0)
  console.log(`  sum of squares of the items fetched: ${sum}`)
  const stats = yield* engine.stats
  console.log(`  engine: ${stats.succeeded} succeeded, ${stats.failed} failed, ${stats.retried} retries`)
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.timeout("60 seconds"))).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
