/**
 * The options of every `DurableQueue`, validated once for every store: each bad value is an `OptionError` naming
 * the field and the value (a plain-JavaScript caller passes `NaN` from `Number(process.env.X)`, `"abc"`, `{}`).
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as DurableQueue from "../../DurableQueue.js"
import type { OptionError } from "../../OptionError.js"
import { checker } from "../options.js"
import { defaultBackoff, MAX_DELAY_MILLIS, type Policy } from "./backoff.js"
import { badId } from "./encoding.js"
import { MAX_LIST_LIMIT, MAX_LIST_OFFSET, type OfferedJob } from "./store.js"

const check = checker("DurableQueue")

/**
 * The shortest lease: a refresh goes out every third of it, and on a loaded 2-core machine a fiber can wait tens
 * of milliseconds to run, so a shorter lease lapses under a live runner (30 ms did in the Redis tests).
 */
const MIN_LEASE_MILLIS = 100

/** The longest attempt timeout: Effect's timers treat longer ones as infinite (2^31 - 1 ms, setTimeout's limit). */
const MAX_TIMEOUT_MILLIS = 2 ** 31 - 1

/** Priorities from -1,000,000 to 1,000,000: room for any scheme, and exact in every store's integer column. */
const MAX_PRIORITY = 1_000_000

/** The largest exponential factor: 1000 reaches the 10-year cap in 5 attempts; more is a typo. */
const MAX_FACTOR = 1000

const HEX_CODES = Array.from("0123456789abcdef", (c) => c.charCodeAt(0))
/** Random bytes for `IDS_PER_FILL` ids at a time (one `getRandomValues` call per 256 ids), 10 an id. */
const IDS_PER_FILL = 256
const idBytes = new Uint8Array(10 * IDS_PER_FILL)
let nextId = IDS_PER_FILL
/** The id's 36 codes: the dashes and the version digit are set once, the timestamp's 12 when the ms changes. */
const idCodes = new Uint16Array(36)
for (const at of [8, 13, 18, 23]) idCodes[at] = 45 // "-"
idCodes[14] = 55 // "7": the version
let idMillis = -1
/** rand_a: the ids of one ms counted from a random start below 2,048, so at least 2,048 sort in their order. */
let idCounter = 0

/**
 * A UUIDv7 (RFC 9562: 48-bit big-endian Unix ms timestamp, version 7, rand_a a 12-bit counter, variant 10, rand_b's 62
 * random bits from `crypto.getRandomValues`), the id of a job offered without one. Time-ordered, so PostgreSQL's unique
 * `(queue_name, id_key)` B-tree (ids in byte order) takes each insert at its right edge instead of on a random page: a
 * bulk offer of 50,000 jobs (bench/distributed-sql.ts --only-bulk, 4 interleaved runs against v4 ids, load 15-20) cost
 * the server 6.24 against 8.19 µs a job (graphile-worker's add_jobs 7.9), ours ÷ add_jobs in jobs/s 0.78× → 1.05×; of
 * 20,000, 5.75 against 6.50 µs; SQLite's bulk offer 2.1-2.6 against 5.9-6.4 µs CPU a job. The counter orders the ids of
 * one ms too (RFC 9562's method 1): with rand_a random instead (74 random bits), the server took 6.75 against 5.88 µs a
 * job (20,000, load 10-12) and SQLite 2.6-3.7 against 2.0-2.4 µs. Seeded at random each ms (11 bits) and wrapping past
 * 4,095, so one process's ids never repeat below 2,048 a ms and two processes' meet only with equal counters and equal
 * 62 random bits (core.ts `OfferBatch`); an id tells how many its process made before it in that ms. A clock stepped
 * back revisits its ms with a new seed: those ids then differ from the ones made there before as two processes' do
 * (by the 62 random bits at worst), and sort before the ids made ahead of the step. `Date.now()`, not
 * Effect's `Clock`: the order is the database's, across processes, in real time (under a TestClock at 0 every id would
 * share one prefix); it adds ~0.02 µs an id (0.11 against 0.09). Built as ONE flat string (`String.fromCharCode` of its
 * 36 codes): `crypto.randomUUID()` returns a rope of ~20 concatenated parts (~640 bytes allocated an id, 13.7 of the 48
 * MB a bulk offer of 20,000 jobs allocated, heap sampling) that is flattened again when the id is hashed (`offerAll`'s
 * Set) or written; with the Set's add, 0.53 against 1.8-2.9 µs an id (1,000,000 ids, load 8). @internal
 */
export const randomId = (): string => {
  if (nextId === IDS_PER_FILL) {
    globalThis.crypto.getRandomValues(idBytes)
    nextId = 0
  }
  const b = idBytes
  const at = nextId++ * 10
  const d = idCodes
  const now = Date.now()
  if (now !== idMillis) {
    idMillis = now
    // 48 bits as 12 hex digits: the high 16 (a division: bit operators cut to 32 bits), then the low 32.
    const high = Math.floor(now / 0x1_0000_0000)
    const low = now >>> 0
    for (let i = 0; i < 4; i++) d[i] = HEX_CODES[(high >>> (12 - 4 * i)) & 15]!
    for (let i = 0; i < 4; i++) d[4 + i] = HEX_CODES[(low >>> (28 - 4 * i)) & 15]!
    for (let i = 0; i < 4; i++) d[9 + i] = HEX_CODES[(low >>> (12 - 4 * i)) & 15]!
    idCounter = ((b[at]! & 7) << 8) | b[at + 1]!
  } else {
    idCounter = (idCounter + 1) & 0xfff
  }
  d[15] = HEX_CODES[idCounter >> 8]!
  d[16] = HEX_CODES[(idCounter >> 4) & 15]!
  d[17] = HEX_CODES[idCounter & 15]!
  // The variant (10) and rand_b's first 6 bits, then its other 56.
  const variant = (b[at + 2]! & 0x3f) | 0x80
  d[19] = HEX_CODES[variant >> 4]!
  d[20] = HEX_CODES[variant & 15]!
  d[21] = HEX_CODES[b[at + 3]! >> 4]!
  d[22] = HEX_CODES[b[at + 3]! & 15]!
  for (let i = 0; i < 6; i++) {
    const byte = b[at + 4 + i]!
    d[24 + 2 * i] = HEX_CODES[byte >> 4]!
    d[25 + 2 * i] = HEX_CODES[byte & 15]!
  }
  // 36 arguments, not `apply` of the array: `apply` copies its array-like into an argument list first (~300 B).
  // dprint-ignore
  return String.fromCharCode(
    d[0]!, d[1]!, d[2]!, d[3]!, d[4]!, d[5]!, d[6]!, d[7]!, d[8]!, d[9]!, d[10]!, d[11]!, d[12]!, d[13]!, d[14]!,
    d[15]!, d[16]!, d[17]!, d[18]!, d[19]!, d[20]!, d[21]!, d[22]!, d[23]!, d[24]!, d[25]!, d[26]!, d[27]!, d[28]!,
    d[29]!, d[30]!, d[31]!, d[32]!, d[33]!, d[34]!, d[35]!
  )
}

/** @internal */
export interface QueueSettings {
  readonly name: string
  readonly maxAttempts: number
  readonly leaseMillis: number
  readonly pollMillis: number
  readonly backoff: Policy
  /** The queue's attempt timeout; undefined: none. */
  readonly timeoutMillis: number | undefined
  readonly resultTtlMillis: number
}

/** @internal */
export const queueSettings = <A, I>(options: DurableQueue.Options<A, I>): Effect.Effect<QueueSettings, OptionError> =>
  Effect.gen(function*() {
    const name = yield* check.require(
      "name",
      options.name,
      badId(options.name) === undefined,
      "a non-empty string without NUL characters or lone UTF-16 surrogates"
    )
    yield* check.require(
      "schema",
      options.schema,
      typeof options.schema === "object" || typeof options.schema === "function",
      "a Schema"
    )
    const maxAttempts = yield* check.integer("maxAttempts", options.maxAttempts, 3, 1)
    const lease = yield* check.duration("leaseDuration", options.leaseDuration, "30 seconds")
    const leaseMillis = Math.round(Duration.toMillis(lease))
    yield* check.require(
      "leaseDuration",
      options.leaseDuration,
      leaseMillis >= MIN_LEASE_MILLIS,
      `a duration of ${MIN_LEASE_MILLIS} milliseconds or more`
    )
    const poll = yield* check.duration("pollInterval", options.pollInterval, "100 millis")
    const backoff = options.backoff !== undefined && Schedule.isSchedule(options.backoff)
      ? options.backoff as Schedule.Schedule<unknown, unknown>
      : yield* backoffData("backoff", options.backoff ?? defaultBackoff)
    const timeoutMillis = yield* timeout("timeout", options.timeout)
    const resultTtlMillis = yield* millis("resultTimeToLive", options.resultTimeToLive ?? "1 day", 0, MAX_DELAY_MILLIS)
    return {
      name,
      maxAttempts,
      leaseMillis,
      pollMillis: Math.max(1, Math.round(Duration.toMillis(poll))),
      backoff,
      timeoutMillis,
      resultTtlMillis
    }
  })

/** A duration in whole milliseconds from `min` to `max`. */
const millis = (
  field: string,
  value: Duration.DurationInput,
  min: number,
  max: number
): Effect.Effect<number, OptionError> =>
  Effect.flatMap(check.duration(field, value, 0), (duration) => {
    const ms = Math.round(Duration.toMillis(duration))
    return check.require(field, ms, ms >= min && ms <= max, `a duration from ${min} to ${max} milliseconds`)
  })

const timeout = (
  field: string,
  value: Duration.DurationInput | undefined
): Effect.Effect<number | undefined, OptionError> =>
  value === undefined ? Effect.succeed(undefined) : millis(field, value, 1, MAX_TIMEOUT_MILLIS)

const BACKOFF_KEYS: Record<DurableQueue.Backoff["_tag"], ReadonlyArray<string>> = {
  None: ["_tag"],
  Fixed: ["_tag", "millis"],
  Exponential: ["_tag", "baseMillis", "factor", "maxMillis", "jitter"]
}

const delayMillis = (field: string, value: unknown) =>
  check.require(
    field,
    value,
    typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_DELAY_MILLIS,
    `an integer from 0 to ${MAX_DELAY_MILLIS} (milliseconds)`
  )

/** `Backoff` data as built by `Backoff.*`, or as a plain-JavaScript caller wrote it. @internal */
export const backoffData = (field: string, value: unknown): Effect.Effect<DurableQueue.Backoff, OptionError> =>
  Effect.gen(function*() {
    const tag = (value as { _tag?: unknown } | null)?._tag
    const known = typeof value === "object" && value !== null && typeof tag === "string" &&
      Object.hasOwn(BACKOFF_KEYS, tag)
    yield* check.require(
      field,
      value,
      known,
      "a Backoff (Backoff.none, Backoff.fixed or Backoff.exponential) or, queue-wide, a Schedule"
    )
    const backoff = value as DurableQueue.Backoff
    yield* check.knownKeys(backoff, BACKOFF_KEYS[backoff._tag], field)
    if (backoff._tag === "Fixed") yield* delayMillis(`${field}.millis`, backoff.millis)
    if (backoff._tag === "Exponential") {
      yield* delayMillis(`${field}.baseMillis`, backoff.baseMillis)
      yield* delayMillis(`${field}.maxMillis`, backoff.maxMillis)
      const factor = backoff.factor
      yield* check.require(
        `${field}.factor`,
        factor,
        typeof factor === "number" && factor >= 1 && factor <= MAX_FACTOR,
        `a number from 1 to ${MAX_FACTOR}`
      )
      yield* check.require(`${field}.jitter`, backoff.jitter, typeof backoff.jitter === "boolean", "a boolean")
    }
    return backoff
  })

/** @internal */
export interface RunSettings {
  readonly concurrency: number
  readonly shutdownTimeout: Duration.Duration
  readonly result: Schema.Schema<unknown, unknown> | undefined
}

/** A `result` option: a Schema or nothing. */
const resultSchema = (value: unknown): Effect.Effect<Schema.Schema<unknown, unknown> | undefined, OptionError> =>
  value === undefined
    ? Effect.succeed(undefined)
    : check.require("result", value as Schema.Schema<unknown, unknown>, Schema.isSchema(value), "a Schema")

/** @internal */
export const takeSettings = (
  options: unknown
): Effect.Effect<Schema.Schema<unknown, unknown> | undefined, OptionError> =>
  Effect.zipRight(
    check.knownKeys(options, ["result"], "take options"),
    resultSchema((options as { result?: unknown } | undefined)?.result)
  )

/** @internal */
export const runSettings = (
  options: {
    readonly concurrency?: number | undefined
    readonly shutdownTimeout?: Duration.DurationInput | undefined
    readonly result?: unknown
  } | undefined
): Effect.Effect<RunSettings, OptionError> =>
  Effect.gen(function*() {
    yield* check.knownKeys(options, ["concurrency", "shutdownTimeout", "result"], "run options")
    const concurrency = yield* check.integer("concurrency", options?.concurrency, 1, 1)
    const shutdownTimeout = yield* check.duration("shutdownTimeout", options?.shutdownTimeout, "30 seconds")
    const result = yield* resultSchema(options?.result)
    return { concurrency, shutdownTimeout, result }
  })

/** The most jobs of one `runBatch` call: a batch is held (its leases refreshed) and settled at once. */
const MAX_BATCH_SIZE = 10_000

/** @internal */
export interface BatchRunSettings {
  readonly size: number
  readonly maxWaitMillis: number
  readonly concurrency: number
  readonly shutdownTimeout: Duration.Duration
  readonly result: Schema.Schema<unknown, unknown> | undefined
}

/** @internal */
export const batchSettings = (
  options: Omit<DurableQueue.RunBatchOptions, "result"> & { readonly result?: unknown } | undefined
): Effect.Effect<BatchRunSettings, OptionError> =>
  Effect.gen(function*() {
    yield* check.knownKeys(
      options,
      ["size", "maxWait", "concurrency", "shutdownTimeout", "result"],
      "runBatch options"
    )
    const size = yield* check.integer("size", options?.size, 100, 1, MAX_BATCH_SIZE)
    const maxWaitMillis = yield* millis("maxWait", options?.maxWait ?? 0, 0, MAX_TIMEOUT_MILLIS)
    const concurrency = yield* check.integer("concurrency", options?.concurrency, 1, 1)
    const shutdownTimeout = yield* check.duration("shutdownTimeout", options?.shutdownTimeout, "30 seconds")
    const result = yield* resultSchema(options?.result)
    return { size, maxWaitMillis, concurrency, shutdownTimeout, result }
  })

/** The id of an offer, checked. @internal */
export const offerId = (id: unknown, field = "id"): Effect.Effect<string, OptionError> => {
  const why = badId(id)
  return why === undefined ? Effect.succeed(id as string) : check.require(field, id as string, false, why)
}

/** The per-job settings the core stores with a job (`OfferedJob.options`, JSON) and reads back at lease. @internal */
export interface JobSettings {
  readonly timeoutMillis?: number
  readonly backoff?: DurableQueue.Backoff
}

/** An offer, checked and resolved: what the store is given, but the payload. @internal */
export interface OfferSettings {
  readonly id: string
  readonly custom: boolean
  readonly delayMillis: number
  readonly priority: number
  readonly options: string | undefined
}

const OFFER_KEYS = ["id", "delay", "runAt", "priority", "timeout", "backoff"]

/** The keys of an `offerAll` entry: its value and `offer`'s options. */
const ENTRY_KEYS = ["value", ...OFFER_KEYS]

/**
 * A `runAt` as a delay from now (`Clock`), 0 when it passed. It must lie within 10 years of now either way: more
 * than that in the past is almost surely epoch seconds (`Date.now() / 1000` is 1.7e9 ms: 1970), which would
 * otherwise run the job at once.
 */
const runAtDelay = (field: string, runAt: unknown): Effect.Effect<number, OptionError> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const at = runAt instanceof Date ? runAt.getTime() : runAt
    const ok = typeof at === "number" && Number.isInteger(at) && Math.abs(at - now) <= MAX_DELAY_MILLIS
    return Effect.as(
      check.require(field, runAt, ok, "a valid Date or epoch milliseconds within 10 years of now (not seconds)"),
      Math.max(0, (at as number) - now)
    )
  })

/** The settings of an offer without options: a generated id, no delay, priority 0. */
const defaultSettings = (): OfferSettings => ({
  id: randomId(),
  custom: false,
  delayMillis: 0,
  priority: 0,
  options: undefined
})

/** @internal */
export const offerSettings = (
  options: DurableQueue.OfferOptions | undefined
): Effect.Effect<OfferSettings, OptionError> =>
  options === undefined
    ? Effect.succeed(defaultSettings())
    : resolveOffer(options, "", OFFER_KEYS, "offer options")

/**
 * The options of one offer, checked and resolved: `offer`'s (`at` "") and each `offerAll` entry's (`at`
 * "entries[i].", so an error names `entries[i].delay`) go through this one function.
 */
const resolveOffer = (
  options: DurableQueue.OfferOptions,
  at: string,
  known: ReadonlyArray<string>,
  path: string
): Effect.Effect<OfferSettings, OptionError> =>
  Effect.gen(function*() {
    yield* check.knownKeys(options, known, path)
    const custom = options.id !== undefined
    const id = custom ? yield* offerId(options.id, `${at}id`) : randomId()
    if (options.delay !== undefined && options.runAt !== undefined) {
      yield* check.require(`${at}runAt`, options.runAt, false, "absent when `delay` is given (one or the other)")
    }
    const delayMillis = options.runAt !== undefined
      ? yield* runAtDelay(`${at}runAt`, options.runAt)
      : options.delay !== undefined
      ? yield* millis(`${at}delay`, options.delay, 0, MAX_DELAY_MILLIS)
      : 0
    const priority = yield* check.integer(`${at}priority`, options.priority, 0, -MAX_PRIORITY, MAX_PRIORITY)
    const timeoutMillis = yield* timeout(`${at}timeout`, options.timeout)
    const backoff = options.backoff === undefined ? undefined : yield* backoffData(`${at}backoff`, options.backoff)
    const settings: JobSettings = {
      ...(timeoutMillis === undefined ? {} : { timeoutMillis }),
      ...(backoff === undefined ? {} : { backoff })
    }
    return {
      id,
      custom,
      delayMillis,
      priority,
      options: timeoutMillis === undefined && backoff === undefined ? undefined : JSON.stringify(settings)
    }
  })

/** An `offerAll` entry, checked: its value and its resolved settings. @internal */
export interface CheckedEntry {
  readonly value: unknown
  readonly settings: OfferSettings
}

/**
 * The settings of an entry with the usual options (none, an id, a delay in ms, a priority), at once, or undefined:
 * anything else (a `runAt`, a `timeout` or `backoff`, a duration as text, an unknown key, any bad value) goes
 * through `resolveOffer`, which gives the same settings or the error. An entry of its value alone or with an id is
 * a bulk offer's usual form, and `resolveOffer`'s ~10 Effects cost ~5 µs per entry (issue #16). The options are read
 * by property access, as `resolveOffer` reads them, not from `for…in`'s keys: that loop skips non-enumerable own
 * keys, so a non-enumerable `delay: NaN` was accepted (and a non-enumerable `id: 5` gave a random id). The loop only
 * looks for unknown keys (`knownKeys` sees the enumerable own ones; `for…in` those and inherited ones, which only
 * send more entries to `resolveOffer`).
 *
 * With `encode` (the codec's `encodeNow`, core.ts `offerBatch`): the entry's job when its value encodes at once,
 * else undefined; the store's job as ONE object, where the checked entry, its settings and the core's job were
 * three (~100 of the ~730 bytes a job `offerAll` allocated, bench/_offer-cpu.ts --heap). The fields in
 * `OfferedJob`'s order, as the core's `jobOf` writes them (one shape for the stores' loops). Each option and the
 * value read once, as `offerEntries` reads them. Without it (`usualSettings`), the settings alone. @internal
 */
export const usualJob = (
  entry: unknown,
  encode?: (value: unknown) => string | undefined
): OfferedJob | undefined => {
  if (typeof entry !== "object" || entry === null) return undefined
  for (const key in entry) if (!ENTRY_KEYS.includes(key)) return undefined
  const { backoff, delay, id, priority, runAt, timeout } = entry as Record<string, unknown>
  if (runAt !== undefined || timeout !== undefined || backoff !== undefined) return undefined
  if (id !== undefined && badId(id) !== undefined) return undefined
  if (
    delay !== undefined &&
    !(typeof delay === "number" && Number.isInteger(delay) && delay >= 0 && delay <= MAX_DELAY_MILLIS)
  ) return undefined
  if (
    priority !== undefined &&
    !(typeof priority === "number" && Number.isInteger(priority) && Math.abs(priority) <= MAX_PRIORITY)
  ) return undefined
  // `usualSettings` encodes nothing and leaves the value unread (`offerEntries` reads it, once).
  const payload = encode === undefined ? "" : encode((entry as { readonly value: unknown }).value)
  if (payload === undefined) return undefined
  // The job from the values just checked, each option read ONCE: a getter read again may answer otherwise (an id
  // "checked" then 42 reached the store, a TypeError on SQLite; test/DurableQueue.offerAll.test.ts).
  return {
    id: id === undefined ? randomId() : id as string,
    custom: id !== undefined,
    delayMillis: delay === undefined ? 0 : delay as number,
    priority: priority === undefined ? 0 : priority as number,
    options: undefined,
    payload
  }
}

const usualSettings = (entry: Record<string, unknown>): OfferSettings | undefined => usualJob(entry)

/**
 * The entries of `offerAll`, checked before anything is encoded or written: an array of objects, each with its
 * value and `offer`'s options, checked as `offer` checks them (a plain-JavaScript caller passes `null`, a string,
 * entries of numbers). A plain loop while the entries are usual (`usualSettings`); from the first that is not, an
 * Effect per entry (`resolveOffer`, which names the bad field). From `start` on: the core took those before as
 * usual jobs already (core.ts `offerBatch`). @internal
 */
export const offerEntries = (
  entries: unknown,
  start = 0
): Effect.Effect<ReadonlyArray<CheckedEntry>, OptionError> => {
  if (!Array.isArray(entries)) {
    return Effect.zipRight(
      check.require("entries", entries, false, "an array of { value, id?, delay?, … } objects"),
      Effect.succeed([])
    )
  }
  const out: Array<CheckedEntry> = []
  for (let i = start; i < entries.length; i++) {
    const entry: unknown = entries[i]
    if (typeof entry !== "object" || entry === null) break
    const settings = usualSettings(entry as Record<string, unknown>)
    if (settings === undefined) break
    out.push({ value: (entry as { readonly value: unknown }).value, settings })
  }
  return start + out.length === entries.length ? Effect.succeed(out) : Effect.as(checkedFrom(entries, start, out), out)
}

/** The entries from `start + out.length` on, each checked by `resolveOffer` (as `offer` checks them), into `out`. */
const checkedFrom = (
  entries: ReadonlyArray<unknown>,
  start: number,
  out: Array<CheckedEntry>
): Effect.Effect<void, OptionError> =>
  Effect.gen(function*() {
    for (let i = start + out.length; i < entries.length; i++) {
      const entry = entries[i]
      yield* check.require(
        `entries[${i}]`,
        entry,
        typeof entry === "object" && entry !== null,
        "an object { value, id?, delay?, … }"
      )
      const value = (entry as { readonly value: unknown }).value
      const settings = usualSettings(entry as Record<string, unknown>) ?? (yield* resolveOffer(
        entry as DurableQueue.OfferOptions,
        `entries[${i}].`,
        ENTRY_KEYS,
        `entries[${i}]`
      ))
      out.push({ value, settings })
    }
  })

/** The per-job settings of a leased job; none when absent or unreadable (the queue's then apply). @internal */
export const jobSettings = (options: string | undefined): JobSettings => {
  if (options === undefined) return {}
  try {
    const parsed: unknown = JSON.parse(options)
    return typeof parsed === "object" && parsed !== null ? parsed as JobSettings : {}
  } catch {
    return {}
  }
}

const STATES: ReadonlyArray<DurableQueue.JobState> = ["waiting", "delayed", "running", "done", "dead", "cancelled"]

/** A listing (`jobs`), checked: the state, and `limit` / `offset` within what one store call may walk. @internal */
export interface ListSettings {
  readonly state: DurableQueue.JobState
  readonly limit: number
  readonly offset: number
}

/** @internal */
export const listSettings = (
  state: unknown,
  options: DurableQueue.JobsOptions | undefined
): Effect.Effect<ListSettings, OptionError> =>
  Effect.gen(function*() {
    yield* check.require("state", state, STATES.includes(state as DurableQueue.JobState), `one of ${STATES.join(", ")}`)
    yield* check.knownKeys(options, ["limit", "offset"], "jobs options")
    const limit = yield* check.integer("limit", options?.limit, 100, 1, MAX_LIST_LIMIT)
    const offset = yield* check.integer("offset", options?.offset, 0, 0, MAX_LIST_OFFSET)
    return { state: state as DurableQueue.JobState, limit, offset }
  })
