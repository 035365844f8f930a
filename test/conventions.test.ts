/**
 * The conventions of CONTRIBUTING.md that a program can check: every `@category` in src/ is one of the listed
 * ones, and the list there is the one this test reads; every error class in src/ is a Schema tagged error whose
 * identifier is `effect-workers/<Module>/<Error>` and whose prototype carries that TypeId (src/internal/errorTypeId.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"

const root = Path.resolve(import.meta.dirname, "..")

const sources = (dir: string): Array<string> =>
  Fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = Path.join(dir, entry.name)
    return entry.isDirectory() ? sources(file) : entry.name.endsWith(".ts") ? [file] : []
  })

describe("conventions (CONTRIBUTING.md)", () => {
  it("every JSDoc @category in src/ is one of CONTRIBUTING.md's list", () => {
    const contributing = Fs.readFileSync(Path.join(root, "CONTRIBUTING.md"), "utf8")
    const table = contributing.slice(contributing.indexOf("## JSDoc categories"))
    const listed = new Set(Array.from(table.matchAll(/^\| `([^`]+)` \|/gm), (m) => m[1]))
    expect(listed.size).toBeGreaterThan(10)
    const unknown: Array<string> = []
    for (const file of sources(Path.join(root, "src"))) {
      for (const [, category] of Fs.readFileSync(file, "utf8").matchAll(/@category (.+)$/gm)) {
        if (!listed.has(category!.trim())) unknown.push(`${Path.relative(root, file)}: ${category}`)
      }
    }
    expect(unknown).toEqual([])
  })

  // Found, not listed: a source scan of src/ finds every class that extends an error base (Schema/Data tagged
  // errors, `Data.Error`, `Error`, `YieldableError`), and every use of such a base must be such a class (so an error
  // made some other way, e.g. through an alias, fails here); the files holding them are loaded and each class is
  // checked at run time. Loading only those files keeps this well under a second (all of src/ took 11 s at load 8).
  it("every error class in src/ has the identifier effect-workers/<Module>/<Error> and its TypeId", async () => {
    const srcDir = Path.join(root, "src")
    const publicModules = new Set(
      ["", "redis", "sql"].flatMap((dir) =>
        Fs.readdirSync(Path.join(srcDir, dir)).filter((f) => f.endsWith(".ts")).map((f) => f.slice(0, -3))
      )
    )
    const base = String
      .raw`(?:(?:Data|Schema)\.(?:TaggedError|Error)|(?:Cause\.)?YieldableError|(?:globalThis\.)?Error)\b`
    const declaration = new RegExp(String.raw`\bclass\s+(\w+)(?:<[^>]*>)?\s+extends\s+` + base, "g")
    const uses = new RegExp(
      String.raw`(?:Data|Schema)\.(?:TaggedError|Error)\b|\bYieldableError\b|\bextends\s+` + base,
      "g"
    )
    const declared = new Map<string, string>()
    const stray: Array<string> = []
    for (const file of sources(srcDir)) {
      const text = Fs.readFileSync(file, "utf8").replace(/^\s*(?:\/\*\*|\*|\/\/).*$/gm, "") // not in comments
      const classes = Array.from(text.matchAll(declaration), (m) => m[1]!)
      for (const name of classes) declared.set(name, file)
      const count = Array.from(text.matchAll(uses)).length
      if (count !== classes.length) {
        stray.push(`${Path.relative(root, file)}: ${count} error bases, ${classes.length} classes`)
      }
    }
    expect(stray, "error bases used other than as `class X extends <base>`").toEqual([])
    const found = new Map<string, ErrorClass>()
    for (const [name, file] of declared) {
      const value = ((await import(pathToFileURL(file).href)) as Record<string, unknown>)[name]
      if (typeof value === "function" && value.prototype instanceof Error) found.set(name, value as ErrorClass)
    }
    expect([...declared.keys()].filter((name) => !found.has(name)), "error classes not exported").toEqual([])
    expect(found.size).toBeGreaterThanOrEqual(11)
    const wrong: Array<string> = []
    for (const [name, ctor] of found) {
      const printed = String(ctor) // a Schema class prints as "(<id> (Encoded side) <-> <id>)"
      const id = /<-> (effect-workers\/(\w+)\/(\w+))\)$/.exec(printed)
      if (id === null) wrong.push(`${name}: not a Schema tagged error with an identifier (${printed.slice(0, 80)})`)
      else if (id[3] !== name || !publicModules.has(id[2]!)) wrong.push(`${name}: identifier ${id[1]}`)
      else if (!(Symbol.for(id[1]!) in ctor.prototype)) wrong.push(`${name}: no TypeId ${id[1]} (typeIdGuard)`)
      else if ((ctor.prototype as { readonly _tag?: unknown })._tag !== name && !hasTag(ctor, name)) {
        wrong.push(`${name}: _tag is not "${name}"`)
      }
    }
    expect(wrong, "error classes without the identifier or TypeId").toEqual([])
  })
})

const hasTag = (ctor: ErrorClass, name: string): boolean =>
  "fields" in ctor && typeof ctor.fields === "object" && ctor.fields !== null && "_tag" in ctor.fields &&
  String(ctor.fields._tag).includes(name)

type ErrorClass = (abstract new(...args: never) => Error) & { readonly prototype: Error }
