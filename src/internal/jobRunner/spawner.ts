/**
 * How reader processes are started, as a service: a spawner returns a handle that takes jobs and reports how each
 * ended. The default spawner (`process.ts`) forks OS processes or starts worker threads; `layerInline`
 * (`inline.ts`) runs the same reader host in the current process, for tests. Both talk to the reader through a
 * `ReaderChannel` (`channel.ts`), so the rules are the same whatever the transport.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as Api from "../../JobRunner.js"
import type { AnyRunner, JobCancelled, JobRunnerError, JobTimedOut, ProcessDied } from "./definition.js"
import type { ReaderError } from "./protocol.js"

/** @internal */
export interface Job {
  readonly id: number
  readonly item: unknown
  /** With a durable source: settles the job's lease (undefined: success; a failure; "back": put it back untried). */
  readonly settle?: ((outcome: Api.JobFailure | undefined | "back") => void) | undefined
  /** With a durable source: records the progress its reader reported (`ReaderJob.progress`). */
  readonly progress?: ((value: unknown) => void) | undefined
}

/** How a job ended: `undefined` for success. @internal */
export type JobDone = (job: Job, failure: ReaderError | ProcessDied | JobTimedOut | JobCancelled | undefined) => void

/** @internal */
export interface ReaderHandle {
  readonly processId: number
  /**
   * Hands a job to the process. `done` is called once with its outcome (`undefined`: success), possibly at once;
   * `false` (and no `done`) means the process is already gone and did not take the job. A process may hold more
   * jobs than it runs at once: `onStart` is called when it reports the job started (a job whose process died
   * before that ends with `ProcessDied` and `unstarted: true`).
   */
  readonly submit: (job: Job, done: JobDone, onStart?: ((job: Job) => void) | undefined) => boolean
  /**
   * Gives up on a job the process holds (it timed out): its result, if it ever comes, is ignored, and an `Effect`
   * reader running it is interrupted. `false` when the job was no longer held.
   */
  readonly cancel: (jobId: number) => boolean
  /**
   * Asks the process to interrupt a job it runs (its durable job was cancelled), keeping it held: its outcome
   * still comes back through `done` once the reader stops (an `Effect` reader is interrupted; a sync or async one
   * cannot be). Optional: without it such a job is given up with `cancel`.
   */
  readonly interrupt?: ((jobId: number) => void) | undefined
  /** Completes when the process has ended (on its own, or killed). */
  readonly exited: Effect.Effect<void>
  /** Kills the process at once: its jobs fail with `ProcessDied`, and `exited` completes. */
  readonly kill: Effect.Effect<void>
}

/** @internal */
export interface SpawnRequest {
  readonly runner: AnyRunner
  readonly settings: Api.Settings
  readonly slot: number
}

/** @internal */
export class ReaderSpawner extends Context.Tag("effect-workers/JobRunner/ReaderSpawner")<
  ReaderSpawner,
  { readonly spawn: (request: SpawnRequest) => Effect.Effect<ReaderHandle, JobRunnerError, Scope.Scope> }
>() {}
