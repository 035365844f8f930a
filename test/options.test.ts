import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { checker, MAX_COUNT, nearest } from "../src/internal/options.js"

const check = checker("Test")

describe("option checks", () => {
  it.effect("an unknown key names the nearest known one", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(check.knownKeys({ concurency: 8 }, ["concurrency", "capacity"]))
      expect(error.field).toBe("concurency")
      expect(error.message).toContain("did you mean `concurrency`")
      const far = yield* Effect.flip(check.knownKeys({ zzzzzzzz: 1 }, ["concurrency"]))
      expect(far.message).toContain("one of `concurrency`")
      yield* check.knownKeys({ concurrency: 1 }, ["concurrency"])
      yield* check.knownKeys(undefined, ["concurrency"])
      const notObject = yield* Effect.flip(check.knownKeys(5, ["concurrency"]))
      expect(notObject.field).toBe("options")
    }))

  it.effect("huge, NaN and non-number counts are refused with the field and the value", () =>
    Effect.gen(function*() {
      for (const bad of [1e12, 2 ** 53, Number.NaN, "8", {}, -1, 1.5]) {
        const error = yield* Effect.flip(check.integer("workers", bad as number, 1, 1))
        expect(error.field).toBe("workers")
        expect(error.message).toContain("workers")
      }
      expect(yield* check.integer("workers", MAX_COUNT, 1, 1)).toBe(MAX_COUNT)
      expect(yield* check.integerOrInfinity("capacity", Infinity, 1, 1)).toBe(Infinity)
      yield* Effect.flip(check.integerOrInfinity("capacity", 2 ** 60, 1, 1))
    }))

  it("nearest ignores case and gives up past three edits", () => {
    expect(nearest("Workers", ["workers", "retry"])).toBe("workers")
    expect(nearest("abcdefg", ["workers"])).toBeUndefined()
  })
})
