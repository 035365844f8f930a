/**
 * A progress display as a service. Work engines (`TreeQueue`, and any other pool of workers) open a `Session`
 * and report worker rows (id and description: the text set, "waiting for work", "done"), queue size with its
 * high-water mark, and overall completed / total (unknown until the first tracked item); the display adds rate,
 * elapsed time and ETA. Layers: live terminal panels redrawn in place (`layerTerminal`), plain periodic lines for
 * logs and pipes (`layerLines`), nothing (`layerNone`), a recording layer for tests (`layerTest`), and `layer`,
 * which picks the terminal panels when stdout is a TTY and lines otherwise.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/progress.js"
import type { Session, SessionOptions, Snapshot } from "./internal/progress.js"
import { Progress } from "./internal/progress.js"
import * as display from "./internal/progressDisplay.js"
import type { Output } from "./internal/progressDisplay.js"
import { ProgressRecording } from "./internal/progressDisplay.js"
import type { OptionError } from "./OptionError.js"

/**
 * A worker's id as shown in its row: TreeQueue numbers its workers from 1; other engines may use strings
 * ("proc-2/task-1").
 *
 * @since 0.1.0
 * @category models
 */
export type { WorkerId } from "./internal/progress.js"

/**
 * @since 0.1.0
 * @category models
 */
export type { WorkerState } from "./internal/progress.js"

/**
 * One worker row: `description` is the text the worker set while `busy`, "waiting for work" while `waiting`, and
 * "done" once it stopped.
 *
 * @since 0.1.0
 * @category models
 */
export type { WorkerRow } from "./internal/progress.js"

/**
 * `running` until the session's scope closes, then `done`, `failed` (with `error`) or `interrupted`; `stopping`
 * between an engine's graceful stop (Ctrl-C) and the end, shown as `stopping: N running — Ctrl-C again to force`.
 *
 * @since 0.1.0
 * @category models
 */
export type { SessionState } from "./internal/progress.js"

/**
 * What a display shows at one instant. `total` is none until the first tracked item is counted; `rate` is
 * completed items per second over the session; `eta` is none while the total or the rate is unknown.
 *
 * @since 0.1.0
 * @category models
 */
export type { Snapshot } from "./internal/progress.js"

/**
 * The reporting side of one run. Every method is a field write: cheap enough to call once per item.
 *
 * @since 0.1.0
 * @category models
 */
export type { Session } from "./internal/progress.js"

/**
 * @since 0.1.0
 * @category models
 */
export type { UnsafeSession } from "./internal/progress.js"

/**
 * `title` heads the panels (default "Progress"); `workers` lists the worker rows up front, as a count (ids
 * 1..n) or as ids, all "waiting for work".
 *
 * @since 0.1.0
 * @category models
 */
export type { SessionOptions } from "./internal/progress.js"

/**
 * What the `Progress` service does.
 *
 * @since 0.1.0
 * @category models
 */
export type { ProgressService } from "./internal/progress.js"

/**
 * The service: `session(options)` opens a session for the life of the current scope; closing the scope records
 * how it ended (success, failure or interruption) and the display draws its final frame and restores the
 * terminal.
 *
 * @since 0.1.0
 * @category services
 */
export { Progress }

/**
 * Where displays write: `process.stdout` by default; any object with `write` (and, for the terminal panels,
 * `columns` / `rows`) will do.
 *
 * @since 0.1.0
 * @category models
 */
export type { Output }

/**
 * Live terminal panels: a workers panel and an overall panel with a bar, redrawn in place at most `fps` times a
 * second (default 10), cut to the terminal's `columns` and `rows` read at each frame. The cursor is hidden while
 * drawing and shown again when the last session ends, when the layer's scope closes, on process exit, and when
 * SIGINT / SIGTERM is about to kill a program that does not handle it (a plain `runPromise` program on Ctrl-C).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerTerminal: (
  options?: { readonly output?: Output | undefined; readonly fps?: number | undefined }
) => Layer.Layer<Progress, OptionError> = display.layerTerminal

/**
 * One plain line per open session every `interval` (default 2 seconds), and a final line when a session ends:
 * for CI logs and pipes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerLines: (
  options?: { readonly output?: Output | undefined; readonly interval?: Duration.DurationInput | undefined }
) => Layer.Layer<Progress, OptionError> = display.layerLines

/**
 * Tracks sessions (so `snapshot` works) and draws nothing.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNone: Layer.Layer<Progress> = display.layerNone

/**
 * The terminal panels when the output (stdout by default) is a TTY and `CI` is not `"true"`; plain lines
 * otherwise.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: (options?: { readonly output?: Output | undefined }) => Layer.Layer<Progress, OptionError> =
  display.layer

/**
 * The recording side of `layerTest`: every report, in order, as a snapshot.
 *
 * @since 0.1.0
 * @category testing
 */
export { ProgressRecording }

/**
 * What `ProgressRecording` gives a test.
 *
 * @since 0.1.0
 * @category testing
 */
export type { RecordingService } from "./internal/progressDisplay.js"

/**
 * Records a `Snapshot` after every report (and when a session opens and closes), readable through
 * `ProgressRecording`. Time comes from `Clock`, so `TestClock` drives elapsed, rate and ETA.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Progress } from "effect-workers"
 *
 * const program = Effect.gen(function*() {
 *   const progress = yield* Progress.Progress
 *   yield* Effect.scoped(Effect.gen(function*() {
 *     const session = yield* progress.session({ title: "demo", workers: 2 })
 *     yield* session.addTotal(1)
 *     yield* session.setWorker(1, "working")
 *     yield* session.addCompleted(1)
 *   }))
 *   const recording = yield* Progress.ProgressRecording
 *   return yield* recording.last // state "done", completed 1 of 1
 * }).pipe(Effect.provide(Progress.layerTest))
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const layerTest: Layer.Layer<Progress | ProgressRecording> = display.layerTest

/**
 * The one-line rendering used by `layerLines`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatLine: (snapshot: Snapshot) => string = internal.lineOf

/**
 * The panels drawn by `layerTerminal`, as lines at most `width` wide and at most `height` high.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatPanels: (snapshot: Snapshot, width: number, height: number) => Array<string> = internal.panelsOf

/**
 * Opens a session on the `Progress` in context.
 *
 * @since 0.1.0
 * @category constructors
 */
export const session = (
  options?: SessionOptions
): Effect.Effect<Session, never, Progress | Scope.Scope> =>
  Effect.flatMap(internal.Progress, (progress) => progress.session(options))
