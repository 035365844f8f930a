/**
 * Every error class has an `isXError` guard in its public module, true for its own errors only.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"
import * as DurableQueue from "../src/DurableQueue.js"
import { ReaderError } from "../src/internal/jobRunner/protocol.js"
import * as JobRunner from "../src/JobRunner.js"
import * as OptionError from "../src/OptionError.js"
import * as RedisClient from "../src/redis/RedisClient.js"
import * as ResultCache from "../src/ResultCache.js"
import * as TaskEngine from "../src/TaskEngine.js"
import * as WorkerQueue from "../src/WorkerQueue.js"

const errors = {
  DurableQueueError: new DurableQueue.DurableQueueError({ reason: "StoreFailed", backend: "memory", queue: "q" }),
  JobRunnerError: new JobRunner.JobRunnerError({ reason: "SpawnFailed", runner: "r", detail: "d" }),
  RedisError: new RedisClient.RedisError({ reason: "CommandFailed", command: "GET" }),
  ResultCacheError: new ResultCache.ResultCacheError({ reason: "GetFailed", key: "k" }),
  TaskEngineError: new TaskEngine.TaskEngineError({ reason: "StartTimeout", timeout: Duration.seconds(1) }),
  WorkerQueueError: new WorkerQueue.WorkerQueueError({ reason: "Closed", queue: "q" }),
  OptionError: new OptionError.OptionError({ module: "M", field: "f", expected: "e", value: 0 }),
  ReaderError: new ReaderError({ reason: "Failed", detail: "d" }),
  ProcessDied: new JobRunner.ProcessDied({ detail: "d", unstarted: true }),
  JobTimedOut: new JobRunner.JobTimedOut({ detail: "d" }),
  JobCancelled: new JobRunner.JobCancelled({ detail: "d" })
}

const modules: Record<keyof typeof errors, string> = {
  DurableQueueError: "DurableQueue",
  JobRunnerError: "JobRunner",
  RedisError: "RedisClient",
  ResultCacheError: "ResultCache",
  TaskEngineError: "TaskEngine",
  WorkerQueueError: "WorkerQueue",
  OptionError: "OptionError",
  ReaderError: "JobRunner",
  ProcessDied: "JobRunner",
  JobTimedOut: "JobRunner",
  JobCancelled: "JobRunner"
}

const guards: Record<keyof typeof errors, (u: unknown) => boolean> = {
  DurableQueueError: DurableQueue.isDurableQueueError,
  JobRunnerError: JobRunner.isJobRunnerError,
  RedisError: RedisClient.isRedisError,
  ResultCacheError: ResultCache.isResultCacheError,
  TaskEngineError: TaskEngine.isTaskEngineError,
  WorkerQueueError: WorkerQueue.isWorkerQueueError,
  OptionError: OptionError.isOptionError,
  ReaderError: JobRunner.isReaderError,
  ProcessDied: JobRunner.isProcessDied,
  JobTimedOut: JobRunner.isJobTimedOut,
  JobCancelled: JobRunner.isJobCancelled
}

describe("error guards", () => {
  it("each isXError recognises its own error and no other", () => {
    for (const [name, guard] of Object.entries(guards)) {
      const hits = Object.entries(errors).filter(([, e]) => guard(e)).map(([n]) => n)
      expect(hits, name).toEqual([name])
      expect(guard({ _tag: name }), name).toBe(false)
    }
  })

  it("each error's identifier is effect-workers/<Module>/<Error>, and the guard finds that TypeId, not the class", () => {
    for (const [name, error] of Object.entries(errors) as Array<[keyof typeof errors, object]>) {
      const id = `effect-workers/${modules[name]}/${name}`
      // A Schema class prints as "(<id> (Encoded side) <-> <id>)".
      expect(Schema.isSchema(error.constructor) && String(error.constructor), name).toContain(`<-> ${id})`)
      // An error from another copy of the library: another class, the same global symbol.
      const twin = Object.create({ [Symbol.for(id)]: Symbol.for(id) })
      expect(guards[name](twin), name).toBe(true)
      expect(error instanceof (error.constructor as new() => object), name).toBe(true)
      expect((error as { readonly _tag?: unknown })._tag, name).toBe(name)
    }
  })

  it("JobRunner's job errors keep their public fields and say what happened in their message", () => {
    const died = errors.ProcessDied
    expect([died.detail, died.unstarted]).toEqual(["d", true])
    expect(new JobRunner.ProcessDied({ detail: "exit code 1" }).unstarted).toBeUndefined()
    expect(died.message).toBe("reader process died before the job started: d")
    expect(errors.JobTimedOut.message).toBe("job timed out: d")
    expect(errors.JobCancelled.message).toBe("job cancelled: d")
  })
})
