// `node scripts/public-types.mjs <dir of an installed effect-workers>`: lists every type reachable from the
// package's public entry points (dist/**/*.d.ts outside internal/ and node/) that is declared in dist/internal/
// and not exported by name from a public module, and exits 1 if there is one. TypeScript names such a type in a
// consumer's declarations by its internal path (effect-workers/internal/…), which the exports map blocks
// (TS2307, or a silent `any` under skipLibCheck). The walk opens our own types (properties, call and construct
// signatures) and the type arguments of everyone's; Effect's types themselves are trusted.
// test/packaging.test.ts runs it on the packed tarball.
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Path from "node:path"

const pkgDir = Path.resolve(process.argv[2] ?? "node_modules/effect-workers")
const dist = Path.join(pkgDir, "dist")
const ts = createRequire(import.meta.url)("typescript")

const publicFiles = []
const scan = (dir) => {
  for (const entry of Fs.readdirSync(dir, { withFileTypes: true })) {
    const file = Path.join(dir, entry.name)
    if (entry.isDirectory()) {
      if (entry.name !== "internal" && entry.name !== "node") scan(file)
    } else if (file.endsWith(".d.ts")) publicFiles.push(file)
  }
}
scan(dist)

const program = ts.createProgram(publicFiles, {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  strict: true,
  exactOptionalPropertyTypes: true,
  types: ["node"]
})
const checker = program.getTypeChecker()
// Without Effect's declarations every Effect type is `any` and the walk finds nothing: refuse to pass that way.
const effect = ts.resolveModuleName("effect/Effect", publicFiles[0], program.getCompilerOptions(), ts.sys)
if (effect.resolvedModule === undefined) {
  console.log(`public-types: "effect" does not resolve from ${pkgDir}; run it where the package is installed`)
  process.exit(2)
}
const inDir = (decl, dir) => Path.resolve(decl.getSourceFile().fileName).startsWith(dir + Path.sep)
const isInternal = (decl) => inDir(decl, Path.join(dist, "internal"))
const isOurs = (decl) => inDir(decl, dist)
const moduleExports = (file) => {
  const source = program.getSourceFile(file)
  const symbol = source && checker.getSymbolAtLocation(source)
  return symbol ? checker.getExportsOfModule(symbol) : []
}

const found = new Map()
const seen = new Set()
const visit = (type, via, depth) => {
  if (depth > 12 || seen.has(type)) return
  seen.add(type)
  for (const symbol of [type.aliasSymbol, type.symbol]) {
    const decl = symbol?.declarations?.[0]
    // A type its file does not export cannot be named from outside it, so TypeScript writes it out in full.
    const exported = decl !== undefined && (ts.getCombinedModifierFlags(decl) & ts.ModifierFlags.Export) !== 0
    if (exported && isInternal(decl) && !symbol.name.startsWith("__")) {
      const key = `${Path.relative(pkgDir, decl.getSourceFile().fileName)}: ${symbol.name}`
      if (!found.has(key)) found.set(key, { via, symbol })
    }
  }
  for (const t of type.aliasTypeArguments ?? []) visit(t, via, depth + 1)
  if (type.isUnionOrIntersection()) { for (const t of type.types) visit(t, via, depth + 1) }
  if (!(type.flags & ts.TypeFlags.Object)) return
  if (type.objectFlags & ts.ObjectFlags.Reference) {
    for (const t of checker.getTypeArguments(type)) visit(t, via, depth + 1)
  }
  const decl = type.symbol?.declarations?.[0]
  const anonymous = type.symbol !== undefined &&
    (type.symbol.flags & (ts.SymbolFlags.TypeLiteral | ts.SymbolFlags.Function | ts.SymbolFlags.Method)) !== 0
  if (decl !== undefined && !isOurs(decl) && !anonymous) return
  for (const property of checker.getPropertiesOfType(type)) {
    const pd = property.valueDeclaration ?? property.declarations?.[0]
    // Members Effect declares on our classes (a tag's `context`, a Schema class's `annotations`) are its API over
    // our types, reached through type arguments; a tag's `Service` and `Identifier` are ours.
    if (pd === undefined || (!isOurs(pd) && property.name !== "Service" && property.name !== "Identifier")) continue
    visit(checker.getTypeOfSymbolAtLocation(property, pd), `${via}.${property.name}`, depth + 1)
  }
  for (const kind of [ts.SignatureKind.Call, ts.SignatureKind.Construct]) {
    for (const signature of checker.getSignaturesOfType(type, kind)) {
      for (const parameter of signature.getParameters()) {
        const pd = parameter.valueDeclaration ?? parameter.declarations?.[0]
        if (pd) visit(checker.getTypeOfSymbolAtLocation(parameter, pd), `${via}(${parameter.name})`, depth + 1)
      }
      visit(signature.getReturnType(), `${via}()`, depth + 1)
    }
  }
}

const named = new Set()
for (const file of publicFiles) {
  const entry = Path.relative(dist, file).replace(/\.d\.ts$/, "")
  for (let symbol of moduleExports(file)) {
    const via = `${entry}.${symbol.name}`
    if (symbol.flags & ts.SymbolFlags.Alias) {
      symbol = checker.getAliasedSymbol(symbol)
      // Declared in an internal file but exported by name here: TypeScript names it through this module.
      named.add(symbol)
    }
    const decl = symbol.valueDeclaration ?? symbol.declarations?.[0]
    if (decl === undefined) continue
    if (symbol.flags & ts.SymbolFlags.Value) visit(checker.getTypeOfSymbolAtLocation(symbol, decl), via, 0)
    if (symbol.flags & ts.SymbolFlags.Type) visit(checker.getDeclaredTypeOfSymbol(symbol), via, 0)
  }
}

// What a consumer compiled with `skipLibCheck: false` would be told about our declaration files, and only about
// them: the packaging test's consumer compiles with `skipLibCheck: true`, because checking every declaration file
// of Effect, @effect/platform and ioredis as well took about half of that test's time (25 s of 53 s at load 3-5)
// and found nothing of ours. Every file under dist/ is checked, internal ones included.
const ourFiles = program.getSourceFiles().filter((source) => Path.resolve(source.fileName).startsWith(dist + Path.sep))
const problems = ourFiles.flatMap((
  source
) => [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)])
for (const d of problems) {
  const where = d.file
    ? `${Path.relative(pkgDir, d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}`
    : "?"
  console.log(`${where}: TS${d.code} ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`)
}
if (problems.length > 0) {
  console.log(
    `${problems.length} error(s) in the package's own declaration files (as skipLibCheck: false reports them)`
  )
  process.exit(1)
}

const leaks = [...found].filter(([, { symbol }]) => !named.has(symbol)).sort(([a], [b]) => a.localeCompare(b))
for (const [key, { via }] of leaks) console.log(`${key}  (reached through ${via})`)
if (leaks.length > 0) {
  console.log(`${leaks.length} public type(s) declared only in internal files: export each from its public module`)
  process.exit(1)
}
console.log(
  `public types: ${ourFiles.length} declaration files type-check; ${publicFiles.length} entry files, none reaches an internal-only type`
)
