/**
 * Helpers shared by the benchmarks (bench/run.ts skips files starting with "_").
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/** `--name value` from the command line as a number, or `fallback`. */
export const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}

/** The middle value (the upper one of an even count). */
export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

/** Runs `task` for 0..count-1, at most `limit` at a time. */
export const pool = async (count: number, limit: number, task: (i: number) => Promise<unknown>): Promise<void> => {
  let next = 0
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < count) await task(next++)
  }))
}

/** One round of a queue benchmark: jobs per second adding, and processing. */
export interface Round {
  readonly add: number
  readonly process: number
}

/**
 * One add-then-drain round of a queue benchmark: offers `jobs` values `{ n }`, `concurrency` at a time, then starts
 * `consume` (given the handler that counts a job done; forked in the caller's scope) and waits until every job is
 * done. Returns jobs per second for each phase.
 */
export const queueRound = <E, R>(
  jobs: number,
  concurrency: number,
  offer: (value: { readonly n: number }) => Effect.Effect<unknown, E, R>,
  consume: (handler: () => Effect.Effect<void>) => Effect.Effect<unknown, E, R | Scope.Scope>
): Effect.Effect<Round, E, R | Scope.Scope> =>
  Effect.gen(function*() {
    let t = performance.now()
    yield* Effect.forEach(Array.from({ length: jobs }, (_, n) => n), (n) => offer({ n }), { concurrency, discard: true })
    const add = jobs / ((performance.now() - t) / 1000)
    let done = 0
    const finished = yield* Deferred.make<void>()
    t = performance.now()
    yield* consume(() => Effect.suspend(() => ++done === jobs ? Deferred.succeed(finished, undefined) : Effect.void))
    yield* Deferred.await(finished)
    return { add, process: jobs / ((performance.now() - t) / 1000) }
  })
