/**
 * The entry point of a reader process (or worker thread). It loads the runner's module, builds the per-process
 * context once, and serves `RunJob` requests through `@effect/platform`'s `WorkerRunner`. SIGINT and SIGTERM are
 * ignored here: the writer process decides when readers stop (a Ctrl-C reaches the whole process group, and the
 * running items must finish). If the writer process disappears, the reader exits at once, so no orphan is left.
 *
 * @since 0.1.0
 */
import * as NodeWorkerRunner from "@effect/platform-node/NodeWorkerRunner"
import * as WorkerRunner from "@effect/platform/WorkerRunner"
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as WorkerThreads from "node:worker_threads"
import type * as Api from "../JobRunner.js"
import { decodeSettings, RunJob } from "../internal/jobRunner/protocol.js"
import { isJobRunner, runReader } from "../internal/jobRunner/runner.js"

interface Init {
  readonly module: string
  readonly name: string
  readonly settings: unknown
  readonly slot: number
}

const init = JSON.parse(process.argv[2] ?? "{}") as Init

if (WorkerThreads.isMainThread) {
  process.on("SIGINT", () => {})
  process.on("SIGTERM", () => {})
  process.on("disconnect", () => process.exit(0))
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
  const handlers = Layer.unwrapScoped(Effect.gen(function*() {
    const context = yield* Layer.build(runner.context ?? Layer.empty)
    return WorkerRunner.layerSerialized(RunJob, {
      RunJob: (request: RunJob) => runReader(runner, context as Context.Context<unknown>, settings, request.item)
    })
  }))
  yield* WorkerRunner.launch(Layer.provide(handlers, NodeWorkerRunner.layer))
})

Effect.runFork(main).addObserver((exit) => {
  if (exit._tag === "Failure" && !Cause.isInterruptedOnly(exit.cause)) {
    process.stderr.write(`reader process ${process.pid} failed:\n${Cause.pretty(exit.cause)}\n`)
    process.exit(1)
  }
  if (WorkerThreads.isMainThread) process.exit(0)
})
