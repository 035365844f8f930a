/**
 * The `Progress` layers: live terminal panels redrawn in place, plain periodic lines, none, and a recording test
 * layer. Every display reads session state at its own bounded pace, so reporting never waits on output.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { OptionError } from "../OptionError.js"
import { checker } from "./options.js"
import type { ProgressService, Snapshot } from "./progress.js"
import { lineOf, makeSession, panelsOf, Progress, type SessionState_ } from "./progress.js"
import * as signals from "./signals.js"

/** @internal */
export interface Output {
  readonly write: (text: string) => unknown
  readonly isTTY?: boolean | undefined
  readonly columns?: number | undefined
  readonly rows?: number | undefined
}

const stdout = (): Output =>
  typeof process !== "undefined" && process.stdout !== undefined
    ? process.stdout
    : { write: (text: string) => console.log(text.replace(/\n$/, "")) }

const check = checker("Progress")

/** The output checked once: a `write` that is not a function used to crash the drawing fiber at its first frame. */
const outputOf = (output: Output | undefined): Effect.Effect<Output, OptionError> =>
  output === undefined
    ? Effect.sync(stdout)
    : check.require(
      "output",
      output,
      typeof output === "object" && typeof output?.write === "function",
      "an object with a write method"
    )

/**
 * The service of a display that shows its running sessions: a session is in `sessions` from its start, and at its
 * end `ended` gets it with the clock's time, to show its last state and take it out.
 */
const shownWhileRunning = (
  sessions: Set<SessionState_>,
  ended: (session: SessionState_, now: number) => void
): ProgressService => ({
  session: (opts) =>
    Effect.clockWith((clock) =>
      makeSession(
        opts,
        (s) => Effect.sync(() => sessions.add(s)),
        (s) => Effect.sync(() => ended(s, clock.unsafeCurrentTimeMillis()))
      )
    )
})

/** @internal */
export const ESC = {
  hideCursor: "\x1b[?25l",
  showCursor: "\x1b[?25h",
  clearLine: "\x1b[2K",
  clearDown: "\x1b[J",
  up: (n: number) => `\x1b[${n}A\r`
}

/** @internal */
export interface TerminalOptions {
  readonly output?: Output | undefined
  readonly fps?: number | undefined
}

/** @internal */
export const makeTerminal = (options?: TerminalOptions): Effect.Effect<ProgressService, OptionError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* check.knownKeys(options, ["output", "fps"])
    const fps = yield* check.integer("fps", options?.fps, 10, 1, 1000)
    const out = yield* outputOf(options?.output)
    const sessions = new Set<SessionState_>()
    let drawn = 0 // lines of the current frame, to move back over
    let cursorHidden = false
    const restore = () => {
      if (cursorHidden) {
        cursorHidden = false
        out.write(ESC.showCursor)
      }
    }
    const draw = (now: number) => {
      if (sessions.size === 0 && drawn === 0) return
      const width = Math.max(24, out.columns ?? 80)
      const height = Math.max(8, (out.rows ?? 24) - 1)
      const per = Math.max(8, Math.floor(height / Math.max(1, sessions.size)))
      const lines: Array<string> = []
      for (const s of sessions) lines.push(...panelsOf(s.snapshotAt(now), width, per))
      let frame = cursorHidden ? "" : ESC.hideCursor
      cursorHidden = true
      if (drawn > 0) frame += ESC.up(drawn)
      for (const line of lines.slice(0, height)) frame += ESC.clearLine + line + "\n"
      frame += ESC.clearDown
      out.write(frame)
      drawn = Math.min(lines.length, height)
    }
    // A process that exits without running finalizers still gets its cursor back, and so does one that a signal
    // is about to kill (Node runs no `exit` listener then).
    const onExit = () => restore()
    if (typeof process !== "undefined" && typeof process.once === "function") process.once("exit", onExit)
    const unsubscribe = signals.subscribe({ beforeDeath: restore })
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        unsubscribe()
        restore()
        if (typeof process !== "undefined" && typeof process.off === "function") process.off("exit", onExit)
      })
    )
    const interval = Duration.millis(Math.ceil(1000 / fps))
    yield* Effect.clockWith((clock) =>
      Effect.sync(() => draw(clock.unsafeCurrentTimeMillis())).pipe(
        Effect.zipRight(Effect.sleep(interval)),
        Effect.forever
      )
    ).pipe(Effect.forkScoped)
    return shownWhileRunning(sessions, (s, now) => {
      // Draw the final frame (done / failed / interrupted), then leave it on screen.
      draw(now)
      sessions.delete(s)
      if (sessions.size === 0) {
        drawn = 0
        restore()
      }
    })
  })

/** @internal */
export interface LinesOptions {
  readonly output?: Output | undefined
  readonly interval?: Duration.DurationInput | undefined
}

/** @internal */
export const makeLines = (options?: LinesOptions): Effect.Effect<ProgressService, OptionError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* check.knownKeys(options, ["output", "interval"])
    const interval = yield* check.duration("interval", options?.interval, "2 seconds")
    const out = yield* outputOf(options?.output)
    const sessions = new Set<SessionState_>()
    yield* Effect.clockWith((clock) =>
      Effect.sleep(interval).pipe(
        Effect.zipRight(Effect.sync(() => {
          const now = clock.unsafeCurrentTimeMillis()
          for (const s of sessions) out.write(lineOf(s.snapshotAt(now)) + "\n")
        })),
        Effect.forever
      )
    ).pipe(Effect.forkScoped)
    return shownWhileRunning(sessions, (s, now) => {
      sessions.delete(s)
      out.write(lineOf(s.snapshotAt(now)) + "\n")
    })
  })

/** @internal */
export const none: ProgressService = {
  session: (opts) => makeSession(opts, () => Effect.void, () => Effect.void)
}

/** @internal */
export interface RecordingService {
  readonly snapshots: Effect.Effect<ReadonlyArray<Snapshot>>
  readonly last: Effect.Effect<Snapshot | undefined>
  readonly clear: Effect.Effect<void>
}

/** @internal */
export class ProgressRecording
  extends Context.Tag("effect-workers/Progress/Recording")<ProgressRecording, RecordingService>()
{}

/** @internal */
export const layerTest: Layer.Layer<Progress | ProgressRecording> = Layer.effectContext(
  Effect.gen(function*() {
    let list: Array<Snapshot> = []
    const clock = yield* Effect.clock
    // Recording is synchronous with the update, so the order of snapshots is the order of reports.
    const record = (s: SessionState_) => {
      list.push(s.snapshotAt(clock.unsafeCurrentTimeMillis()))
    }
    const service: ProgressService = {
      session: (opts) => makeSession(opts, (s) => Effect.sync(() => record(s)), () => Effect.void, record)
    }
    const recording: RecordingService = {
      snapshots: Effect.sync(() => list.slice()),
      last: Effect.sync(() => list[list.length - 1]),
      clear: Effect.sync(() => {
        list = []
      })
    }
    return Context.make(Progress, service).pipe(Context.add(ProgressRecording, recording))
  })
)

/** @internal */
export const layerTerminal = (options?: TerminalOptions): Layer.Layer<Progress, OptionError> =>
  Layer.scoped(Progress, makeTerminal(options))

/** @internal */
export const layerLines = (options?: LinesOptions): Layer.Layer<Progress, OptionError> =>
  Layer.scoped(Progress, makeLines(options))

/** @internal */
export const layerNone: Layer.Layer<Progress> = Layer.succeed(Progress, none)

/** @internal */
export const isInteractive = (out: Output): boolean =>
  out.isTTY === true && (typeof process === "undefined" || (process.env.CI !== "true" && process.env.TERM !== "dumb"))

/** @internal */
export const layer = (options?: { readonly output?: Output | undefined }): Layer.Layer<Progress, OptionError> =>
  Layer.unwrapEffect(
    Effect.zipRight(
      check.knownKeys(options, ["output"]),
      Effect.map(
        outputOf(options?.output),
        (out) => isInteractive(out) ? layerTerminal({ output: out }) : layerLines({ output: out })
      )
    )
  )
