/**
 * The default `ReaderSpawner`: each reader runs in an OS process started with `child_process.fork` (or a worker
 * thread with `workerMode: "thread"`), talking to the writer through `@effect/platform`'s `Worker` over
 * `@effect/platform-node`. A `.ts` entry or runner module gets the tsx loader, so the same runner works as
 * TypeScript in development and as compiled JavaScript in production.
 */
import * as NodeWorker from "@effect/platform-node/NodeWorker"
import * as Worker from "@effect/platform/Worker"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as ChildProcess from "node:child_process"
import { createRequire } from "node:module"
import { fileURLToPath, pathToFileURL } from "node:url"
import * as WorkerThreads from "node:worker_threads"
import { encodeSettings, type ReaderError, RunJob } from "./protocol.js"
import type { ReaderHandle, SpawnRequest } from "./runner.js"
import { JobRunnerError, ProcessDied, READER_ENV } from "./runner.js"
import * as Schema from "effect/Schema"

const isTs = (path: string) => /\.[cm]?tsx?$/.test(path)

/**
 * Overrides where the reader entry is, for bundled deployments where relative paths no longer hold.
 *
 * @internal
 */
export const ENTRY_ENV = "EFFECT_WORKERS_JOB_RUNNER_ENTRY"

const entryUrl = (): URL => {
  const override = process.env[ENTRY_ENV]
  if (override !== undefined && override.length > 0) {
    return override.startsWith("file:") ? new URL(override) : pathToFileURL(override)
  }
  const self = import.meta.url
  const ext = isTs(fileURLToPath(self)) ? ".ts" : ".js"
  return new URL(`../../node/readerProcess${ext}`, self)
}

let tsxApi: string | undefined
const tsxApiImport = (): string => {
  if (tsxApi === undefined) tsxApi = new URL("./esm/api/index.mjs", tsxImport()).href
  return tsxApi
}

// Worker threads do not honour `--import` in their execArgv, so a TypeScript entry is started from a small
// bootstrap that registers tsx in the thread first.
const threadWorker = (entry: URL, needsTsx: boolean, options: WorkerThreads.WorkerOptions) =>
  needsTsx
    ? new WorkerThreads.Worker(
      `import(${JSON.stringify(tsxApiImport())}).then((m) => { m.register(); return import(${
        JSON.stringify(entry.href)
      }) })`,
      { ...options, eval: true }
    )
    : new WorkerThreads.Worker(entry, options)

let tsxLoader: string | undefined
const tsxImport = (): string => {
  if (tsxLoader === undefined) tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href
  return tsxLoader
}

const spawn = ({ runner, settings, slot }: SpawnRequest) =>
  Effect.gen(function*() {
    if (runner.module === undefined) {
      return yield* new JobRunnerError({
        reason: "ModuleUnknown",
        runner: runner.name,
        detail: "pass `module: import.meta.url` to JobRunner.make, or run it with the CLI"
      })
    }
    const entry = entryUrl()
    const moduleUrl = runner.module
    const needsTsx = isTs(fileURLToPath(entry)) || (moduleUrl.startsWith("file:") && isTs(fileURLToPath(moduleUrl)))
    const execArgv = needsTsx ? ["--import", tsxImport()] : []
    const init = JSON.stringify({ module: moduleUrl, name: runner.name, settings: encodeSettings(settings), slot })
    const exited = yield* Deferred.make<number | null>()
    let child: ChildProcess.ChildProcess | WorkerThreads.Worker | undefined

    const layer = NodeWorker.layer(() => {
      const c = settings.workerMode === "thread"
        ? threadWorker(entry, needsTsx, { argv: [init], env: { ...process.env, [READER_ENV]: "1" } })
        : ChildProcess.fork(fileURLToPath(entry), [init], {
          execArgv,
          env: { ...process.env, [READER_ENV]: "1" },
          serialization: "advanced",
          stdio: ["ignore", "inherit", "inherit", "ipc"]
        })
      child = c
      c.on("exit", (code) => Deferred.unsafeDone(exited, Exit.succeed(code)))
      return c
    })

    // Our own last word on the process: whatever happens to the Worker's finalizer, it is gone when the scope is.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        const c = child
        if (c === undefined) return
        const done = yield* Deferred.isDone(exited)
        if (done) return
        if (c instanceof WorkerThreads.Worker) yield* Effect.promise(() => c.terminate())
        else c.kill("SIGKILL")
        yield* Deferred.await(exited).pipe(Effect.timeout("2 seconds"), Effect.ignore)
      })
    )

    const worker = yield* Effect.raceFirst(
      Worker.makeSerialized<RunJob>({}).pipe(Effect.provide(layer)),
      Effect.flatMap(Deferred.await(exited), (code) => Effect.fail(`exited with code ${code} while starting`))
    ).pipe(
      Effect.mapError((e) =>
        new JobRunnerError({
          reason: "SpawnFailed",
          runner: runner.name,
          detail: typeof e === "string" ? e : e.message
        })
      )
    )

    const processId = child === undefined
      ? -1
      : child instanceof WorkerThreads.Worker
      ? child.threadId
      : child.pid ?? -1
    const encodeItem = Schema.encodeUnknown(runner.item)
    return {
      processId,
      run: (job) =>
        encodeItem(job.item).pipe(
          Effect.mapError((e) => new ProcessDied({ detail: `the item could not be encoded: ${e.message}` })),
          Effect.flatMap((item) =>
            // When the process exits, the Worker fails every request in flight; no race per job is needed.
            worker.executeEffect(new RunJob({ id: job.id, item })).pipe(
              Effect.catchAllCause((cause): Effect.Effect<never, ReaderError | ProcessDied> => {
                const failure = Cause.failureOption(cause)
                if (failure._tag === "Some" && failure.value._tag === "ReaderError") return Effect.fail(failure.value)
                return Effect.flatMap(
                  Deferred.poll(exited),
                  (exit) =>
                    exit._tag === "Some"
                      ? Effect.flatMap(exit.value, (code) =>
                        Effect.fail(new ProcessDied({ detail: `the reader process ${processId} exited with code ${code}` })))
                      : Effect.fail(
                        new ProcessDied({ detail: `the reader process ${processId} failed: ${Cause.pretty(cause)}` })
                      )
                )
              })
            )
          )
        ),
      exited: Effect.asVoid(Deferred.await(exited)),
      kill: Effect.sync(() => {
        const c = child
        if (c === undefined) return
        if (c instanceof WorkerThreads.Worker) void c.terminate()
        else c.kill("SIGKILL")
      })
    } satisfies ReaderHandle
  })

/** @internal */
export const processSpawner = { spawn }
