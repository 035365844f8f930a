import { KeyValueStore } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { OptionError } from "../src/OptionError.js"
import * as ResultCache from "../src/ResultCache.js"
import { fixtureCommand } from "./helpers/compiled.js"

const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ message }) => {
    lines.push(Array.isArray(message) ? message.join(" ") : String(message))
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

describe("ResultCache", () => {
  describe("memory", () => {
    it.effect("evicts the least recently used entry beyond capacity", () =>
      Effect.gen(function*() {
        const cache = yield* ResultCache.memory<string, number>({ capacity: 2 })
        yield* cache.set("a", 1)
        yield* cache.set("b", 2)
        yield* cache.get("a") // a is now more recent than b
        yield* cache.set("c", 3)
        expect(yield* cache.get("b")).toEqual(Option.none())
        expect(yield* cache.get("a")).toEqual(Option.some(1))
        expect(yield* cache.get("c")).toEqual(Option.some(3))
        expect(yield* cache.size!).toBe(2)
      }))

    it.effect("entries expire after timeToLive, read from the Clock", () =>
      Effect.gen(function*() {
        const cache = yield* ResultCache.memory<string, number>({ timeToLive: "10 seconds" })
        yield* cache.set("a", 1)
        yield* TestClock.adjust("9999 millis")
        expect(yield* cache.get("a")).toEqual(Option.some(1))
        yield* TestClock.adjust("1 millis")
        expect(yield* cache.get("a")).toEqual(Option.none())
        expect(yield* cache.size!).toBe(0)
      }))

    it.effect("a write renews the time to live", () =>
      Effect.gen(function*() {
        const cache = yield* ResultCache.memory<string, number>({ timeToLive: "10 seconds" })
        yield* cache.set("a", 1)
        yield* TestClock.adjust("8 seconds")
        yield* cache.set("a", 2)
        yield* TestClock.adjust("8 seconds")
        expect(yield* cache.get("a")).toEqual(Option.some(2))
      }))

    it.effect("keys are compared with Equal: equal Data structs are one entry", () =>
      Effect.gen(function*() {
        const cache = yield* ResultCache.memory<{ readonly id: number }, string>()
        yield* cache.set(Data.struct({ id: 1 }), "one")
        expect(yield* cache.get(Data.struct({ id: 1 }))).toEqual(Option.some("one"))
        yield* cache.set(Data.struct({ id: 1 }), "uno")
        expect(yield* cache.size!).toBe(1)
      }))

    it.effect("rejects a capacity below 1 and a timeToLive that is not positive, naming the field", () =>
      Effect.gen(function*() {
        const capacity = yield* Effect.flip(ResultCache.memory({ capacity: 0 }))
        expect(capacity).toBeInstanceOf(OptionError)
        expect(capacity.message).toBe(
          "ResultCache: expected `capacity` to be an integer from 1 and up, or Infinity, got `0`"
        )
        const ttl = yield* Effect.flip(ResultCache.memory({ timeToLive: -5 }))
        expect(ttl.field).toBe("timeToLive")
        expect(ttl.message).toContain("got `-5`")
        const huge = yield* Effect.flip(ResultCache.memory({ capacity: 2 ** 53 }))
        expect(huge.field).toBe("capacity")
        const typo = yield* Effect.flip(ResultCache.memory({ timeToLve: "1 hour" } as ResultCache.MemoryOptions))
        expect(typo.message).toContain("did you mean `timeToLive`?")
      }))
  })

  describe("make", () => {
    it.effect("wraps user functions returning Promises; their failures are typed ResultCacheErrors", () =>
      Effect.gen(function*() {
        const store = new Map<string, number>()
        const cache = yield* ResultCache.make<string, number>({
          get: async (k) => (k === "bad" ? Promise.reject(new Error("no route")) : Option.fromNullable(store.get(k))),
          set: async (k, v) => void store.set(k, v)
        })
        yield* cache.set("x", 1)
        expect(yield* cache.get("x")).toEqual(Option.some(1))
        const error = yield* Effect.flip(cache.get("bad"))
        expect(error._tag).toBe("ResultCacheError")
        expect(error.reason).toBe("GetFailed")
        expect(error.message).toBe("ResultCache: reading key \"bad\" failed: no route")
      }))

    it.effect("a typo'd key, or a get/set that is not a function, fails with OptionError naming it", () =>
      Effect.gen(function*() {
        const get = () => Effect.succeedNone
        const set = () => Effect.void
        const typo = yield* Effect.flip(
          ResultCache.make({ get, set, clearAl: () => Effect.void } as ResultCache.MakeOptions<string, number>)
        )
        expect(typo).toBeInstanceOf(OptionError)
        expect([typo.module, typo.field]).toEqual(["ResultCache", "clearAl"])
        expect(typo.message).toContain("did you mean `clearAll`?")
        const notFunction = yield* Effect.flip(
          ResultCache.make({ get, set: "redis" } as unknown as ResultCache.MakeOptions<string, number>)
        )
        expect([notFunction.field, notFunction.value, notFunction.expected]).toEqual(["set", "redis", "a function"])
        const missing = yield* Effect.flip(
          ResultCache.make({ set } as unknown as ResultCache.MakeOptions<string, number>)
        )
        expect(missing.field).toBe("get")
        const badClear = yield* Effect.flip(
          ResultCache.make({ get, set, clear: 1 } as unknown as ResultCache.MakeOptions<string, number>)
        )
        expect([badClear.field, badClear.expected]).toEqual(["clear", "a function or undefined"])
        const notObject = yield* Effect.flip(
          ResultCache.make(null as unknown as ResultCache.MakeOptions<string, number>)
        )
        expect(notObject.field).toBe("options")
      }))
  })

  describe("clear, clearAll, prime (DataLoader parity)", () => {
    it.effect("memory: clear removes one key, clearAll every key, prime writes only a missing key", () =>
      Effect.gen(function*() {
        const cache = yield* ResultCache.memory<string, number>({ capacity: 10 })
        yield* ResultCache.prime(cache, "a", 1)
        yield* ResultCache.prime(cache, "a", 2) // already there: unchanged
        yield* cache.set("b", 3)
        expect(yield* cache.get("a")).toEqual(Option.some(1))
        yield* ResultCache.clear(cache, "a")
        expect(yield* cache.get("a")).toEqual(Option.none())
        expect(yield* cache.get("b")).toEqual(Option.some(3))
        yield* ResultCache.prime(cache, "a", 2)
        expect(yield* cache.get("a")).toEqual(Option.some(2))
        yield* ResultCache.clearAll(cache)
        expect(yield* cache.size!).toBe(0)
        expect(yield* cache.get("b")).toEqual(Option.none())
        // The LRU still works after clearAll (its list was reset, not left dangling).
        yield* cache.set("c", 4)
        expect(yield* cache.get("c")).toEqual(Option.some(4))
      }))

    it.effect("make: the user's clear/clearAll run; a cache without them, or one that throws, fails with ClearFailed", () =>
      Effect.gen(function*() {
        const store = new Map<string, number>([["x", 1], ["y", 2]])
        const withClear = yield* ResultCache.make<string, number>({
          get: (k) => Promise.resolve(Option.fromNullable(store.get(k))),
          set: (k, v) => Promise.resolve(void store.set(k, v)),
          clear: (k) => Promise.resolve(store.delete(k)),
          clearAll: () => Promise.resolve(store.clear())
        })
        yield* ResultCache.clear(withClear, "x")
        expect([...store.keys()]).toEqual(["y"])
        yield* ResultCache.clearAll(withClear)
        expect(store.size).toBe(0)
        const without = yield* ResultCache.make<string, number>({
          get: () => Effect.succeedNone,
          set: () => Effect.void
        })
        const e1 = yield* Effect.flip(ResultCache.clear(without, "x"))
        expect([e1.reason, e1.key]).toEqual(["ClearFailed", "\"x\""])
        const e2 = yield* Effect.flip(ResultCache.clearAll(without))
        expect(e2.reason).toBe("ClearFailed")
        const throwing = {
          get: () => Effect.succeedNone,
          set: () => Effect.void,
          clear: () => {
            throw new Error("no")
          }
        }
        const e3 = yield* Effect.flip(ResultCache.clear(throwing as ResultCache.ResultCache<string, number>, "x"))
        expect(e3.message).toContain("clearing key \"x\" failed: no")
      }))

    it.effect("keyValueStore: clear removes the prefixed key; clearAll only where the cache owns the store", () =>
      Effect.gen(function*() {
        const kv = yield* KeyValueStore.KeyValueStore
        const prefixed = yield* ResultCache.keyValueStore({ schema: Schema.Number, prefix: "p:" })
        yield* prefixed.set("a", 1)
        yield* kv.set("other", "keep")
        yield* ResultCache.clear(prefixed, "a")
        expect(yield* kv.get("p:a")).toEqual(Option.none())
        expect((yield* Effect.flip(ResultCache.clearAll(prefixed))).reason).toBe("ClearFailed")
        expect(yield* kv.get("other")).toEqual(Option.some("keep"))
        const whole = yield* ResultCache.keyValueStore({ schema: Schema.Number })
        yield* whole.set("b", 2)
        yield* ResultCache.clearAll(whole)
        expect(yield* kv.size).toBe(0)
      }).pipe(Effect.provide(KeyValueStore.layerMemory)))
  })

  describe("keyValueStore", () => {
    it.effect("round-trips values through the Schema, under the prefix", () =>
      Effect.gen(function*() {
        const cache = yield* ResultCache.keyValueStore({ schema: Schema.Struct({ n: Schema.Number }), prefix: "p:" })
        yield* cache.set(7, { n: 49 })
        expect(yield* cache.get(7)).toEqual(Option.some({ n: 49 }))
        const store = yield* KeyValueStore.KeyValueStore
        expect(yield* store.get("p:7")).toEqual(Option.some("{\"n\":49}"))
        expect(yield* cache.get(8)).toEqual(Option.none())
      }).pipe(Effect.provide(KeyValueStore.layerMemory)))

    it.effect("a value the schema cannot decode is a miss and a logged warning, not a crash", () => {
      const logs = captureLogs()
      return Effect.gen(function*() {
        const store = yield* KeyValueStore.KeyValueStore
        yield* store.set("k", "{\"n\":\"not a number\"}")
        yield* store.set("j", "not json at all")
        const cache = yield* ResultCache.keyValueStore({ schema: Schema.Struct({ n: Schema.Number }) })
        expect(yield* cache.get("k")).toEqual(Option.none())
        expect(yield* cache.get("j")).toEqual(Option.none())
        expect(logs.lines.filter((l) => l.includes("cannot decode the entry at key"))).toHaveLength(2)
      }).pipe(Effect.provide(KeyValueStore.layerMemory), Effect.provide(logs.layer))
    })

    it.effect("an unknown option fails with OptionError naming it and the nearest known one; so do bad values", () =>
      Effect.gen(function*() {
        const typo = yield* Effect.flip(
          ResultCache.keyValueStore({ schema: Schema.Number, prefx: "a:" } as ResultCache.KeyValueStoreOptions<
            string,
            number,
            number
          >)
        )
        expect(typo).toBeInstanceOf(OptionError)
        expect([typo.module, typo.field, typo.value]).toEqual(["ResultCache", "prefx", "a:"])
        expect(typo.message).toBe(
          "ResultCache: expected `prefx` to be a known option (did you mean `prefix`?), got `\"a:\"`"
        )
        const far = yield* Effect.flip(
          ResultCache.keyValueStore({ schema: Schema.Number, timeToLive: "1 hour" } as ResultCache.KeyValueStoreOptions<
            string,
            number,
            number
          >)
        )
        expect(far.message).toContain("one of `schema`, `prefix`, `key`")
        const noSchema = yield* Effect.flip(
          ResultCache.keyValueStore(
            { prefix: "a:" } as unknown as ResultCache.KeyValueStoreOptions<string, number, number>
          )
        )
        expect([noSchema.field, noSchema.expected]).toEqual(["schema", "a Schema"])
        const badPrefix = yield* Effect.flip(
          ResultCache.keyValueStore({ schema: Schema.Number, prefix: 7 } as unknown as ResultCache.KeyValueStoreOptions<
            string,
            number,
            number
          >)
        )
        expect([badPrefix.field, badPrefix.value]).toEqual(["prefix", 7])
        const badKey = yield* Effect.flip(
          ResultCache.keyValueStore({ schema: Schema.Number, key: "id" } as unknown as ResultCache.KeyValueStoreOptions<
            string,
            number,
            number
          >)
        )
        expect(badKey.field).toBe("key")
      }).pipe(Effect.provide(KeyValueStore.layerMemory)))

    // Two runs of a child process, awaited: execFileSync blocked the vitest worker for both (up to 60 s), past its
    // RPC time-out to vitest on a loaded machine (see examples.test.ts), and no test time-out could fire meanwhile.
    it("with the file-system store, results survive a process restart (two real runs)", async () => {
      const dir = mkdtempSync(join(tmpdir(), "effect-workers-cache-"))
      const persist = fixtureCommand("test/fixtures/resultCache-persist.ts")
      try {
        const run = () =>
          new Promise<unknown>((resolve, reject) => {
            const child = spawn(persist.command, [...persist.args, dir], {
              env: { ...process.env, ...persist.env },
              stdio: ["ignore", "pipe", "pipe"]
            })
            let out = ""
            let err = ""
            child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk))
            child.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk))
            const timer = setTimeout(() => child.kill("SIGKILL"), 45_000)
            child.on("close", (status, signal) => {
              clearTimeout(timer)
              if (status === 0) resolve(JSON.parse(out.trim()))
              else reject(new Error(`resultCache-persist: exit ${status ?? signal}: ${err}`))
            })
          })
        expect(await run()).toEqual({ runs: 3, values: [1, 4, 9, 4] })
        expect(await run()).toEqual({ runs: 0, values: [1, 4, 9, 4] })
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }, 120_000)
  })
})
