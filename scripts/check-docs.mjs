// `node scripts/check-docs.mjs [files…]`: type-checks every ```ts block of the Markdown files (default README.md)
// and every ```ts block of a JSDoc `@example` in the TypeScript files (default every file under src/), and
// prints each error as `<file>:<line>:<column>: error TS…` at the line of the README or source file it comes
// from; exits 1 when there is one. `npm test` runs it (test/docs.test.ts).
//
// Each block is its own ES module (top-level await allowed) compiled with the repository's compiler options;
// `effect-workers` and `effect-workers/<path>` resolve to src/, so examples are checked against the sources.
// All blocks go into one program (the TypeScript compiler API) and only the blocks are type-checked: src/ is read
// for the types the blocks use, not checked as a whole (`tsc --noEmit` in `npm test` does that). Running `tsc -p`
// over the blocks checked every src/ file they reach as well: 7.7 s of user CPU against 5.1 s now (load 5, 66 blocks;
// 2 s of it is reading the 1,190 files of the program, 1.5 s checking the blocks).
// A guard: a ```ts fence that was not extracted (an info string the fence pattern misses), or a block that is not a
// file of the program (two blocks written under one name), fails the check, so no example goes unchecked.
// - A block whose first line is `// <name>.ts` is written under that name, so that a later block of the same
//   file can import it (`import { runner } from "./jobs.js"`).
// - A fragment declares what it takes for granted in an HTML comment right above its fence (Markdown only):
//   <!-- docs-preamble
//   declare const makeThumbnail: (url: string) => Effect.Effect<Buffer>
//   -->
//   The preamble is prepended to the block (after the block's own imports); its lines are not the block's.
// - `<!-- docs-check: skip <why> -->` right above a fence leaves the block out (say why).
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const root = Path.resolve(fileURLToPath(import.meta.url), "../..")
const args = process.argv.slice(2)

const listSources = (dir) =>
  Fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = Path.join(dir, entry.name)
    return entry.isDirectory() ? listSources(file) : /\.ts$/.test(entry.name) ? [file] : []
  })
const files = args.length > 0
  ? args.map((f) => Path.resolve(f))
  : [Path.join(root, "README.md"), ...listSources(Path.join(root, "src"))]

/** Blocks of a Markdown file: { line (1-based, first code line), code, name?, preamble? }. */
const markdownBlocks = (text, seen) => {
  const lines = text.split("\n")
  const blocks = []
  for (let i = 0; i < lines.length; i++) {
    const fence = /^\s*(`{3,})(\w+)?\s*$/.exec(lines[i])
    if (fence === null) continue
    // A fence closes at a line of as many backticks (a ````md block may show a ```ts block).
    let end = i + 1
    while (end < lines.length && lines[end].trim() !== fence[1]) end++
    // Lines inside this block are shown, not fences of their own (the guard's scan must not count them).
    for (let j = i; j < end; j++) seen.add(j + 1)
    const lang = fence[2]
    if (lang === "ts" || lang === "typescript") {
      // HTML comments directly above the fence (blank lines allowed between them and the fence).
      let above = i - 1
      while (above >= 0 && lines[above].trim() === "") above--
      let comment = ""
      if (above >= 0 && lines[above].trim().endsWith("-->")) {
        let start = above
        while (start >= 0 && !lines[start].includes("<!--")) start--
        comment = lines.slice(Math.max(start, 0), above + 1).join("\n")
      }
      const skip = /<!--\s*docs-check:\s*skip\b/.test(comment)
      const preamble = /<!--\s*docs-preamble\s*\n([\s\S]*?)-->/.exec(comment)?.[1]
      if (!skip) blocks.push({ line: i + 2, code: lines.slice(i + 1, end).join("\n"), preamble })
    }
    i = end
  }
  return blocks
}

/** ```ts blocks inside JSDoc comments (lines starting with ` * `). */
const jsdocBlocks = (text, seen) => {
  const lines = text.split("\n")
  const blocks = []
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*\*\s?```(ts|typescript)\s*$/.test(lines[i])) continue
    seen.add(i + 1)
    let end = i + 1
    while (end < lines.length && !/^\s*\*\s?```\s*$/.test(lines[end]) && !/\*\//.test(lines[end])) end++
    const code = lines.slice(i + 1, end).map((l) => l.replace(/^\s*\*( |$)/, "")).join("\n")
    // Columns in the source are those in the block plus the comment's ` * `.
    blocks.push({ line: i + 2, code, column: /^\s*\* ?/.exec(lines[i])[0].length })
    i = end
  }
  return blocks
}

const out = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-workers-docs-"))
const origin = new Map() // generated file → { file, line offset: generated line n ↦ source line n + offset }
const written = new Map() // generated file → its text, for the guard
const report = []
let count = 0
files.forEach((file, index) => {
  const text = Fs.readFileSync(file, "utf8")
  const seen = new Set()
  const markdown = file.endsWith(".md")
  const blocks = markdown ? markdownBlocks(text, seen) : jsdocBlocks(text, seen)
  // The guard's own scan, looser than the extractors': any fence whose info string starts with ts or typescript.
  const fence = markdown ? /^\s*`{3,}\s*(ts|typescript)\b/ : /^\s*\*\s*`{3,}\s*(ts|typescript)\b/
  text.split("\n").forEach((line, i) => {
    if (fence.test(line) && !seen.has(i + 1)) {
      report.push(`${Path.relative(root, file)}:${i + 1}:1: a \`\`\`ts block that check-docs did not extract`)
    }
  })
  const dir = Path.join(out, `${index}-${Path.basename(file).replace(/\W/g, "_")}`)
  for (const block of blocks) {
    Fs.mkdirSync(dir, { recursive: true })
    const named = /^\/\/ ([\w.-]+)\.ts\s*$/.exec(block.code.split("\n")[0] ?? "")
    const generated = Path.join(dir, named ? `${named[1]}.ts` : `L${block.line}.ts`)
    if (written.has(generated)) {
      // The later block would replace the earlier one on disk, which would then go unchecked.
      report.push(`${Path.relative(root, file)}:${block.line - 1}:1: a second block named ${Path.basename(generated)}`)
      continue
    }
    let code = block.code
    let offset = block.line - 1
    if (block.preamble !== undefined) {
      // After the block's leading imports, so the preamble can use what they import.
      const lines = code.split("\n")
      let cut = 0
      let openImport = false
      for (let i = 0; i < lines.length; i++) {
        const line = lines[i]
        if (openImport) {
          cut = i + 1
          openImport = !/\bfrom\s+["']/.test(line)
        } else if (/^import\b/.test(line)) {
          cut = i + 1
          openImport = !/["']\s*;?\s*$/.test(line)
        } else if (/^\s*(\/\/.*)?$/.test(line)) {
          if (cut === i) cut = i + 1
        } else break
      }
      const pre = block.preamble.replace(/\n$/, "").split("\n")
      code = [...lines.slice(0, cut), ...pre, ...lines.slice(cut)].join("\n")
      origin.set(generated, { file, offset, column: 0, split: cut, pre: pre.length })
    } else origin.set(generated, { file, offset, column: block.column ?? 0, split: Infinity, pre: 0 })
    // Every block is a module, even one without imports, so that blocks never share top-level names.
    written.set(generated, code + "\nexport {}\n")
    Fs.writeFileSync(generated, written.get(generated))
    count++
  }
})

const tsconfig = JSON.parse(Fs.readFileSync(Path.join(root, "tsconfig.json"), "utf8"))
const compilerOptions = {
  ...tsconfig.compilerOptions,
  noEmit: true,
  noUnusedLocals: false,
  noUnusedParameters: false,
  baseUrl: root,
  typeRoots: [Path.join(root, "node_modules/@types")],
  paths: {
    "effect-workers": ["src/index.ts"],
    // Subpaths the package's exports map names one by one (`effect-workers/dashboard` is dist/Dashboard.js).
    ...Object.fromEntries(
      Object.entries(JSON.parse(Fs.readFileSync(Path.join(root, "package.json"), "utf8")).exports)
        .filter(([key, target]) =>
          key !== "." && !key.includes("*") && typeof target?.default === "string" &&
          target.default.startsWith("./dist/")
        )
        .map((
          [key, target]
        ) => [`effect-workers/${key.slice(2)}`, [
          target.default.slice(2).replace(/^dist\//, "src/").replace(/\.js$/, ".ts")
        ]])
    ),
    "effect-workers/*": ["src/*.ts"]
  }
}
Fs.writeFileSync(Path.join(out, "package.json"), JSON.stringify({ type: "module" }))
Fs.symlinkSync(Path.join(root, "node_modules"), Path.join(out, "node_modules"), "dir")

const ts = createRequire(import.meta.url)("typescript")
const converted = ts.convertCompilerOptionsFromJson(compilerOptions, out)
const program = ts.createProgram({ rootNames: [...written.keys()], options: converted.options })
const diagnostics = [...converted.errors, ...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()]
for (const [generated, code] of written) {
  const source = program.getSourceFile(generated)
  if (source === undefined || source.text !== code) {
    const from = origin.get(generated)
    report.push(
      `${Path.relative(root, from.file)}:${from.offset}:1: the block at this fence is missing from the program`
    )
    continue
  }
  diagnostics.push(...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source))
}
for (const d of diagnostics) {
  const message = `error TS${d.code}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`
  if (d.file === undefined || d.start === undefined) {
    report.push(message)
    continue
  }
  const from = origin.get(Path.resolve(d.file.fileName))
  const position = d.file.getLineAndCharacterOfPosition(d.start)
  if (from === undefined) {
    // A global diagnostic located outside the blocks (a declaration file, src/): reported as it is.
    report.push(`${Path.relative(root, d.file.fileName)}:${position.line + 1}:${position.character + 1}: ${message}`)
    continue
  }
  let n = position.line + 1
  const column = position.character + 1
  const inPreamble = n > from.split && n <= from.split + from.pre
  if (n > from.split + from.pre) n -= from.pre
  const where = `${Path.relative(root, from.file)}:${inPreamble ? from.offset : n + from.offset}:${
    column + (inPreamble ? 0 : from.column)
  }`
  report.push(`${where}: ${inPreamble ? "(in the docs-preamble above the block) " : ""}${message}`)
}
Fs.rmSync(out, { recursive: true, force: true })
if (report.length > 0) {
  for (const line of report) console.log(line)
  console.log(`check-docs: ${report.length} error(s) in ${count} example block(s) of ${files.length} file(s)`)
  process.exit(1)
}
console.log(`check-docs: ${count} example block(s) of ${files.length} file(s) type-check`)
