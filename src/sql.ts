/**
 * `effect-workers/sql`: backends on SQL databases through `@effect/sql` (PostgreSQL with `@effect/sql-pg`,
 * SQLite with `@effect/sql-sqlite-node`; both optional peer dependencies) — a durable job queue shared by
 * processes and machines.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as DurableQueue from "./sql/DurableQueue.js"
