/**
 * The crawl's memory between runs: the visited set (with each URL's status and size) and the frontier (URLs found
 * but not yet done), kept in a `KeyValueStore`. Both are captured together in one synchronous step and written
 * as one value, every half second while the crawl runs and once more when it stops, so the saved pair is always
 * consistent: a rerun after Ctrl-C (or a crash) continues where the last save left off.
 */
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

export type Kind = "page" | "image"

const Visit = Schema.Struct({
  kind: Schema.Literal("page", "image"),
  status: Schema.Number,
  bytes: Schema.Number,
  attempts: Schema.Number
})
export type Visit = typeof Visit.Type

const Pending = Schema.Struct({ kind: Schema.Literal("page", "image"), depth: Schema.Number })
export type Pending = typeof Pending.Type

const Saved = Schema.parseJson(Schema.Struct({
  pages: Schema.Number,
  seed: Schema.Number,
  visited: Schema.Array(Schema.Tuple(Schema.String, Visit)),
  frontier: Schema.Array(Schema.Tuple(Schema.String, Pending))
}))

export interface CrawlState {
  readonly visited: Map<string, Visit>
  readonly frontier: Map<string, Pending>
  /** How the state was found: a fresh start, or resumed with this many URLs already visited. */
  readonly resumedFrom: number
  /** Adds a URL to the frontier unless it was seen before (visited or pending); true when it is new. */
  readonly discover: (path: string, pending: Pending) => boolean
  /** Records a URL as pending again (an image referenced once more); no-op when visited. */
  readonly pend: (path: string, pending: Pending) => void
  /** Moves a URL from the frontier to the visited set: for a page, only once its links are in the frontier. */
  readonly complete: (path: string, visit: Visit) => void
}

/**
 * Loads the state for this site (or starts fresh when there is none, when it belongs to another site, when the
 * last crawl finished, or when `fresh` is set), and keeps it saved for the life of the scope.
 */
export const make = (options: { readonly pages: number; readonly seed: number; readonly fresh: boolean }) =>
  Effect.gen(function*() {
    const kv = yield* KeyValueStore.KeyValueStore
    const saved = yield* kv.get("crawl").pipe(
      Effect.map(Option.flatMap((text) => Schema.decodeUnknownOption(Saved)(text))),
      Effect.orElseSucceed(() => Option.none())
    )
    const resume = !options.fresh && Option.isSome(saved) && saved.value.pages === options.pages &&
      saved.value.seed === options.seed && saved.value.frontier.length > 0
    const visited = new Map<string, Visit>(resume && Option.isSome(saved) ? saved.value.visited : [])
    const frontier = new Map<string, Pending>(resume && Option.isSome(saved) ? saved.value.frontier : [])
    for (const path of visited.keys()) frontier.delete(path)
    let dirty = true

    // One save at a time; the text is taken in one synchronous step so visited and frontier match.
    const lock = yield* Effect.makeSemaphore(1)
    const save = (force: boolean) =>
      lock.withPermits(1)(Effect.suspend(() => {
        if (!dirty && !force) return Effect.void
        dirty = false
        const text = JSON.stringify({
          pages: options.pages,
          seed: options.seed,
          visited: [...visited],
          frontier: [...frontier]
        })
        return kv.set("crawl", text)
      })).pipe(Effect.catchAll((error) => Effect.logWarning(`could not save the crawl state: ${error.message}`)))

    yield* save(false).pipe(Effect.zipRight(Effect.sleep("500 millis")), Effect.forever, Effect.forkScoped)
    yield* Effect.addFinalizer(() => save(true))

    const state: CrawlState = {
      visited,
      frontier,
      resumedFrom: resume ? visited.size : 0,
      discover: (path, pending) => {
        if (visited.has(path) || frontier.has(path)) return false
        frontier.set(path, pending)
        dirty = true
        return true
      },
      pend: (path, pending) => {
        if (visited.has(path)) return
        frontier.set(path, pending)
        dirty = true
      },
      complete: (path, visit) => {
        frontier.delete(path)
        visited.set(path, visit)
        dirty = true
      }
    }
    return state
  })
