/**
 * Whether a backing service (Redis, PostgreSQL) answers on this machine. A suite whose service is unreachable is
 * skipped with a loud message locally, and fails under `CI=true`, where `.ci/run` starts the services.
 */
import { connect } from "node:net"

export interface Service {
  readonly name: string
  readonly host: string
  readonly port: number
}

export const redis: Service = { name: "Redis", host: "127.0.0.1", port: 6379 }
export const postgres: Service = { name: "PostgreSQL", host: "127.0.0.1", port: 5432 }

/** Resolves `true` when a TCP connection to the service opens within `timeoutMs`. */
export const reachable = (service: Service, timeoutMs = 1_000): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect({ host: service.host, port: service.port })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
  })

/**
 * `true` when the service is up. When it is down: under `CI=true` it throws (the suite fails); otherwise it prints
 * a loud warning and returns `false`, for `describe.skipIf(!up)`.
 */
export const requireService = async (service: Service): Promise<boolean> => {
  if (await reachable(service)) return true
  const message = `${service.name} at ${service.host}:${service.port} is unreachable`
  if (process.env.CI === "true") throw new Error(`${message}: backend tests cannot run under CI=true`)
  console.warn(`\n!!!!!!!!\n!!! ${message}: SKIPPING its backend tests (they fail under CI=true)\n!!!!!!!!\n`)
  return false
}
