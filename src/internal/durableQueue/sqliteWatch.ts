/**
 * What an idle SQLite taker hears instead of notifications (SQLite has none): `PRAGMA data_version`, which changes
 * on a connection when ANOTHER connection commits to the database file (sqlite.org/pragma.html#pragma_data_version;
 * a write that changes no row, as an empty lease, does not change it: checked with better-sqlite3 3.53, WAL). It is
 * read without a transaction or a table, so a store that takes reads it every `pollInterval` and opens its `ready`
 * when it changed; the core then backs off its leases (a lease: two statements and the due time) to 2 s while
 * idle, and an offer from another process still starts within about `pollInterval` (core.ts `IdleBackoff`).
 *
 * The commits of this process's own connection do not change it: @effect/sql-sqlite-node holds ONE connection per
 * client, which every store of that client shares. A store's own offers and put-backs wake its own core already
 * (core.ts `offered`); those of another store on the same client (a second `DurableQueue.make`) are counted in
 * `localWrites`, which the watch reads beside `data_version`.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/** Writes that may make jobs ready (offers, put-backs, retries, resumes, requeues), per client of this process. */
const localWrites = new WeakMap<object, { n: number }>()

/** Counts a write of a store of `client` that may make jobs ready, for the other stores of that client. @internal */
export const localWriteCounter = (client: object): { n: number } => {
  let counter = localWrites.get(client)
  if (counter === undefined) {
    counter = { n: 0 }
    localWrites.set(client, counter)
  }
  return counter
}

/**
 * Reads `data_version` (and the client's `localWrites`) every `pollMillis` in the scope, opening `changed` when
 * either moved since the last read; returns whether it hears (the last read succeeded). A failed read is not
 * hearing (the core polls every `pollInterval` meanwhile), and the read after it opens `changed` once, since a
 * change may have gone unseen.
 * @internal
 */
export const watchDataVersion = (
  sql: SqlClient.SqlClient,
  counter: { readonly n: number },
  changed: Effect.Latch,
  pollMillis: number
): Effect.Effect<Effect.Effect<boolean>, never, Scope.Scope> =>
  Effect.gen(function*() {
    let hearing = false
    let failed = false
    let last: string | undefined
    const tick = Effect.matchEffect(sql<{ data_version: number | bigint }>`PRAGMA data_version`, {
      onFailure: (cause) =>
        Effect.zipRight(
          Effect.sync(() => {
            hearing = false
            failed = true
          }),
          Effect.logDebug("DurableQueue: reading SQLite's data_version failed; polling", cause)
        ),
      onSuccess: (rows) =>
        Effect.suspend(() => {
          const seen = `${rows[0]?.data_version}:${counter.n}`
          const moved = failed || (last !== undefined && seen !== last)
          last = seen
          failed = false
          hearing = true
          return moved ? changed.open : Effect.void
        })
    })
    // The first read before the first lease: a commit after it is seen by the next read, one before it by the lease.
    yield* tick
    // Interruptible: started by the first lease, which the core runs uninterruptibly (core.ts `Feed.fetch`), whose
    // status a forked fiber inherits; the scope's close then waited for it forever.
    yield* Effect.forkScoped(Effect.interruptible(Effect.forever(Effect.zipRight(Effect.sleep(pollMillis), tick))))
    return Effect.sync(() => hearing)
  })
