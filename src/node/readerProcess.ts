/**
 * The entry point of a reader process (or worker thread). It loads the runner's module and runs the reader host
 * (`internal/jobRunner/readerHost.ts`, the same code `layerInline` runs) over the IPC channel or the thread's port.
 *
 * SIGINT and SIGTERM are ignored here: the writer process decides when readers stop (a Ctrl-C reaches the whole
 * process group, and the running items must finish). A reader process dies with its writer whatever it is doing:
 * a closed IPC channel ends it at once when its event loop is free, and a watchdog thread, which runs even while a
 * reader blocks the main thread in a synchronous loop, kills it within ~250 ms of its parent's disappearance
 * (the parent pid changes when the process is re-parented). A process that exits (a reader calling
 * `process.exit`, an uncaught exception) first sends the results it finished, so only unfinished jobs are lost.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as WorkerThreads from "node:worker_threads"
import { type AnyRunner, isJobRunner } from "../internal/jobRunner/definition.js"
import { decodeSettings, type FromReader, START_FAILED } from "../internal/jobRunner/protocol.js"
import { startReaderHost } from "../internal/jobRunner/readerHost.js"
import type * as Api from "../JobRunner.js"

interface Init {
  readonly module: string
  readonly name: string
  readonly settings: unknown
  readonly slot: number
  readonly parentPid?: number
}

const init = JSON.parse(process.argv[2] ?? "{}") as Init
const port = WorkerThreads.parentPort

/** How often the watchdog looks at the parent pid: a killed writer's readers are gone within this (plus start). */
const WATCHDOG_MS = 250

const watchdog = (parentPid: number) => {
  const source = `
    const { workerData } = require("node:worker_threads")
    const check = () => { if (process.ppid !== workerData) process.kill(process.pid, "SIGKILL") }
    check()
    setInterval(check, ${WATCHDOG_MS})
  `
  new WorkerThreads.Worker(source, { eval: true, workerData: parentPid }).unref()
}

if (WorkerThreads.isMainThread) {
  process.on("SIGINT", () => {})
  process.on("SIGTERM", () => {})
  process.on("disconnect", () => process.exit(0))
  watchdog(init.parentPid ?? process.ppid)
}

const send: (message: FromReader) => void = port !== null
  ? (message) => port.postMessage(message)
  : (message) => {
    if (process.connected) process.send!(message)
  }

const findRunner = (mod: Record<string, unknown>): AnyRunner | undefined => {
  for (const value of Object.values(mod)) {
    if (isJobRunner(value) && value.name === init.name) return value
  }
  const fallback = mod.default
  return isJobRunner(fallback) ? fallback : undefined
}

const main = Effect.gen(function*() {
  // The import's own error (a syntax error, a missing package) is the reason shown, not UnknownException's.
  const mod = yield* Effect.tryPromise({
    try: () => import(init.module) as Promise<Record<string, unknown>>,
    catch: (e) => e
  })
  const runner = findRunner(mod)
  if (runner === undefined) {
    return yield* Effect.fail(new Error(`no JobRunner named ${init.name} is exported by ${init.module}`))
  }
  const settings = decodeSettings(init.settings) as Api.Settings
  const host = yield* startReaderHost(runner, settings, {
    send,
    later: setImmediate,
    exit: (code) => process.exit(code)
  })
  if (host === undefined) return
  ;(port ?? process).on("message", host.receive)
  process.on("exit", host.flush)
})

Effect.runFork(main).addObserver((exit) => {
  if (exit._tag === "Failure" && !Cause.isInterruptedOnly(exit.cause)) {
    const squashed = Cause.squash(exit.cause)
    send([START_FAILED, squashed instanceof Error ? squashed.message : Cause.pretty(exit.cause)])
    process.stderr.write(`reader process ${process.pid} failed:\n${Cause.pretty(exit.cause)}\n`)
    process.exit(1)
  }
})
