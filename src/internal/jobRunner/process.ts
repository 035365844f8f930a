/**
 * The default `ReaderSpawner`: each reader runs in an OS process started with `child_process.fork` (or a worker
 * thread with `workerMode: "thread"`). A `.ts` entry or runner module gets the tsx loader, so the same runner works
 * as TypeScript in development and as compiled JavaScript in production.
 *
 * The writer talks to a reader over the raw channel (the child's IPC channel with `advanced` serialization, or the
 * thread's port) with the batched messages of `protocol.ts`, not through `@effect/platform`'s `Worker`: a job is
 * an entry in a map and a slot in the next outgoing message, and settles through a callback when its result comes
 * back. With `Worker.makeSerialized` each job was one Schema-serialized request each way and a fiber on each side:
 * trivial jobs (bench/job-runner.ts, 2 readers) ran at 0.27× piscina's rate in processes and 0.21× in threads
 * (6 400 and 5 000 per second); with this protocol at 3.3–3.9× and 3.9–4.1× (100 000–130 000 per second), on
 * the same machine (see bench/RESULTS.md). What the Worker gave is kept: the process is ready only once its
 * context is built, a process that dies fails exactly its in-flight jobs with `ProcessDied`, closing asks the
 * reader to release its context and exit (killed after 5 s), and the reader exits on its own if the writer
 * disappears.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import * as ChildProcess from "node:child_process"
import { createRequire } from "node:module"
import { fileURLToPath, pathToFileURL } from "node:url"
import * as WorkerThreads from "node:worker_threads"
import { CLOSE, encodeSettings, type FromReader, needsAsync, READY, ReaderError, RUN } from "./protocol.js"
import type { Job, JobDone, ReaderHandle, SpawnRequest } from "./runner.js"
import { JobRunnerError, ProcessDied, READER_ENV } from "./runner.js"

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

interface Pending {
  readonly job: Job
  readonly done: JobDone
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
    const init = JSON.stringify({ module: moduleUrl, name: runner.name, settings: encodeSettings(settings), slot })
    const env = { ...process.env, [READER_ENV]: "1" }
    const exited = yield* Deferred.make<void>()
    const started = yield* Deferred.make<void, string>()

    const child: ChildProcess.ChildProcess | WorkerThreads.Worker = settings.workerMode === "thread"
      ? threadWorker(entry, needsTsx, { argv: [init], env })
      : ChildProcess.fork(fileURLToPath(entry), [init], {
        execArgv: needsTsx ? ["--import", tsxImport()] : [],
        env,
        serialization: "advanced",
        stdio: ["ignore", "inherit", "inherit", "ipc"]
      })
    const isThread = child instanceof WorkerThreads.Worker
    const processId = isThread ? child.threadId : child.pid ?? -1
    const post = isThread
      ? (message: ReadonlyArray<unknown>) => child.postMessage(message)
      : (message: ReadonlyArray<unknown>) => {
        if (child.connected) child.send(message)
      }

    let dead = false
    const pending = new Map<number, Pending>()
    let outbox: Array<unknown> = [RUN]
    let scheduled = false
    const flush = () => {
      scheduled = false
      const message = outbox
      outbox = [RUN]
      if (!dead) post(message)
    }
    // Every job handed over in the same tick leaves in one message.
    const enqueue = (id: number, encoded: unknown) => {
      outbox.push(id, encoded)
      if (!scheduled) {
        scheduled = true
        queueMicrotask(flush)
      }
    }
    const settle = (id: number, failure: ReaderError | ProcessDied | undefined) => {
      const entry = pending.get(id)
      if (entry === undefined) return
      pending.delete(id)
      entry.done(entry.job, failure)
    }

    child.on("message", (message: FromReader) => {
      if (message[0] === READY) return Deferred.unsafeDone(started, Exit.void)
      const ok = message[1]
      for (let i = 0; i < ok.length; i++) settle(ok[i]!, undefined)
      for (const [id, reason, detail] of message[2]) settle(id, new ReaderError({ reason, detail }))
    })
    // The process is gone: exactly the jobs it still holds fail, with its id. A child process is gone once its IPC
    // channel is closed too ("close", not "exit"), so no result it sent before dying is mistaken for a loss.
    const gone = (code: number | null, signal: string | null) => {
      if (dead) return
      dead = true
      const how = signal !== null ? `was killed by ${signal}` : `exited with code ${code}`
      Deferred.unsafeDone(started, Exit.fail(`${how} while starting`))
      const error = new ProcessDied({ detail: `the reader process ${processId} ${how}` })
      const lost = [...pending.values()]
      pending.clear()
      for (const { done, job } of lost) done(job, error)
      Deferred.unsafeDone(exited, Exit.void)
    }
    if (isThread) {
      child.on("exit", (code) => gone(code, null))
      // An uncaught exception in the thread; it exits next. A child process prints its own to the inherited stderr.
      child.on("error", (error) => process.stderr.write(`reader thread ${processId} failed: ${String(error)}\n`))
    } else {
      child.on("close", gone)
      // Spawning failed (there is no process, hence no "close"), or a message could not be sent.
      child.on("error", (error) => {
        if (child.pid === undefined) gone(null, null)
        else process.stderr.write(`reader process ${processId}: ${String(error)}\n`)
      })
    }

    const kill = Effect.sync(() => {
      if (dead) return
      if (isThread) void child.terminate()
      else child.kill("SIGKILL")
    })
    // Closing: the reader releases its context and exits; killed if it has not after 5 s. Finalizers run
    // uninterruptibly, so the waits are made interruptible for their timeouts to apply.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        if (dead) return
        post([CLOSE])
        const closed = yield* Deferred.await(exited).pipe(Effect.interruptible, Effect.timeout("5 seconds"), Effect.option)
        if (closed._tag === "Some") return
        yield* kill
        yield* Deferred.await(exited).pipe(Effect.interruptible, Effect.timeout("2 seconds"), Effect.ignore)
      })
    )

    yield* Deferred.await(started).pipe(
      Effect.mapError((detail) => new JobRunnerError({ reason: "SpawnFailed", runner: runner.name, detail }))
    )

    const encodeSync = Schema.encodeUnknownEither(runner.item)
    const encode = Schema.encodeUnknown(runner.item)
    const notEncoded = (message: string) =>
      new ReaderError({ reason: "Failed", detail: `the item could not be encoded: ${message}` })
    return {
      processId,
      submit: (job, done) => {
        if (dead) return false
        const encoded = encodeSync(job.item)
        if (Either.isRight(encoded)) {
          pending.set(job.id, { job, done })
          enqueue(job.id, encoded.right)
          return true
        }
        if (!needsAsync(encoded.left.issue)) {
          done(job, notEncoded(encoded.left.message))
          return true
        }
        // An asynchronous item Schema.
        pending.set(job.id, { job, done })
        Effect.runCallback(encode(job.item), {
          onExit: (exit) => {
            if (!pending.has(job.id)) return
            if (exit._tag === "Success") enqueue(job.id, exit.value)
            else {
              settle(
                job.id,
                notEncoded(Cause.isFailType(exit.cause) ? exit.cause.error.message : Cause.pretty(exit.cause))
              )
            }
          }
        })
        return true
      },
      exited: Deferred.await(exited),
      kill
    } satisfies ReaderHandle
  })

/** @internal */
export const processSpawner = { spawn }
