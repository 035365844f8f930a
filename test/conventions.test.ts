/**
 * The conventions of CONTRIBUTING.md that a program can check: every `@category` in src/ is one of the listed
 * ones, and the list there is the one this test reads; every error class in src/ is a Schema tagged error whose
 * identifier is `effect-workers/<Module>/<Error>` and whose prototype carries that TypeId (src/internal/errorTypeId.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import ts from "typescript"

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

describe("structure (CONTRIBUTING.md, \"Structure\")", () => {
  // Parsed once for both checks (about 1 s for src/ at load 8).
  let files: Array<ts.SourceFile> | undefined
  const parsed = () =>
    files ??= sources(Path.join(root, "src")).map((file) =>
      ts.createSourceFile(file, Fs.readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true)
    )

  it("no function in src/ is longer than 150 lines", () => {
    const long: Array<string> = []
    let functions = 0
    for (const source of parsed()) {
      const visit = (node: ts.Node): void => {
        if (ts.isFunctionLike(node) && "body" in node && node.body !== undefined) {
          functions++
          const lines = source.getLineAndCharacterOfPosition(node.end).line -
            source.getLineAndCharacterOfPosition(node.getStart(source)).line
          if (lines > MAX_FUNCTION_LINES) {
            const at = source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1
            long.push(`${Path.relative(root, source.fileName)}:${at} (${lines} lines)`)
          }
        }
        ts.forEachChild(node, visit)
      }
      visit(source)
    }
    expect(functions).toBeGreaterThan(500)
    expect(long, "functions over 150 lines: split them into named parts").toEqual([])
  })

  it("no import cycle in src/ beyond type-only imports", () => {
    const graph = new Map(parsed().map((source) => [source.fileName, runtimeImports(source)]))
    expect([...graph.values()].flat().length).toBeGreaterThan(100)
    expect(cyclesOf(graph).map((cycle) => cycle.map((file) => Path.relative(root, file)).join(" -> "))).toEqual([])
  })

  it("the cycle finder finds a cycle (so the test above can fail)", () => {
    expect(cyclesOf(new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]]]))).toEqual([["a", "b", "c"]])
  })
})

/** A function's length past which it should be split (CONTRIBUTING.md, "Structure"). */
const MAX_FUNCTION_LINES = 150

/** The relative imports and re-exports of a file that survive compilation (not `import type`, not all-`type` lists). */
const runtimeImports = (source: ts.SourceFile): Array<string> => {
  const targets: Array<string> = []
  for (const statement of source.statements) {
    let specifier: ts.Expression | undefined
    let typeOnly = false
    if (ts.isImportDeclaration(statement)) {
      specifier = statement.moduleSpecifier
      const clause = statement.importClause
      const named = clause?.namedBindings
      typeOnly = clause !== undefined && (clause.isTypeOnly || (clause.name === undefined && named !== undefined &&
        ts.isNamedImports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly)))
    } else if (ts.isExportDeclaration(statement) && statement.moduleSpecifier !== undefined) {
      specifier = statement.moduleSpecifier
      const named = statement.exportClause
      typeOnly = statement.isTypeOnly || (named !== undefined && ts.isNamedExports(named) &&
        named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly))
    }
    if (specifier === undefined || typeOnly || !ts.isStringLiteral(specifier)) continue
    if (!specifier.text.startsWith(".")) continue
    const target = Path.resolve(Path.dirname(source.fileName), specifier.text).replace(/\.js$/, ".ts")
    if (Fs.existsSync(target)) targets.push(target)
  }
  return targets
}

/** The strongly connected components of more than one file (or a file importing itself), by Tarjan's algorithm. */
const cyclesOf = (graph: ReadonlyMap<string, ReadonlyArray<string>>): Array<Array<string>> => {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: Array<string> = []
  const onStack = new Set<string>()
  const cycles: Array<Array<string>> = []
  const connect = (file: string): void => {
    index.set(file, next)
    low.set(file, next++)
    stack.push(file)
    onStack.add(file)
    for (const target of graph.get(file) ?? []) {
      if (!index.has(target)) {
        connect(target)
        low.set(file, Math.min(low.get(file)!, low.get(target)!))
      } else if (onStack.has(target)) low.set(file, Math.min(low.get(file)!, index.get(target)!))
    }
    if (low.get(file) !== index.get(file)) return
    const component: Array<string> = []
    let member: string
    do {
      member = stack.pop()!
      onStack.delete(member)
      component.push(member)
    } while (member !== file)
    if (component.length > 1 || (graph.get(file) ?? []).includes(file)) cycles.push(component.sort())
  }
  for (const file of graph.keys()) if (!index.has(file)) connect(file)
  return cycles
}

const hasTag = (ctor: ErrorClass, name: string): boolean =>
  "fields" in ctor && typeof ctor.fields === "object" && ctor.fields !== null && "_tag" in ctor.fields &&
  String(ctor.fields._tag).includes(name)

type ErrorClass = (abstract new(...args: never) => Error) & { readonly prototype: Error }
