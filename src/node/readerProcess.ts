/**
 * The entry point of a reader process (or worker thread). It loads the runner's module, builds the per-process
 * context once, says it is ready, then runs the batches of jobs the writer sends (see
 * `internal/jobRunner/protocol.ts`) and sends back, in one message per tick, the results finished in that tick. A
 * synchronous reader runs with no Effect step; only a reader that returns an `Effect` gets a fiber. The writer side
 * bounds how many jobs a process holds (`concurrentTasksPerProcess`).
 *
 * SIGINT and SIGTERM are ignored here: the writer process decides when readers stop (a Ctrl-C reaches the whole
 * process group, and the running items must finish). When the writer asks it to close, the reader releases its
 * context and exits; if the writer process disappears, the reader exits at once, so no orphan is left.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as WorkerThreads from "node:worker_threads"
import type * as Api from "../JobRunner.js"
import {
  CLOSE,
  decodeSettings,
  type Failure,
  type FromReader,
  makeJobStarter,
  READY,
  RESULTS,
  type ToReader
} from "../internal/jobRunner/protocol.js"
import { failureDetail, isJobRunner } from "../internal/jobRunner/runner.js"

interface Init {
  readonly module: string
  readonly name: string
  readonly settings: unknown
  readonly slot: number
}

const init = JSON.parse(process.argv[2] ?? "{}") as Init
const port = WorkerThreads.parentPort

if (WorkerThreads.isMainThread) {
  process.on("SIGINT", () => {})
  process.on("SIGTERM", () => {})
  process.on("disconnect", () => process.exit(0))
}

const send: (message: FromReader) => void = port !== null
  ? (message) => port.postMessage(message)
  : (message) => {
    if (process.connected) process.send!(message)
  }

const findRunner = (mod: Record<string, unknown>): Api.JobRunner<unknown, unknown, unknown> | undefined => {
  for (const value of Object.values(mod)) {
    if (isJobRunner(value) && value.name === init.name) return value
  }
  const fallback = mod.default
  return isJobRunner(fallback) ? fallback : undefined
}

const main = Effect.gen(function*() {
  const mod = yield* Effect.promise(() => import(init.module) as Promise<Record<string, unknown>>)
  const runner = findRunner(mod)
  if (runner === undefined) {
    return yield* Effect.dieMessage(`no JobRunner named ${init.name} is exported by ${init.module}`)
  }
  const settings = decodeSettings(init.settings) as Api.Settings
  const scope = yield* Scope.make()
  const context = yield* Layer.buildWithScope(runner.context ?? Layer.empty, scope)

  let ok: Array<number> = []
  let failures: Array<Failure> = []
  let scheduled = false
  let inBatch = false
  const flush = () => {
    scheduled = false
    if (ok.length === 0 && failures.length === 0) return
    send([RESULTS, ok, failures])
    ok = []
    failures = []
  }
  const start = makeJobStarter(runner, context as Context.Context<unknown>, settings, failureDetail, (id, reason, detail) => {
    if (reason === undefined) ok.push(id)
    else failures.push([id, reason, detail ?? ""])
    // Results of a batch are sent when the batch has been started; later ones once per tick.
    if (!inBatch && !scheduled) {
      scheduled = true
      setImmediate(flush)
    }
  })

  ;(port ?? process).on("message", (message: ToReader) => {
    if (message[0] === CLOSE) {
      Effect.runPromise(Scope.close(scope, Exit.void)).finally(() => process.exit(0))
      return
    }
    inBatch = true
    try {
      for (let i = 1; i < message.length; i += 2) start(message[i] as number, message[i + 1])
    } finally {
      inBatch = false
    }
    flush()
  })
  send([READY])
})

Effect.runFork(main).addObserver((exit) => {
  if (exit._tag === "Failure" && !Cause.isInterruptedOnly(exit.cause)) {
    process.stderr.write(`reader process ${process.pid} failed:\n${Cause.pretty(exit.cause)}\n`)
    process.exit(1)
  }
})
