/**
 * Helpers shared by the benchmarks (bench/run.ts skips files starting with "_").
 */

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
