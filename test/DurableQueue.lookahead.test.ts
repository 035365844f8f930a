/**
 * A `run` leases ahead of its takers (up to 4 × its concurrency, core.ts `LOOKAHEAD`). Those jobs must not stay
 * with it once it stops: when the last `run` of a queue instance ends, what it leased ahead is put back at once,
 * uncounted, while the instance (and its lease refresh) lives on. Without that, another instance would wait for
 * them until this one's scope closed: the takes below would time out.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { type Env, type StoreKind, withStore } from "./helpers/durableStores.js"
import { postgres, redis, requireService } from "./helpers/services.js"

const redisUp = await requireService(redis)
const pgUp = await requireService(postgres)
const stores: ReadonlyArray<readonly [StoreKind, boolean]> = [["memory", true], ["redis", redisUp], ["pg", pgUp], [
  "sqlite",
  true
]]

for (const [kind, up] of stores) {
  describe.skipIf(!up)(`DurableQueue lookahead on ${kind}`, () => {
    const test = (name: string, body: (env: Env) => Effect.Effect<void, unknown, Scope.Scope>) =>
      it.live(name, () => withStore(kind, body), 60_000)

    test("jobs a stopped run leased ahead go back at once, uncounted, while its instance lives", (env) =>
      Effect.gen(function*() {
        const make = env.make({ name: "jobs", schema: Schema.Number, pollInterval: "10 millis" })
        const a = yield* make
        const b = yield* make
        yield* a.offerAll(Array.from({ length: 20 }, (_, n) => ({ value: n, id: `j${n}` })))
        let first = -1
        // One taker stuck on its first job (until shutdownTimeout gives it up): the rest it leased ahead are idle.
        const running = yield* Effect.fork(
          a.run((n) => Effect.zipRight(Effect.sync(() => (first = n)), Effect.never), {
            concurrency: 1,
            shutdownTimeout: "50 millis"
          })
        )
        while (first < 0) yield* Effect.sleep("10 millis")
        yield* Fiber.interrupt(running)
        const seen: Array<string> = []
        for (let i = 0; i < 19; i++) {
          const exit = yield* b.take((n, job) => Effect.sync(() => seen.push(`${n}@${job.attempt}`))).pipe(
            Effect.timeout("10 seconds")
          )
          expect(Exit.isSuccess(exit)).toBe(true)
        }
        // Every job but the stuck one, each on its first attempt (put back uncounted).
        expect(seen.map((s) => Number(s.split("@")[0])).sort((x, y) => x - y)).toEqual(
          Array.from({ length: 20 }, (_, n) => n).filter((n) => n !== first)
        )
        expect(seen.every((s) => s.endsWith("@1"))).toBe(true)
      }))
  })
}
