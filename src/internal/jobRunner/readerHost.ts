/**
 * The one place readers run, whatever carries the messages: a reader process, a worker thread, or `layerInline`
 * in the writer's own process. The host builds the per-process context once, says it is ready (or why it could
 * not start), runs the batches of jobs it receives and sends back, in one message per burst, the results finished
 * in that burst. A synchronous reader runs with no Effect step; only a reader that returns an `Effect` gets a fiber,
 * run with the host's runtime (so `TestClock` drives inline readers) and the context provided.
 *
 * A transport supplies `send`, `later` (when to send results finished outside a batch: `setImmediate` in a
 * process, so a tick's results share one message; a microtask inline, as `TestClock` tests drive microtasks only)
 * and `exit`.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import type * as Api from "../../JobRunner.js"
import { type AnyRunner, failureDetail, isPromiseLike } from "./definition.js"
import {
  CANCEL,
  CLOSE,
  CONTEXT_FAILED,
  type Failure,
  type FromReader,
  isToReader,
  type JobProgress,
  needsAsync,
  PROTOCOL_VERSION,
  type ReaderError,
  READY,
  RESULTS,
  START_FAILED
} from "./protocol.js"

/** @internal */
export interface ReaderTransport {
  readonly send: (message: FromReader) => void
  readonly later: (flush: () => void) => void
  /** The reader is done (closed: 0; could not start: 1). */
  readonly exit: (code: number) => void
}

/** @internal */
export interface ReaderHost {
  /** A message from the writer; anything that is not ours is ignored. */
  readonly receive: (message: unknown) => void
  /** Sends the results finished so far now: a process that is exiting reports them before it goes. */
  readonly flush: () => void
  /** Interrupts the running `Effect` readers and releases the context (an inline "kill"). */
  readonly kill: () => void
}

type Settle = (id: number, reason?: ReaderError["reason"], detail?: string) => void

/**
 * Returns a function that runs one job on its encoded item and calls `settle` once with the outcome: every way a
 * reader can fail (throw, rejection, typed failure, defect, interruption) becomes a failure with its detail.
 */
const makeJobStarter = (
  runner: AnyRunner,
  context: Context.Context<unknown>,
  settings: Api.Settings,
  runtime: Runtime.Runtime<unknown>,
  running: Map<number, Fiber.RuntimeFiber<unknown, unknown>>,
  settle: Settle,
  progress: (id: number, value: unknown) => void
): (id: number, encoded: unknown) => void => {
  const decodeSync = Schema.decodeUnknownEither(runner.item)
  const decode = Schema.decodeUnknown(runner.item)
  const runFork = Runtime.runFork(runtime)
  const failed = (id: number, cause: Cause.Cause<unknown>) => settle(id, "Failed", failureDetail(cause))

  const runEffect = (id: number, effect: Effect.Effect<unknown, unknown>) => {
    const fiber = runFork(effect)
    running.set(id, fiber)
    fiber.addObserver((exit) => {
      running.delete(id)
      if (exit._tag === "Success") settle(id)
      else if (Cause.isInterruptedOnly(exit.cause)) settle(id, "Failed", "interrupted")
      else failed(id, exit.cause)
    })
  }

  const runItem = (id: number, item: unknown) => {
    let out: unknown
    const job: Api.ReaderJob = { id, progress: (value) => progress(id, value) }
    try {
      out = runner.reader(item, context, settings, job)
    } catch (e) {
      return failed(id, Cause.die(e))
    }
    if (Effect.isEffect(out)) return runEffect(id, out as Effect.Effect<unknown, unknown>)
    if (isPromiseLike(out)) {
      out.then(() => settle(id), (e) => failed(id, Cause.fail(new Cause.UnknownException(e))))
      return
    }
    settle(id)
  }

  return (id, encoded) => {
    const decoded = decodeSync(encoded)
    if (Either.isRight(decoded)) return runItem(id, decoded.right)
    if (!needsAsync(decoded.left.issue)) return settle(id, "Decode", decoded.left.message)
    // An asynchronous item Schema.
    runFork(decode(encoded)).addObserver((exit) =>
      exit._tag === "Success"
        ? runItem(id, exit.value)
        : settle(id, "Decode", Cause.isFailType(exit.cause) ? exit.cause.error.message : Cause.pretty(exit.cause))
    )
  }
}

/** Collects starts and results and sends them in one message per burst. */
class ResultBatch {
  private ok: Array<number> = []
  private failures: Array<Failure> = []
  private started: Array<number> = []
  /** The last progress reported per job since the last message; sent before the results. */
  private progressed = new Map<number, unknown>()
  private scheduled = false
  /** Inside a batch from the writer: its results leave together when the batch has been started. */
  inBatch = false

  constructor(private readonly transport: ReaderTransport) {}

  readonly add: Settle = (id, reason, detail) => {
    if (reason === undefined) this.ok.push(id)
    else this.failures.push([id, reason, detail ?? ""])
    this.schedule()
  }

  readonly start = (id: number): void => {
    this.started.push(id)
    this.schedule()
  }

  readonly progress = (id: number, value: unknown): void => {
    this.progressed.set(id, value)
    this.schedule()
  }

  private schedule(): void {
    if (!this.inBatch && !this.scheduled) {
      this.scheduled = true
      this.transport.later(this.flush)
    }
  }

  readonly flush = (): void => {
    this.scheduled = false
    if (this.ok.length === 0 && this.failures.length === 0 && this.started.length === 0 && this.progressed.size === 0) {
      return
    }
    const message = [RESULTS, this.ok, this.failures, this.started] as const
    const progress: Array<JobProgress> = [...this.progressed]
    this.ok = []
    this.failures = []
    this.started = []
    this.progressed = new Map()
    if (progress.length === 0) return this.transport.send(message)
    try {
      this.transport.send([...message, progress])
    } catch {
      // A progress value structured clone cannot carry (a function, a Symbol) must cost neither the results nor
      // the other jobs' progress: only the values that do not clone are dropped.
      const sendable = progress.filter(([id, value]) => {
        try {
          structuredClone(value)
          return true
        } catch (error) {
          process.stderr.write(`JobRunner: job ${id}'s progress could not be sent and was dropped: ${String(error)}\n`)
          return false
        }
      })
      this.transport.send(sendable.length > 0 ? [...message, sendable] : message)
    }
  }
}

/**
 * The jobs a process holds: at most `concurrentTasksPerProcess` run at once; the rest of what the writer sent (its
 * prefetch, so that a round trip carries more than one slot's worth of trivial jobs) wait here in arrival order.
 * Every start is reported, so the writer knows which jobs a dead process had begun (lost) and which it had not
 * (handed to another process), and times `jobTimeout` from the start.
 */
class Backlog {
  private ids: Array<number> = []
  private items: Array<unknown> = []
  private head = 0
  private active = 0
  private pumping = false

  constructor(
    private readonly limit: number,
    private readonly startJob: (id: number, encoded: unknown) => void,
    private readonly onStart: (id: number) => void
  ) {}

  push(id: number, encoded: unknown): void {
    this.ids.push(id)
    this.items.push(encoded)
  }

  /** Drops a job still waiting (its durable job was cancelled): it never starts, and nothing is reported. */
  drop(id: number): void {
    const at = this.ids.indexOf(id, this.head)
    if (at >= 0) this.ids[at] = -1
  }

  /** A job ended: its slot goes to the next waiting job. */
  readonly ended = (): void => {
    this.active--
    this.pump()
  }

  /** Starts waiting jobs while slots are free. A synchronous reader settles inside `startJob`: the loop goes on. */
  pump(): void {
    if (this.pumping) return
    this.pumping = true
    try {
      while (this.active < this.limit && this.head < this.ids.length) {
        const id = this.ids[this.head]!
        const encoded = this.items[this.head]
        this.items[this.head] = undefined
        this.head++
        if (id < 0) continue
        this.active++
        this.onStart(id)
        this.startJob(id, encoded)
      }
    } finally {
      this.pumping = false
    }
    if (this.head === this.ids.length) {
      this.ids = []
      this.items = []
      this.head = 0
    }
  }
}

/** The reader's context, built once per process: what the reader receives, and the services `Effect` readers get. */
interface BuiltContext {
  readonly value: unknown
  readonly services: Context.Context<unknown>
}

const noServices = Context.empty() as Context.Context<unknown>

const asValue = (value: unknown): BuiltContext => ({ value, services: noServices })

/**
 * Builds `runner.context`: a `Layer` (the reader receives the `Context`, which `Effect` readers get provided), a
 * scoped `Effect`, or a plain function (sync or async; one that returns an `Effect` has it run) whose value the
 * reader receives as is. A throw or a rejection is the failure itself, not a defect, so its message reaches the
 * writer. Anything else (JavaScript callers have no types to stop them) fails, naming what was given.
 *
 * @internal
 */
export const buildContext = (runner: AnyRunner, scope: Scope.Scope): Effect.Effect<BuiltContext, unknown> => {
  const input: unknown = runner.context
  if (input === undefined) return Effect.succeed({ value: noServices, services: noServices })
  if (Layer.isLayer(input)) {
    return Effect.map(
      Layer.buildWithScope(input as Layer.Layer<unknown, unknown>, scope),
      (ctx) => ({ value: ctx, services: ctx })
    )
  }
  const scoped = (effect: Effect.Effect<unknown, unknown, Scope.Scope>) =>
    Effect.map(Scope.extend(effect, scope), asValue)
  if (Effect.isEffect(input)) return scoped(input as Effect.Effect<unknown, unknown, Scope.Scope>)
  if (typeof input !== "function") {
    return Effect.fail(new TypeError(`context must be a Layer, an Effect or a function, not ${describeValue(input)}`))
  }
  return Effect.flatMap(
    Effect.try({ try: () => (input as () => unknown)(), catch: (e) => e }),
    (out) =>
      Effect.isEffect(out)
        ? scoped(out as Effect.Effect<unknown, unknown, Scope.Scope>)
        : isPromiseLike(out)
        ? Effect.map(Effect.tryPromise({ try: () => Promise.resolve(out), catch: (e) => e }), asValue)
        : Effect.succeed(asValue(out))
  )
}

const describeValue = (u: unknown): string =>
  u === null
    ? "null"
    : typeof u === "object"
    ? `an object (${Object.keys(u).slice(0, 5).join(", ") || "no keys"})`
    : `${typeof u} ${String(u)}`

/**
 * Builds the context and starts the host; on failure, reports why to the writer (as a context failure, which the
 * writer reports as `ContextFailed`) and exits with code 1.
 *
 * @internal
 */
export const startReaderHost = (
  runner: AnyRunner,
  settings: Api.Settings,
  transport: ReaderTransport
): Effect.Effect<ReaderHost | undefined> =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const built = yield* buildContext(runner, scope).pipe(Effect.exit)
    if (Exit.isFailure(built)) {
      yield* Scope.close(scope, Exit.void)
      transport.send([START_FAILED, failureDetail(built.cause), CONTEXT_FAILED])
      transport.exit(1)
      return undefined
    }
    const context = built.value.value as Context.Context<unknown>
    const outer = yield* Effect.runtime<never>()
    const runtime = Runtime.make({
      context: Context.merge(outer.context as Context.Context<unknown>, built.value.services),
      runtimeFlags: outer.runtimeFlags,
      fiberRefs: outer.fiberRefs
    })
    const running = new Map<number, Fiber.RuntimeFiber<unknown, unknown>>()
    const results = new ResultBatch(transport)
    let backlog: Backlog | undefined = undefined
    const start = makeJobStarter(runner, context, settings, runtime, running, (id, reason, detail) => {
      results.add(id, reason, detail)
      backlog!.ended()
    }, results.progress)
    backlog = new Backlog(Math.max(1, settings.concurrentTasksPerProcess), start, results.start)
    let closing = false
    const release = (code: number) => {
      if (closing) return
      closing = true
      Runtime.runFork(runtime)(Scope.close(scope, Exit.void)).addObserver(() => transport.exit(code))
    }
    const receive = (message: unknown) => {
      if (!isToReader(message) || closing) return
      if (message[0] === CLOSE) return release(0)
      if (message[0] === CANCEL) {
        const fiber = running.get(message[1] as number)
        if (fiber !== undefined) return fiber.unsafeInterruptAsFork(fiber.id())
        return backlog.drop(message[1] as number)
      }
      results.inBatch = true
      try {
        for (let i = 1; i < message.length; i += 2) backlog.push(message[i] as number, message[i + 1])
        backlog.pump()
      } finally {
        results.inBatch = false
      }
      results.flush()
    }
    const kill = () => {
      for (const fiber of running.values()) fiber.unsafeInterruptAsFork(fiber.id())
      release(137)
    }
    transport.send([READY, PROTOCOL_VERSION])
    return { receive, flush: results.flush, kill }
  })
