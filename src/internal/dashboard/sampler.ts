/**
 * The dashboard's one sampler (whatever the number of browsers): it follows every queue's job events (rates, the
 * throughput chart, the jobs seen running), reads the stores' counts and dead letters at most once per interval
 * while at least one browser watches (sooner, but no more than every `MIN_SPACING_MILLIS`, when an event says
 * something changed), reads the JobRunners of this process and the modules' Effect metrics, and publishes one
 * snapshot (JSON text) to every connected browser. Browsers never cause a store read of their own.
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricState from "effect/MetricState"
import * as PubSub from "effect/PubSub"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Dashboard from "../../Dashboard.js"
import type * as DurableQueue from "../../DurableQueue.js"
import { liveRuns, type RunStats } from "../jobRunner/stats.js"

/** Seconds kept for rates and charts. */
const WINDOW = 60
/** An event wakes the sampler, but two samples are at least this far apart. */
const MIN_SPACING_MILLIS = 200
/** Jobs seen through events, kept per queue (the most recent). */
const MAX_JOBS = 50
/** Dead letters shown per queue (all are retried by "retry all"). */
const MAX_DEAD = 100
/**
 * Jobs listed per state and queue (`DurableQueue.jobs`): the first page of each state, read by this one sampler
 * for every browser (at most 6 bounded store reads per queue and sample, none for a state whose count is 0).
 */
const MAX_LISTED = 20
const LISTED_STATES: ReadonlyArray<DurableQueue.JobState> = [
  "waiting",
  "delayed",
  "running",
  "done",
  "dead",
  "cancelled"
]
/** A store read slower than this is reported as an error in the panel, not waited for. */
const READ_TIMEOUT = "5 seconds"

/** Counts per second over the last `WINDOW` seconds, in a ring. */
class Series {
  private readonly values = new Array<number>(WINDOW).fill(0)
  private second = 0

  private advance(now: number): void {
    const second = Math.floor(now / 1000)
    if (second - this.second >= WINDOW) this.values.fill(0)
    else for (let s = this.second + 1; s <= second; s++) this.values[s % WINDOW] = 0
    if (second > this.second) this.second = second
  }

  add(now: number, n: number): void {
    this.advance(now)
    this.values[Math.floor(now / 1000) % WINDOW]! += n
  }

  /** Oldest first; the current (incomplete) second last. */
  read(now: number): Array<number> {
    this.advance(now)
    const out: Array<number> = []
    for (let s = this.second - WINDOW + 1; s <= this.second; s++) {
      out.push(this.values[((s % WINDOW) + WINDOW) % WINDOW]!)
    }
    return out
  }
}

const sum = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0)

/** @internal */
export interface JobRow {
  id: string
  state: string
  attempt: number | undefined
  progress: string | undefined
  error: string | undefined
  at: number
}

const truncate = (text: string, max: number) => (text.length > max ? `${text.slice(0, max)}…` : text)

const progressText = (value: unknown): string | undefined => {
  if (value === undefined) return undefined
  try {
    return truncate(JSON.stringify(value), 200)
  } catch {
    return "(not JSON)"
  }
}

/** @internal */
export interface ListedRow {
  id: string
  attempts: number
  progress: string | undefined
  error: string | undefined
  /** Ms in its state by the store's clock; null where the store does not keep it. */
  age: number | null
}

const listedRow = (job: DurableQueue.JobSummary<unknown>): ListedRow => ({
  id: job.id,
  attempts: job.attempts,
  progress: progressText(job.progress),
  error: job.lastError === undefined ? undefined : truncate(job.lastError, 500),
  age: job.ageMillis ?? null
})

/** What the dashboard knows of one queue. */
class QueueWatch {
  counts: DurableQueue.Counts | undefined
  error: string | undefined
  dead: Array<{ id: string; attempts: number; lastError: string }> | undefined
  deadRead = -1
  dirty = true
  readonly completed = new Series()
  readonly failed = new Series()
  readonly offered = new Series()
  readonly deadSeries = new Series()
  readonly jobs = new Map<string, JobRow>()
  lists: Partial<Record<DurableQueue.JobState, Array<ListedRow>>> = {}

  constructor(readonly key: string, readonly queue: Dashboard.WatchedQueue) {}

  onEvent(event: DurableQueue.JobEvent): void {
    const now = Date.now()
    this.dirty = true
    switch (event._tag) {
      case "Completed":
        this.completed.add(now, 1)
        break
      case "Failed":
        this.failed.add(now, 1)
        break
      case "Offered":
        this.offered.add(now, 1)
        break
      case "Dead":
        this.deadSeries.add(now, 1)
        break
    }
    const states: Record<DurableQueue.JobEvent["_tag"], string> = {
      Offered: "waiting",
      Started: "running",
      Progress: "running",
      Completed: "done",
      Failed: "failed",
      Retried: "retrying",
      Dead: "dead",
      Cancelled: "cancelled"
    }
    const row = this.jobs.get(event.id) ??
      { id: event.id, state: "", attempt: undefined, progress: undefined, error: undefined, at: now }
    row.state = states[event._tag]
    row.at = now
    if (event.attempt !== undefined) row.attempt = event.attempt
    if (event.error !== undefined) row.error = truncate(event.error, 500)
    if (event._tag === "Progress") row.progress = progressText(event.progress)
    // Most recent last: a Map keeps insertion order, so re-inserting moves the job to the end.
    this.jobs.delete(event.id)
    this.jobs.set(event.id, row)
    if (this.jobs.size > MAX_JOBS) this.jobs.delete(this.jobs.keys().next().value!)
  }

  /** Reads the store: counts, and the dead letters when their number changed. */
  get read(): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const counts = yield* Effect.timeoutFail(this.queue.counts, {
        duration: READ_TIMEOUT,
        onTimeout: () => new Error(`no answer within ${READ_TIMEOUT}`)
      })
      this.counts = counts
      this.error = undefined
      this.dirty = false
      if (counts.dead === this.deadRead) return
      const letters = yield* Effect.timeoutFail(this.queue.deadLetters, {
        duration: READ_TIMEOUT,
        onTimeout: () => new Error(`no answer within ${READ_TIMEOUT}`)
      })
      this.dead = letters.slice(0, MAX_DEAD).map(({ attempts, id, lastError }) => ({
        id,
        attempts,
        lastError: truncate(lastError, 500)
      }))
      this.deadRead = counts.dead
    }).pipe(
      Effect.zipRight(this.readLists),
      Effect.catchAllCause((cause) =>
        Effect.sync(() => {
          const error = Cause.squash(cause)
          this.error = truncate(error instanceof Error ? error.message : String(error), 300)
        })
      )
    )
  }

  /**
   * The first page of every state, after the counts: a state counted empty is not read (cancelled has no count).
   * Read at each sample, so the listing follows the events that woke the sampler, for every browser at once.
   */
  private get readLists(): Effect.Effect<void, unknown> {
    const counts = this.counts
    return Effect.forEach(LISTED_STATES, (state) => {
      if (counts !== undefined && state !== "cancelled" && counts[state] === 0) {
        return Effect.sync(() => {
          this.lists[state] = []
        })
      }
      return Effect.map(
        Effect.timeoutFail(this.queue.jobs(state, { limit: MAX_LISTED }), {
          duration: READ_TIMEOUT,
          onTimeout: () => new Error(`no answer within ${READ_TIMEOUT}`)
        }),
        (jobs) => {
          this.lists[state] = jobs.map(listedRow)
        }
      )
    }, { concurrency: "unbounded", discard: true })
  }

  view(now: number) {
    const completed = this.completed.read(now)
    return {
      key: this.key,
      name: this.queue.name,
      counts: this.counts ?? null,
      error: this.error ?? null,
      perMinute: {
        offered: sum(this.offered.read(now)),
        completed: sum(completed),
        failed: sum(this.failed.read(now)),
        dead: sum(this.deadSeries.read(now))
      },
      chart: completed,
      jobs: Array.from(this.jobs.values()).reverse(),
      dead: this.dead ?? null,
      deadShown: MAX_DEAD,
      lists: this.lists,
      listed: MAX_LISTED
    }
  }
}

/** What the dashboard keeps of one JobRunner run between samples (its rates). */
interface RunWatch {
  processed: number
  failed: number
  readonly processedSeries: Series
  readonly failedSeries: Series
}

const runView = (
  stats: RunStats,
  watch: RunWatch,
  now: number,
  memory: ((pid: number) => number | undefined) | undefined
) => {
  watch.processedSeries.add(now, Math.max(0, stats.processed - watch.processed))
  watch.failedSeries.add(now, Math.max(0, stats.failed - watch.failed))
  watch.processed = stats.processed
  watch.failed = stats.failed
  const chart = watch.processedSeries.read(now)
  return {
    name: stats.runnerName,
    writer: stats.writerState,
    slots: stats.numProcesses,
    live: stats.liveProcesses,
    restarts: stats.restarts,
    queueDepth: stats.queue.length,
    inFlight: stats.queue.inFlight,
    processed: stats.processed,
    failed: stats.failed,
    perMinute: { processed: sum(chart), failed: sum(watch.failedSeries.read(now)) },
    chart,
    processes: stats.slotRows.flatMap((row) =>
      row === undefined
        ? []
        : [{ pid: row.processId, running: row.running, taken: row.taken, memory: memory?.(row.processId) ?? null }]
    )
  }
}

/** The modules shown from Effect metrics, by name prefix, and the label that names an instance. */
const MODULES: ReadonlyArray<readonly [prefix: string, module: string, label: string]> = [
  ["effect_workers_worker_queue_", "WorkerQueue", "queue"],
  ["effect_workers_task_engine_", "TaskEngine", "engine"],
  ["effect_workers_rate_limiter_", "RateLimiter", "limiter"],
  ["effect_workers_result_cache_", "ResultCache", "cache"],
  ["effect_workers_tree_queue_", "TreeQueue", "tree"]
]

const modulesView = Effect.map(Metric.snapshot, (pairs) => {
  const instances = new Map<string, { module: string; name: string; values: Record<string, number> }>()
  for (const pair of pairs) {
    const name = pair.metricKey.name
    const module = MODULES.find(([prefix]) => name.startsWith(prefix))
    if (module === undefined) continue
    const state = pair.metricState
    const value = MetricState.isCounterState(state)
      ? Number(state.count)
      : MetricState.isGaugeState(state)
      ? Number(state.value)
      : undefined
    if (value === undefined) continue
    const instance = pair.metricKey.tags.find((tag) => tag.key === module[2])?.value ?? "(unnamed)"
    const key = `${module[1]}\u0000${instance}`
    let entry = instances.get(key)
    if (entry === undefined) instances.set(key, entry = { module: module[1], name: instance, values: {} })
    entry.values[name.slice(module[0].length)] = value
  }
  return Array.from(instances.values()).sort((a, b) => a.module.localeCompare(b.module) || a.name.localeCompare(b.name))
})

/** @internal */
export interface SamplerSettings {
  readonly title: string
  readonly actions: boolean
  readonly readOnly: boolean
  readonly intervalMillis: number
  readonly modules: boolean
  readonly processMemory: ((pid: number) => number | undefined) | undefined
}

/** @internal */
export class Sampler {
  readonly watches: ReadonlyArray<QueueWatch>
  private readonly runs = new WeakMap<RunStats, RunWatch>()
  private readonly wake = Effect.unsafeMakeLatch(false)
  readonly hub = Effect.runSync(PubSub.sliding<string>(4))
  clients = 0
  latest: string | undefined
  private sampledAt = 0

  constructor(queues: ReadonlyArray<Dashboard.WatchedQueue>, private readonly settings: SamplerSettings) {
    this.watches = queues.map((queue, i) => new QueueWatch(String(i), queue))
  }

  /** Asks for a sample soon (an action, a new browser). */
  poke(): void {
    for (const watch of this.watches) watch.dirty = true
    this.wake.unsafeOpen()
  }

  /** Reads everything and makes the snapshot; the stores only when `stores` (a browser watches, or one asked). */
  private sample(stores: boolean): Effect.Effect<string> {
    return Effect.gen(this, function*() {
      if (stores) yield* Effect.forEach(this.watches, (w) => w.read, { concurrency: "unbounded", discard: true })
      const now = Date.now()
      const runners = Array.from(liveRuns, (stats) => {
        let watch = this.runs.get(stats)
        if (watch === undefined) {
          this.runs.set(
            stats,
            watch = {
              processed: stats.processed,
              failed: stats.failed,
              processedSeries: new Series(),
              failedSeries: new Series()
            }
          )
        }
        return runView(stats, watch, now, this.settings.processMemory)
      })
      const modules = this.settings.modules ? yield* modulesView : []
      this.sampledAt = now
      this.latest = JSON.stringify({
        title: this.settings.title,
        actions: this.settings.actions,
        readOnly: this.settings.readOnly,
        at: now,
        queues: this.watches.map((w) => w.view(now)),
        runners,
        modules
      })
      return this.latest
    })
  }

  /** The latest snapshot, sampled now when it is older than the interval or lacks the stores' counts. */
  get current(): Effect.Effect<string> {
    return Effect.suspend(() =>
      this.latest !== undefined && Date.now() - this.sampledAt < this.settings.intervalMillis &&
        this.watches.every((w) => !w.dirty)
        ? Effect.succeed(this.latest)
        : this.sample(true)
    )
  }

  /** The sampler's fibers (events of every queue, the sampling loop), in the dashboard's scope. */
  get start(): Effect.Effect<void, never, Scope.Scope> {
    return Effect.gen(this, function*() {
      for (const watch of this.watches) {
        // A store that refuses the subscription (Redis down) is tried again every second; events lost meanwhile
        // only make the rates low, the counts are read from the store.
        yield* watch.queue.events.pipe(
          Stream.runForEach((event) =>
            Effect.sync(() => {
              watch.onEvent(event)
              if (this.clients > 0) this.wake.unsafeOpen()
            })
          ),
          Effect.retry(Schedule.spaced("1 second")),
          Effect.ignore,
          Effect.forkScoped
        )
      }
      const loop = Effect.gen(this, function*() {
        yield* Effect.raceFirst(this.wake.await, Effect.sleep(Duration.millis(this.settings.intervalMillis)))
        this.wake.unsafeClose()
        const watched = this.clients > 0
        const snapshot = yield* this.sample(watched)
        if (watched) yield* PubSub.publish(this.hub, snapshot)
        yield* Effect.sleep(Duration.millis(MIN_SPACING_MILLIS))
      })
      yield* Effect.forkScoped(Effect.forever(loop))
      yield* Effect.addFinalizer(() => PubSub.shutdown(this.hub))
    })
  }
}
