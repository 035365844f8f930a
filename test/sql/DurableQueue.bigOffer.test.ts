/**
 * An `offerAll` whose jobs add up to more than one statement may carry (PostgreSQL: a jsonb value holds at most
 * 256 MB) is written in several statements of one transaction (sqlStore.ts `OFFER_CHARS`): every job queued once,
 * de-duplicated in the batch and against the table as a small batch is. Not timed: ~280 MB go to the database.
 * PostgreSQL only: SQLite's limit (SQLITE_MAX_LENGTH, 1e9 bytes) would take over 1 GB to reach; the same cut
 * applies to it.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { withStore } from "../helpers/durableStores.js"
import { postgres, requireService } from "../helpers/services.js"

const pgUp = await requireService(postgres)

/** 17 values of 16 M characters: 272 M, over jsonb's 256 MB (268,435,455 bytes) as one JSON text. */
const JOBS = 17
const SIZE = 16 * 1024 * 1024
const big = (i: number) => `${i}:`.padEnd(SIZE, "x")

describe.skipIf(!pgUp)("DurableQueue.offerAll of ~280 MB on PostgreSQL", () => {
  // A priority sends every column in the general shape's one JSON array (jsonb); custom ids with a repeat in the
  // batch and one already known, past the first statement. (Plain jobs go as text, whose limit is 1 GB.)
  it.live(
    "jobs with a priority and custom ids: every job queued once, values whole (it failed whole)",
    () =>
      withStore("pg", (env) =>
        Effect.gen(function*() {
          const queue = yield* env.make({ name: "big", schema: Schema.String, pollInterval: "10 millis" })
          yield* queue.offer("known before", { id: "known" })
          const ids = yield* queue.offerAll([
            ...Array.from({ length: JOBS }, (_, i) => ({ value: big(i), id: `c${i}`, priority: 1 })),
            { value: "repeat", id: "c3" },
            { value: "again", id: "known" },
            { value: "last", id: "last", priority: 1 }
          ])
          expect(ids).toEqual([...Array.from({ length: JOBS }, (_, i) => `c${i}`), "c3", "known", "last"])
          expect(yield* queue.size).toBe(JOBS + 2)
          // One listing reads them all (taking them one by one doubled the case's time).
          const back = new Map(
            (yield* queue.jobs("waiting", { limit: 100 })).map((job) => [job.id, Option.getOrUndefined(job.value)])
          )
          expect(back.size).toBe(JOBS + 2)
          expect(back.get("known")).toBe("known before")
          expect(back.get("last")).toBe("last")
          for (let i = 0; i < JOBS; i++) {
            const value = back.get(`c${i}`)
            expect(value?.length).toBe(SIZE)
            expect(value?.slice(0, 4)).toBe(`${i}:`.padEnd(4, "x"))
          }
        })),
    300_000
  )
})
