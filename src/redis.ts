/**
 * `effect-workers/redis`: backends on Redis (ioredis, an optional peer dependency) — the connection, a result
 * cache, rate limiters exact across processes, and a WorkerQueue whose single-flight spans every process.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as RedisClient from "./redis/RedisClient.js"
/** @since 0.1.0 */
export * as ResultCache from "./redis/ResultCache.js"
/** @since 0.1.0 */
export * as RateLimiter from "./redis/RateLimiter.js"
/** @since 0.1.0 */
export * as WorkerQueue from "./redis/WorkerQueue.js"
/** @since 0.1.0 */
export * as DurableQueue from "./redis/DurableQueue.js"
