/**
 * The optional Prometheus text endpoint: `GET /metrics` (any path, in fact) on `metricsHost`:`metricsPort`
 * (127.0.0.1 unless the user opens it), closed with the runner's scope.
 */
import * as Effect from "effect/Effect"
import * as Http from "node:http"
import { prometheusText } from "./metrics.js"

/** @internal */
export const serve = (port: number, host: string) =>
  Effect.acquireRelease(
    Effect.async<Http.Server, Error>((resume) => {
      const server = Http.createServer((_req, res) => {
        Effect.runPromise(prometheusText).then((text) => {
          res.writeHead(200, { "content-type": "text/plain; version=0.0.4" })
          res.end(text)
        }, () => {
          res.writeHead(500)
          res.end()
        })
      })
      server.once("error", (e) => resume(Effect.fail(e)))
      server.listen(port, host, () => resume(Effect.succeed(server)))
    }).pipe(Effect.orDie),
    (server) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
  )
