/**
 * The crawl itself: TreeQueue items for pages (whose children are the pages they link to and their images) and
 * images, a WorkerQueue that fetches each URL once (its cache is the persisted visited set, so "once" holds
 * across runs too), a sliding-window RateLimiter for politeness, and retries with exponential backoff on 503.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as RateLimiter from "../../src/RateLimiter.js"
import * as ResultCache from "../../src/ResultCache.js"
import type * as TreeQueue from "../../src/TreeQueue.js"
import * as WorkerQueue from "../../src/WorkerQueue.js"
import type { CrawlState, Kind, Visit } from "./state.js"

/** A fetched URL: its visit record, plus the links and images found when it is a page fetched just now. */
export interface Fetched extends Visit {
  readonly links: ReadonlyArray<string>
  readonly images: ReadonlyArray<string>
  readonly fromCache: boolean
}

class Retryable extends Data.TaggedError("Retryable")<{ readonly reason: string }> {}

export interface CrawlOptions {
  readonly base: string
  readonly workers: number
  readonly rate: number
  readonly maxRetries: number
}

export interface Counters {
  fetched: number
  retries: number
  imageReferences: number
}

const linkPattern = /href="([^"]+)"/g
const imagePattern = /<img src="([^"]+)"/g

/** The TreeQueue items of one crawl, bound to its fetcher and state. */
export const make = (state: CrawlState, options: CrawlOptions) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const limiter = yield* RateLimiter.slidingWindow({ limit: options.rate, interval: "1 second" })
    const counters: Counters = { fetched: 0, retries: 0, imageReferences: 0 }
    /** Lets a fetch running inside the WorkerQueue update the row of the worker that waits for it. */
    const onRetry = new Map<string, (attempt: number, reason: string) => Effect.Effect<void>>()

    interface Response {
      readonly status: number
      readonly bytes: number
      readonly body: string
    }
    const fetchOnce = (path: string, kind: Kind): Effect.Effect<Response, Retryable> =>
      limiter.take().pipe(
        Effect.zipRight(client.get(options.base + path)),
        Effect.flatMap((response): Effect.Effect<Response, Retryable | HttpClientError.HttpClientError> =>
          response.status === 503 || response.status === 429
            ? Effect.fail(new Retryable({ reason: String(response.status) }))
            : response.status !== 200
            ? Effect.succeed({ status: response.status, bytes: 0, body: "" })
            : kind === "page"
            ? Effect.map(response.text, (body) => ({ status: 200, bytes: Buffer.byteLength(body), body }))
            : Effect.map(response.arrayBuffer, (buffer) => ({ status: 200, bytes: buffer.byteLength, body: "" }))
        ),
        Effect.scoped,
        Effect.mapError((error) => (error._tag === "Retryable" ? error : new Retryable({ reason: error.reason })))
      )

    const fetchUrl = (key: string): Effect.Effect<Fetched> => {
      const [kind, path] = splitKey(key)
      let attempts = 0
      return Effect.suspend(() => {
        attempts++
        return fetchOnce(path, kind)
      }).pipe(
        Effect.tapError((error) =>
          Effect.suspend(() => {
            counters.retries++
            return onRetry.get(path)?.(attempts, error.reason) ?? Effect.void
          })
        ),
        Effect.retry({
          schedule: Schedule.exponential("50 millis", 2).pipe(Schedule.jittered, Schedule.upTo("2 seconds")),
          times: options.maxRetries
        }),
        Effect.map(({ body, bytes, status }): Fetched => {
          counters.fetched++
          return {
            kind,
            status,
            bytes,
            attempts,
            fromCache: false,
            links: kind === "page" ? [...body.matchAll(linkPattern)].map((m) => m[1]!) : [],
            images: kind === "page" ? [...body.matchAll(imagePattern)].map((m) => m[1]!) : []
          }
        }),
        // Out of retries: the URL is recorded as failed with its last status, and the crawl goes on.
        Effect.catchAll((error) =>
          Effect.sync((): Fetched => {
            counters.fetched++
            return {
              kind,
              status: Number(error.reason) || 599,
              bytes: 0,
              attempts,
              fromCache: false,
              links: [],
              images: []
            }
          })
        )
      )
    }

    // The visited set is the WorkerQueue's cache: a URL visited in this run or an earlier one is never fetched.
    const cache = yield* ResultCache.make<string, Fetched>({
      get: (key) =>
        Effect.sync(() =>
          Option.map(
            Option.fromNullable(state.visited.get(splitKey(key)[1])),
            (visit): Fetched => ({ ...visit, links: [], images: [], fromCache: true })
          )
        ),
      // An image is done once fetched; a page only once its links are in the frontier (see `Page`), so a
      // crawl stopped in between fetches it again rather than losing what it links to.
      set: (key, fetched) =>
        Effect.sync(() => fetched.kind === "image" && state.complete(splitKey(key)[1], visitOf(fetched)))
    })
    const fetcher = yield* WorkerQueue.make({
      worker: fetchUrl,
      cache,
      concurrency: options.workers,
      name: "fetcher"
    })

    const require = (kind: Kind, path: string, ctx: TreeQueue.ItemContext) =>
      Effect.acquireUseRelease(
        Effect.sync(() =>
          onRetry.set(path, (attempt, reason) => ctx.setDescription(`retry ${attempt} ${path} (${reason})`))
        ),
        () => Effect.orDie(fetcher.require(`${kind}:${path}`)),
        () => Effect.sync(() => onRetry.delete(path))
      )

    class Page implements TreeQueue.Item {
      readonly kind = "Page"
      readonly trackOverall = true
      readonly priority: number
      constructor(readonly path: string, readonly depth: number) {
        this.priority = depth + 1
      }
      process(ctx: TreeQueue.ItemContext) {
        const path = this.path
        const depth = this.depth
        return Effect.gen(function*() {
          yield* ctx.setDescription(`GET ${path}`)
          const fetched = yield* require("page", path, ctx)
          if (fetched.fromCache) return
          if (fetched.status !== 200) return state.complete(path, visitOf(fetched))
          const children: Array<TreeQueue.Item> = []
          for (const link of fetched.links) {
            if (state.discover(link, { kind: "page", depth: depth + 1 })) children.push(new Page(link, depth + 1))
          }
          for (const src of fetched.images) {
            counters.imageReferences++
            state.pend(src, { kind: "image", depth: depth + 1 })
            children.push(new Image(src))
          }
          yield* ctx.enqueue(...children)
          state.complete(path, visitOf(fetched))
        })
      }
    }

    class Image implements TreeQueue.Item {
      readonly kind = "Image"
      readonly trackOverall = true
      // Images first under `--order priority`: they are leaves and finish pages' subtrees.
      readonly priority = 0
      constructor(readonly path: string) {}
      process(ctx: TreeQueue.ItemContext) {
        return ctx.setDescription(`GET ${this.path}`).pipe(Effect.zipRight(require("image", this.path, ctx)))
      }
    }

    const itemFor = (path: string, kind: Kind, depth: number): TreeQueue.Item =>
      kind === "page" ? new Page(path, depth) : new Image(path)

    return { itemFor, counters, fetcher }
  })

const visitOf = (fetched: Fetched): Visit => ({
  kind: fetched.kind,
  status: fetched.status,
  bytes: fetched.bytes,
  attempts: fetched.attempts
})

const splitKey = (key: string): [Kind, string] => {
  const i = key.indexOf(":")
  return [key.slice(0, i) as Kind, key.slice(i + 1)]
}

export const formatBytes = (n: number) =>
  n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`

export const formatElapsed = (d: Duration.Duration) => `${(Duration.toMillis(d) / 1000).toFixed(1)} s`
