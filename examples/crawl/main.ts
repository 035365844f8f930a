/**
 * The crawl demo: generates a website (pages with links and images, slow pages, pages answering 503 before they
 * recover, 404s), serves it on 127.0.0.1 at a random free port, and crawls it with TreeQueue under the live
 * Progress display, fetching each URL once through a WorkerQueue, politely (a sliding-window RateLimiter), with
 * retries and backoff on 503. Ctrl-C stops gracefully (a second Ctrl-C at once); the visited set and the
 * frontier are kept on disk, so running it again resumes where it stopped.
 *
 *   node --import tsx examples/crawl/main.ts [--workers 16] [--rate 400] [--order lifo] [--pages 2000] [--fresh]
 *     [--dashboard [--dashboard-port 0]]
 *
 * `--dashboard` (`npm start -- --dashboard`) also serves the live web dashboard (`effect-workers/dashboard`) on
 * 127.0.0.1, prints its URL, and keeps it open after the crawl until Ctrl-C.
 *
 * (`node --import tsx`, not the `tsx` CLI: the CLI relays Ctrl-C to its child, sends it again 30 ms later — a
 * second Ctrl-C, which forces the stop — and then kills the child, so the graceful stop never gets to finish.)
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeKeyValueStore from "@effect/platform-node/NodeKeyValueStore"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as DashboardNode from "../../src/DashboardNode.js"
import * as DurableQueue from "../../src/DurableQueue.js"
import * as Progress from "../../src/Progress.js"
import * as TreeQueue from "../../src/TreeQueue.js"
import * as Crawler from "./crawler.js"
import * as Site from "./site.js"
import * as CrawlState from "./state.js"

const workers = Options.integer("workers").pipe(
  Options.withDescription("concurrent fetches (TreeQueue workers)"),
  Options.withDefault(16)
)
const rate = Options.integer("rate").pipe(
  Options.withDescription("requests per second at most"),
  Options.withDefault(400)
)
const order = Options.choice("order", ["fifo", "lifo", "priority"]).pipe(
  Options.withDescription("fifo: breadth-first, lifo: depth-first, priority: images first, then by depth"),
  Options.withDefault("lifo" as const)
)
const pages = Options.integer("pages").pipe(
  Options.withDescription("pages in the generated site"),
  Options.withDefault(2000)
)
const seed = Options.integer("seed").pipe(
  Options.withDescription("seed of the generated site"),
  Options.withDefault(42)
)
const fresh = Options.boolean("fresh").pipe(Options.withDescription("ignore the saved state and start over"))
const stateDir = Options.directory("state-dir").pipe(
  Options.withDescription("where the visited set and frontier are kept"),
  Options.withDefault(nodePath.join(os.tmpdir(), "effect-workers-crawl"))
)

const dashboard = Options.boolean("dashboard").pipe(
  Options.withDescription("serve the live web dashboard on 127.0.0.1 (kept open after the crawl until Ctrl-C)")
)
const dashboardPort = Options.integer("dashboard-port").pipe(
  Options.withDescription("the dashboard's port (0: a free one)"),
  Options.withDefault(0)
)

/**
 * With the dashboard, a DurableQueue to look at: every URL that did not answer 200 becomes a "review" job (its path
 * as id); reviewing a 404 whose path has a 7 fails for good (a dead letter to retry or purge from the dashboard),
 * others pass.
 */
const reviewQueue = (state: CrawlState.CrawlState) =>
  Effect.gen(function*() {
    const queue = yield* DurableQueue.memory({
      name: "failed-urls",
      schema: Schema.Number,
      maxAttempts: 2,
      backoff: DurableQueue.Backoff.fixed("200 millis")
    })
    const offered = new Set<string>()
    const offerNew = Effect.suspend(() =>
      Effect.forEach(
        Array.from(state.visited).filter(([path, visit]) => visit.status !== 200 && !offered.has(path)),
        ([path, visit]) => Effect.tap(queue.offer(visit.status, { id: path }), () => offered.add(path)),
        { discard: true }
      )
    )
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Effect.orDie(offerNew), Effect.sleep("250 millis"))))
    yield* Effect.forkScoped(queue.run((status, job) =>
      Effect.zipRight(
        Effect.zipRight(job.progress({ status }), Effect.sleep("150 millis")),
        status === 404 && job.id.includes("7") ? Effect.fail(`HTTP 404: nothing to review at ${job.id}`) : Effect.void
      ), { concurrency: 2 }))
    return queue
  })

const crawl = Command.make(
  "crawl",
  { workers, rate, order, pages, seed, fresh, stateDir, dashboard, dashboardPort },
  (args) =>
    Effect.gen(function*() {
      const site = Site.generate(args.pages, args.seed)
      const server = yield* Site.serve(site)
      const state = yield* CrawlState.make({ pages: args.pages, seed: args.seed, fresh: args.fresh })
      const crawler = yield* Crawler.make(state, {
        base: server.base,
        workers: args.workers,
        rate: args.rate,
        maxRetries: 5
      })
      if (state.resumedFrom > 0) {
        yield* Console.log(
          `Resuming: ${state.resumedFrom} URLs already visited, ${state.frontier.size} in the frontier.`
        )
      } else {
        state.discover("/", { kind: "page", depth: 0 })
      }
      yield* Console.log(
        `Crawling ${server.base} (${args.pages} pages) with ${args.workers} workers, ${args.rate} req/s, ${args.order} order; state in ${args.stateDir}`
      )
      // Bound to 127.0.0.1 (the default): only this machine reaches it, so its actions may be open.
      const served = args.dashboard
        ? yield* DashboardNode.serve({
          port: args.dashboardPort,
          title: "crawl demo",
          openActions: true,
          queues: [yield* reviewQueue(state)]
        })
        : undefined
      if (served !== undefined) yield* Console.log(`Dashboard: ${served.url}`)
      const initial = [...state.frontier].map(([path, p]) => crawler.itemFor(path, p.kind, p.depth))
      const summary = yield* TreeQueue.run({
        initial,
        workers: args.workers,
        order: args.order,
        title: "crawl"
      }).pipe(
        Effect.onInterrupt(() =>
          Console.log(
            `\nInterrupted: ${state.visited.size} URLs visited, ${state.frontier.size} left in the frontier. ` +
              `Run again to resume.`
          )
        )
      )
      const stats = yield* crawler.fetcher.stats
      let okPages = 0
      let okImages = 0
      let bytes = 0
      const failures: Record<number, number> = {}
      for (const visit of state.visited.values()) {
        bytes += visit.bytes
        if (visit.status === 200) {
          if (visit.kind === "page") okPages++
          else okImages++
        } else {
          failures[visit.status] = (failures[visit.status] ?? 0) + 1
        }
      }
      const failureText = Object.entries(failures).map(([status, n]) => `${n} × ${status}`).join(", ") || "none"
      yield* Console.log(
        [
          "",
          "Crawl complete",
          `  pages     ${okPages}`,
          `  images    ${okImages} (${crawler.counters.imageReferences} references this run; ${
            stats.hits + stats.deduplicated
          } served by the WorkerQueue without a fetch)`,
          `  bytes     ${Crawler.formatBytes(bytes)}`,
          `  failures  ${failureText}`,
          `  fetched   ${crawler.counters.fetched} URLs this run, ${crawler.counters.retries} retries after 503`,
          `  items     ${summary.processed} (${
            Object.entries(summary.byKind).map(([k, n]) => `${k} ${n}`).join(", ")
          })`,
          `  elapsed   ${Crawler.formatElapsed(summary.elapsed)}${
            state.resumedFrom > 0 ? ` (resumed from ${state.resumedFrom} visited)` : ""
          }`
        ].join("\n")
      )
      if (served !== undefined) {
        yield* Console.log(`\nThe dashboard stays open on ${served.url} until Ctrl-C.`)
        yield* Effect.never
      }
    }).pipe(
      Effect.scoped,
      Effect.provide(Layer.mergeAll(
        Progress.layer(),
        FetchHttpClient.layer,
        NodeKeyValueStore.layerFileSystem(args.stateDir)
      ))
    )
).pipe(Command.withDescription("Crawl a generated website with TreeQueue, live progress and resumable state."))

const cli = Command.run(crawl, { name: "crawl", version: "0.1.0" })

NodeRuntime.runMain(
  cli(process.argv).pipe(
    // Bad flags and bad option values end with their message, not a stack trace.
    // (@effect/cli has printed the validation message already.)
    Effect.catchIf(ValidationError.isValidationError, () => Effect.sync(() => void (process.exitCode = 2))),
    Effect.catchTag(
      "OptionError",
      (error) => Console.error(error.message).pipe(Effect.zipRight(Effect.sync(() => void (process.exitCode = 2))))
    ),
    Effect.provide(NodeContext.layer)
  ),
  {
    // Ctrl-C ends with the conventional 130; the interruption is reported above, not logged as an error.
    teardown: (exit, onExit) => onExit(Exit.isFailure(exit) ? (Cause.isInterruptedOnly(exit.cause) ? 130 : 1) : 0)
  }
)
