/**
 * `--dashboard` in the queue benchmarks: a dashboard attached to the queue under test, with one browser-like
 * Server-Sent Events client connected (reading every snapshot) for the whole round, to show the dashboard costs the
 * queue nothing measurable. bench/run.ts skips files starting with "_".
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as DashboardNode from "../src/DashboardNode.js"
import type * as DurableQueue from "../src/DurableQueue.js"

/** Serves a dashboard of `queue` and connects one SSE client; both end with the scope. Resolves once connected. */
export const attachDashboard = <A>(queue: DurableQueue.DurableQueue<A>): Effect.Effect<void, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const { url } = yield* DashboardNode.serve({ queues: [queue], readOnly: true })
    const abort = new AbortController()
    yield* Effect.addFinalizer(() => Effect.sync(() => abort.abort()))
    const response = yield* Effect.promise(() => fetch(`${url}events`, { signal: abort.signal }))
    const reader = response.body!.getReader()
    // The first snapshot arrives at once: the client is connected and counted.
    yield* Effect.promise(() => reader.read())
    void (async () => {
      try {
        for (;;) if ((await reader.read()).done) return
      } catch {
        // aborted at the end of the round
      }
    })()
  })
