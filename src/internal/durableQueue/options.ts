/**
 * The options of every `DurableQueue`, validated once for every store: each bad value is an `OptionError` naming
 * the field and the value (a plain-JavaScript caller passes `NaN` from `Number(process.env.X)`, `"abc"`, `{}`).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as DurableQueue from "../../DurableQueue.js"
import type { OptionError } from "../../OptionError.js"
import { checker } from "../options.js"
import { badId } from "./encoding.js"

const check = checker("DurableQueue")

/**
 * The shortest lease: a refresh goes out every third of it, and on a loaded 2-core machine a fiber can wait tens
 * of milliseconds to run, so a shorter lease lapses under a live runner (30 ms did in the Redis tests).
 */
const MIN_LEASE_MILLIS = 100

/** @internal */
export interface QueueSettings {
  readonly name: string
  readonly maxAttempts: number
  readonly leaseMillis: number
  readonly pollMillis: number
}

/** @internal */
export const queueSettings = <A, I>(options: DurableQueue.Options<A, I>): Effect.Effect<QueueSettings, OptionError> =>
  Effect.gen(function*() {
    const name = yield* check.require("name", options.name, badId(options.name) === undefined, "a non-empty string without NUL characters or lone UTF-16 surrogates")
    yield* check.require("schema", options.schema, typeof options.schema === "object" || typeof options.schema === "function", "a Schema")
    const maxAttempts = yield* check.integer("maxAttempts", options.maxAttempts, 3, 1)
    const lease = yield* check.duration("leaseDuration", options.leaseDuration, "30 seconds")
    const leaseMillis = Math.round(Duration.toMillis(lease))
    yield* check.require("leaseDuration", options.leaseDuration, leaseMillis >= MIN_LEASE_MILLIS, `a duration of ${MIN_LEASE_MILLIS} milliseconds or more`)
    const poll = yield* check.duration("pollInterval", options.pollInterval, "100 millis")
    return { name, maxAttempts, leaseMillis, pollMillis: Math.max(1, Math.round(Duration.toMillis(poll))) }
  })

/** @internal */
export interface RunSettings {
  readonly concurrency: number
  readonly shutdownTimeout: Duration.Duration
}

/** @internal */
export const runSettings = (
  options: { readonly concurrency?: number | undefined; readonly shutdownTimeout?: Duration.DurationInput | undefined } | undefined
): Effect.Effect<RunSettings, OptionError> =>
  Effect.gen(function*() {
    yield* check.knownKeys(options, ["concurrency", "shutdownTimeout"], "run options")
    const concurrency = yield* check.integer("concurrency", options?.concurrency, 1, 1)
    const shutdownTimeout = yield* check.duration("shutdownTimeout", options?.shutdownTimeout, "30 seconds")
    return { concurrency, shutdownTimeout }
  })

/** The id of an offer, checked. @internal */
export const offerId = (id: unknown): Effect.Effect<string, OptionError> => {
  const why = badId(id)
  return why === undefined ? Effect.succeed(id as string) : check.require("id", id as string, false, why)
}

/**
 * The entries of `offerAll`, checked before anything is encoded or written: an array of objects whose `id`, where
 * given, is a valid id (a plain-JavaScript caller passes `null`, a string, or entries of numbers). @internal
 */
export const offerEntries = (
  entries: unknown
): Effect.Effect<ReadonlyArray<{ readonly id: string | undefined; readonly value: unknown }>, OptionError> =>
  Effect.gen(function*() {
    yield* check.require("entries", entries, Array.isArray(entries), "an array of { value, id? } objects")
    const out: Array<{ readonly id: string | undefined; readonly value: unknown }> = []
    for (const [i, entry] of (entries as ReadonlyArray<unknown>).entries()) {
      yield* check.require(`entries[${i}]`, entry, typeof entry === "object" && entry !== null, "an object { value, id? }")
      const { id, value } = entry as { readonly id?: unknown; readonly value: unknown }
      const why = id === undefined ? undefined : badId(id)
      if (why !== undefined) yield* check.require(`entries[${i}].id`, id, false, why)
      out.push({ id: id as string | undefined, value })
    }
    return out
  })
