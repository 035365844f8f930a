/**
 * The state behind every `Progress` layer: a session holds worker rows, queue size with its high-water mark and
 * overall counters in plain mutable fields, so reporting costs a field write; displays read it at their own pace.
 */
import type * as Cause from "effect/Cause"
import * as CauseM from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { OptionError } from "../OptionError.js"
import { MAX_COUNT } from "./options.js"

/** @internal */
export type WorkerId = number | string

/** @internal */
export type WorkerState = "waiting" | "busy" | "done"

/** @internal */
export interface WorkerRow {
  readonly id: WorkerId
  readonly state: WorkerState
  readonly description: string
}

/** @internal */
export type SessionState = "running" | "stopping" | "done" | "failed" | "interrupted"

/** @internal */
export interface Snapshot {
  readonly title: string
  readonly state: SessionState
  readonly error: Option.Option<string>
  readonly workers: ReadonlyArray<WorkerRow>
  readonly queueSize: number
  readonly queueHighWater: number
  readonly completed: number
  readonly total: Option.Option<number>
  readonly elapsed: Duration.Duration
  /** Completed items per second over the whole session. */
  readonly rate: number
  readonly eta: Option.Option<Duration.Duration>
}

/** @internal */
export interface SessionOptions {
  readonly title?: string | undefined
  readonly workers?: number | ReadonlyArray<WorkerId> | undefined
}

/** @internal */
export interface Session {
  /** Marks the worker busy with this description (adds its row if new). */
  readonly setWorker: (id: WorkerId, description: string) => Effect.Effect<void>
  /** Shows "waiting for work". */
  readonly workerWaiting: (id: WorkerId) => Effect.Effect<void>
  /** Shows "done". */
  readonly workerDone: (id: WorkerId) => Effect.Effect<void>
  /** Current queue size; the high-water mark follows it. */
  readonly setQueueSize: (size: number) => Effect.Effect<void>
  /** Adds to the overall total (default 1); the total becomes known on the first call. */
  readonly addTotal: (n?: number) => Effect.Effect<void>
  /** Adds to the overall completed count (default 1). */
  readonly addCompleted: (n?: number) => Effect.Effect<void>
  /**
   * The engine stops gracefully: it finishes what runs and starts nothing new. The display shows
   * `stopping: N running — Ctrl-C again to force`. Optional, so that your own `Progress` may leave it out.
   */
  readonly setStopping?: Effect.Effect<void> | undefined
  /** The session as a display would show it now. */
  readonly snapshot: Effect.Effect<Snapshot>
  /**
   * The same reports as synchronous calls, for an engine's hot loop (TreeQueue uses them). Every session made by
   * this module's layers has it; your own `Progress` may leave it out, and engines then use the Effects.
   */
  readonly unsafe?: UnsafeSession | undefined
}

/** @internal */
export interface UnsafeSession {
  readonly setWorker: (id: WorkerId, description: string) => void
  readonly workerWaiting: (id: WorkerId) => void
  readonly workerDone: (id: WorkerId) => void
  readonly setQueueSize: (size: number) => void
  readonly addTotal: (n: number) => void
  readonly addCompleted: (n: number) => void
  readonly setStopping?: (() => void) | undefined
}

/** @internal */
export interface ProgressService {
  readonly session: (options?: SessionOptions) => Effect.Effect<Session, never, Scope.Scope>
}

/** @internal */
export class Progress extends Context.Tag("effect-workers/Progress")<Progress, ProgressService>() {}

/**
 * A session's worker count: `session` has no error channel (engines and users' own `Progress` services open
 * sessions), so a count that would crash the row allocation (`1e12`: "Invalid array length") or mean nothing
 * (`NaN`) is a defect carrying the `OptionError` that names it.
 */
const workerCount = (n: number): number => {
  if (Number.isInteger(n) && n >= 0 && n <= MAX_COUNT) return n
  throw new OptionError({
    module: "Progress",
    field: "workers",
    value: n,
    expected: `an integer from 0 to ${MAX_COUNT}`
  })
}

/** @internal */
export const WAITING = "waiting for work"
/** @internal */
export const DONE = "done"

interface MutableRow {
  id: WorkerId
  state: WorkerState
  description: string
}

/**
 * The mutable record of one session. `onChange` lets the test layer record every update; live displays pass
 * nothing and poll `snapshotAt`.
 * @internal
 */
export class SessionState_ {
  readonly rows: Array<MutableRow> = []
  readonly rowIndex = new Map<WorkerId, MutableRow>()
  queueSize = 0
  queueHighWater = 0
  completed = 0
  total = 0
  totalKnown = false
  state: SessionState = "running"
  error: Option.Option<string> = Option.none()
  endedAt: number | undefined = undefined

  constructor(
    readonly title: string,
    readonly startedAt: number,
    workers: number | ReadonlyArray<WorkerId> | undefined,
    readonly onChange: ((self: SessionState_) => void) | undefined
  ) {
    const ids: ReadonlyArray<WorkerId> = typeof workers === "number"
      ? Array.from({ length: workerCount(workers) }, (_, i) => i + 1)
      : workers ?? []
    for (const id of ids) this.row(id)
  }

  row(id: WorkerId): MutableRow {
    let row = this.rowIndex.get(id)
    if (row === undefined) {
      row = { id, state: "waiting", description: WAITING }
      this.rowIndex.set(id, row)
      this.rows.push(row)
    }
    return row
  }

  snapshotAt(now: number): Snapshot {
    const end = this.endedAt ?? now
    const elapsedMs = Math.max(0, end - this.startedAt)
    const rate = elapsedMs > 0 ? this.completed / (elapsedMs / 1000) : 0
    const total = this.totalKnown ? Option.some(this.total) : Option.none()
    const eta = this.totalKnown && rate > 0 && this.state === "running"
      ? Option.some(Duration.millis(Math.max(0, this.total - this.completed) / rate * 1000))
      : this.totalKnown && this.completed >= this.total && this.state === "running"
      ? Option.some(Duration.zero)
      : Option.none()
    return {
      title: this.title,
      state: this.state,
      error: this.error,
      workers: this.rows.map((r) => ({ id: r.id, state: r.state, description: r.description })),
      queueSize: this.queueSize,
      queueHighWater: this.queueHighWater,
      completed: this.completed,
      total,
      elapsed: Duration.millis(elapsedMs),
      rate,
      eta
    }
  }

  changed(): void {
    if (this.onChange !== undefined) this.onChange(this)
  }

  close(exit: Exit.Exit<unknown, unknown>, now: number): void {
    this.endedAt = now
    if (Exit.isSuccess(exit)) {
      this.state = "done"
    } else if (CauseM.isInterruptedOnly(exit.cause)) {
      this.state = "interrupted"
    } else {
      this.state = "failed"
      this.error = Option.some(describeCause(exit.cause))
    }
    for (const row of this.rows) {
      row.state = "done"
      row.description = DONE
    }
    this.changed()
  }
}

const describeCause = (cause: Cause.Cause<unknown>): string => {
  const failure = CauseM.failureOption(cause)
  const error: unknown = Option.isSome(failure) ? failure.value : Option.getOrUndefined(CauseM.dieOption(cause))
  if (error instanceof Error) return error.message
  if (typeof error === "object" && error !== null && "_tag" in error) return String(error._tag)
  return error === undefined ? CauseM.pretty(cause).split("\n")[0] ?? "failure" : String(error)
}

/** @internal */
export const makeSession = (
  options: SessionOptions | undefined,
  register: (state: SessionState_) => Effect.Effect<void>,
  unregister: (state: SessionState_) => Effect.Effect<void>,
  onChange?: (state: SessionState_) => void
): Effect.Effect<Session, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const state = new SessionState_(options?.title ?? "Progress", now, options?.workers, onChange)
      return Effect.as(register(state), state)
    }),
    (state, exit) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        state.close(exit, now)
        return unregister(state)
      })
  ).pipe(Effect.map((state): Session => sessionOf(state)))

const unsafeOf = (s: SessionState_): UnsafeSession => {
  // Without a listener (every live display) a report is a field write and nothing else.
  const changed = s.onChange === undefined ? () => {} : () => s.changed()
  return {
    setWorker: (id, description) => {
      const row = s.rowIndex.get(id) ?? s.row(id)
      row.state = "busy"
      row.description = description
      changed()
    },
    workerWaiting: (id) => {
      const row = s.row(id)
      row.state = "waiting"
      row.description = WAITING
      changed()
    },
    workerDone: (id) => {
      const row = s.row(id)
      row.state = "done"
      row.description = DONE
      changed()
    },
    setQueueSize: (size) => {
      s.queueSize = size
      if (size > s.queueHighWater) s.queueHighWater = size
      changed()
    },
    addTotal: (n) => {
      s.totalKnown = true
      s.total += n
      changed()
    },
    addCompleted: (n) => {
      s.completed += n
      changed()
    },
    setStopping: () => {
      if (s.state === "running") s.state = "stopping"
      changed()
    }
  }
}

const sessionOf = (s: SessionState_): Session => {
  const unsafe = unsafeOf(s)
  return {
    setWorker: (id, description) => Effect.sync(() => unsafe.setWorker(id, description)),
    workerWaiting: (id) => Effect.sync(() => unsafe.workerWaiting(id)),
    workerDone: (id) => Effect.sync(() => unsafe.workerDone(id)),
    setQueueSize: (size) => Effect.sync(() => unsafe.setQueueSize(size)),
    addTotal: (n = 1) => Effect.sync(() => unsafe.addTotal(n)),
    addCompleted: (n = 1) => Effect.sync(() => unsafe.addCompleted(n)),
    setStopping: Effect.sync(() => unsafe.setStopping!()),
    snapshot: Effect.map(Clock.currentTimeMillis, (now) => s.snapshotAt(now)),
    unsafe
  }
}

// ---------------------------------------------------------------------------------------------------------------
// formatting

/** @internal */
export const formatDuration = (d: Duration.Duration): string => {
  const total = Math.floor(Duration.toMillis(d) / 1000)
  const h = Math.floor(total / 3600)
  const m = Math.floor((total % 3600) / 60)
  const s = total % 60
  const mm = h > 0 ? String(m).padStart(2, "0") : String(m)
  return `${h > 0 ? `${h}:` : ""}${mm}:${String(s).padStart(2, "0")}`
}

const int = (n: number) => Math.round(n).toLocaleString("en-US")

/** @internal */
export const overallText = (snap: Snapshot): string => {
  const total = Option.isSome(snap.total) ? int(snap.total.value) : "?"
  const pct = Option.isSome(snap.total) && snap.total.value > 0
    ? ` (${(Math.min(1, snap.completed / snap.total.value) * 100).toFixed(1)}%)`
    : ""
  // Once the session ended there is nothing left to estimate.
  const eta = snap.state !== "running"
    ? ""
    : ` · ETA ${Option.isSome(snap.eta) ? formatDuration(snap.eta.value) : "?"}`
  return `${int(snap.completed)}/${total}${pct} · ${snap.rate.toFixed(1)}/s · elapsed ${
    formatDuration(snap.elapsed)
  }${eta}`
}

const busyCount = (snap: Snapshot): number => snap.workers.filter((w) => w.state === "busy").length

const stateText = (snap: Snapshot): string =>
  snap.state === "running"
    ? ""
    : snap.state === "stopping"
    ? ` · stopping: ${busyCount(snap)} running — Ctrl-C again to force`
    : snap.state === "done"
    ? " · done"
    : snap.state === "interrupted"
    ? " · interrupted"
    : ` · failed: ${Option.getOrElse(snap.error, () => "error")}`

/** One line per session, for logs and pipes. @internal */
export const lineOf = (snap: Snapshot): string => {
  const busy = busyCount(snap)
  return `[${snap.title}] ${overallText(snap)} · queue ${int(snap.queueSize)} (max ${
    int(snap.queueHighWater)
  }) · ${busy}/${snap.workers.length} busy${stateText(snap)}`
}

const fit = (text: string, width: number): string =>
  text.length <= width ? text : width <= 1 ? text.slice(0, width) : text.slice(0, width - 1) + "…"

const bar = (fraction: number, width: number): string => {
  const full = Math.max(0, Math.min(width, Math.round(fraction * width)))
  return "█".repeat(full) + "░".repeat(width - full)
}

const box = (title: string, body: ReadonlyArray<string>, width: number): Array<string> => {
  const inner = Math.max(4, width - 4)
  const head = `╭─ ${title} `
  const top = fit(head, width - 1) + "─".repeat(Math.max(0, width - 1 - head.length)) + "╮"
  const lines = body.map((l) => `│ ${fit(l, inner).padEnd(inner)} │`)
  return [top, ...lines, "╰" + "─".repeat(Math.max(0, width - 2)) + "╯"]
}

/**
 * Panels for one session, at most `height` lines of at most `width` columns: a workers panel (rows cut to fit,
 * with a "… and N more" line), a queue line and the overall bar.
 * @internal
 */
export const panelsOf = (snap: Snapshot, width: number, height: number): Array<string> => {
  const w = Math.max(24, Math.min(width, 120))
  // Fixed part: workers box borders (2), queue+overall box (2 borders + 2 lines) = 6 lines.
  const room = Math.max(1, height - 6)
  const rows = snap.workers
  const shown = rows.length <= room ? rows : rows.slice(0, Math.max(0, room - 1))
  const idWidth = Math.max(1, ...rows.map((r) => String(r.id).length))
  const workerLines = shown.map((r) => `#${String(r.id).padEnd(idWidth)}  ${r.description}`)
  if (shown.length < rows.length) workerLines.push(`… and ${rows.length - shown.length} more`)
  if (workerLines.length === 0) workerLines.push("(no workers)")
  const frac = Option.isSome(snap.total) && snap.total.value > 0 ? snap.completed / snap.total.value : 0
  const text = overallText(snap)
  // The bar takes what the text leaves of the panel, up to 40 columns, and goes when under 10.
  const barWidth = Math.min(40, w - 4 - text.length - 1)
  const overall = Option.isSome(snap.total) && barWidth >= 10 ? `${bar(frac, barWidth)} ${text}` : text
  return [
    ...box(`${snap.title} · workers`, workerLines, w),
    ...box("Overall", [
      `queue ${int(snap.queueSize)} (max ${int(snap.queueHighWater)})${stateText(snap)}`,
      overall
    ], w)
  ]
}
