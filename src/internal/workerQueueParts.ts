/**
 * Small parts of the WorkerQueue: the waiting room (a linked list, so an entry whose last waiter left is unlinked
 * at once instead of lingering until the queue drains: 20k dead entries made each 1,000 requires 2× slower), the
 * guarded cache (a cache that throws, dies or is not even a function is a logged, counted cache error, never a
 * dead worker fiber), and the worker call (an Effect or a Promise).
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Runtime from "effect/Runtime"
import type * as ResultCache from "../ResultCache.js"
import { describeKey } from "./resultCache.js"

/** @internal */
export interface RoomNode<T> {
  readonly value: T
  prev: RoomNode<T> | undefined
  next: RoomNode<T> | undefined
}

/** A FIFO with O(1) removal from the middle. @internal */
export class Room<T> {
  private head: RoomNode<T> | undefined = undefined
  private tail: RoomNode<T> | undefined = undefined
  length = 0

  push(value: T): RoomNode<T> {
    const node: RoomNode<T> = { value, prev: this.tail, next: undefined }
    if (this.tail === undefined) this.head = node
    else this.tail.next = node
    this.tail = node
    this.length++
    return node
  }

  shift(): T | undefined {
    const node = this.head
    if (node === undefined) return undefined
    this.remove(node)
    return node.value
  }

  remove(node: RoomNode<T>): void {
    if (node.prev === undefined) this.head = node.next
    else node.prev.next = node.next
    if (node.next === undefined) this.tail = node.prev
    else node.next.prev = node.prev
    node.prev = node.next = undefined
    this.length--
  }
}

/** @internal */
export interface CacheCounters {
  cacheErrors: number
}

/**
 * The queue's view of its cache: reads and writes that never fail nor die. Whatever goes wrong in the cache
 * (a typed failure, a defect, a synchronous throw, a missing method, a value that is not an Effect) is counted,
 * logged through the queue's runtime, and the queue goes on as if the cache had missed.
 * @internal
 */
export class CacheGuard<K, A> {
  readonly hasSyncRead: boolean

  constructor(
    readonly cache: ResultCache.ResultCache<K, A> | undefined,
    readonly queueName: string,
    readonly counters: CacheCounters,
    readonly runtime: Runtime.Runtime<never>
  ) {
    this.hasSyncRead = cache !== undefined && typeof cache.unsafeGet === "function"
  }

  private log(cause: Cause.Cause<unknown>): Effect.Effect<void> {
    this.counters.cacheErrors++
    const failure = Cause.failureOption(cause)
    const message = Option.isSome(failure) && failure.value instanceof Error
      ? failure.value.message
      : Cause.pretty(cause)
    return Effect.logWarning(`WorkerQueue ${this.queueName}: ${message}; going on without the cache`)
  }

  /** A read: `none` on a miss and on any cache error. */
  get(key: K): Effect.Effect<Option.Option<A>> {
    const cache = this.cache
    if (cache === undefined) return Effect.succeedNone
    // `suspend` turns a synchronous throw (or `get` not being a function) into a defect caught below.
    return Effect.suspend(() => cache.get(key)).pipe(
      Effect.map((hit) => (Option.isOption(hit) ? hit : Option.none())),
      Effect.catchAllCause((cause) => Effect.as(this.log(cause), Option.none<A>()))
    )
  }

  set(key: K, value: A): Effect.Effect<void> {
    const cache = this.cache
    if (cache === undefined) return Effect.void
    return Effect.suspend(() => cache.set(key, value)).pipe(
      Effect.asVoid,
      Effect.catchAllCause((cause) => this.log(cause))
    )
  }

  /** A synchronous read where the cache offers one; a failure is logged in the background and is a miss. */
  unsafeGet(key: K): Option.Option<A> {
    try {
      const hit = this.cache!.unsafeGet!(key)
      return Option.isOption(hit) ? hit : Option.none()
    } catch (defect) {
      Runtime.runFork(this.runtime)(this.log(Cause.die(defect)))
      return Option.none()
    }
  }
}

/**
 * Runs the user's worker for one item: an Effect as it is, a Promise (an `async` worker) with its rejection as an
 * `UnknownException`, a synchronous throw or any other return value as a defect naming the item.
 * @internal
 */
export const callWorker = <I, A, E, R>(
  worker: (item: I) => Effect.Effect<A, E, R> | PromiseLike<A>,
  item: I,
  queueName: string
): Effect.Effect<A, E | Cause.UnknownException, R> =>
  Effect.suspend((): Effect.Effect<A, E | Cause.UnknownException, R> => {
    const result: unknown = worker(item)
    if (Effect.isEffect(result)) return result as Effect.Effect<A, E, R>
    if (Predicate.isPromiseLike(result)) return Effect.tryPromise(() => result as PromiseLike<A>)
    return Effect.die(
      new TypeError(
        `WorkerQueue ${queueName}: the worker returned neither an Effect nor a Promise for item ${describeKey(item)}`
      )
    )
  })
