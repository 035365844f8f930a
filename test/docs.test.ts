/**
 * The examples in the docs compile: every ```ts block of README.md and every JSDoc `@example` in src/ is
 * type-checked by scripts/check-docs.mjs (each block its own module, `effect-workers` resolved to src/, all in one
 * program of which only the blocks are checked), and a failure names the README or source line it comes from.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const root = Path.resolve(__dirname, "..")
const script = Path.join(root, "scripts/check-docs.mjs")

// Asynchronous, so the vitest worker keeps answering its parent while tsc runs.
const checkDocs = (args: ReadonlyArray<string>) =>
  Effect.async<{ readonly status: number | null; readonly out: string }>((resume) => {
    const child = spawn(process.execPath, [script, ...args], { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (out += chunk))
    child.on("close", (status) => resume(Effect.succeed({ status, out })))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** Writes DOC.md and Module.ts of these lines to a temporary folder and checks them (the folder is removed after). */
const checkFiles = (docLines: ReadonlyArray<string>, sourceLines: ReadonlyArray<string>) =>
  Effect.suspend(() => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-workers-docs-test-"))
    const doc = Path.join(dir, "DOC.md")
    const source = Path.join(dir, "Module.ts")
    Fs.writeFileSync(doc, docLines.join("\n"))
    Fs.writeFileSync(source, sourceLines.join("\n"))
    return checkDocs([doc, source]).pipe(
      Effect.ensuring(Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
    )
  })

describe("docs", () => {
  it.live("every README ```ts block and every JSDoc @example in src/ type-checks", () =>
    Effect.gen(function*() {
      const { out, status } = yield* checkDocs([])
      // On failure the output lists each error as README.md:<line>:<column> or src/<file>:<line>:<column>.
      expect(out).toMatch(/example block\(s\) of \d+ file\(s\) type-check/)
      expect(status, out).toBe(0)
      // A net: one program over the examples (3.4 s at load 5; a tsc over src/ and the examples took 10 s idle, over
      // 240 s at load 20 beside three forks).
    }), 480_000)

  it.live(
    "a broken block fails with the file and line of the error; a preamble declares a fragment's names",
    () =>
      Effect.gen(function*() {
        const { out, status } = yield* checkFiles(
          [
            "# A doc", //                                                    1
            "", //                                                           2
            "<!-- docs-preamble", //                                         3
            "declare const fetchPage: (url: string) => number", //           4
            "-->", //                                                        5
            "```ts", //                                                      6
            "const size: number = fetchPage(\"/\")", //                       7: fine, thanks to the preamble
            "```", //                                                        8
            "", //                                                           9
            "```ts", //                                                      10
            "const a: number = 1", //                                        11
            "const b: string = a", //                                        12: the error
            "```", //                                                        13
            "", //                                                           14
            "<!-- docs-check: skip pseudo-code -->", //                      15
            "```ts", //                                                      16
            "this is not TypeScript", //                                     17
            "```" //                                                         18
          ],
          ["/**", " * @example", " * ```ts", " * const n: number = \"one\"", " * ```", " */", "export const x = 1"]
        )
        expect(status).toBe(1)
        const errors = out.split("\n").filter((line) => line.includes("error TS"))
        expect(errors).toHaveLength(2)
        expect(errors[0]).toMatch(/DOC\.md:12:7: error TS2322/)
        expect(errors[1]).toMatch(/Module\.ts:4:10: error TS2322/)
        expect(out).toContain("2 error(s) in 3 example block(s) of 2 file(s)")
      }),
    120_000
  )

  it.live(
    "a ```ts fence the extractor misses, or a block that would overwrite another, fails instead of going unchecked",
    () =>
      Effect.gen(function*() {
        const { out, status } = yield* checkFiles(
          [
            "```ts", //                                                      1
            "// jobs.ts", //                                                 2
            "export const a = 1", //                                         3
            "```", //                                                        4
            "```ts", //                                                      5: the same name: `a` would go unchecked
            "// jobs.ts", //                                                 6
            "export const b = 2", //                                         7
            "```", //                                                        8
            "```ts title=\"c.ts\"", //                                      9: an info string the fence pattern misses
            "const c: string = 3", //                                        10
            "```" //                                                         11
          ],
          ["/**", " * ```typescript twoslash", " * 1", " * ```", " */"]
        )
        expect(status).toBe(1)
        expect(out).toMatch(/DOC\.md:5:1: a second block named jobs\.ts/)
        expect(out).toMatch(/DOC\.md:9:1: a ```ts block that check-docs did not extract/)
        expect(out).toMatch(/Module\.ts:2:1: a ```ts block that check-docs did not extract/)
      }),
    120_000
  )
})
