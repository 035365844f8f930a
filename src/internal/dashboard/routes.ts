/**
 * The dashboard's HTTP routes: the page and its script and style (strings, no CDN), the snapshot as JSON, the live
 * stream (Server-Sent Events fed by the one sampler) and the action route. Every answer to hostile input is a 4xx
 * with a JSON `{ error }` naming what was wrong; nothing a request sends can fail the dashboard.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as PubSub from "effect/PubSub"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import type * as Dashboard from "../../Dashboard.js"
import { DurableQueueError } from "../durableQueue/error.js"
import { isPromiseLike } from "../promise.js"
import { APP_CSS, APP_JS, INDEX_HTML } from "./assets.js"
import type { Sampler } from "./sampler.js"

/** Action bodies larger than this are refused (413): an action is a queue key, a verb and a job id. */
export const MAX_BODY_BYTES = 16 * 1024
/** Browsers connected at once, at most; more get 503 (each holds a connection and a subscription). */
const MAX_CLIENTS = 100
/** A comment line this often keeps proxies from closing an idle stream. */
const HEARTBEAT = "15 seconds"

const SECURITY_HEADERS = {
  // The page's script and style come from the dashboard itself; nothing inline, nothing from elsewhere, so a value
  // that slipped through unescaped still could not run.
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store"
}

const problem = (status: number, error: string) =>
  HttpServerResponse.unsafeJson({ error }, { status, headers: SECURITY_HEADERS })

/** @internal */
export interface RouteSettings {
  readonly sampler: Sampler
  readonly readOnly: boolean
  readonly actions: boolean
  readonly authorize: Dashboard.Options["authorize"]
  readonly closed: Deferred.Deferred<void>
}

/** The user's hook, whatever it returns; a hook that throws or fails refuses (and is logged). */
const allowed = (settings: RouteSettings, request: HttpServerRequest.HttpServerRequest, access: Dashboard.Access) => {
  const hook = settings.authorize
  if (hook === undefined) return Effect.succeed(true)
  return Effect.suspend(() => {
    const answer = hook(request, access)
    if (typeof answer === "boolean") return Effect.succeed(answer)
    if (isPromiseLike(answer)) return Effect.tryPromise(() => Promise.resolve(answer))
    return answer
  }).pipe(
    Effect.map((answer) => answer === true),
    Effect.catchAllCause((cause) =>
      Effect.as(Effect.logWarning("Dashboard: the authorize hook failed; access refused", cause), false)
    )
  )
}

const guarded = (settings: RouteSettings, response: Effect.Effect<HttpServerResponse.HttpServerResponse>) =>
  Effect.flatMap(
    HttpServerRequest.HttpServerRequest,
    (request) =>
      Effect.flatMap(
        allowed(settings, request, "view"),
        (ok) => ok ? response : Effect.succeed(problem(403, "not authorized to view this dashboard"))
      )
  )

const asset = (body: string, contentType: string) =>
  HttpServerResponse.text(body, { contentType, headers: SECURITY_HEADERS })

const events = (settings: RouteSettings): Effect.Effect<HttpServerResponse.HttpServerResponse> => {
  const { sampler } = settings
  if (sampler.clients >= MAX_CLIENTS) {
    return Effect.succeed(problem(503, `too many dashboard browsers (at most ${MAX_CLIENTS})`))
  }
  const encoder = new TextEncoder()
  const body = Stream.unwrapScoped(Effect.gen(function*() {
    const subscription = yield* PubSub.subscribe(sampler.hub)
    yield* Effect.acquireRelease(Effect.sync(() => sampler.clients++), () => Effect.sync(() => sampler.clients--))
    // The latest snapshot if it is fresh (read less than an interval ago for another browser), else a new one.
    const first = yield* sampler.current
    const snapshots = Stream.concat(Stream.make(first), Stream.fromQueue(subscription)).pipe(
      Stream.map((json) => `event: state\ndata: ${json}\n\n`)
    )
    const heartbeat = Stream.fromSchedule(Schedule.spaced(HEARTBEAT)).pipe(Stream.map(() => ": keep-alive\n\n"))
    return Stream.merge(snapshots, heartbeat, { haltStrategy: "left" }).pipe(
      // Ends with the dashboard, so a server closing after it is not held open by its streams.
      Stream.interruptWhen(Deferred.await(settings.closed)),
      Stream.map((text) => encoder.encode(text))
    )
  }))
  return Effect.succeed(HttpServerResponse.stream(body, {
    contentType: "text/event-stream",
    headers: { ...SECURITY_HEADERS, "x-accel-buffering": "no" }
  }))
}

interface ActionBody {
  readonly queue: string
  readonly action: "pause" | "resume" | "retry" | "retryAll" | "purge" | "cancel"
  readonly id?: string | undefined
}

const ACTIONS: ReadonlySet<string> = new Set(["pause", "resume", "retry", "retryAll", "purge", "cancel"])

/** The body as an action, or the reason it is not one. */
const parseAction = (text: string): ActionBody | string => {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return "the body is not JSON"
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return "the body is not a JSON object"
  const { action, id, queue } = raw as Record<string, unknown>
  if (typeof queue !== "string") return "`queue` must be a string (a queue key from the snapshot)"
  if (typeof action !== "string" || !ACTIONS.has(action)) {
    return `\`action\` must be one of ${Array.from(ACTIONS).join(", ")}`
  }
  if ((action === "retry" || action === "cancel") && typeof id !== "string") {
    return `\`id\` (a string) is required by ${action}`
  }
  if (id !== undefined && typeof id !== "string") return "`id` must be a string"
  return { queue, action: action as ActionBody["action"], id: id as string | undefined }
}

const runAction = (
  queue: Dashboard.WatchedQueue,
  body: ActionBody
): Effect.Effect<HttpServerResponse.HttpServerResponse, unknown> => {
  const ok = (result: unknown) => HttpServerResponse.unsafeJson({ ok: true, result }, { headers: SECURITY_HEADERS })
  switch (body.action) {
    case "pause":
      return Effect.as(queue.pause, ok(null))
    case "resume":
      return Effect.as(queue.resume, ok(null))
    case "retryAll":
      return Effect.map(queue.requeueAll, ok)
    case "purge":
      return Effect.map(queue.purge, ok)
    case "retry":
      return Effect.map(
        queue.requeue(body.id!),
        (found) =>
          found
            ? ok(true)
            : problem(404, `no dead letter with id ${JSON.stringify(body.id)} in queue ${JSON.stringify(queue.name)}`)
      )
    case "cancel":
      return Effect.map(
        queue.cancel(body.id!),
        (found) =>
          found
            ? ok(true)
            : problem(
              404,
              `no waiting, delayed or running job with id ${JSON.stringify(body.id)} in queue ${
                JSON.stringify(queue.name)
              }`
            )
      )
  }
}

/** What is read of a body sent without a length before the connection is dropped rather than drained. */
const DRAIN_BYTES = 1024 * 1024

/**
 * The body as text, or undefined when it is larger than `MAX_BODY_BYTES`. A body sent without a length is drained
 * (up to `DRAIN_BYTES`) rather than cut, so the client gets its 413 instead of a reset connection.
 */
const readBody = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<string | undefined, unknown> =>
  Effect.suspend(() => {
    const chunks: Array<Uint8Array> = []
    let total = 0
    return request.stream.pipe(
      Stream.takeWhile(() => total <= DRAIN_BYTES),
      Stream.runForEach((chunk) =>
        Effect.sync(() => {
          total += chunk.length
          if (total <= MAX_BODY_BYTES) chunks.push(chunk)
        })
      ),
      Effect.map(() => {
        if (total > MAX_BODY_BYTES) return undefined
        const bytes = new Uint8Array(total)
        let at = 0
        for (const chunk of chunks) {
          bytes.set(chunk, at)
          at += chunk.length
        }
        return new TextDecoder().decode(bytes)
      })
    )
  })

const action = (settings: RouteSettings) =>
  Effect.gen(function*() {
    if (settings.readOnly) return problem(403, "this dashboard is read-only")
    if (!settings.actions) {
      return problem(403, "actions are closed: the dashboard was given no `authorize` hook (or `openActions: true`)")
    }
    const request = yield* HttpServerRequest.HttpServerRequest
    // A header a cross-site form or image cannot send: another site's page cannot act through a browser that
    // can reach the dashboard.
    if (request.headers["x-dashboard-action"] !== "1") {
      return problem(403, "actions need the header x-dashboard-action: 1")
    }
    if (!(yield* allowed(settings, request, "action"))) {
      return problem(403, "not authorized to act on this dashboard")
    }
    const length = Number(request.headers["content-length"] ?? "0")
    if (length > MAX_BODY_BYTES) return problem(413, `the body is ${length} bytes, more than ${MAX_BODY_BYTES}`)
    const text = yield* Effect.either(readBody(request))
    if (text._tag === "Left") return problem(400, "the body could not be read")
    if (text.right === undefined) return problem(413, `the body is more than ${MAX_BODY_BYTES} bytes`)
    const body = parseAction(text.right)
    if (typeof body === "string") return problem(400, body)
    const watch = settings.sampler.watches.find((w) => w.key === body.queue)
    if (watch === undefined) return problem(404, `no queue with key ${JSON.stringify(body.queue.slice(0, 100))}`)
    const response = yield* runAction(watch.queue, body).pipe(
      Effect.catchAll((error) =>
        Effect.succeed(
          error instanceof DurableQueueError
            ? problem(502, error.message)
            : problem(400, error instanceof Error ? error.message : String(error))
        )
      )
    )
    settings.sampler.poke()
    return response
  }).pipe(
    // Whatever else goes wrong is the dashboard's fault: logged, answered 500, the server unharmed.
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.failCause(cause)
        : Effect.as(
          Effect.logError("Dashboard: an action failed", cause),
          problem(500, "the action failed; see the server's log")
        )
    )
  )

/** @internal */
export const router = (settings: RouteSettings): HttpRouter.HttpRouter =>
  HttpRouter.empty.pipe(
    HttpRouter.get("/", guarded(settings, Effect.succeed(asset(INDEX_HTML, "text/html; charset=utf-8")))),
    HttpRouter.get("/app.js", guarded(settings, Effect.succeed(asset(APP_JS, "text/javascript; charset=utf-8")))),
    HttpRouter.get("/app.css", guarded(settings, Effect.succeed(asset(APP_CSS, "text/css; charset=utf-8")))),
    HttpRouter.get(
      "/api/state",
      guarded(
        settings,
        Effect.map(
          settings.sampler.current,
          (json) => HttpServerResponse.text(json, { contentType: "application/json", headers: SECURITY_HEADERS })
        )
      )
    ),
    HttpRouter.get("/events", guarded(settings, Effect.suspend(() => events(settings)))),
    HttpRouter.post("/api/action", action(settings))
  )
