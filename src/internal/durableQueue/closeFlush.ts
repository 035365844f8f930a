/**
 * The bounded flush of a closing queue, shared by the core's settlements (core.ts `Settler`) and the SQL store's
 * coalesced offers (sqlStore.ts `drain`): what is queued is written for `CLOSE_FLUSH_MILLIS` at most, then let go.
 *
 * It runs as a finalizer, uninterruptible, where a timeout cannot interrupt what it bounds unless that is made
 * interruptible: a store call that never returns (a database that stopped answering, a table locked by another
 * session) held the close forever. @internal
 */
import * as Effect from "effect/Effect"

/** How long a closing queue writes what is queued, at most. @internal */
export const CLOSE_FLUSH_MILLIS = 5_000

/**
 * Runs `wait` for `CLOSE_FLUSH_MILLIS` at most, made interruptible (a finalizer runs uninterruptibly, where the
 * timeout could not cut it); also the bound of a stopped `run`'s wait for its writes (core.ts `settleOnStop`).
 * @internal
 */
export const withinCloseBound = (wait: Effect.Effect<void>): Effect.Effect<void> =>
  wait.pipe(Effect.interruptible, Effect.timeout(CLOSE_FLUSH_MILLIS), Effect.ignore)

/** Runs `flush` for `CLOSE_FLUSH_MILLIS` at most (interruptibly), then `letGo` for what is left. @internal */
export const flushWithin = (flush: Effect.Effect<void>, letGo: Effect.Effect<void>): Effect.Effect<void> =>
  Effect.zipRight(withinCloseBound(flush), letGo)
