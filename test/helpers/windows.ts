/** The largest number of starts in any half-open span [t, t + interval) of the sorted times (rate-limit proofs). */
export const maxInWindow = (sorted: ReadonlyArray<number>, interval: number): number => {
  let max = 0
  let j = 0
  for (let i = 0; i < sorted.length; i++) {
    while (sorted[i]! - sorted[j]! >= interval) j++
    max = Math.max(max, i - j + 1)
  }
  return max
}
