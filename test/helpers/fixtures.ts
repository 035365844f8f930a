/**
 * Child-process fixtures compiled once per test run. The vitest global setup (test/globalSetup.ts) bundles every
 * `test/fixtures/*.ts`, every `examples/**\/*.ts` and the JobRunner reader entry with esbuild into one folder under
 * `.tmp/` (git-ignored); a test starts the compiled `.mjs` with plain `node`, as a user's compiled runner starts.
 * Through tsx a fixture took 2–4 s to start on this 2-core machine (10 s for a JobRunner at load); compiled,
 * 0.6–2 s. New files in those folders are picked up by the glob, not a list.
 *
 * The output stays inside the repository so that the one package left external (better-sqlite3, a native addon)
 * resolves from its node_modules. Shared code is split into chunks, so a reader process that imports a runner
 * module gets the same module instances as the reader entry. `import.meta.url` in a bundle names the bundle file,
 * so the relative path from JobRunner's internals to `src/node/readerProcess` no longer holds: the command
 * carries `EFFECT_WORKERS_JOB_RUNNER_ENTRY` pointing at the compiled reader entry, the override JobRunner has for
 * bundled deployments. `module: import.meta.url` still works: the reader imports the chunk or entry that defines
 * the runner and finds it among its exports.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

/** The repository root. */
export const root = Path.resolve(fileURLToPath(new URL("../..", import.meta.url)))

/** Where compiled fixtures of all runs go; each run gets `<pid>/` inside. */
export const buildRoot = Path.join(root, ".tmp", "fixtures")

/** The reader entry of JobRunner, compiled beside the fixtures. */
const readerEntry = "src/node/readerProcess.ts"

/** The override JobRunner reads for where its reader entry is (src/internal/jobRunner/process.ts, ENTRY_ENV). */
const ENTRY_ENV = "EFFECT_WORKERS_JOB_RUNNER_ENTRY"

const tsFiles = (dir: string, recursive: boolean): Array<string> =>
  Fs.existsSync(Path.join(root, dir))
    ? (Fs.readdirSync(Path.join(root, dir), { recursive }) as Array<string>)
      .filter((file) => /\.ts$/.test(file) && !file.endsWith(".d.ts"))
      .map((file) => Path.join(dir, file))
    : []

/** The CLI, compiled beside the fixtures with a copy of its executable (see `buildFixtures`). */
const cliEntry = "src/node/cli.ts"
const binScript = "src/node/bin.mjs"

/** Every source a test may run as a child process, relative to the root. */
export const fixtureSources = (): Array<string> => [
  ...tsFiles("test/fixtures", false),
  ...tsFiles("examples", true),
  readerEntry,
  cliEntry
]

const relative = (source: string) => Path.relative(root, Path.resolve(root, source))

/** The compiled file of `source` (a `.ts` path, relative to the root or absolute) inside `dir`. */
export const compiledPath = (dir: string, source: string): string =>
  Path.join(dir, relative(source).replace(/\.ts$/, ".mjs"))

/**
 * Bundles every fixture source into `dir` (one esbuild build, ESM with shared chunks). Returns how long it took.
 */
export const buildFixtures = async (dir: string): Promise<number> => {
  const started = performance.now()
  const esbuild = await import("esbuild")
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: fixtureSources(),
    outdir: dir,
    outbase: ".",
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    outExtension: { ".js": ".mjs" },
    // A native addon cannot be bundled; it resolves from the repository's node_modules at run time.
    external: ["better-sqlite3"],
    // Bundled CommonJS packages (ioredis, pg) call `require` for Node's built-ins.
    banner: {
      js:
        "import { createRequire as __fixtureRequire } from \"node:module\"; const require = __fixtureRequire(import.meta.url);"
    },
    logLevel: "error"
  })
  // The executable runs the compiled CLI it finds next to itself as `cli.js` (as in the package's dist/): a copy
  // of it beside the compiled CLI starts without tsx, which took ~2 s of CPU per start on the sources.
  Fs.copyFileSync(Path.join(root, binScript), Path.join(dir, binScript))
  Fs.writeFileSync(Path.join(dir, Path.dirname(binScript), "cli.js"), "export * from \"./cli.mjs\"\n")
  // The CLI reads its version from ../../package.json, here the folder's own.
  const { version } = JSON.parse(Fs.readFileSync(Path.join(root, "package.json"), "utf8")) as { version: string }
  Fs.writeFileSync(
    Path.join(dir, "package.json"),
    JSON.stringify({ name: "effect-workers-fixtures", private: true, type: "module", version })
  )
  return performance.now() - started
}

export interface Command {
  readonly command: string
  readonly args: ReadonlyArray<string>
  /** Added to the environment of the child. */
  readonly env: Record<string, string>
}

/** How to start a source: compiled (`node file.mjs`, the default) or through the tsx loader. */
export type Loader = "compiled" | "tsx"

/**
 * The command that starts `source` with `args` from the compiled fixtures in `dir`, or with `"tsx"` the
 * TypeScript through the loader (one test keeps that path covered).
 */
export const commandIn = (
  dir: string,
  source: string,
  args: ReadonlyArray<string>,
  loader: Loader = "compiled"
): Command => {
  if (loader === "tsx") {
    return { command: process.execPath, args: ["--import", "tsx", Path.resolve(root, source), ...args], env: {} }
  }
  const file = compiledPath(dir, source)
  if (!Fs.existsSync(file)) {
    throw new Error(
      `${
        relative(source)
      } is not among the compiled fixtures in ${dir}: fixtureSources() in test/helpers/fixtures.ts compiles test/fixtures/*.ts and examples/**/*.ts`
    )
  }
  return { command: process.execPath, args: [file, ...args], env: { [ENTRY_ENV]: compiledPath(dir, readerEntry) } }
}
