/**
 * The dashboard's one sampler (whatever the number of browsers and the queues' jobs/s): once per interval it reads
 * each queue's in-process counters (Effect metrics) and, while at least one browser watches, the stores' counts,
 * dead letters and first page of each state's jobs; rates and the throughput chart come from the differences
 * between successive samples. It follows no job events: at 23,600 jobs/s on Redis, receiving and decoding every
 * job's events in the queue's process cost the queue 0.75x (bench/RESULTS.md, "Dashboard cost"), and a bus that
 * publishes only while someone listens would publish for the dashboard alone. So its cost is per interval, not per
 * job. Browsers never cause a store read of their own; an action asks for a sample sooner (at most every
 * `MIN_SPACING_MILLIS`).
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricState from "effect/MetricState"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import type * as Dashboard from "../../Dashboard.js"
import type * as DurableQueue from "../../DurableQueue.js"
import { DurableQueueMetrics } from "../durableQueue/telemetry.js"
import { liveRuns, type RunStats } from "../jobRunner/stats.js"
import { labels } from "../telemetry.js"

/** Seconds kept for rates and charts. */
const WINDOW = 60
/** An action wakes the sampler, but two store reads are at least this far apart. */
const MIN_SPACING_MILLIS = 200
/**
 * Store counts further apart than this many intervals (no browser watched between them) give no rate: what
 * changed meanwhile is not spread over the seconds it happened in.
 */
const MAX_GAP_INTERVALS = 3
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

  /** Adds `n` spread evenly over the seconds from `from` (excluded) to `to` (included), at most `WINDOW` of them. */
  spread(from: number, to: number, n: number): void {
    if (n <= 0) return
    const first = Math.max(Math.floor(from / 1000) + 1, Math.floor(to / 1000) - WINDOW + 1)
    const last = Math.floor(to / 1000)
    if (first >= last) return this.add(to, n)
    const share = n / (last - first + 1)
    for (let s = first; s <= last; s++) this.add(s * 1000, share)
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

/** The in-process counters of a queue (Effect metrics, label `queue`): this process's offers and settlements. */
interface Counters {
  offered: number
  acked: number
  retried: number
  dead: number
}

/** Totals since a watch began of what the rates show (see `QueueWatch.account`). */
interface Totals {
  offered: number
  completed: number
  failed: number
  dead: number
}

/** What the store's counts say was added to a state between two reads (lower bounds: see `account`). */
interface Kept {
  at: number
  done: number
  dead: number
  total: number
}

const keptOf = (at: number, counts: DurableQueue.Counts): Kept => ({
  at,
  done: counts.done,
  dead: counts.dead,
  total: counts.waiting + counts.delayed + counts.running + counts.done + counts.dead
})

/** What the dashboard knows of one queue. */
class QueueWatch {
  counts: DurableQueue.Counts | undefined
  /** When `counts` was read (Date.now()). */
  countsAt = 0
  error: string | undefined
  dead: Array<{ id: string; attempts: number; lastError: string }> | undefined
  deadRead = -1
  readonly completed = new Series()
  readonly failed = new Series()
  readonly offered = new Series()
  readonly deadSeries = new Series()
  lists: Partial<Record<DurableQueue.JobState, Array<ListedRow>>> = {}
  private readonly tags: ReturnType<typeof labels>
  /** The counters when this watch began; when the last sample was accounted (where the next one's rates start). */
  private readonly start: Counters
  private accountedAt = Date.now()
  private kept: Kept | undefined
  /** The two lower bounds' totals since this watch began, and what the series hold (see `account`). */
  private readonly storeTotals: Totals = { offered: 0, completed: 0, failed: 0, dead: 0 }
  private readonly shown: Totals = { offered: 0, completed: 0, failed: 0, dead: 0 }
  private readonly series: ReadonlyArray<readonly [keyof Totals, Series]> = [
    ["offered", this.offered],
    ["completed", this.completed],
    ["failed", this.failed],
    ["dead", this.deadSeries]
  ]

  constructor(readonly key: string, readonly queue: Dashboard.WatchedQueue, private readonly intervalMillis: number) {
    this.tags = labels("queue", queue.name)
    this.start = this.readCounters()
  }

  private readCounters(): Counters {
    const value = (metric: Metric.Metric.Counter<number>) => metric.unsafeValue(this.tags).count
    return {
      offered: value(DurableQueueMetrics.offered),
      acked: value(DurableQueueMetrics.acked),
      retried: value(DurableQueueMetrics.retried),
      dead: value(DurableQueueMetrics.dead)
    }
  }

  /**
   * Adds what happened since the last sample to the rates. Two lower bounds of each total since this watch began,
   * the larger taken: this process's counters (exact for its own jobs, blind to other processes'), and what the
   * store's counts grew by (every process's, less what left meanwhile: done records Redis dropped after
   * `resultTimeToLive`, SQL's done count capped at 100,000, dead letters retried). A sample adds what the larger
   * total gained. Totals, not the larger of each span's two increments: the counters and the counts are read at
   * slightly different moments, so a job counted by one bound in a span is counted by the other in the next, and the
   * sum of per-span maxima counted it twice (13 done shown for 12 in the browser test; 3,465 for 3,000 in another).
   * A few numbers per interval, whatever the jobs/s.
   */
  account(now: number): void {
    const counters = this.readCounters()
    const start = this.start
    const mine: Totals = {
      offered: counters.offered - start.offered,
      completed: counters.acked - start.acked,
      failed: counters.retried - start.retried + counters.dead - start.dead,
      dead: counters.dead - start.dead
    }
    if (this.counts !== undefined && this.countsAt !== this.kept?.at) {
      const kept = keptOf(this.countsAt, this.counts)
      const previous = this.kept
      if (previous !== undefined && kept.at - previous.at <= MAX_GAP_INTERVALS * this.intervalMillis) {
        const store = this.storeTotals
        store.offered += Math.max(0, kept.total - previous.total)
        store.completed += Math.max(0, kept.done - previous.done)
        store.failed += Math.max(0, kept.dead - previous.dead)
        store.dead += Math.max(0, kept.dead - previous.dead)
      }
      this.kept = kept
    }
    const from = this.accountedAt
    for (const [key, series] of this.series) {
      const next = Math.max(this.shown[key], mine[key], this.storeTotals[key])
      series.spread(from, now, next - this.shown[key])
      this.shown[key] = next
    }
    this.accountedAt = now
  }

  /** Reads the store: counts, and the dead letters when their number changed. */
  get read(): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const counts = yield* Effect.timeoutFail(this.queue.counts, {
        duration: READ_TIMEOUT,
        onTimeout: () => new Error(`no answer within ${READ_TIMEOUT}`)
      })
      this.counts = counts
      this.countsAt = Date.now()
      this.error = undefined
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
   * Read at each sample with the counts, for every browser at once.
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
        offered: Math.round(sum(this.offered.read(now))),
        completed: Math.round(sum(completed)),
        failed: Math.round(sum(this.failed.read(now))),
        dead: Math.round(sum(this.deadSeries.read(now)))
      },
      chart: completed.map((n) => Math.round(n * 10) / 10),
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
  /** One sample at a time (the loop, a new browser's first snapshot): a second waits and then finds it fresh. */
  private readonly lock = Effect.unsafeMakeSemaphore(1)
  readonly hub = Effect.runSync(PubSub.sliding<string>(4))
  clients = 0
  latest: string | undefined
  /** When the stores were last read (Date.now(); 0: never), and whether an action asked for a read since. */
  private storesAt = 0
  private dirty = true
  /** When the last sample was made, stores read or not (the loop's clock). */
  private sampledAt = 0
  /** Store reads made, for tests and the bench: at most one per interval, plus one per action. */
  storeReads = 0

  constructor(queues: ReadonlyArray<Dashboard.WatchedQueue>, private readonly settings: SamplerSettings) {
    this.watches = queues.map((queue, i) => new QueueWatch(String(i), queue, settings.intervalMillis))
  }

  /** Asks for a store read soon (an action changed the queue). */
  poke(): void {
    this.dirty = true
    this.wake.unsafeOpen()
  }

  private get fresh(): boolean {
    return this.latest !== undefined && !this.dirty && Date.now() - this.storesAt < this.settings.intervalMillis
  }

  /** Reads everything and makes the snapshot; the stores only when `stores` (a browser watches, or one asked). */
  private sample(stores: boolean): Effect.Effect<string | undefined> {
    return Effect.gen(this, function*() {
      if (stores) {
        this.dirty = false
        this.storeReads++
        yield* Effect.forEach(this.watches, (w) => w.read, { concurrency: "unbounded", discard: true })
        this.storesAt = Date.now()
      }
      const now = Date.now()
      this.sampledAt = now
      for (const watch of this.watches) watch.account(now)
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
      // Nobody to show it to: the rates are kept, the snapshot is not made.
      if (!stores) return undefined
      const modules = this.settings.modules ? yield* modulesView : []
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

  /** The latest snapshot, sampled now (stores included) when it is older than the interval or an action asked. */
  get current(): Effect.Effect<string> {
    return Effect.suspend(() =>
      this.fresh
        ? Effect.succeed(this.latest!)
        : this.lock.withPermits(1)(
          Effect.suspend(() => this.fresh ? Effect.succeed(this.latest!) : Effect.map(this.sample(true), (s) => s!))
        )
    )
  }

  /**
   * The sampling loop, in the dashboard's scope: a sample every interval (the stores read only while a browser
   * watches), sooner when an action asks, never two store reads closer than `MIN_SPACING_MILLIS`.
   */
  get start(): Effect.Effect<void, never, Scope.Scope> {
    return Effect.gen(this, function*() {
      const interval = this.settings.intervalMillis
      const loop = Effect.gen(this, function*() {
        const since = Date.now() - this.sampledAt
        yield* Effect.raceFirst(this.wake.await, Effect.sleep(Duration.millis(Math.max(0, interval - since))))
        this.wake.unsafeClose()
        const spacing = MIN_SPACING_MILLIS - (Date.now() - this.storesAt)
        if (spacing > 0) yield* Effect.sleep(Duration.millis(spacing))
        const snapshot = yield* this.lock.withPermits(1)(Effect.suspend(() => {
          // A browser's first snapshot may have read the stores meanwhile.
          if (this.clients > 0 && this.fresh) return Effect.succeed(undefined)
          return this.sample(this.clients > 0)
        }))
        if (snapshot !== undefined) yield* PubSub.publish(this.hub, snapshot)
      })
      yield* Effect.forkScoped(Effect.forever(loop))
      yield* Effect.addFinalizer(() => PubSub.shutdown(this.hub))
    })
  }
}
