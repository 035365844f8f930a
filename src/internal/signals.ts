/**
 * One SIGINT / SIGTERM listener shared by the display and TreeQueue, installed while any of them listens, that
 * never changes what the signal does to the program:
 *
 * - a subscriber may handle a signal (TreeQueue's "Ctrl-C again to force" during a graceful drain);
 * - otherwise, if the program has no listener of its own (`NodeRuntime.runMain`'s, an `AbortController` wired by
 *   the user), the signal would have killed the process: subscribers get `beforeDeath` (the display shows the
 *   cursor again) and the signal is raised again with our listener gone, so the process dies of it as it would
 *   have (exit status 130 / 143 in the shell).
 *
 * Without this a plain `runPromise` program killed by Ctrl-C left the terminal's cursor hidden: Node runs no
 * `exit` listeners when a signal kills it. Our listener is prepended so that it runs before a listener that
 * removes itself (runMain's does) and still counts it. Outside Node (browsers, edge runtimes) it does nothing.
 */

/** @internal */
export type Signal = "SIGINT" | "SIGTERM"

/** @internal */
export interface Subscriber {
  /** Called first; returning `true` means the signal was handled here and must not kill the process. */
  readonly onSignal?: ((signal: Signal) => boolean) | undefined
  /** Called when the signal is about to kill the process (nobody handles it). Synchronous. */
  readonly beforeDeath?: ((signal: Signal) => void) | undefined
}

const SIGNALS: ReadonlyArray<Signal> = ["SIGINT", "SIGTERM"]

/** The exit status a shell reports for a process ended by the signal (128 + its number). @internal */
export const exitCodeOf = (signal: Signal): number => (signal === "SIGINT" ? 130 : 143)

const hasProcess = (): boolean =>
  typeof process !== "undefined" && typeof process.prependListener === "function" &&
  typeof process.listenerCount === "function"

class Hub {
  readonly subscribers = new Set<Subscriber>()
  private installed = false

  private readonly listener = (received: string): void => {
    const signal = received as Signal
    let handled = false
    for (const subscriber of Array.from(this.subscribers)) {
      if (subscriber.onSignal?.(signal) === true) handled = true
    }
    // Our own listener is one of the count.
    if (handled || process.listenerCount(signal) > 1) return
    for (const subscriber of Array.from(this.subscribers)) subscriber.beforeDeath?.(signal)
    this.uninstall()
    process.kill(process.pid, signal)
  }

  add(subscriber: Subscriber): () => void {
    if (!hasProcess()) return () => {}
    this.subscribers.add(subscriber)
    if (!this.installed) {
      this.installed = true
      for (const signal of SIGNALS) process.prependListener(signal, this.listener)
    }
    return () => {
      this.subscribers.delete(subscriber)
      if (this.subscribers.size === 0) this.uninstall()
    }
  }

  private uninstall(): void {
    if (!this.installed) return
    this.installed = false
    for (const signal of SIGNALS) process.removeListener(signal, this.listener)
  }
}

const hub = new Hub()

/** Listens until the returned function is called. @internal */
export const subscribe = (subscriber: Subscriber): () => void => hub.add(subscriber)

let exitCodeHook: Signal | undefined

/**
 * Makes the process end with the signal's status (130 for SIGINT) unless it ends with another failure code: a
 * graceful stop after Ctrl-C ended with 0 under `NodeRuntime.runMain` (its default teardown maps an interruption
 * to 0), so callers could not tell it from a finished run. Applied in an `exit` listener, the one place that sees
 * the code `process.exit(0)` was given.
 * @internal
 */
export const exitWithSignalStatus = (signal: Signal): void => {
  if (typeof process === "undefined" || typeof process.once !== "function" || exitCodeHook !== undefined) return
  exitCodeHook = signal
  process.once("exit", (code) => {
    if (code === 0) process.exitCode = exitCodeOf(signal)
  })
}
