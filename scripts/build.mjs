// `npm run build` (and `npm pack` / `npm publish`, through `prepack`): compiles src/ to JavaScript with type
// declarations, declaration maps and source maps (tsconfig.build.json), then copies the JavaScript files that sit
// in src/ as they are (the `effect-workers` executable, src/node/bin.mjs). The output directory is emptied first,
// so a module deleted from src/ does not linger in the package. `--outDir <dir>` builds elsewhere (the packaging
// test builds into a temporary directory and leaves dist/ alone). EFFECT_WORKERS_BUILD_NO_CHECK=1 emits without
// type-checking (`tsc --noCheck`, TypeScript >= 5.5): only the packaging test sets it, inside `npm test`, whose own
// `tsc --noEmit` checks the same sources; a publish keeps the check.
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const root = Path.resolve(fileURLToPath(import.meta.url), "../..")
const src = Path.join(root, "src")
const flag = process.argv.indexOf("--outDir")
const outDir = Path.resolve(root, flag >= 0 && process.argv[flag + 1] ? process.argv[flag + 1] : "dist")
if (outDir === root || outDir === src || outDir.startsWith(src + Path.sep)) {
  console.error(`build: refusing to empty ${outDir}`)
  process.exit(1)
}

Fs.rmSync(outDir, { recursive: true, force: true })
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
// The emit is the same either way: dist/ built with and without --noCheck (TypeScript 5.9.3) compared equal with
// `diff -r`, declarations and maps included; the check is 40% of the build's CPU (idle: 10.2 -> 6.2 s user+sys).
const noCheck = process.env.EFFECT_WORKERS_BUILD_NO_CHECK === "1" ? ["--noCheck"] : []
const compiled = spawnSync(
  process.execPath,
  [tsc, "-p", Path.join(root, "tsconfig.build.json"), "--outDir", outDir, ...noCheck],
  { stdio: "inherit" }
)
if (compiled.status !== 0) process.exit(compiled.status ?? 1)

// tsc only emits what it compiles; plain JavaScript files in src/ are copied, keeping their mode (the shebang
// file stays executable).
const copy = (dir) => {
  for (const entry of Fs.readdirSync(dir, { withFileTypes: true })) {
    const from = Path.join(dir, entry.name)
    if (entry.isDirectory()) copy(from)
    else if (/\.[cm]?js$/.test(entry.name)) {
      const to = Path.join(outDir, Path.relative(src, from))
      Fs.mkdirSync(Path.dirname(to), { recursive: true })
      Fs.copyFileSync(from, to)
      Fs.chmodSync(to, Fs.statSync(from).mode)
    }
  }
}
copy(src)
console.log(`build: ${Path.relative(root, outDir) || "."} ready`)
