/**
 * The Effect `Metric`s of the platform-free modules, in one table so that the naming scheme can be checked at a
 * glance (README, "Tracing and metrics"). JobRunner's are in `jobRunner/metrics.ts`, DurableQueue's in
 * `durableQueue/telemetry.ts`: they follow the same scheme.
 */
import { counter, gauge, seconds } from "./telemetry.js"

/** Label `queue`: the queue's `name`. @internal */
export const WorkerQueueMetrics = {
  hits: counter("effect_workers_worker_queue_hits_total", "requires answered from the cache"),
  misses: counter("effect_workers_worker_queue_misses_total", "requires that needed a worker run"),
  deduplicated: counter(
    "effect_workers_worker_queue_deduplicated_total",
    "requires that joined a run already in flight for an equal key"
  ),
  inFlight: gauge("effect_workers_worker_queue_in_flight", "keys looked up, waiting, queued or running"),
  completed: counter("effect_workers_worker_queue_completed_total", "worker runs that succeeded"),
  failed: counter("effect_workers_worker_queue_failed_total", "worker runs that failed"),
  runDuration: seconds("effect_workers_worker_queue_run_duration_seconds", "time of one worker run")
} as const

/** Label `cache`: the kind of cache (`memory`, `custom`, `key_value_store`, `redis`). @internal */
export const ResultCacheMetrics = {
  hits: counter("effect_workers_result_cache_hits_total", "reads that found an entry"),
  misses: counter("effect_workers_result_cache_misses_total", "reads that found none")
} as const

/** Label `engine`: the engine's `title`. @internal */
export const TaskEngineMetrics = {
  queued: gauge("effect_workers_task_engine_queued", "tasks waiting in the input queue"),
  running: gauge("effect_workers_task_engine_running", "attempts running"),
  completed: counter("effect_workers_task_engine_completed_total", "tasks that succeeded"),
  failed: counter("effect_workers_task_engine_failed_total", "tasks that failed for good (retries spent)"),
  retries: counter("effect_workers_task_engine_retries_total", "attempts that failed and were retried"),
  rateLimitWaits: counter(
    "effect_workers_task_engine_rate_limit_waits_total",
    "attempts that waited for a rate-limit permit"
  ),
  taskDuration: seconds(
    "effect_workers_task_engine_task_duration_seconds",
    "time of one attempt, its permit wait included"
  )
} as const

/** Label `limiter`: the limiter's kind (`interval`, `window`, `token_bucket`, …). @internal */
export const RateLimiterMetrics = {
  waits: counter("effect_workers_rate_limiter_waits_total", "takes that had to wait for a permit")
} as const

/** Label `tree`: the tree queue's `title`. @internal */
export const TreeQueueMetrics = {
  itemsDone: counter("effect_workers_tree_queue_items_done_total", "items processed (children queued)"),
  itemsFailed: counter("effect_workers_tree_queue_items_failed_total", "items whose processing failed"),
  itemDuration: seconds("effect_workers_tree_queue_item_duration_seconds", "time of one item's processing")
} as const
