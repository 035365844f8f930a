/**
 * effect-workers: an Effect-native concurrency toolkit. Each module is a namespace: `WorkerQueue.make(...)`,
 * `ResultCache.memory(...)`, and so on. This entry reaches no Node builtin, so it bundles for browsers and edge
 * runtimes; JobRunner, which starts OS processes, has its own Node-only entry, `effect-workers/JobRunner`.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as OptionError from "./OptionError.js"

/**
 * @since 0.1.0
 */
export * as ResultCache from "./ResultCache.js"

/**
 * @since 0.1.0
 */
export * as WorkerQueue from "./WorkerQueue.js"

/**
 * @since 0.1.0
 */
export * as TreeQueue from "./TreeQueue.js"

/**
 * @since 0.1.0
 */
export * as Progress from "./Progress.js"

/**
 * @since 0.1.0
 */
export * as RateLimiter from "./RateLimiter.js"

/**
 * @since 0.1.0
 */
export * as TaskEngine from "./TaskEngine.js"

/**
 * @since 0.1.0
 */
export * as TaskResult from "./TaskResult.js"

/**
 * A durable job queue shared by processes and machines (Redis, PostgreSQL, SQLite or memory): offer by id,
 * at-least-once delivery under a lease, acknowledgement after success, dead letters after `maxAttempts`.
 *
 * @since 0.1.0
 */
export * as DurableQueue from "./DurableQueue.js"
