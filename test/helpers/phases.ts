/**
 * Deadlines for the cross-process proofs derived from what this run measured, not fixed guesses. A proof times
 * its phases (offers, runners up, the first share of the jobs); the budget of a later phase scales the measured
 * rate to the work left, times a safety factor, so a machine that is slow today gets proportionally more time
 * and a stuck run still fails soon, naming the phase, what it measured and what it allowed.
 *
 * The vitest timeout of such a test is only a net under these budgets (`CEILING_MS`): the budgets fail first.
 */
import * as Effect from "effect/Effect"

/** The vitest timeout of a proof whose phases carry their own budgets. */
export const CEILING_MS = 300_000

/** The budget for the first phase that has nothing measured before it (processes starting): a net, not a guess of its length. */
export const STARTUP_MS = 60_000

export class Phases {
  private last = performance.now()
  private readonly measured: Array<readonly [string, number]> = []

  /** Ends the current phase, named `name`; returns its length in ms. */
  mark(name: string): number {
    const now = performance.now()
    const ms = now - this.last
    this.last = now
    this.measured.push([name, ms])
    return ms
  }

  /** The length of the phase `name` (ms). */
  get(name: string): number {
    const found = this.measured.find(([n]) => n === name)
    if (found === undefined) throw new Error(`phase ${name} not measured yet`)
    return found[1]
  }

  toString(): string {
    return this.measured.map(([name, ms]) => `${name} ${Math.round(ms)} ms`).join(", ")
  }
}

/**
 * The budget for `work` units when `measuredWork` units took `measuredMs`: the same rate, `factor` times slower
 * (default 4), plus `extraMs` (a lease to wait out), at least `floorMs` (default 5 s).
 */
export const scaled = (options: {
  readonly measuredMs: number
  readonly measuredWork: number
  readonly work: number
  readonly factor?: number | undefined
  readonly extraMs?: number | undefined
  readonly floorMs?: number | undefined
}): number =>
  Math.max(
    options.floorMs ?? 5_000,
    (options.measuredMs / Math.max(1, options.measuredWork)) * options.work * (options.factor ?? 4) +
      (options.extraMs ?? 0)
  )

/**
 * Polls `check` every `interval` until it holds; fails after `budgetMs` with `what`, the budget and the phases
 * measured so far.
 */
export const pollUntil = <E, R>(
  check: Effect.Effect<boolean, E, R>,
  what: string,
  budgetMs: number,
  phases?: Phases,
  interval: `${number} millis` = "10 millis"
): Effect.Effect<void, E, R> =>
  Effect.gen(function*() {
    const deadline = performance.now() + budgetMs
    while (!(yield* check)) {
      if (performance.now() > deadline) {
        return yield* Effect.die(
          new Error(
            `${what}: not within its budget of ${Math.round(budgetMs)} ms${
              phases === undefined ? "" : ` (measured: ${phases})`
            }`
          )
        )
      }
      yield* Effect.sleep(interval)
    }
  })
