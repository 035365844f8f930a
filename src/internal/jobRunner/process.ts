/**
 * The default `ReaderSpawner`: each reader runs in an OS process started with `child_process.fork` (or a worker
 * thread with `workerMode: "thread"`) whose entry (`src/node/readerProcess`) runs the reader host. Readers start
 * from compiled JavaScript whenever it exists and pay for tsx only when a `.ts` file is left to load: a `.ts`
 * runner module with an up-to-date compiled sibling (`jobs.ts` → `jobs.js` / `jobs.mjs`, see `readerModule`) is
 * loaded as that sibling, and the tsx loader is added only if the entry or the module is still TypeScript. Through
 * tsx a reader took 11–13 s from spawn to its first job at load 16–20 on this 2-core machine, compiled 1.5–2.4 s.
 *
 * The writer talks to a reader over the raw channel (the child's IPC channel with `advanced` serialization, or the
 * thread's port) with the batched messages of `protocol.ts`, not through `@effect/platform`'s `Worker`: a job is
 * an entry in a map and a slot in the next outgoing message, and settles through a callback when its result comes
 * back. With `Worker.makeSerialized` each job was one Schema-serialized request each way and a fiber on each side:
 * trivial jobs (bench/job-runner.ts, 2 readers) ran at 0.27× piscina's rate in processes and 0.21× in threads
 * (6 400 and 5 000 per second); with this protocol at 3.3–3.9× and 3.9–4.1× (100 000–130 000 per second), on
 * the same machine (see bench/RESULTS.md).
 */
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import { fileURLToPath, pathToFileURL } from "node:url"
import * as WorkerThreads from "node:worker_threads"
import { ReaderChannel } from "./channel.js"
import { JobRunnerError, READER_ENV } from "./definition.js"
import { encodeSettings } from "./protocol.js"
import type { SpawnRequest } from "./spawner.js"

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

let tsxLoader: string | undefined
const tsxImport = (): string => {
  if (tsxLoader === undefined) tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href
  return tsxLoader
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

/** The modification time of `path` in ms, or undefined when it does not exist. */
const modifiedAt = (path: string): number | undefined => {
  try {
    return Fs.statSync(path).mtimeMs
  } catch {
    return undefined
  }
}

const COMPILED_SIBLINGS: Record<string, ReadonlyArray<string>> = {
  ".ts": [".js", ".mjs"],
  ".mts": [".mjs"],
  ".cts": [".cjs"]
}

/**
 * The module a reader loads. A `.ts` runner module (`file:` URL) is replaced by its compiled sibling in the same
 * folder (`.ts` → `.js`, then `.mjs`; `.mts` → `.mjs`; `.cts` → `.cjs`) when the sibling was modified no earlier
 * than the `.ts`: a stale build (the `.ts` edited since) is not used, the `.ts` is, through tsx. Any other module
 * (already JavaScript, or a build in another folder given as `module`) is loaded as it is. Looked up at every
 * spawn (two `stat` calls), so a rebuild is picked up by the next replacement.
 *
 * @internal
 */
export const readerModule = (moduleUrl: string): string => {
  if (!moduleUrl.startsWith("file:")) return moduleUrl
  const path = fileURLToPath(moduleUrl)
  const ext = /\.[cm]?ts$/.exec(path)?.[0]
  if (ext === undefined) return moduleUrl
  const source = modifiedAt(path)
  for (const compiledExt of COMPILED_SIBLINGS[ext] ?? []) {
    const sibling = path.slice(0, -ext.length) + compiledExt
    const compiled = modifiedAt(sibling)
    if (compiled !== undefined && (source === undefined || compiled >= source)) return pathToFileURL(sibling).href
  }
  return moduleUrl
}

/** Starts the child process or thread and wires its events to a channel. */
const start = ({ runner, settings, slot }: SpawnRequest, runnerModule: string) => {
  const entry = entryUrl()
  const moduleUrl = readerModule(runnerModule)
  const needsTsx = isTs(fileURLToPath(entry)) || (moduleUrl.startsWith("file:") && isTs(fileURLToPath(moduleUrl)))
  const init = JSON.stringify({
    module: moduleUrl,
    name: runner.name,
    settings: encodeSettings(settings),
    slot,
    parentPid: process.pid
  })
  const env = { ...process.env, [READER_ENV]: "1" }
  const slots = settings.concurrentTasksPerProcess
  if (settings.workerMode === "thread") {
    const child = threadWorker(entry, needsTsx, { argv: [init], env })
    const channel = new ReaderChannel(runner, `reader thread ${child.threadId}`, (m) => child.postMessage(m), slots)
    child.on("message", (m) => channel.receive(m))
    child.on("exit", (code) => channel.gone(`exited with code ${code}`))
    // An uncaught exception in the thread; it exits next. A child process prints its own to the inherited stderr.
    child.on("error", (error) => process.stderr.write(`${channel.label} failed: ${String(error)}\n`))
    const kill = Effect.sync(() => {
      if (!channel.isDead) void child.terminate()
    })
    return { channel, processId: child.threadId, kill }
  }
  const child = ChildProcess.fork(fileURLToPath(entry), [init], {
    execArgv: needsTsx ? ["--import", tsxImport()] : [],
    env,
    serialization: "advanced",
    stdio: ["ignore", "inherit", "inherit", "ipc"]
  })
  const processId = child.pid ?? -1
  const channel = new ReaderChannel(runner, `reader process ${processId}`, (m) => {
    if (child.connected) child.send(m)
  }, slots)
  child.on("message", (m) => channel.receive(m))
  // A child process is gone once its IPC channel is closed too ("close", not "exit"), so no result it sent before
  // dying is mistaken for a loss.
  child.on(
    "close",
    (code, signal) => channel.gone(signal !== null ? `was killed by ${signal}` : `exited with code ${code}`)
  )
  // Spawning failed (there is no process, hence no "close"), or a message could not be sent.
  child.on("error", (error) => {
    if (child.pid === undefined) channel.gone(`could not start (${String(error)})`)
    else process.stderr.write(`${channel.label}: ${String(error)}\n`)
  })
  const kill = Effect.sync(() => {
    if (!channel.isDead) child.kill("SIGKILL")
  })
  return { channel, processId, kill }
}

const spawn = (request: SpawnRequest) =>
  Effect.gen(function*() {
    const { runner } = request
    if (runner.module === undefined) {
      return yield* new JobRunnerError({
        reason: "ModuleUnknown",
        runner: runner.name,
        detail: "pass `module: import.meta.url` to JobRunner.make, or run it with the CLI"
      })
    }
    const { channel, kill, processId } = start(request, runner.module)
    yield* Effect.addFinalizer(() => channel.close(kill))
    yield* channel.ready
    return channel.handle(processId, kill)
  })

/** @internal */
export const processSpawner = { spawn }
