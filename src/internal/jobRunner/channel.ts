/**
 * The writer's end of the channel to one reader: jobs handed over in the same tick leave in one message, results
 * settle their jobs by callback, and the reader's death fails exactly the jobs it still holds. Used by every
 * spawner (child process, worker thread, inline), which only supplies `post` and reports `receive` / `gone`.
 *
 * Faults it absorbs: an item structured clone cannot carry (a function, a Symbol) fails that job alone, where it
 * used to throw an uncaught `DataCloneError` out of the flush and kill the writer process; a message on the channel
 * that is not ours (user code calling `process.send` / `parentPort.postMessage`) is logged and ignored.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { type AnyRunner, JobRunnerError, ProcessDied } from "./definition.js"
import {
  CANCEL,
  CLOSE,
  CONTEXT_FAILED,
  isFromReader,
  needsAsync,
  PROTOCOL_VERSION,
  ReaderError,
  READY,
  RESULTS,
  RUN,
  START_FAILED,
  type ToReader
} from "./protocol.js"
import type { Job, JobDone, ReaderHandle } from "./spawner.js"

interface Pending {
  readonly job: Job
  readonly done: JobDone
  readonly onStart: ((job: Job) => void) | undefined
  /** The reader reported it started the job (until then it waits in the reader's backlog). */
  started: boolean
}

/** Foreign messages logged per reader before going quiet (a chatty library would flood the log). */
const FOREIGN_LOGGED = 10

const describe = (error: unknown): string => error instanceof Error ? `${error.name}: ${error.message}` : String(error)

/** @internal */
export class ReaderChannel {
  private readonly pending = new Map<number, Pending>()
  private outbox: Array<unknown> = [RUN]
  private scheduled = false
  private dead = false
  private foreign = 0
  private readonly started = Deferred.unsafeMake<void, JobRunnerError>(FiberId.none)
  private readonly ended = Deferred.unsafeMake<void>(FiberId.none)
  private readonly encodeSync: (
    item: unknown
  ) => Either.Either<unknown, { readonly message: string; readonly issue: never }>
  private readonly encode: (item: unknown) => Effect.Effect<unknown, { readonly message: string }>

  constructor(
    private readonly runner: AnyRunner,
    /** "reader process 1234", "reader thread 3", "inline reader -1": for messages. */
    readonly label: string,
    private readonly post: (message: ToReader) => void,
    /** The reader's `concurrentTasksPerProcess`: how many of the jobs it holds it runs at once. */
    private readonly slots: number
  ) {
    this.encodeSync = Schema.encodeUnknownEither(runner.item) as never
    this.encode = Schema.encodeUnknown(runner.item)
  }

  get isDead(): boolean {
    return this.dead
  }

  /**
   * Completes once the reader said it is ready; fails with why it could not start: `ContextFailed` when the
   * reader's context threw, rejected or failed, `SpawnFailed` otherwise.
   */
  get ready(): Effect.Effect<void, JobRunnerError> {
    return Deferred.await(this.started)
  }

  get exited(): Effect.Effect<void> {
    return Deferred.await(this.ended)
  }

  /** As `ReaderHandle.submit`. */
  submit(job: Job, done: JobDone, onStart?: (job: Job) => void): boolean {
    if (this.dead) return false
    const encoded = this.encodeSync(job.item)
    if (Either.isRight(encoded)) {
      this.pending.set(job.id, { job, done, onStart, started: false })
      this.enqueue(job.id, encoded.right)
      return true
    }
    if (!needsAsync(encoded.left.issue)) {
      done(job, notEncoded(encoded.left.message))
      return true
    }
    this.pending.set(job.id, { job, done, onStart, started: false })
    this.encodeAsync(job)
    return true
  }

  /** As `ReaderHandle.cancel`. */
  cancel(jobId: number): boolean {
    if (!this.pending.delete(jobId)) return false
    if (!this.dead) {
      try {
        this.post([CANCEL, jobId])
      } catch {
        // The channel is closing; the process is going away anyway.
      }
    }
    return true
  }

  /** As `ReaderHandle.interrupt`. */
  interrupt(jobId: number): void {
    if (this.dead || !this.pending.has(jobId)) return
    try {
      this.post([CANCEL, jobId])
    } catch {
      // The channel is closing; the process is going away anyway.
    }
  }

  /** A message from the reader. */
  receive(message: unknown): void {
    if (!isFromReader(message)) return this.ignore(message)
    switch (message[0]) {
      case READY:
        return Deferred.unsafeDone(
          this.started,
          message[1] === PROTOCOL_VERSION ? Exit.void : Exit.fail(this.startError(
            "SpawnFailed",
            `the reader speaks protocol version ${
              message[1] ?? 1
            }, this writer ${PROTOCOL_VERSION} (a stale build of the reader entry?)`
          ))
        )
      case START_FAILED:
        return Deferred.unsafeDone(
          this.started,
          Exit.fail(this.startError(message[2] === CONTEXT_FAILED ? "ContextFailed" : "SpawnFailed", message[1]))
        )
      case RESULTS: {
        const progress = message[4]
        if (progress !== undefined) {
          for (const [id, value] of progress) this.pending.get(id)?.job.progress?.(value)
        }
        const started = message[3]
        for (let i = 0; i < started.length; i++) {
          const entry = this.pending.get(started[i]!)
          if (entry === undefined) continue
          entry.started = true
          entry.onStart?.(entry.job)
        }
        const ok = message[1]
        for (let i = 0; i < ok.length; i++) this.settle(ok[i]!, undefined)
        for (const [id, reason, detail] of message[2]) this.settle(id, new ReaderError({ reason, detail }))
        this.markHeadStarted()
      }
    }
  }

  /**
   * The reader is gone (`how`: "exited with code 1", "was killed by SIGKILL"): exactly the jobs it had started
   * fail; the ones still waiting in its backlog come back `unstarted`, for another process to run.
   */
  gone(how: string): void {
    if (this.dead) return
    this.dead = true
    Deferred.unsafeDone(this.started, Exit.fail(this.startError("SpawnFailed", `${how} while starting`)))
    const detail = `the ${this.label} ${how}`
    const died = new ProcessDied({ detail })
    const notRun = new ProcessDied({ detail, unstarted: true })
    const lost = [...this.pending.values()]
    this.pending.clear()
    for (const { done, job, started } of lost) done(job, started ? died : notRun)
    Deferred.unsafeDone(this.ended, Exit.void)
  }

  /**
   * Closing: the reader releases its context and exits; killed if it has not after 5 s, or at once if it never
   * became ready (a SIGTERM during a slow context build must not wait for it). Finalizers run uninterruptibly, so
   * the waits are made interruptible for their timeouts to apply.
   */
  close(kill: Effect.Effect<void>): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      if (this.dead) return
      if (Option.isNone(yield* Deferred.poll(this.started))) {
        yield* kill
      } else {
        this.post([CLOSE])
        const closed = yield* this.exited.pipe(Effect.interruptible, Effect.timeout("5 seconds"), Effect.option)
        if (Option.isSome(closed)) return
        yield* kill
      }
      yield* this.exited.pipe(Effect.interruptible, Effect.timeout("2 seconds"), Effect.ignore)
    })
  }

  /** The handle the supervisor uses. */
  handle(processId: number, kill: Effect.Effect<void>): ReaderHandle {
    return {
      processId,
      submit: (job, done, onStart) => this.submit(job, done, onStart),
      cancel: (jobId) => this.cancel(jobId),
      interrupt: (jobId) => this.interrupt(jobId),
      exited: this.exited,
      kill
    }
  }

  /**
   * The reader starts jobs in the order they were sent, `slots` at a time, so the first `slots` jobs it holds have
   * started even before it says so: a reader stuck in a synchronous loop never sends the start of the job that
   * loops, and that job must still time out and count as lost. `pending` keeps the send order. Once per message.
   */
  private markHeadStarted(): void {
    let n = 0
    for (const entry of this.pending.values()) {
      if (n++ >= this.slots) return
      if (entry.started) continue
      entry.started = true
      entry.onStart?.(entry.job)
    }
  }

  private startError(reason: "SpawnFailed" | "ContextFailed", detail: string): JobRunnerError {
    return new JobRunnerError({ reason, runner: this.runner.name, detail })
  }

  private enqueue(id: number, encoded: unknown): void {
    this.outbox.push(id, encoded)
    if (!this.scheduled) {
      this.scheduled = true
      queueMicrotask(this.flush)
    }
  }

  // Every job handed over in the same tick leaves in one message.
  private readonly flush = (): void => {
    this.scheduled = false
    const message = this.outbox
    this.outbox = [RUN]
    if (this.dead) return
    try {
      this.post(message)
    } catch {
      this.postOneByOne(message)
    }
    this.markHeadStarted()
  }

  // Structured clone refused the batch: send each job alone, so only the ones it cannot carry fail.
  private postOneByOne(message: ReadonlyArray<unknown>): void {
    for (let i = 1; i < message.length; i += 2) {
      const id = message[i] as number
      try {
        this.post([RUN, id, message[i + 1]])
      } catch (error) {
        this.settle(id, new ReaderError({ reason: "Unsendable", detail: describe(error) }))
      }
    }
  }

  private settle(id: number, failure: ReaderError | ProcessDied | undefined): void {
    const entry = this.pending.get(id)
    if (entry === undefined) return
    this.pending.delete(id)
    entry.done(entry.job, failure)
  }

  private encodeAsync(job: Job): void {
    Effect.runCallback(this.encode(job.item), {
      onExit: (exit) => {
        if (!this.pending.has(job.id)) return
        if (exit._tag === "Success") this.enqueue(job.id, exit.value)
        else {
          this.settle(
            job.id,
            notEncoded(Cause.isFailType(exit.cause) ? exit.cause.error.message : Cause.pretty(exit.cause))
          )
        }
      }
    })
  }

  private ignore(message: unknown): void {
    this.foreign++
    if (this.foreign > FOREIGN_LOGGED) return
    let shown: string
    try {
      shown = JSON.stringify(message)?.slice(0, 200) ?? String(message)
    } catch {
      shown = String(message)
    }
    const more = this.foreign === FOREIGN_LOGGED ? " (further ones are not logged)" : ""
    Effect.runFork(
      Effect.logWarning(
        `JobRunner: ignored a message on the ${this.label}'s channel that is not the runner's: ${shown}${more}`
      )
    )
  }
}

const notEncoded = (message: string) =>
  new ReaderError({ reason: "Failed", detail: `the item could not be encoded: ${message}` })
