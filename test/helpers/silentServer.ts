/**
 * A TCP server on 127.0.0.1 that accepts connections and never answers: a stalled Redis, or a port held by a
 * service that does not speak the protocol. Closed (with its sockets) by the scope.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { createServer, type Socket } from "node:net"

export const silentServer: Effect.Effect<
  { readonly url: string; readonly accepted: () => number },
  never,
  Scope.Scope
> = Effect.acquireRelease(
  Effect.async<{ readonly server: ReturnType<typeof createServer>; readonly sockets: Set<Socket> }>((resume) => {
    const sockets = new Set<Socket>()
    const server = createServer((socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
      socket.on("error", () => {})
    })
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, sockets })))
  }),
  ({ server, sockets }) =>
    Effect.async<void>((resume) => {
      for (const socket of sockets) socket.destroy()
      server.close(() => resume(Effect.void))
    })
).pipe(
  Effect.map(({ server }) => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    let accepted = 0
    server.on("connection", () => accepted++)
    return { url: `redis://127.0.0.1:${port}`, accepted: () => accepted }
  })
)
