/**
 * `DurableQueue.offerAll` on every store (memory, Redis, PostgreSQL, SQLite): ids in entry order, de-duplicated
 * within the batch and against the store, and all or nothing before the store (a hostile entry writes nothing).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as DurableQueue from "../src/DurableQueue.js"
import { OptionError } from "../src/OptionError.js"
import { type Env, type StoreKind, withStore } from "./helpers/durableStores.js"
import { postgres, redis, requireService } from "./helpers/services.js"

const redisUp = await requireService(redis)
const pgUp = await requireService(postgres)
const stores: ReadonlyArray<readonly [StoreKind, boolean]> = [["memory", true], ["redis", redisUp], ["pg", pgUp], [
  "sqlite",
  true
]]

/** Takes every job there is (each `take` waits, so `count` must be what the queue holds). */
const drainAll = <A>(queue: DurableQueue.DurableQueue<A>, count: number) =>
  Effect.gen(function*() {
    const seen: Array<string> = []
    for (let i = 0; i < count; i++) {
      yield* queue.take((value, job) => Effect.sync(() => seen.push(`${job.id}=${JSON.stringify(value)}`))).pipe(
        Effect.timeout("10 seconds")
      )
    }
    return seen
  })

for (const [kind, up] of stores) {
  describe.skipIf(!up)(`DurableQueue.offerAll on ${kind}`, () => {
    const test = (name: string, body: (env: Env) => Effect.Effect<void, unknown, Scope.Scope>) =>
      it.live(name, () => withStore(kind, body), 30_000)

    test("returns one id per entry in order; a duplicate id in the batch and an id already known are queued once", (env) =>
      Effect.gen(function*() {
        const queue = yield* env.make({ name: "jobs", schema: Schema.Number, pollInterval: "10 millis" })
        yield* queue.offer(0, { id: "known" })
        const ids = yield* queue.offerAll([
          { value: 1, id: "a" },
          { value: 2 },
          { value: 3, id: "a" },
          { value: 4, id: "known" },
          { value: 5, id: "b" }
        ])
        expect(ids.length).toBe(5)
        expect([ids[0], ids[2], ids[3], ids[4]]).toEqual(["a", "a", "known", "b"])
        expect(ids[1]).toMatch(/^[0-9a-f-]{36}$/)
        // known (0), a (1, the first of the two), the generated one (2), b (5): offer order kept.
        expect(yield* queue.size).toBe(4)
        expect(yield* drainAll(queue, 4)).toEqual(["known=0", "a=1", `${ids[1]}=2`, "b=5"])
        expect(yield* queue.size).toBe(0)
        expect(yield* queue.offerAll([])).toEqual([])
      }))

    test("the Effect of one offerAll run twice queues and returns its entries as once each time", (env) =>
      Effect.gen(function*() {
        const queue = yield* env.make({ name: "jobs", schema: Schema.Number, pollInterval: "10 millis" })
        // The second entry is not usual (a timeout): the core checks it and those after it as Effects, after the
        // usual first one went by the plain loop. Each run must start from the entries, not from the last run's state.
        const offered = queue.offerAll([{ value: 1, id: "x" }, { value: 2, id: "y", timeout: "1 minute" }])
        const first = yield* offered
        const second = yield* offered
        expect(first).toEqual(["x", "y"])
        expect(second).toEqual(["x", "y"])
        expect(yield* queue.size).toBe(2)
        expect(yield* drainAll(queue, 2)).toEqual(["x=1", "y=2"])
      }))

    test("values with U+001E, other control characters, lone surrogates and empty strings come back as offered", (env) =>
      Effect.gen(function*() {
        // PostgreSQL's plain bulk offer joins ids and payloads with U+001E: a payload or id holding one raw would
        // shift every row after it. The flat struct path and JSON.stringify escape it; a custom id holding it goes
        // in the general shape.
        const Flat = Schema.Struct({ s: Schema.String, n: Schema.Number })
        const queue = yield* env.make({ name: "jobs", schema: Flat, pollInterval: "10 millis" })
        const texts = ["a\u001eb", "\u001e", "", "\ud800", "x\u0001\u001f\n\"", "\u001e\u001e"]
        const ids = yield* queue.offerAll(texts.map((s, n) => ({ value: { s, n } })))
        const custom = yield* queue.offerAll([{ value: { s: "c", n: 10 }, id: "c\u001ed" }, {
          value: { s: "", n: 11 }
        }])
        expect(custom[0]).toBe("c\u001ed")
        const seen = new Map<string, { readonly s: string; readonly n: number }>()
        for (let i = 0; i < texts.length + 2; i++) {
          yield* queue.take((value, job) => Effect.sync(() => seen.set(job.id, value))).pipe(
            Effect.timeout("10 seconds")
          )
        }
        texts.forEach((s, n) => expect(seen.get(ids[n]!)).toEqual({ s, n }))
        expect(seen.get("c\u001ed")).toEqual({ s: "c", n: 10 })
        expect(seen.get(custom[1]!)).toEqual({ s: "", n: 11 })
      }))

    test("1,000 entries in one call are all queued and run once", (env) =>
      Effect.gen(function*() {
        const queue = yield* env.make({ name: "jobs", schema: Schema.Number, pollInterval: "10 millis" })
        const ids = yield* queue.offerAll(Array.from({ length: 1_000 }, (_, n) => ({ value: n, id: `j${n}` })))
        expect(ids).toEqual(Array.from({ length: 1_000 }, (_, n) => `j${n}`))
        expect(yield* queue.size).toBe(1_000)
        const done = new Set<number>()
        yield* Effect.forkScoped(queue.run((n) => Effect.sync(() => done.add(n)), { concurrency: 16 }))
        for (let i = 0; i < 2_000 && ((yield* queue.size) > 0 || done.size < 1_000); i++) {
          yield* Effect.sleep("10 millis")
        }
        expect(done.size).toBe(1_000)
        expect(yield* queue.size).toBe(0)
      }))

    test("12,000 entries (three statements in one transaction on SQL) are all queued; a repeated id at the end once", (env) =>
      Effect.gen(function*() {
        const queue = yield* env.make({ name: "jobs", schema: Schema.Number, pollInterval: "10 millis" })
        const entries = Array.from({ length: 12_000 }, (_, n) => ({ value: n, id: `j${n}` }))
        const ids = yield* queue.offerAll([...entries, { value: -1, id: "j1" }])
        expect(ids.length).toBe(12_001)
        expect(yield* queue.size).toBe(12_000)
      }))

    test("values and ids come back byte for byte (quotes, backslashes, NUL and lone surrogates in strings, long ids)", (env) =>
      Effect.gen(function*() {
        const queue = yield* env.make({ name: "jobs", schema: Schema.Unknown, pollInterval: "10 millis" })
        const values: ReadonlyArray<unknown> = [
          "a \"quoted\" \\ back",
          "lone \ud83d surrogate",
          "\u0000 nul",
          { nested: [1, "two", null, true] },
          1.5,
          "\ud83d\ude00"
        ]
        const ids = values.map((_, i) => i === 0 ? "x".repeat(300) : `id "${i}" \\ \ud83d\ude00`)
        expect(yield* queue.offerAll(values.map((value, i) => ({ value, id: ids[i]! })))).toEqual(ids)
        const back: Array<readonly [string, unknown]> = []
        for (let i = 0; i < values.length; i++) {
          yield* queue.take((value, job) => Effect.sync(() => back.push([job.id, value])))
        }
        expect(back).toEqual(values.map((value, i) => [ids[i], value]))
      }))

    // On PostgreSQL a batch of plain jobs sends its ids and payloads as two texts joined by U+001E (sqlStore.ts
    // `makeOffer`): control characters, that one included, in short custom ids and in values beside generated ids.
    test("control characters (U+001E, the plain rows' separator, among them) in ids and values come back byte for byte", (env) =>
      Effect.gen(function*() {
        const queue = yield* env.make({ name: "jobs", schema: Schema.Unknown, pollInterval: "10 millis" })
        const values: ReadonlyArray<unknown> = ["a\u001eb", "\u001e", { k: "\u0001\u001f\u001e" }, ["\u001e", 1], "x"]
        const ids = ["i\u001ed", "\u001e", "t\u0001\u001f", "plain", "\u001e\u001e"]
        expect(yield* queue.offerAll(values.map((value, i) => ({ value, id: ids[i]! })))).toEqual(ids)
        const generated = yield* queue.offerAll(values.map((value) => ({ value })))
        const back = new Map<string, unknown>()
        for (let i = 0; i < 2 * values.length; i++) {
          yield* queue.take((value, job) => Effect.sync(() => back.set(job.id, value)))
        }
        expect(back).toEqual(new Map([...ids, ...generated].map((id, i) => [id, values[i % values.length]])))
      }))

    // Generated ids are new by construction: on SQL such a batch is a plain INSERT (no ON CONFLICT), a batch holding
    // a custom id the de-duplicating one; both kinds, hostile text and 0 rows here.
    test("generated ids: hostile and huge values come back byte for byte; custom ids beside them skip done and dead jobs", (env) =>
      Effect.gen(function*() {
        const queue = yield* env.make({
          name: "jobs",
          schema: Schema.Unknown,
          pollInterval: "10 millis",
          maxAttempts: 1
        })
        yield* queue.offerAll([{ value: "done", id: "done" }, { value: "dead", id: "dead" }])
        yield* queue.take((value) => value === "done" ? Effect.void : Effect.fail("no"))
        yield* queue.take((value) => value === "done" ? Effect.void : Effect.fail("no"))
        expect((yield* queue.deadLetters).map((letter) => letter.id)).toEqual(["dead"])
        const hostile: ReadonlyArray<unknown> = [
          "\u0000 nul \\u0000 escaped",
          "lone \ud83d and \udc00 surrogates",
          "{\"a\",NULL,\"b\"} ' \" \\ ,{}",
          "",
          "NULL",
          "x".repeat(200_000)
        ]
        const generated = yield* queue.offerAll(hostile.map((value) => ({ value })))
        const mixed = yield* queue.offerAll([
          { value: "again" },
          { value: "x", id: "done" },
          { value: "y", id: "dead" },
          { value: "new", id: "new" },
          { value: "new twice", id: "new" }
        ])
        expect(yield* queue.offerAll([])).toEqual([])
        expect(new Set([...generated, mixed[0]!]).size).toBe(hostile.length + 1)
        expect(yield* queue.size).toBe(hostile.length + 2)
        const back = new Map<string, unknown>()
        for (let i = 0; i < hostile.length + 2; i++) {
          yield* queue.take((value, job) => Effect.sync(() => back.set(job.id, value)))
        }
        expect(back).toEqual(
          new Map([...generated.map((id, i) => [id, hostile[i]] as const), [mixed[0]!, "again"], ["new", "new"]])
        )
        expect(Option.map(yield* queue.status("done"), (status) => status.state)).toEqual(Option.some("done"))
        expect((yield* queue.deadLetters).map((letter) => [letter.id, letter.value])).toEqual([["dead", "dead"]])
      }))

    test("a hostile value fails the call with EncodeFailed naming its id, and nothing of the batch is written", (env) =>
      Effect.gen(function*() {
        const queue = yield* env.make({ name: "jobs", schema: Schema.Unknown, pollInterval: "10 millis" })
        const cyclic: Record<string, unknown> = {}
        cyclic.self = cyclic
        for (const bad of [() => 1, 1n, cyclic, Number.NaN, new Date(0), [undefined]]) {
          const error = yield* Effect.flip(
            queue.offerAll([{ value: 1, id: "before" }, { value: bad, id: "hostile" }, { value: 2, id: "after" }])
          )
          expect(error).toMatchObject({ _tag: "DurableQueueError", reason: "EncodeFailed", id: "hostile" })
          expect(yield* queue.size).toBe(0)
        }
        // The ids of the refused batch were never stored: they can be offered now.
        expect(yield* queue.offerAll([{ value: 1, id: "before" }, { value: 2, id: "after" }])).toEqual([
          "before",
          "after"
        ])
        expect(yield* queue.size).toBe(2)
      }))

    test("per-entry options: a delayed entry and a priority entry in one batch", (env) =>
      Effect.gen(function*() {
        // The delayed entry must still wait while the offer, the reads and the first three takes run: idle they took
        // well under 100 ms, so a fixed 2 s delay spent about 1.9 s of nothing on each of the four stores (the case
        // took 2.02-2.19 s). Start at 400 ms; when those steps did not all end inside the delay (a loaded machine),
        // the attempt proves nothing and runs again on a fresh queue with the delay doubled, and the last one counts.
        for (let delay = 400;; delay *= 2) {
          const queue = yield* env.make({ name: `jobs${delay}`, schema: Schema.Number, pollInterval: "10 millis" })
          const offered = Date.now()
          const ids = yield* queue.offerAll([
            { value: 1, id: "plain" },
            { value: 2, id: "later", delay },
            { value: 3, id: "urgent", priority: 5 },
            { value: 4, id: "timed", timeout: "5 seconds", backoff: { _tag: "Fixed", millis: 10 } }
          ])
          const counts = yield* queue.counts
          const later = yield* queue.status("later")
          // The priority entry first, then offer order; the delayed one only once its time came.
          const first = yield* drainAll(queue, 3)
          if (Date.now() - offered >= delay && delay < 6_400) continue
          expect(ids).toEqual(["plain", "later", "urgent", "timed"])
          expect(counts).toMatchObject({ waiting: 3, delayed: 1, running: 0, dead: 0, paused: false })
          expect(Option.map(later, (status) => status.state)).toEqual(Option.some("delayed"))
          expect(first).toEqual(["urgent=3", "plain=1", "timed=4"])
          expect(yield* drainAll(queue, 1)).toEqual(["later=2"])
          expect(Date.now() - offered).toBeGreaterThanOrEqual(delay * 0.9)
          return
        }
      }))

    test("a bad per-entry option fails with OptionError naming entries[i].<option>, and nothing is written", (env) =>
      Effect.gen(function*() {
        const queue = yield* env.make({ name: "jobs", schema: Schema.Number, pollInterval: "10 millis" })
        const cases: ReadonlyArray<readonly [unknown, string]> = [
          [{ value: 2, delay: -5 }, "entries[1].delay"],
          [{ value: 2, delay: "soon" }, "entries[1].delay"],
          [{ value: 2, delay: "20 years" }, "entries[1].delay"],
          [{ value: 2, delay: 10, runAt: Date.now() }, "entries[1].runAt"],
          [{ value: 2, runAt: Date.now() / 1000 }, "entries[1].runAt"],
          [{ value: 2, priority: 1.5 }, "entries[1].priority"],
          [{ value: 2, timeout: 0 }, "entries[1].timeout"],
          [{ value: 2, backoff: { _tag: "Fixed", millis: -1 } }, "entries[1].backoff.millis"],
          [{ value: 2, prority: 3 }, "entries[1].prority"],
          // Numbers at the edges of what an entry's usual options take at once (options.ts `usualSettings`).
          [{ value: 2, delay: 10 * 366 * 24 * 3_600_000 }, "entries[1].delay"],
          [{ value: 2, delay: Number.NaN }, "entries[1].delay"],
          [{ value: 2, priority: 1_000_001 }, "entries[1].priority"],
          [{ value: 2, priority: -1_000_001 }, "entries[1].priority"],
          [{ value: 2, id: "ok2", priority: Number.NaN }, "entries[1].priority"],
          [{ value: 2, id: "ok2", prority: undefined }, "entries[1].prority"]
        ]
        for (const [entry, field] of cases) {
          const error = yield* Effect.flip(
            queue.offerAll([{ value: 1, id: "ok" }, entry] as ReadonlyArray<DurableQueue.OfferEntry<number>>)
          )
          expect(error).toBeInstanceOf(OptionError)
          expect((error as OptionError).field).toBe(field)
        }
        expect(yield* queue.size).toBe(0)
      }))

    test("non-enumerable options are checked and used as offer's are (the shortcut once skipped them)", (env) =>
      Effect.gen(function*() {
        const queue = yield* env.make({ name: "jobs", schema: Schema.Number, pollInterval: "10 millis" })
        const hidden = (entry: object, key: string, value: unknown) =>
          Object.defineProperty(entry, key, { value, enumerable: false })
        const cases: ReadonlyArray<readonly [ReadonlyArray<unknown>, string]> = [
          [[hidden({ value: 1, id: "x" }, "delay", Number.NaN)], "entries[0].delay"],
          [[hidden({ value: 1 }, "delay", Number.NaN)], "entries[0].delay"],
          [[hidden({ value: 1, delay: 5 }, "id", 5)], "entries[0].id"],
          [[hidden({ value: 1 }, "priority", 1.5)], "entries[0].priority"],
          // After an entry that only `resolveOffer` takes (a runAt), the rest go one by one: the same rule.
          [[{ value: 1, runAt: Date.now() }, hidden({ value: 2 }, "delay", -1)], "entries[1].delay"]
        ]
        for (const [entries, field] of cases) {
          const error = yield* Effect.flip(queue.offerAll(entries as ReadonlyArray<DurableQueue.OfferEntry<number>>))
          expect(error).toBeInstanceOf(OptionError)
          expect((error as OptionError).field).toBe(field)
        }
        expect(yield* queue.size).toBe(0)
        // A valid non-enumerable id is the job's id, as `offer(1, hidden({}, "id", "secret"))` would make it.
        expect(yield* queue.offerAll([hidden({ value: 1 }, "id", "secret") as DurableQueue.OfferEntry<number>]))
          .toEqual(["secret"])
      }))

    test("an option read twice is the one checked: a getter's second answer does not reach the store", (env) =>
      Effect.gen(function*() {
        const queue = yield* env.make({ name: "jobs", schema: Schema.Number, pollInterval: "10 millis" })
        // A getter that answers a good id, then a number: the check and the job must see the same read.
        let idReads = 0
        const entry = {
          value: 1,
          get id(): string {
            return (idReads++ === 0 ? "checked" : 42) as unknown as string
          }
        }
        let priorityReads = 0
        const other = {
          value: 2,
          id: "other",
          get priority(): number {
            return priorityReads++ === 0 ? 1 : 1e12
          }
        }
        const ids = yield* queue.offerAll([entry, other])
        expect(ids).toEqual(["checked", "other"])
        expect(yield* drainAll(queue, 2)).toEqual(["other=2", "checked=1"])
      }))

    test("hostile entries fail with OptionError naming the entry, and nothing is written", (env) =>
      Effect.gen(function*() {
        const queue = yield* env.make({ name: "jobs", schema: Schema.Number, pollInterval: "10 millis" })
        const cases: ReadonlyArray<readonly [unknown, string]> = [
          [null, "entries"],
          ["abc", "entries"],
          [{ value: 1 }, "entries"],
          [[{ value: 1, id: "ok" }, 42], "entries[1]"],
          [[{ value: 1, id: "ok" }, null], "entries[1]"],
          [[{ value: 1, id: "ok" }, { value: 2, id: 7 }], "entries[1].id"],
          [[{ value: 1, id: "ok" }, { value: 2, id: "" }], "entries[1].id"],
          [[{ value: 1, id: "ok" }, { value: 2, id: "a\u0000b" }], "entries[1].id"],
          [[{ value: 1, id: "ok" }, { value: 2, id: "x\ud83d" }], "entries[1].id"]
        ]
        for (const [entries, field] of cases) {
          const error = yield* Effect.flip(queue.offerAll(entries as ReadonlyArray<DurableQueue.OfferEntry<number>>))
          expect(error).toBeInstanceOf(OptionError)
          expect((error as OptionError).field).toBe(field)
        }
        expect(yield* queue.size).toBe(0)
      }))
  })
}
