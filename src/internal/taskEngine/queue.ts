/**
 * The input queue: tasks in priority lanes (one FIFO per priority, highest first), the workers waiting for a task,
 * and (when bounded) the offers waiting for room. Workers poll it synchronously between tasks, so a task costs no
 * Effect step to dequeue (the fast path measured in bench/RESULTS.md: one lane, one array with a moving head).
 *
 * A cancelled call's tasks leave the queue's size and capacity at once (its `queued` count moves to `dead`); the
 * arrays drop them when a worker reaches them, or in one pass once dead tasks outnumber live ones (so memory stays
 * within twice the live tasks, O(1) amortised per cancelled task).
 */
import * as Effect from "effect/Effect"
import { Fifo } from "../fifo.js"

/** What the queue needs of a task. @internal */
export interface Queueable {
  readonly priority: number
  readonly call: { readonly cancelled: boolean; queued: number }
}

class Lane<T> {
  readonly items = new Fifo<T>()
  constructor(readonly priority: number) {}
}

interface Putter<T> {
  readonly values: ReadonlyArray<T>
  next: number
  resume: (effect: Effect.Effect<void>) => void
}

/** @internal */
export class TaskQueue<T extends Queueable> {
  // Sorted by priority, highest first; the lane of priority 0 always exists (the common, single-lane case).
  private lanes: Array<Lane<T>> = [new Lane(0)]
  private live = 0
  private dead = 0
  // A worker waiting for a task is resumed with one, or with `undefined` to look again (`wake`).
  private readonly takers: Array<(effect: Effect.Effect<T | undefined>) => void> = []
  private readonly putters = new Fifo<Putter<T>>()
  private shut = false
  private paused = false
  constructor(private readonly capacity: number) {}

  /** Tasks queued and not cancelled, including those of offers waiting for room. */
  get size(): number {
    let size = this.live
    this.putters.forEach((putter) => size += putter.values.length - putter.next)
    return size
  }

  get isPaused(): boolean {
    return this.paused
  }

  /** The next task not cancelled, or `undefined` when none is queued or the queue is paused. */
  poll(): T | undefined {
    if (this.paused) return undefined
    const lanes = this.lanes
    for (let i = 0; i < lanes.length; i++) {
      const items = lanes[i]!.items
      let task = items.shift()
      while (task !== undefined) {
        if (!task.call.cancelled) {
          this.live--
          task.call.queued--
          if (i > 0 && items.length === 0) lanes.splice(i, 1)
          if (this.putters.length > 0) this.fill()
          return task
        }
        this.dead--
        task = items.shift()
      }
      if (i > 0) lanes.splice(i--, 1)
    }
    return undefined
  }

  private push(task: T): void {
    if (task.call.cancelled) return
    const priority = task.priority
    const lanes = this.lanes
    let lane = lanes[0]!
    if (priority !== 0 || lane.priority !== 0) {
      // Binary search for the lane (priorities descending); a new priority gets a new lane.
      let lo = 0
      let hi = lanes.length
      while (lo < hi) {
        const mid = (lo + hi) >>> 1
        if (lanes[mid]!.priority > priority) lo = mid + 1
        else hi = mid
      }
      if (lo < lanes.length && lanes[lo]!.priority === priority) lane = lanes[lo]!
      else lanes.splice(lo, 0, lane = new Lane(priority))
    }
    lane.items.push(task)
    task.call.queued++
    this.live++
  }

  // Moves waiting offers into the room there is, oldest first.
  private fill(): void {
    for (let putter = this.putters.peek(); putter !== undefined; putter = this.putters.peek()) {
      while (putter.next < putter.values.length && this.live < this.capacity) this.push(putter.values[putter.next++]!)
      if (putter.next < putter.values.length) return
      this.putters.shift()
      putter.resume(Effect.void)
    }
  }

  readonly take: Effect.Effect<T | undefined> = Effect.suspend(() => {
    if (this.shut) return Effect.interrupt
    const task = this.poll()
    if (task !== undefined) return Effect.succeed(task)
    return Effect.async<T | undefined>((resume) => {
      this.takers.push(resume)
      return Effect.sync(() => {
        const i = this.takers.indexOf(resume)
        if (i >= 0) this.takers.splice(i, 1)
      })
    })
  })

  /** Queues `values` in order, suspending while a bounded queue is full; interrupted, it queues no more. */
  offerAll(values: ReadonlyArray<T>): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.shut) return Effect.interrupt
      let next = 0
      // Waiting workers first (the queue is empty or paused when any waits), then the room there is.
      if (!this.paused) {
        while (next < values.length && this.takers.length > 0) this.takers.shift()!(Effect.succeed(values[next++]!))
      }
      if (this.putters.length === 0) {
        while (next < values.length && this.live < this.capacity) this.push(values[next++]!)
      }
      if (next === values.length) return Effect.void
      const putter: Putter<T> = { values, next, resume: () => {} }
      return Effect.async<void>((resume) => {
        putter.resume = resume
        this.putters.push(putter)
        // Never queued beyond what was placed: the rest is dropped.
        return Effect.sync(() => this.putters.retain((p) => p !== putter))
      })
    })
  }

  /** A call was cancelled: its queued tasks stop counting now, and free their room for waiting offers. */
  dropCancelled(call: Queueable["call"]): void {
    this.live -= call.queued
    this.dead += call.queued
    call.queued = 0
    if (this.dead >= 1024 && this.dead > this.live) {
      for (const lane of this.lanes) lane.items.retain((task) => !task.call.cancelled)
      this.dead = 0
    }
    if (this.putters.length > 0) this.fill()
  }

  pause(): void {
    this.paused = true
  }

  resume(): void {
    if (!this.paused) return
    this.paused = false
    while (this.takers.length > 0) {
      const task = this.poll()
      if (task === undefined) return
      this.takers.shift()!(Effect.succeed(task))
    }
  }

  /** Resumes every waiting worker with `undefined`, so each looks again (a worker count went down). */
  wake(): void {
    for (const taker of this.takers.splice(0)) taker(Effect.succeed(undefined))
  }

  shutdown(): void {
    if (this.shut) return
    this.shut = true
    this.lanes = [new Lane(0)]
    this.live = 0
    this.dead = 0
    for (const taker of this.takers.splice(0)) taker(Effect.interrupt)
    for (const putter of this.putters.clear()) putter.resume(Effect.interrupt)
  }
}
