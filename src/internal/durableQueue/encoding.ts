/**
 * Jobs as every store sees them: JSON text written here, in JavaScript, from the item Schema's encoded form. A
 * value that JSON would silently change is refused instead (a function or `undefined` dropped, `NaN` turned into
 * `null`, a `Date` or `Map` flattened by `toJSON`), as is one that cannot be written at all (a `BigInt`, a cycle)
 * or is nested deeper than `MAX_DEPTH`: the offer fails with `EncodeFailed` naming the id, and the job is never
 * stored, so no store can take other jobs down with it. Lone UTF-16 surrogates in strings are fine: `JSON.stringify`
 * escapes them (`"\ud83d"`), so the text is well-formed and the string comes back as it was.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as AST from "effect/SchemaAST"
import { thrownMessage } from "./error.js"

/**
 * Nesting deeper than this is refused: Redis's cjson stopped at 1000 (our Lua no longer parses jobs, but a
 * JavaScript stack overflows in `JSON.stringify` by 5,000 levels on Node 20).
 *
 * @internal
 */
export const MAX_DEPTH = 1000

const jsonPrimitive = (value: unknown): boolean =>
  value === null || typeof value === "string" || typeof value === "boolean" ||
  (typeof value === "number" && Number.isFinite(value))

/**
 * Whether `value` is plain JSON of at most one level (a primitive, or a plain object or array of primitives), found
 * without `notJson`'s stack, Set and paths: false sends it to `notJson`'s full walk, which gives the same verdict
 * or the reason. Most payloads are such (`{ n: 1 }`: the walk allocated ~550 bytes a value, 11 of the 48 MB a bulk
 * offer of 20,000 jobs allocated, heap sampling; 181 ns a value). Own enumerable string keys, as `Object.entries`.
 */
const flatJson = (value: unknown): boolean => {
  if (typeof value !== "object" || value === null) return jsonPrimitive(value)
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!jsonPrimitive(value[i])) return false
    return true
  }
  const proto = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) return false
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue
    const field = (value as Record<string, unknown>)[key]
    if (field !== undefined && !jsonPrimitive(field)) return false
  }
  return true
}

/** Why `value` is not plain JSON, or undefined when it is. Iterative: deep values do not overflow the stack. @internal */
export const notJson = (value: unknown): string | undefined => {
  if (flatJson(value)) return undefined
  const stack: Array<readonly [unknown, number, string]> = [[value, 0, "the value"]]
  const seen = new Set<object>()
  while (stack.length > 0) {
    const [current, depth, path] = stack.pop()!
    if (depth > MAX_DEPTH) return `it is nested deeper than ${MAX_DEPTH} levels`
    if (current === null || typeof current === "string" || typeof current === "boolean") continue
    if (typeof current === "number") {
      if (Number.isFinite(current)) continue
      return `${path} is ${current} (JSON has no such number)`
    }
    if (typeof current !== "object") return `${path} is a ${typeof current} (not JSON)`
    if (seen.has(current)) return `${path} is a cycle or shared reference`
    seen.add(current)
    if (Array.isArray(current)) {
      for (let i = 0; i < current.length; i++) {
        if (current[i] === undefined) return `${path}[${i}] is undefined (JSON writes null)`
        stack.push([current[i], depth + 1, `${path}[${i}]`])
      }
      continue
    }
    const proto = Object.getPrototypeOf(current)
    if (proto !== Object.prototype && proto !== null) {
      return `${path} is a ${
        (current as object).constructor?.name ?? "non-plain object"
      } (JSON keeps only plain objects)`
    }
    for (const [key, field] of Object.entries(current)) {
      // An `undefined` field is an absent key, as an optional field is encoded: JSON drops it and decoding agrees.
      if (field !== undefined) stack.push([field, depth + 1, `${path}.${key}`])
    }
  }
  return undefined
}

/**
 * Whether JSON text nests deeper than `MAX_DEPTH` (brackets outside strings). Checked before `JSON.parse`, whose
 * stack overflow on text nested 5,000 deep (written by hand, or by an older version) killed the fiber decoding it.
 */
const tooDeep = (text: string): boolean => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92) i++ // backslash: skip the escaped character
      else if (c === 34) inString = false
    } else if (c === 34) inString = true
    else if (c === 91 || c === 123) {
      if (++depth > MAX_DEPTH) return true
    } else if (c === 93 || c === 125) depth--
  }
  return false
}

const KEYWORDS: Record<string, string> = { NumberKeyword: "number", StringKeyword: "string", BooleanKeyword: "boolean" }

/**
 * For a schema that is a plain struct of required `Number` / `String` / `Boolean` fields (`Schema.Struct({ n:
 * Schema.Number })`, the usual job), its values' JSON text written directly: the same text as `Schema.encodeEither`
 * then `notJson` and `JSON.stringify` (the fields in the struct's order, other keys dropped; a field read once, own or
 * inherited, as the Schema reads it), without the Schema's output object, Eithers and walk (~330 of the ~1 KB a job
 * `offerAll` allocated, bench/_offer-cpu.ts --store pg). Undefined for any other schema, and from the function for a
 * value it does not pass (a wrong type, a non-finite number, not an object): the Schema then says why. Field names
 * are identifiers, so none is `__proto__` or an index that `JSON.stringify` would write first.
 */
const flatStructText = (ast: AST.AST): ((value: unknown) => string | undefined) | undefined => {
  if (
    ast._tag !== "TypeLiteral" || ast.indexSignatures.length > 0 || ast.propertySignatures.length === 0 ||
    ast.annotations[AST.ParseOptionsAnnotationId] !== undefined
  ) return undefined
  const names: Array<string> = []
  const types: Array<string> = []
  const heads: Array<string> = []
  for (const ps of ast.propertySignatures) {
    const type = KEYWORDS[ps.type._tag]
    if (
      type === undefined || ps.isOptional || typeof ps.name !== "string" || !/^[A-Za-z_$][\w$]*$/.test(ps.name) ||
      ps.name === "__proto__" || ps.type.annotations[AST.ParseOptionsAnnotationId] !== undefined
    ) return undefined
    names.push(ps.name)
    types.push(type)
    heads.push((heads.length === 0 ? "{" : ",") + JSON.stringify(ps.name) + ":")
  }
  return (value) => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined
    let text = ""
    for (let i = 0; i < names.length; i++) {
      const field: unknown = (value as Record<string, unknown>)[names[i]!]
      if (typeof field !== types[i]) return undefined
      if (typeof field === "number") {
        if (!Number.isFinite(field)) return undefined
        text += heads[i] + String(field)
      } else text += heads[i] + (typeof field === "string" ? JSON.stringify(field) : String(field))
    }
    return text + "}"
  }
}

/** What `Codec.decodeNow` returns when it cannot give the value at once. @internal */
export const NOT_NOW: unique symbol = Symbol("effect-workers/DurableQueue/notNow")

/** @internal */
export interface Codec<A> {
  readonly encode: (value: A) => Effect.Effect<string, ParseResult.ParseError | Error>
  /**
   * The JSON text of `value` when the synchronous path gives it, else undefined (a schema with asynchronous
   * parts, or a value that fails: `encode` then gives the text or the error). No Effect: a bulk offer encodes
   * each entry with this, and an Effect per entry was a third of `offerAll`'s CPU per job (issue #16).
   */
  readonly encodeNow: (value: A) => string | undefined
  readonly decode: (payload: string) => Effect.Effect<A, ParseResult.ParseError | Error>
  /**
   * The value, when the payload decodes synchronously and well; else `NOT_NOW` (then `decode` gives the value or
   * the error). A consumer's every job, without an Effect (issue #16).
   */
  readonly decodeNow: (payload: string) => A | typeof NOT_NOW
}

/** @internal */
export const codec = <A, I>(schema: Schema.Schema<A, I>): Codec<A> => {
  const encodeEffect = Schema.encode(schema)
  const decodeEffect = Schema.decodeUnknown(schema)
  const encode = (value: A) => Effect.catchAllCause(encodeEffect(value), asFailure)
  const decode = (json: unknown) => Effect.catchAllCause(decodeEffect(json), asFailure)
  // Synchronous first (no Effect per job: a fifth of the consumer's CPU went to the Effect runtime, issue #16); a
  // schema with asynchronous parts fails there and is run as an Effect instead, as is any failure (for its error).
  // A user's transform may THROW rather than fail: caught here, so every caller (offer, a result, a payload) sees a
  // failure of that one value, never a defect that takes the jobs settled beside it down (runBatch lost 3 of 4).
  const encodeEither = Schema.encodeEither(schema)
  const decodeEither = Schema.decodeUnknownEither(schema)
  const encodeSync = (value: A) => caught(() => encodeEither(value))
  const decodeSync = (json: unknown) => caught(() => decodeEither(json))
  // `notJson` first: what it lets through is plain data that `JSON.stringify` writes without throwing. Both in the
  // `try`: `notJson` reads the value's getters (Schema.Unknown passes a value through), which may throw; outside
  // it, offer died and run's taker put a done job back to run it again (test/DurableQueue.memory.test.ts).
  const stringify = (encoded: unknown): Effect.Effect<string, Error> => {
    try {
      const why = notJson(encoded)
      if (why !== undefined) return Effect.fail(new Error(`its encoded form is not plain JSON: ${why}`))
      return Effect.succeed(JSON.stringify(encoded))
    } catch (cause) {
      return Effect.fail(asError(cause))
    }
  }
  const flat = flatStructText(schema.ast)
  const encodeNow = (value: A): string | undefined => {
    // A value the flat path refuses fails the Schema or `notJson` too: `encode` says why.
    if (flat !== undefined) {
      try {
        return flat(value)
      } catch {
        return undefined
      }
    }
    const encoded = encodeSync(value)
    if (Either.isLeft(encoded)) return undefined
    try {
      return notJson(encoded.right) === undefined ? JSON.stringify(encoded.right) : undefined
    } catch {
      return undefined
    }
  }
  return {
    encode: (value) => {
      const encoded = encodeSync(value)
      if (Either.isRight(encoded)) return stringify(encoded.right)
      return encoded.left instanceof Threw ? Effect.fail(encoded.left.error) : Effect.flatMap(encode(value), stringify)
    },
    encodeNow,
    decode: (payload) => {
      if (payload.length > MAX_DEPTH && tooDeep(payload)) {
        return Effect.fail(new Error(`its stored text is nested deeper than ${MAX_DEPTH} levels`))
      }
      let json: unknown
      try {
        json = JSON.parse(payload)
      } catch {
        return Effect.fail(new Error(`its stored text is not JSON: ${payload.slice(0, 80)}`))
      }
      const decoded = decodeSync(json)
      if (Either.isRight(decoded)) return Effect.succeed(decoded.right)
      return decoded.left instanceof Threw ? Effect.fail(decoded.left.error) : decode(json)
    },
    decodeNow: (payload) => {
      if (payload.length > MAX_DEPTH && tooDeep(payload)) return NOT_NOW
      let json: unknown
      try {
        json = JSON.parse(payload)
      } catch {
        return NOT_NOW
      }
      const decoded = decodeSync(json)
      return Either.isRight(decoded) ? decoded.right : NOT_NOW
    }
  }
}

/** A schema's synchronous encode or decode that threw (a transform's bug), with what it threw as an Error. */
class Threw {
  constructor(readonly error: Error) {}
}

/**
 * What a schema threw, as an Error. `String` of a null-prototype object throws a TypeError, which, thrown in the
 * codec's own catch, escaped it: offer died instead of failing with EncodeFailed (test/DurableQueue.memory.test.ts).
 */
const asError = (thrown: unknown): Error => thrown instanceof Error ? thrown : new Error(thrownMessage(thrown))

/**
 * An asynchronous schema's failure as it is, its defect or self-interruption (an `Effect.interrupt` in a
 * `transformOrFail`) as a failure: an interruption settled a job's attempt as put back uncounted, so runBatch ran
 * such a job again at once without end (30,000 runs in 2 s) and run's taker ended (test/DurableQueue.memory.test.ts).
 * A fiber really interrupted is not caught here: `catchAllCause` does not run for an interruptible fiber asked to stop.
 */
const asFailure = <E>(cause: Cause.Cause<E>): Effect.Effect<never, E | Error> => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return Effect.fail(failure.value)
  const defect = Cause.dieOption(cause)
  return Effect.fail(
    Option.isSome(defect) ? asError(defect.value) : new Error("the schema's Effect interrupted itself")
  )
}

const caught = <R, L>(run: () => Either.Either<R, L>): Either.Either<R, L | Threw> => {
  try {
    return run()
  } catch (thrown) {
    return Either.left(new Threw(asError(thrown)))
  }
}

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/**
 * Why `id` cannot be a job id, or undefined when it can: a non-empty string with no NUL (PostgreSQL text cannot
 * hold one) and no lone UTF-16 surrogate (Redis and PostgreSQL store UTF-8: it would come back as U+FFFD, another id).
 *
 * @internal
 */
export const badId = (id: unknown): string | undefined =>
  typeof id !== "string" || id.length === 0
    ? "a non-empty string"
    : id.includes("\u0000") || loneSurrogate.test(id)
    ? "a string without NUL characters or lone UTF-16 surrogates"
    : undefined
