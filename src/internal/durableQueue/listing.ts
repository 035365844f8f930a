/**
 * `DurableQueue.jobs`: the jobs of one state as the store lists them, with their values decoded. Apart from core.ts
 * so that the listing does not touch the queue's hot paths; the rules are the store port's (store.ts `jobs`).
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as DurableQueue from "../../DurableQueue.js"
import type { Codec } from "./encoding.js"
import type { DurableQueueError } from "./error.js"
import { listSettings } from "./options.js"
import type { Store } from "./store.js"

/** Stored progress (JSON we wrote) back to a value; the text itself should it no longer parse. @internal */
export const parseProgress = (json: string | undefined): unknown => {
  if (json === undefined) return undefined
  try {
    return JSON.parse(json)
  } catch {
    return json
  }
}

/** @internal */
export const makeJobs = <A>(
  store: Store,
  codec: Codec<A>,
  failed: (cause: unknown) => DurableQueueError
): DurableQueue.DurableQueue<A>["jobs"] =>
(state, options) =>
  Effect.flatMap(
    listSettings(state, options),
    ({ limit, offset, state }) =>
      Effect.flatMap(Effect.mapError(store.jobs(state, limit, offset), failed), (stored) =>
        Effect.forEach(stored, (job) =>
          Effect.map(
            // A payload that no longer decodes (a job of an old version) is listed with its JSON and no value.
            job.payload === undefined
              ? Effect.succeed(Option.none<A>())
              : Effect.map(Effect.either(codec.decode(job.payload)), Either.getRight),
            (value): DurableQueue.JobSummary<A> => ({
              id: job.id,
              state,
              attempts: job.attempts,
              progress: parseProgress(job.progress),
              lastError: job.lastError,
              ageMillis: job.ageMillis,
              value,
              payload: job.payload
            })
          )))
  )
