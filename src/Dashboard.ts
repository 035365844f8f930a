/**
 * `effect-workers/dashboard`: a live web dashboard of the DurableQueues it is given (any store), the JobRunners of
 * this process and the in-process modules' Effect metrics, as an `@effect/platform` `HttpRouter` to mount in your
 * own server; `effect-workers/dashboard/node` serves it on its own with one call. Plain HTML, CSS and JavaScript
 * served from the package (no CDN, works offline), live over Server-Sent Events from one sampler per dashboard:
 * a hundred browsers cost the stores what one does.
 *
 * Actions (pause, resume, retry or purge dead letters, cancel a job) are open only with an `authorize` hook, or
 * with `openActions: true` for a dashboard only you can reach; `readOnly: true` removes them (the page shows no
 * button and the action route answers 403).
 *
 * @since 0.2.0
 */
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as DurableQueue from "./DurableQueue.js"
import { router as makeRouter } from "./internal/dashboard/routes.js"
import { Sampler } from "./internal/dashboard/sampler.js"
import { checker } from "./internal/options.js"
import type { OptionError } from "./OptionError.js"

/**
 * What the dashboard uses of a queue: any `DurableQueue<A>` (memory, Redis, PostgreSQL, SQLite) is one.
 *
 * @since 0.2.0
 * @category models
 */
export type WatchedQueue = {
  readonly [
    K in
      | "name"
      | "counts"
      | "deadLetters"
      | "cancel"
      | "pause"
      | "resume"
      | "requeue"
      | "requeueAll"
      | "purge"
      | "jobs"
  ]: DurableQueue.DurableQueue<unknown>[K]
}

/**
 * What a request asks: to see the dashboard (the page, its snapshot and its live stream) or to act.
 *
 * @since 0.2.0
 * @category models
 */
export type Access = "view" | "action"

/**
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** The queues shown, in this order; the same name twice is fine (on two stores). */
  readonly queues?: ReadonlyArray<WatchedQueue> | undefined
  /** The page's title. Default: "effect-workers dashboard". */
  readonly title?: string | undefined
  /** No action: the page shows no button and the action route answers 403. Default: false. */
  readonly readOnly?: boolean | undefined
  /**
   * Decides each request (`true`: allowed); a refusal answers 403, a hook that throws or fails refuses (logged).
   * Called with "view" for the page, snapshot and stream, "action" for actions. Giving it opens the actions.
   */
  readonly authorize?:
    | ((
      request: HttpServerRequest.HttpServerRequest,
      access: Access
    ) => boolean | PromiseLike<boolean> | Effect.Effect<boolean>)
    | undefined
  /**
   * Opens the actions without an `authorize` hook: anyone who reaches the dashboard can pause queues and purge dead
   * letters. For a dashboard bound to 127.0.0.1 on your own machine. Default: false (actions closed: 403).
   */
  readonly openActions?: boolean | undefined
  /**
   * How often the stores' counts and the first page of each state's jobs are read while a browser watches (and
   * JobRunners and the queues' in-process counters sampled): once per interval whatever the jobs/s, sooner after
   * an action (at most every 200 ms). Rates and charts come from successive samples. Default: 1 second.
   */
  readonly interval?: Duration.DurationInput | undefined
  /** Shows WorkerQueue, TaskEngine, RateLimiter, ResultCache and TreeQueue instances from Effect metrics. Default: true. */
  readonly modules?: boolean | undefined
  /** The resident memory of a reader process in bytes, if known (`effect-workers/dashboard/node` reads Linux's /proc). */
  readonly processMemory?: ((pid: number) => number | undefined) | undefined
}

/**
 * A running dashboard. Its routes, relative to where it is mounted: `GET /` (the page), `GET /app.js`, `GET /app.css`,
 * `GET /api/state` (the snapshot as JSON), `GET /events` (Server-Sent Events: `state` events carrying the snapshot),
 * `POST /api/action` (a JSON body `{ queue, action, id? }` with the header `x-dashboard-action: 1`).
 *
 * @since 0.2.0
 * @category models
 */
export interface Dashboard {
  /** Mount it with `HttpRouter.mount("/dashboard", dashboard.router)`, or serve it at the root. */
  readonly router: HttpRouter.HttpRouter
  /** The router as an app, for `HttpServer.serve`. */
  readonly app: HttpApp.Default
  /** Browsers connected to the live stream now. */
  readonly clients: Effect.Effect<number>
  /** Whether actions are open (not read-only, and an `authorize` hook or `openActions`). */
  readonly actions: boolean
}

/**
 * Starts a dashboard in the scope: its sampler reads the queues' in-process counters once per `interval` and, while
 * a browser watches, their stores' counts and job tables; it follows no job events, so it costs the queues the same
 * at 10 or 20,000 jobs a second. Closing the scope ends the live streams (so the server can close).
 *
 * @example
 * ```ts
 * import { HttpRouter } from "@effect/platform"
 * import { Effect, Schema } from "effect"
 * import { DurableQueue } from "effect-workers"
 * import * as Dashboard from "effect-workers/Dashboard"
 *
 * const program = Effect.gen(function*() {
 *   const emails = yield* DurableQueue.memory({ name: "emails", schema: Schema.String })
 *   const dashboard = yield* Dashboard.make({ queues: [emails], readOnly: true })
 *   // Your own routes, with the dashboard under /ops/queues.
 *   return HttpRouter.empty.pipe(HttpRouter.mount("/ops/queues", dashboard.router))
 * })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Dashboard, OptionError, Scope.Scope> =>
  Effect.gen(function*() {
    const check = checker("Dashboard")
    const queues = options.queues ?? []
    yield* check.require("queues", options.queues, Array.isArray(queues), "an array of DurableQueues")
    for (const queue of queues) {
      yield* check.require(
        "queues",
        queue,
        typeof queue === "object" && queue !== null && typeof queue.name === "string",
        "DurableQueues"
      )
    }
    const title = options.title ?? "effect-workers dashboard"
    yield* check.require(
      "title",
      options.title,
      typeof title === "string" && title.length <= 200,
      "a string of at most 200 characters"
    )
    const interval = Duration.decodeUnknown(options.interval ?? "1 second")
    const intervalMillis = interval._tag === "Some" ? Duration.toMillis(interval.value) : Number.NaN
    yield* check.require(
      "interval",
      options.interval,
      intervalMillis >= 50 && intervalMillis <= 3_600_000,
      "a duration from 50 ms to 1 hour"
    )
    yield* check.require(
      "authorize",
      options.authorize,
      options.authorize === undefined || typeof options.authorize === "function",
      "a function"
    )
    const readOnly = options.readOnly === true
    const actions = !readOnly && (options.authorize !== undefined || options.openActions === true)
    const sampler = new Sampler(queues, {
      title,
      actions,
      readOnly,
      intervalMillis,
      modules: options.modules !== false,
      processMemory: options.processMemory
    })
    const closed = yield* Deferred.make<void>()
    yield* Effect.addFinalizer(() => Deferred.succeed(closed, undefined))
    yield* sampler.start
    const router = makeRouter({ sampler, readOnly, actions, authorize: options.authorize, closed })
    return {
      router,
      app: Effect.catchTag(
        yield* HttpRouter.toHttpApp(router),
        "RouteNotFound",
        () => HttpServerResponse.unsafeJson({ error: "no such dashboard route" }, { status: 404 })
      ),
      clients: Effect.sync(() => sampler.clients),
      actions
    }
  })
