/**
 * `effect-workers/dashboard/node`: the dashboard on a server of its own (Node's `http`, through
 * `@effect/platform-node`), bound where you say: 127.0.0.1 unless you choose another address. Reader processes'
 * memory is read from Linux's /proc (elsewhere it shows as unknown).
 *
 * @since 0.2.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpServer from "@effect/platform/HttpServer"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Dashboard from "./Dashboard.js"
import { checker } from "./internal/options.js"
import type { OptionError } from "./OptionError.js"

/**
 * @since 0.2.0
 * @category models
 */
export interface ServeOptions extends Dashboard.Options {
  /** The address to bind. Default: "127.0.0.1" (this machine only). */
  readonly host?: string | undefined
  /** The port; 0 (the default) picks a free one (see `url`). */
  readonly port?: number | undefined
}

/**
 * @since 0.2.0
 * @category models
 */
export interface Served {
  readonly dashboard: Dashboard.Dashboard
  /** Where the page is, e.g. "http://127.0.0.1:4000/". */
  readonly url: string
  readonly host: string
  readonly port: number
}

/** Resident memory of a process from /proc (Linux); undefined elsewhere or when the process is gone. */
const procMemory = (pid: number): number | undefined => {
  try {
    const pages = Number(Fs.readFileSync(`/proc/${pid}/statm`, "utf8").split(" ")[1])
    return Number.isFinite(pages) ? pages * 4096 : undefined
  } catch {
    return undefined
  }
}

/**
 * Serves a dashboard in the scope; closing the scope ends its live streams and closes the server.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { DurableQueue } from "effect-workers"
 * import * as DashboardNode from "effect-workers/dashboard/node"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const emails = yield* DurableQueue.memory({ name: "emails", schema: Schema.String })
 *   const { url } = yield* DashboardNode.serve({ queues: [emails], port: 4000, openActions: true })
 *   yield* Effect.log(`dashboard on ${url}`)
 *   return yield* Effect.never
 * }))
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const serve = (
  options: ServeOptions = {}
): Effect.Effect<Served, OptionError | HttpServerError.ServeError, Scope.Scope> =>
  Effect.gen(function*() {
    const check = checker("Dashboard")
    const host = options.host ?? "127.0.0.1"
    const port = options.port ?? 0
    yield* check.require(
      "host",
      options.host,
      typeof host === "string" && host.trim().length > 0,
      "a host name or address"
    )
    yield* check.require(
      "port",
      options.port,
      Number.isInteger(port) && port >= 0 && port <= 65535,
      "an integer from 0 to 65535"
    )
    const server = Http.createServer()
    // Before the dashboard, so that its scope closes after the dashboard's: the live streams end first, then the
    // server, which would otherwise wait for them.
    const http = yield* NodeHttpServer.make(() => server, { host, port })
    yield* Effect.addFinalizer(() => Effect.sync(() => server.closeAllConnections()))
    const dashboard = yield* Dashboard.make({ processMemory: procMemory, ...options })
    yield* HttpServer.serveEffect()(dashboard.app).pipe(Effect.provideService(HttpServer.HttpServer, http))
    const address = http.address
    const bound = address._tag === "TcpAddress" ? address.port : port
    const shown = host.includes(":") ? `[${host}]` : host
    return { dashboard, url: `http://${shown}:${bound}/`, host, port: bound }
  })

/**
 * `serve` as a layer: the dashboard lives as long as the layer, its URL logged.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: ServeOptions = {}): Layer.Layer<never, OptionError | HttpServerError.ServeError> =>
  Layer.scopedDiscard(Effect.tap(serve(options), ({ url }) => Effect.log(`effect-workers dashboard on ${url}`)))
