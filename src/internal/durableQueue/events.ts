/**
 * Job events of `DurableQueue` (issue #11): the event port every backend implements (an `EventBus` moving opaque
 * strings between processes, and `ScheduleMarks` for `unschedule`), the in-process bus (memory, SQLite), and the
 * two halves the core uses: an `Emitter` that publishes what the core reports without ever slowing or failing it,
 * and `subscribe`, the public `events` stream with a bounded buffer.
 *
 * Publishing is fire-and-forget: `emit` only pushes a string onto an array (no allocation of fibers, no await);
 * one fiber per queue instance publishes what accumulated as one batch (one Redis PUBLISH, one NOTIFY per ~7.9 KB)
 * while the previous batch is out, so a store round trip carries hundreds of events. A bus that fails or is slow
 * loses events (logged with a count), never jobs: at most `MAX_PENDING` events wait to be published.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import type * as DurableQueue from "../../DurableQueue.js"
import { DurableQueueError } from "./error.js"

/** The event port of a backend. @internal */
export interface EventBus {
  /** Fire-and-forget, at most once; never fails the caller's operation (failures are logged). */
  readonly publish: (events: ReadonlyArray<string>) => Effect.Effect<void>
  /** Events of this queue from every process, from subscription on. */
  readonly subscribe: Stream.Stream<string, unknown>
  /**
   * The shortest time between two publishes (ms; 0 or absent: none): a store round trip per batch competes with
   * the queue's own leases and settlements, so a remote bus waits to gather more events per batch.
   */
  readonly spacingMillis?: number | undefined
  /**
   * Whether anyone can hear a publish now (absent: assume someone can, as a remote bus must). The in-process bus
   * knows its subscribers: with none, the core sends no event at all (two per job were ~5 % of its CPU per job on
   * the memory store, issue #16).
   */
  readonly listening?: (() => boolean) | undefined
  /**
   * Whether anyone can hear a publish, asked once per batch just before it (absent: publish). For a remote bus
   * whose subscribers the emitter cannot know (Redis: `PUBSUB NUMSUB`): events are kept as a few fields until
   * then and a batch nobody hears is neither written as text nor sent. An `events` stream subscribed before an event
   * was emitted is still subscribed at its batch's check, so it misses none. On Redis the "Started"/"Completed"
   * events of every job, written and PUBLISHed with no one listening, were 22 % of the consumer's CPU per job.
   */
  readonly audience?: Effect.Effect<boolean> | undefined
}

/** The cluster-wide "unscheduled" markers of a queue's schedules (the store keeps them). @internal */
export interface ScheduleMarks {
  /** Marks schedule `id` stopped: every process running it stops at its next occurrence. */
  readonly mark: (id: string) => Effect.Effect<void, unknown>
  /** Removes the mark (a `schedule` call starts the schedule anew). */
  readonly clear: (id: string) => Effect.Effect<void, unknown>
  readonly isMarked: (id: string) => Effect.Effect<boolean, unknown>
}

/** What a backend gives the core besides its store. @internal */
export interface EventPort {
  readonly bus: EventBus
  readonly marks: ScheduleMarks
}

/**
 * Events waiting to be published at most: about 1.3 MB of small events. A bus slower than the queue (a Redis
 * that stalls) drops the oldest beyond it, with a count in the log, instead of growing memory without bound.
 */
const MAX_PENDING = 10_000

/** Events a subscriber may fall behind by before the oldest are dropped (logged with a count). @internal */
export const SUBSCRIBER_BUFFER = 10_000

/**
 * The spacing of Redis and PostgreSQL publishes: at 2,000 jobs/s (2 events each) a publish per event's tick was
 * ~1 round trip per job more and cost 0.71x processing on Redis (bench/events.ts); every 10 ms it is at most 100
 * publishes a second, and an event is at most 10 ms later. @internal
 */
export const REMOTE_SPACING_MILLIS = 10

/**
 * The clock of the background fibers of an `events` stream, whatever clock its subscriber runs on: they wait on a
 * real database and bus (a LISTEN, its probes, advisory locks), and under `@effect/vitest`'s `it.effect` (a
 * TestClock nobody moves) their sleeps and time-outs never ended, so the stream heard nothing.
 */
const realClock = Clock.make()

/** How often dropped events are reported, at most (one warning a second, not one per event). */
const DROP_REPORT_MILLIS = 1_000

/** The in-process bus: a PubSub of strings. For memory (per store object) and SQLite (per client, table and queue). @internal */
export const inProcessBus = (): EventBus => {
  const hub = Effect.runSync(PubSub.unbounded<string>())
  let subscribers = 0
  return {
    publish: (events) => Effect.asVoid(PubSub.publishAll(hub, events)),
    // Counted before the hub subscription is made: an event emitted once it is made is published to it.
    subscribe: Stream.unwrapScoped(
      Effect.as(
        Effect.acquireRelease(Effect.sync(() => subscribers++), () => Effect.sync(() => subscribers--)),
        Stream.fromPubSub(hub)
      )
    ),
    listening: () => subscribers > 0
  }
}

/** In-process markers (memory). @internal */
export const inProcessMarks = (): ScheduleMarks => {
  const marked = new Set<string>()
  return {
    mark: (id) => Effect.sync(() => void marked.add(id)),
    clear: (id) => Effect.sync(() => void marked.delete(id)),
    isMarked: (id) => Effect.sync(() => marked.has(id))
  }
}

const ports = new WeakMap<object, Map<string, EventPort>>()

/**
 * The in-process port shared by every core over the same `owner` and `key` (a memory store; a SQLite client with
 * its table and queue name), so two instances of one queue in a process see each other's events. @internal
 */
export const inProcessPort = (owner: object, key = ""): EventPort => {
  let byKey = ports.get(owner)
  if (byKey === undefined) ports.set(owner, byKey = new Map())
  let port = byKey.get(key)
  if (port === undefined) byKey.set(key, port = { bus: inProcessBus(), marks: inProcessMarks() })
  return port
}

type Tag = DurableQueue.JobEvent["_tag"]
const TAGS: ReadonlySet<string> = new Set<Tag>([
  "Offered",
  "Started",
  "Progress",
  "Completed",
  "Failed",
  "Retried",
  "Dead",
  "Cancelled"
])

/**
 * Reads an event published by any process (hostile input: a channel anyone on the store can write to); undefined
 * when it is not one.
 * @internal
 */
export const decodeEvent = (text: string): DurableQueue.JobEvent | undefined => {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof raw !== "object" || raw === null) return undefined
  const { _tag, at, attempt, error, id, progress } = raw as Record<string, unknown>
  if (typeof _tag !== "string" || !TAGS.has(_tag) || typeof id !== "string" || typeof at !== "number") return undefined
  if (attempt !== undefined && typeof attempt !== "number") return undefined
  if (error !== undefined && typeof error !== "string") return undefined
  return {
    _tag: _tag as Tag,
    id,
    at,
    attempt: attempt as number | undefined,
    error: error as string | undefined,
    progress
  }
}

/**
 * What the core calls at its offer, lease, settle and progress points: `emit` pushes the encoded event and returns
 * at once; `loop` (forked in the core's scope) publishes batches. @internal
 */
export class Emitter {
  /**
   * The events not yet published, as columns (event i is `tags[i]`, `ids[i]`, ...), not an object each: the Redis
   * consumer emits two events a job whether anyone listens or not (it asks once per batch, `audience`), and an
   * object per event (with its boxed time) was ~1 µs of its 9 µs of CPU per job in allocation and GC (bench/_profile.ts,
   * issue #16).
   */
  private tags: Array<Tag> = []
  private ids: Array<string> = []
  private ats: Array<number> = []
  private attempts: Array<number | undefined> = []
  private extras: Array<Extra | undefined> = []
  private dropped = 0
  private readonly wake = Effect.unsafeMakeLatch(false)
  constructor(readonly bus: EventBus, readonly queue: string) {}

  emit(tag: Tag, id: string, attempt?: number, extra?: Extra): void {
    if (this.bus.listening !== undefined && !this.bus.listening()) return
    if (this.tags.length >= MAX_PENDING) {
      this.tags.shift()
      this.ids.shift()
      this.ats.shift()
      this.attempts.shift()
      this.extras.shift()
      this.dropped++
    }
    // Date.now, not Clock: events carry wall time for people reading them; the core's decisions never read it. The
    // text is written at publish time (`textOf`), only for a batch someone hears.
    this.tags.push(tag)
    this.ids.push(id)
    this.ats.push(Date.now())
    this.attempts.push(attempt)
    this.extras.push(extra)
    if (this.tags.length === 1) this.wake.unsafeOpen()
  }

  /** The events emitted so far as texts, taken (the columns start again empty). */
  private take(): { readonly count: number; readonly texts: () => Array<string> } {
    const { ats, attempts, extras, ids, tags } = this
    this.tags = []
    this.ids = []
    this.ats = []
    this.attempts = []
    this.extras = []
    return {
      count: tags.length,
      texts: () => tags.map((tag, i) => textOf(tag, ids[i]!, ats[i]!, attempts[i], extras[i]))
    }
  }

  /** One publish at a time: what arrives meanwhile is the next batch. */
  loop(): Effect.Effect<never> {
    return Effect.gen(this, function*() {
      while (true) {
        yield* this.wake.await
        this.wake.unsafeClose()
        const batch = this.take()
        if (this.dropped > 0) {
          yield* Effect.logWarning(
            `DurableQueue ${this.queue}: ${this.dropped} job event(s) dropped: the event bus fell ${MAX_PENDING} behind`
          )
          this.dropped = 0
        }
        if (batch.count > 0 && (this.bus.audience === undefined || (yield* this.bus.audience))) {
          yield* this.bus.publish(batch.texts())
        }
        if (this.bus.spacingMillis !== undefined && this.bus.spacingMillis > 0) {
          yield* Effect.sleep(this.bus.spacingMillis)
        }
      }
    })
  }
}

/** What an event carries besides its tag, id, time and attempt. */
type Extra = { readonly error?: string | undefined; readonly progress?: unknown }

/**
 * The JSON text of an event. The common events (an id, a tag, an attempt) are written as text, without an object
 * and a full stringify.
 */
const textOf = (tag: Tag, id: string, at: number, attempt: number | undefined, extra: Extra | undefined): string =>
  extra === undefined
    ? `{"_tag":"${tag}","id":${JSON.stringify(id)},"at":${at}${attempt === undefined ? "" : `,"attempt":${attempt}`}}`
    : JSON.stringify(
      { _tag: tag, id, at, attempt, error: extra.error, progress: extra.progress } satisfies DurableQueue.JobEvent
    )

/** Starts the emitter of a core: its publishing fiber lives in the core's scope. @internal */
export const makeEmitter = (bus: EventBus, queue: string): Effect.Effect<Emitter, never, Scope.Scope> =>
  Effect.suspend(() => {
    const emitter = new Emitter(bus, queue)
    return Effect.as(Effect.forkScoped(Effect.interruptible(emitter.loop())), emitter)
  })

/**
 * The public `events` of a queue: the bus's events decoded (what does not decode is skipped, counted in the log),
 * behind a buffer of `SUBSCRIBER_BUFFER` events: a consumer slower than the queue loses the oldest, with a warning
 * a second saying how many, rather than growing memory. A failing bus (a subscriber connection refused) fails the
 * stream with `DurableQueueError` "StoreFailed".
 * @internal
 */
export const subscribe = (
  bus: EventBus,
  backend: string,
  queue: string,
  capacity = SUBSCRIBER_BUFFER
): Stream.Stream<DurableQueue.JobEvent, DurableQueueError> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const buffer = yield* Queue.sliding<DurableQueue.JobEvent>(capacity)
    const failed = yield* Deferred.make<never, DurableQueueError>()
    let dropped = 0
    let malformed = 0
    let reported = 0
    const report = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      if ((dropped === 0 && malformed === 0) || now - reported < DROP_REPORT_MILLIS) return
      reported = now
      yield* Effect.logWarning(
        `DurableQueue ${queue}: events subscriber ${
          dropped > 0 ? `fell ${capacity} behind and lost the ${dropped} oldest event(s)` : ""
        }` +
          `${dropped > 0 && malformed > 0 ? "; " : ""}${
            malformed > 0 ? `skipped ${malformed} message(s) that are not job events` : ""
          }`
      )
      dropped = 0
      malformed = 0
    })
    yield* bus.subscribe.pipe(
      // A chunk at a time (a Redis message or NOTIFY payload carries a batch): one buffer offer per batch.
      Stream.runForEachChunk((texts) => {
        const events: Array<DurableQueue.JobEvent> = []
        for (const text of texts) {
          const event = decodeEvent(text)
          if (event === undefined) malformed++
          else events.push(event)
        }
        const size = buffer.unsafeSize()
        const room = capacity - (size._tag === "Some" ? size.value : 0)
        if (events.length > room) dropped += events.length - Math.max(0, room)
        // `offerAll`, not `unsafeOffer`: only the effect applies the sliding strategy (`unsafeOffer` drops the newest).
        const offered = events.length === 0 ? Effect.void : buffer.offerAll(events)
        return dropped + malformed > 0 ? Effect.zipRight(offered, report) : offered
      }),
      Effect.catchAllCause((cause) =>
        Deferred.fail(failed, new DurableQueueError({ reason: "StoreFailed", backend, queue, cause }))
      ),
      // On real time (see `realClock`): under a TestClock nobody moves, `now - reported` stayed 0 and no loss was
      // ever reported.
      Effect.withClock(realClock),
      Effect.forkScoped
    )
    return Stream.fromQueue(buffer).pipe(Stream.interruptWhen(Deferred.await(failed)))
  }))

/**
 * The events of a settlement: a failed attempt is "Failed" and then "Retried" or "Dead"; a job put back untouched
 * (interrupted, or fetched and never run) sends none. @internal
 */
export const emitSettled = (
  emitter: Emitter,
  job: { readonly id: string; readonly attempts: number },
  settlement: { readonly _tag: string; readonly lastError?: string | undefined }
): void => {
  switch (settlement._tag) {
    case "Ack":
      return emitter.emit("Completed", job.id, job.attempts)
    case "Retry":
    case "Dead":
      emitter.emit("Failed", job.id, job.attempts, { error: settlement.lastError })
      return emitter.emit(settlement._tag === "Retry" ? "Retried" : "Dead", job.id, job.attempts, {
        error: settlement.lastError
      })
    case "Cancelled":
      return emitter.emit("Cancelled", job.id, job.attempts)
  }
}

/**
 * `runtime` for a fiber that outlives the fiber it was taken from: its logger, tracer, log annotations and services,
 * without its scope (closed with it) or its current span (the background fiber's statements, a probe every few
 * seconds for as long as anyone listens, are no part of that span's work, which may end long before).
 */
const detached = <R>(runtime: Runtime.Runtime<R>): Runtime.Runtime<R> =>
  Runtime.make({
    context: Context.omit(Scope.Scope, Tracer.ParentSpan)(runtime.context) as Context.Context<R>,
    runtimeFlags: runtime.runtimeFlags,
    fiberRefs: runtime.fiberRefs
  })

interface Shared {
  readonly hub: PubSub.PubSub<string>
  readonly failed: Deferred.Deferred<never, unknown>
  refs: number
  fiber: Fiber.RuntimeFiber<void, never> | undefined
}
const shared = new WeakMap<object, Map<string, Shared>>()

/**
 * One subscription to `source` per `owner` and `key`, shared by every stream of the process that asks for it and
 * ended with the last: PostgreSQL's LISTEN is per connection, and `@effect/sql-pg` UNLISTENs a channel for the
 * whole client when any one stream of it ends. @internal
 */
export const sharedSubscription = (
  owner: object,
  key: string,
  source: Stream.Stream<string, unknown>
): Stream.Stream<string, unknown> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const runFork = Runtime.runFork(detached(yield* Effect.runtime<never>()))
    const entry = yield* Effect.acquireRelease(
      Effect.sync(() => {
        let byKey = shared.get(owner)
        if (byKey === undefined) shared.set(owner, byKey = new Map())
        let entry = byKey.get(key)
        if (entry === undefined) {
          const made: Shared = {
            hub: Effect.runSync(PubSub.unbounded<string>()),
            failed: Deferred.unsafeMake(FiberId.none),
            refs: 0,
            fiber: undefined
          }
          // A root fiber (not the subscriber's child: it serves every subscriber and ends with the last), on the
          // first subscriber's runtime: its warnings (a LISTEN or a listener's lock lost) reach the program's logger,
          // not Effect's default one. Interruptible: forked in the acquire, which is not. On real time (`realClock`),
          // with every fiber it forks (the LISTEN's supervisor and probes, the listeners' lock check): the 1.1 s
          // hold of sqlEvents.ts `heard` under a subscriber's TestClock nobody moves never ended, and no event came.
          made.fiber = runFork(
            Effect.withClock(realClock)(Effect.interruptible(source.pipe(
              Stream.runForEach((text) => PubSub.publish(made.hub, text)),
              Effect.catchAllCause((cause) =>
                Effect.zipRight(Effect.sync(() => byKey!.delete(key)), Deferred.failCause(made.failed, cause))
              ),
              Effect.asVoid
            )))
          )
          byKey.set(key, entry = made)
        }
        entry.refs++
        return entry
      }),
      (entry) =>
        Effect.suspend(() => {
          if (--entry.refs > 0 || entry.fiber === undefined) return Effect.void
          if (shared.get(owner)?.get(key) === entry) shared.get(owner)!.delete(key)
          return Fiber.interrupt(entry.fiber)
        })
    )
    const subscription = yield* PubSub.subscribe(entry.hub)
    return Stream.fromQueue(subscription).pipe(Stream.interruptWhen(Deferred.await(entry.failed)))
  }))
