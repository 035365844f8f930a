/**
 * An `offerAll` whose jobs add up to more than one statement may carry (PostgreSQL: a jsonb value holds at most
 * 256 MB) is written in several statements of one transaction (sqlStore.ts `offerChunks`, cut at `OFFER_CHARS`):
 * every job queued once, de-duplicated in the batch and against the table as a small batch is.
 *
 * The suite runs the cut at 1 M characters (`offerLimits`) with jobs of 256 K on both dialects: the same code path,
 * 4 MB instead of 280 MB. The real limit (17 jobs of 16 M characters with a priority, which failed whole on
 * PostgreSQL with "total size of jsonb array elements exceeds the maximum of 268435455 bytes") takes 40–67 s at
 * load 15–24, a third of the suite's budget: it runs with EFFECT_WORKERS_BIG_TESTS=1.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { offerChunks, offerLimits } from "../../src/internal/durableQueue/sqlStore.js"
import type { OfferedJob } from "../../src/internal/durableQueue/store.js"
import { type StoreKind, withStore } from "../helpers/durableStores.js"
import { postgres, requireService } from "../helpers/services.js"

const pgUp = await requireService(postgres)
const big = process.env["EFFECT_WORKERS_BIG_TESTS"] === "1"

/** `jobs` values of `size` characters with a priority and custom ids, a repeat of c3 and a known id after them. */
const offerBig = (kind: StoreKind, jobs: number, size: number, cutAt: number) =>
  withStore(kind, (env) =>
    Effect.gen(function*() {
      const value = (i: number) => `${i}:`.padEnd(size, "x")
      const queue = yield* env.make({ name: "big", schema: Schema.String, pollInterval: "10 millis" })
      yield* queue.offer("known before", { id: "known" })
      const limit = offerLimits.chars
      offerLimits.chars = cutAt
      const ids = yield* queue.offerAll([
        ...Array.from({ length: jobs }, (_, i) => ({ value: value(i), id: `c${i}`, priority: 1 })),
        { value: "repeat", id: "c3" },
        { value: "again", id: "known" },
        { value: "last", id: "last", priority: 1 }
      ]).pipe(Effect.ensuring(Effect.sync(() => (offerLimits.chars = limit))))
      expect(ids).toEqual([...Array.from({ length: jobs }, (_, i) => `c${i}`), "c3", "known", "last"])
      expect(yield* queue.size).toBe(jobs + 2)
      // One listing reads them all (taking them one by one doubled the case's time).
      const back = new Map(
        (yield* queue.jobs("waiting", { limit: 100 })).map((job) => [job.id, Option.getOrUndefined(job.value)])
      )
      expect(back.size).toBe(jobs + 2)
      expect(back.get("known")).toBe("known before")
      expect(back.get("last")).toBe("last")
      for (let i = 0; i < jobs; i++) {
        const got = back.get(`c${i}`)
        expect(got?.length).toBe(size)
        expect(got?.slice(0, 4)).toBe(`${i}:`.padEnd(4, "x"))
      }
    }))

const job = (id: string, payload: string, options?: string): OfferedJob => ({
  id,
  payload,
  custom: true,
  delayMillis: 0,
  priority: 0,
  options
})

describe("DurableQueue.offerAll cut into statements", () => {
  it("offerChunks: cut before the job that would pass the characters (ids, payloads, options) or 5,000 rows; a job longer than the cut goes alone; one statement is the batch itself", () => {
    const limit = offerLimits.chars
    offerLimits.chars = 100
    try {
      const jobs = [job("a", "x".repeat(48)), job("b", "x".repeat(48)), job("c", "x".repeat(10), "o".repeat(40))]
      expect(offerChunks(jobs, (j) => j).map((chunk) => chunk.map((j) => j.id))).toEqual([["a", "b"], ["c"]])
      const huge = [job("a", "x"), job("h", "x".repeat(500)), job("b", "x")]
      expect(offerChunks(huge, (j) => j).map((chunk) => chunk.map((j) => j.id))).toEqual([["a"], ["h"], ["b"]])
      const small = [job("a", "x"), job("b", "x")]
      expect(offerChunks(small, (j) => j)[0]).toBe(small)
    } finally {
      offerLimits.chars = limit
    }
    const many = Array.from({ length: 12_001 }, (_, i) => job(`${i}`, "1"))
    expect(offerChunks(many, (j) => j).map((chunk) => chunk.length)).toEqual([5_000, 5_000, 2_001])
  })

  for (const kind of ["sqlite", "pg"] as const) {
    it.live.skipIf(kind === "pg" && !pgUp)(
      `${kind}: 17 jobs of 256 K characters cut at 1 M (6 statements in one transaction): every job queued once, values whole, ids de-duplicated across statements`,
      () => offerBig(kind, 17, 256 * 1024, 1024 * 1024),
      60_000
    )
  }

  // A priority sends every column in the general shape's one JSON array (jsonb). (Plain jobs go as text, 1 GB.)
  it.live.skipIf(!pgUp || !big)(
    "pg, the real limit: 17 jobs of 16 M characters with a priority, ~280 MB (it failed whole on jsonb's 256 MB)",
    () => offerBig("pg", 17, 16 * 1024 * 1024, 16 * 1024 * 1024),
    300_000
  )
})
