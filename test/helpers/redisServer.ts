/**
 * A throwaway redis-server for restart tests: its own free port and temporary directory, append-only file on
 * (fsync on every write, so a stop loses nothing) unless asked otherwise, stopped and removed with the scope. The shared Redis on 6379 is
 * never touched. `stop` and `start` restart it on the same port and files.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freePort } from "./net.js"

/** Whether `redis-server` is installed; when not, restart suites are skipped loudly, and fail under `CI=true`. */
export const hasRedisServer: boolean = (() => {
  let found = false
  try {
    execFileSync("redis-server", ["--version"], { stdio: "ignore" })
    found = true
  } catch {
    const message = "redis-server is not installed: the Redis restart tests cannot run"
    if (process.env.CI === "true") throw new Error(message)
    console.warn(`\n!!! ${message}: SKIPPING them (they fail under CI=true)\n`)
  }
  return found
})()

export interface RedisServer {
  readonly port: number
  readonly url: string
  /** Stops the server (SIGTERM) and waits for its exit. */
  readonly stop: Effect.Effect<void>
  /** Starts it again on the same port and directory, and waits until it accepts connections. */
  readonly start: Effect.Effect<void>
}

const accepting = (port: number, child: ChildProcess, timeoutMs: number) =>
  new Promise<void>((resolve, reject) => {
    const deadline = Date.now() + timeoutMs
    const attempt = () => {
      if (child.exitCode !== null) return reject(new Error(`redis-server on ${port} exited with ${child.exitCode}`))
      const socket = connect({ host: "127.0.0.1", port })
      socket.once("connect", () => (socket.destroy(), resolve()))
      socket.once("error", () => {
        socket.destroy()
        if (Date.now() > deadline) reject(new Error(`redis-server on ${port} did not start`))
        else setTimeout(attempt, 20)
      })
    }
    attempt()
  })

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGTERM")
  })

/**
 * A private redis-server, running; stopped and its directory removed when the scope closes. With `persistent`
 * false it keeps nothing on disk: a restart comes back empty, as a cache-only Redis does.
 */
export const redisServer = (
  { persistent = true }: { readonly persistent?: boolean } = {}
): Effect.Effect<RedisServer, never, Scope.Scope> =>
  Effect.gen(function*() {
    const port = yield* Effect.promise(freePort)
    const dir = mkdtempSync(join(tmpdir(), "ew-redis-"))
    let child: ChildProcess | undefined
    const start = Effect.promise(() => {
      const server = spawn("redis-server", [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        "--save",
        "",
        ...(persistent ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"])
      ], { stdio: "ignore" })
      child = server
      return accepting(port, server, 10_000)
    })
    const stop = Effect.promise(() => child === undefined ? Promise.resolve() : exited(child))
    yield* Effect.acquireRelease(start, () =>
      stop.pipe(Effect.ensuring(Effect.sync(() => rmSync(dir, { recursive: true, force: true })))))
    return { port, url: `redis://127.0.0.1:${port}`, stop, start }
  })
