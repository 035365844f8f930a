// `node scripts/check-docs.mjs [files…]`: type-checks every ```ts block of the Markdown files (default README.md)
// and every ```ts block of a JSDoc `@example` in the TypeScript files (default every file under src/), and
// prints each error as `<file>:<line>:<column>: error TS…` at the line of the README or source file it comes
// from; exits 1 when there is one. `npm test` runs it (test/docs.test.ts).
//
// Each block is its own ES module (top-level await allowed) compiled with the repository's compiler options;
// `effect-workers` and `effect-workers/<path>` resolve to src/, so examples are checked against the sources.
// - A block whose first line is `// <name>.ts` is written under that name, so that a later block of the same
//   file can import it (`import { runner } from "./jobs.js"`).
// - A fragment declares what it takes for granted in an HTML comment right above its fence (Markdown only):
//   <!-- docs-preamble
//   declare const makeThumbnail: (url: string) => Effect.Effect<Buffer>
//   -->
//   The preamble is prepended to the block (after the block's own imports); its lines are not the block's.
// - `<!-- docs-check: skip <why> -->` right above a fence leaves the block out (say why).
import { spawnSync } from "node:child_process"
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
const markdownBlocks = (text) => {
  const lines = text.split("\n")
  const blocks = []
  for (let i = 0; i < lines.length; i++) {
    const fence = /^\s*(`{3,})(\w+)?\s*$/.exec(lines[i])
    if (fence === null) continue
    // A fence closes at a line of as many backticks (a ````md block may show a ```ts block).
    let end = i + 1
    while (end < lines.length && lines[end].trim() !== fence[1]) end++
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
const jsdocBlocks = (text) => {
  const lines = text.split("\n")
  const blocks = []
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*\*\s?```(ts|typescript)\s*$/.test(lines[i])) continue
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
let count = 0
files.forEach((file, index) => {
  const text = Fs.readFileSync(file, "utf8")
  const blocks = file.endsWith(".md") ? markdownBlocks(text) : jsdocBlocks(text)
  const dir = Path.join(out, `${index}-${Path.basename(file).replace(/\W/g, "_")}`)
  for (const block of blocks) {
    Fs.mkdirSync(dir, { recursive: true })
    const named = /^\/\/ ([\w.-]+)\.ts\s*$/.exec(block.code.split("\n")[0] ?? "")
    const generated = Path.join(dir, named ? `${named[1]}.ts` : `L${block.line}.ts`)
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
    Fs.writeFileSync(generated, code + "\nexport {}\n")
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
Fs.writeFileSync(Path.join(out, "tsconfig.json"), JSON.stringify({ compilerOptions, include: ["**/*.ts"] }))

const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
// Run in `out`: tsc prints paths relative to its working directory, and they are resolved against `out` below (from
// the project root they only resolved by chance, when the root and the temp folder were equally deep).
const ran = spawnSync(process.execPath, [tsc, "-p", Path.join(out, "tsconfig.json"), "--pretty", "false"], {
  cwd: out,
  encoding: "utf8",
  maxBuffer: 64 * 1024 * 1024
})
const report = []
for (const line of (ran.stdout + ran.stderr).split("\n")) {
  const m = /^(.+?)\((\d+),(\d+)\): (error TS\d+: .*)$/.exec(line)
  if (m === null) {
    if (line.trim() !== "" && !line.startsWith(" ")) report.push(line)
    else if (report.length > 0 && line.trim() !== "") report[report.length - 1] += "\n" + line
    continue
  }
  const generated = Path.resolve(out, m[1])
  const from = origin.get(generated)
  if (from === undefined) {
    // An error inside src/ itself (not an example): reported as it is.
    report.push(`${Path.relative(root, Path.resolve(out, m[1]))}:${m[2]}:${m[3]}: ${m[4]}`)
    continue
  }
  let n = Number(m[2])
  const inPreamble = n > from.split && n <= from.split + from.pre
  if (n > from.split + from.pre) n -= from.pre
  const where = `${Path.relative(root, from.file)}:${inPreamble ? from.offset : n + from.offset}:${
    Number(m[3]) + (inPreamble ? 0 : from.column)
  }`
  report.push(`${where}: ${inPreamble ? "(in the docs-preamble above the block) " : ""}${m[4]}`)
}
Fs.rmSync(out, { recursive: true, force: true })
if (ran.status !== 0 || report.length > 0) {
  for (const line of report) console.log(line)
  console.log(`check-docs: ${report.length} error(s) in ${count} example block(s) of ${files.length} file(s)`)
  process.exit(1)
}
console.log(`check-docs: ${count} example block(s) of ${files.length} file(s) type-check`)
