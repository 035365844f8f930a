/**
 * An array used as a first-in-first-out queue: `shift` moves a head index instead of copying the array, and the
 * array is compacted once the consumed head is at least 1,024 slots and half of it, so a long-lived queue costs
 * O(1) amortised per item and never holds more than twice its live items. Shared by the task engine's input queue
 * and TreeQueue's FIFO frontier.
 */

/** @internal */
export class Fifo<A> {
  private items: Array<A | undefined> = []
  private head = 0

  get length(): number {
    return this.items.length - this.head
  }

  push(a: A): void {
    this.items.push(a)
  }

  /** The oldest item, removed; `undefined` when empty (so `A` should not include `undefined`). */
  shift(): A | undefined {
    if (this.head === this.items.length) return undefined
    const a = this.items[this.head]
    this.items[this.head++] = undefined
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return a
  }

  /** The oldest item, left in place. */
  peek(): A | undefined {
    return this.head === this.items.length ? undefined : this.items[this.head]
  }

  /** Calls `f` on every item, oldest first. */
  forEach(f: (a: A) => void): void {
    for (let i = this.head; i < this.items.length; i++) f(this.items[i] as A)
  }

  /** Keeps, in order, only the items for which `keep` holds: one O(n) pass. */
  retain(keep: (a: A) => boolean): void {
    const kept: Array<A | undefined> = []
    for (let i = this.head; i < this.items.length; i++) {
      const a = this.items[i] as A
      if (keep(a)) kept.push(a)
    }
    this.items = kept
    this.head = 0
  }

  /** Removes and returns every item, oldest first. */
  clear(): Array<A> {
    const all = this.items.slice(this.head) as Array<A>
    this.items = []
    this.head = 0
    return all
  }
}
