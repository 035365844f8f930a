/**
 * The package as a plain Node.js user gets it. A copy of the repository's package sources is packed with
 * `npm pack` (whose `prepack` runs the build), the tarball is unpacked into a temporary project as
 * node_modules/effect-workers, and the project is used from `node` without any TypeScript loader: the compiled
 * entry points, the JobRunner reader entry (a real reader process) and the `effect-workers` executable, and the
 * emitted declarations through `tsc`. The project's node_modules links the repository's dependencies except tsx,
 * so nothing in it could load TypeScript. (`npm install <tarball>` would need the registry for the dependencies.)
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const root = Path.resolve(__dirname, "..")
const hasSql = Fs.existsSync(Path.join(root, "src/sql.ts"))
// A parent `tsx` or `vitest` must not lend its loader to the children.
const env = { ...process.env, NODE_OPTIONS: "" }

interface Ran {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

// Asynchronous, so the vitest worker keeps answering its parent while a child runs.
const run = (command: string, args: ReadonlyArray<string>, cwd: string, timeoutMs: number, extraEnv = {}) =>
  new Promise<Ran>((resolve, reject) => {
    const child = spawn(command, args, {
      cwd,
      env: { ...env, ...extraEnv },
      timeout: timeoutMs,
      killSignal: "SIGKILL",
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    child.on("error", reject)
    child.on("close", (status) => resolve({ status, stdout, stderr }))
  })

const ok = async (ran: Promise<Ran>, what: string): Promise<Ran> => {
  const r = await ran
  if (r.status !== 0) {
    throw new Error(`${what} exited with ${r.status}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`)
  }
  return r
}

let tmp = ""
let consumer = ""
let tarballPath = ""
let packed: Array<string> = []

beforeAll(async () => {
  tmp = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-workers-pack-"))
  // What a clone holds, tests and benchmarks included, so that leaving them out is the `files` field's doing.
  const stage = Path.join(tmp, "stage")
  Fs.mkdirSync(stage)
  for (const entry of ["package.json", "README.md", "LICENSE", "tsconfig.json", "tsconfig.build.json"]) {
    if (Fs.existsSync(Path.join(root, entry))) Fs.copyFileSync(Path.join(root, entry), Path.join(stage, entry))
  }
  for (const dir of ["src", "scripts", "test", "bench", "examples"]) {
    Fs.cpSync(Path.join(root, dir), Path.join(stage, dir), { recursive: true })
  }
  Fs.symlinkSync(Path.join(root, "node_modules"), Path.join(stage, "node_modules"), "dir")
  // prepack builds dist/ (even where the user's npm config says ignore-scripts).
  const pack = ["pack", "--pack-destination", tmp, "--ignore-scripts=false", "--no-fund"]
  // 150 s of budget and a 200 s hook were short at load 20 (the build is tsc and esbuild over src/): nets, not budgets.
  // The build skips its type check (scripts/build.mjs: the same dist/, byte for byte): `npm test` type-checks
  // src/ already, beside this file.
  await ok(run("npm", pack, stage, 360_000, { EFFECT_WORKERS_BUILD_NO_CHECK: "1" }), "npm pack")
  const tarball = Fs.readdirSync(tmp).find((f) => f.endsWith(".tgz"))
  if (tarball === undefined) throw new Error("npm pack wrote no tarball")
  tarballPath = Path.join(tmp, tarball)
  packed = (await ok(run("tar", ["-tzf", Path.join(tmp, tarball)], tmp, 30_000), "tar -t")).stdout.split("\n")
    .filter((l) => l.length > 0)
    .map((l) => l.replace(/^package\//, ""))

  consumer = Path.join(tmp, "consumer")
  const modules = Path.join(consumer, "node_modules")
  Fs.mkdirSync(modules, { recursive: true })
  for (const name of Fs.readdirSync(Path.join(root, "node_modules"))) {
    if (name.startsWith(".") || name === "tsx" || name === "effect-workers") continue
    Fs.symlinkSync(Path.join(root, "node_modules", name), Path.join(modules, name), "dir")
  }
  await ok(run("tar", ["-xzf", Path.join(tmp, tarball), "-C", tmp], tmp, 30_000), "tar -x")
  Fs.renameSync(Path.join(tmp, "package"), Path.join(modules, "effect-workers"))
  Fs.writeFileSync(
    Path.join(consumer, "package.json"),
    JSON.stringify({ name: "consumer", private: true, type: "module", dependencies: { "effect-workers": "0.1.0" } })
  )
  for (const [file, text] of Object.entries(consumerFiles)) Fs.writeFileSync(Path.join(consumer, file), text)
}, 420_000)

afterAll(() => {
  if (tmp !== "") Fs.rmSync(tmp, { recursive: true, force: true })
})

describe("packaging", () => {
  it("the tarball holds the compiled modules, their declarations and sources, and no tests or benchmarks", () => {
    for (const file of ["package.json", "README.md", "dist/index.js", "dist/index.d.ts", "dist/index.d.ts.map"]) {
      expect(packed).toContain(file)
    }
    for (const file of ["dist/redis.js", "dist/redis.d.ts", "dist/node/bin.mjs", "dist/node/readerProcess.js"]) {
      expect(packed).toContain(file)
    }
    if (hasSql) expect(packed).toContain("dist/sql.js")
    // Declaration maps point into src/, so go-to-definition lands in the TypeScript source.
    expect(packed).toContain("src/index.ts")
    const stray = packed.filter((f) => !/^(dist|src)\//.test(f) && !/^(package\.json|README\.md|LICENSE)$/.test(f))
    expect(stray).toEqual([])
    expect(packed.filter((f) => f.endsWith(".ts") && f.startsWith("dist/") && !f.endsWith(".d.ts"))).toEqual([])
  })

  it.live(
    "plain node imports effect-workers, its backends and runs WorkerQueue and TaskEngine",
    () =>
      Effect.promise(async () => {
        const out = await ok(
          run(process.execPath, ["main.mjs"], consumer, 30_000, { CHECK_SQL: hasSql ? "1" : "" }),
          "main"
        )
        const result = JSON.parse(out.stdout.trim().split("\n").at(-1) ?? "null")
        expect(result.values).toEqual([2, 2, 4])
        expect(result.squares).toEqual([1, 4, 9])
        expect(result.redis).toContain("RedisClient")
        expect(result.redis).toContain("ResultCache")
        if (hasSql) expect(result.sql.length).toBeGreaterThan(0)
        expect(result.internal).toBe("ERR_PACKAGE_PATH_NOT_EXPORTED")
        expect(result.tsx).toBe("ERR_MODULE_NOT_FOUND")
      }),
    40_000
  )

  it.live(
    "a JobRunner in a compiled .mjs module runs its reader process from dist, without tsx",
    () =>
      Effect.promise(async () => {
        const log = Path.join(tmp, "jobs-main.log")
        await ok(run(process.execPath, ["jobs.mjs"], consumer, 45_000, { JOBS_LOG: log }), "node jobs.mjs")
        expectFiveReadsInOneReader(log)
      }),
    60_000
  )

  it.live("the effect-workers executable from the package runs the same module", () =>
    Effect.promise(async () => {
      const log = Path.join(tmp, "jobs-cli.log")
      const bin = Path.join(consumer, "node_modules/effect-workers", readBin())
      const out = await ok(
        run(process.execPath, [bin, "run", "jobs.mjs", "--processes", "1", "--stop-when-empty"], consumer, 45_000, {
          JOBS_LOG: log
        }),
        "effect-workers run"
      )
      expect(out.stdout + out.stderr).toContain("JobRunner packaged: 5 processed, 0 failed")
      expectFiveReadsInOneReader(log)
      const version = await ok(run(process.execPath, [bin, "--version"], consumer, 30_000), "effect-workers --version")
      expect(version.stdout.trim()).toBe(JSON.parse(Fs.readFileSync(Path.join(root, "package.json"), "utf8")).version)
    }), 60_000)

  it.live(
    "a TypeScript consumer type-checks against the emitted declarations, and its own declarations name no internal path",
    () =>
      Effect.promise(async () => {
        // declaration: true, as a library built on ours compiles. A type that TypeScript can only name through its
        // internal file is written as import("effect-workers/internal/…"), which the exports map blocks: the
        // library's users get TS2307, or a silent `any` under skipLibCheck. (skipLibCheck is on here: what
        // `skipLibCheck: false` would report in our declaration files, scripts/public-types.mjs checks in the next
        // test, file by file, without type-checking all of Effect's declarations as well, which was half this file's time.)
        const tsc = Path.join(root, "node_modules/typescript/bin/tsc")
        await ok(run(process.execPath, [tsc, "-p", "tsconfig.json"], consumer, 280_000), "tsc")
        const emitted = Fs.readFileSync(Path.join(consumer, "types/declarations.d.ts"), "utf8")
        for (
          const name of ["TaskEngineError", "WorkerQueueError", "ResultCacheError", "DurableQueueError", "Snapshot"]
        ) {
          expect(emitted).toContain(name)
        }
        expect(emitted.split("\n").filter((line) => line.includes("effect-workers/internal"))).toEqual([])
        expect(Fs.readFileSync(Path.join(consumer, "types/check.d.ts"), "utf8")).not.toContain(
          "effect-workers/internal"
        )
      }),
    300_000
  )

  it.live(
    "our declaration files type-check as under skipLibCheck: false, and every type reachable from a public entry point is exported by a public module (scripts/public-types.mjs)",
    () =>
      Effect.promise(async () => {
        const out = await run(
          process.execPath,
          [Path.join(root, "scripts/public-types.mjs"), Path.join(consumer, "node_modules/effect-workers")],
          consumer,
          280_000
        )
        expect(out.stdout).toMatch(/\d+ declaration files type-check/)
        expect(out.stdout).toContain("none reaches an internal-only type")
        expect(out.status).toBe(0)
      }),
    300_000
  )

  it.live(
    "the root entry bundles for the browser (esbuild --platform=browser) and the bundle runs",
    () =>
      Effect.promise(async () => {
        // No Node builtin may be reachable from "effect-workers": esbuild refuses node:* imports for the browser.
        const esbuild = Path.join(consumer, "node_modules/esbuild/bin/esbuild")
        const args = ["browser.mjs", "--bundle", "--platform=browser", "--format=esm", "--outfile=out/browser.js"]
        await ok(run(esbuild, args, consumer, 60_000), "esbuild --platform=browser")
        const bundle = Fs.readFileSync(Path.join(consumer, "out/browser.js"), "utf8")
        expect(bundle).not.toMatch(/child_process|worker_threads|node:/)
        const out = await ok(run(process.execPath, ["out/browser.js"], consumer, 30_000), "node out/browser.js")
        expect(JSON.parse(out.stdout.trim())).toEqual({ value: 42, offered: true, hit: 1 })
      }),
    90_000
  )

  it.live(
    "npm install of the tarball after effect@3: one copy of effect, and the README's JavaScript example runs",
    () =>
      Effect.promise(async () => {
        const project = Path.join(tmp, "installed")
        Fs.mkdirSync(project)
        Fs.writeFileSync(
          Path.join(project, "package.json"),
          JSON.stringify({ name: "installed", private: true, type: "module" })
        )
        const npm = (args: ReadonlyArray<string>) =>
          run("npm", [...args, "--prefer-offline", "--no-audit", "--no-fund"], project, 180_000)
        const effect3 = await npm(["install", "effect@3"])
        if (offline(effect3)) return
        expect(effect3.status, effect3.stderr).toBe(0)
        await ok(npm(["install", tarballPath]), "npm install <tarball>")
        expect(copiesOfEffect(Path.join(project, "node_modules"))).toEqual(["node_modules/effect"])
        Fs.writeFileSync(Path.join(project, "main.mjs"), readmeBlock("js", "// main.mjs"))
        const out = await ok(run(process.execPath, ["main.mjs"], project, 30_000), "node main.mjs (README)")
        expect(out.stdout).toContain("[ 'Success', 'Success', 'Success' ]")
      }),
    400_000
  )

  it.live(
    "a project on Effect 4 gets an npm peer conflict naming effect 3, not a nested copy",
    () =>
      Effect.promise(async () => {
        const project = Path.join(tmp, "effect4")
        Fs.mkdirSync(project)
        Fs.writeFileSync(
          Path.join(project, "package.json"),
          JSON.stringify({ name: "effect4", private: true, dependencies: { effect: "^4.0.0" } })
        )
        const install = ["install", "--dry-run", "--prefer-offline", "--no-audit", "--no-fund", tarballPath]
        const out = await run("npm", install, project, 180_000)
        if (offline(out)) return
        expect(out.status).not.toBe(0)
        expect(out.stderr).toContain("ERESOLVE")
        expect(out.stderr).toMatch(/peer effect@"\^3\.\d+\.\d+" from effect-workers/)
      }),
    200_000
  )

  it("development resolves without a build: tests, examples and benchmarks import src/ by relative path", () => {
    // A self-reference ("effect-workers") would resolve to dist/: absent on a fresh clone, stale after an edit.
    const offenders: Array<string> = []
    const scan = (dir: string) => {
      for (const entry of Fs.readdirSync(dir, { withFileTypes: true })) {
        const file = Path.join(dir, entry.name)
        if (entry.isDirectory()) scan(file)
        else if (/\.[cm]?[jt]sx?$/.test(entry.name) && file !== __filename) {
          if (/(?:from\s*|import\s*\(\s*)["']effect-workers(?:\/[^"']*)?["']/.test(Fs.readFileSync(file, "utf8"))) {
            offenders.push(Path.relative(root, file))
          }
        }
      }
    }
    for (const dir of ["test", "examples", "bench", "scripts"]) scan(Path.join(root, dir))
    expect(offenders).toEqual([])
  })
})

// npm reaches the registry for what its cache lacks. Without it the install tests cannot run: skipped with a loud
// message locally, a failure under CI=true (as the Redis and PostgreSQL suites).
const offline = (ran: Ran): boolean => {
  if (!/ENOTCACHED|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET/.test(ran.stderr)) return false
  if (process.env.CI === "true") throw new Error(`npm cannot reach the registry:\n${ran.stderr}`)
  console.warn(`SKIPPED: npm cannot reach the registry, so the install test did not run:\n${ran.stderr}`)
  return true
}

// Every installed package named "effect", relative to the project.
const copiesOfEffect = (modules: string): Array<string> => {
  const found: Array<string> = []
  const walk = (dir: string) => {
    for (const entry of Fs.readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name.startsWith(".")) continue
      const pkg = Path.join(dir, entry.name)
      if (entry.name.startsWith("@")) walk(pkg)
      else {
        if (entry.name === "effect") found.push(Path.relative(Path.dirname(modules), pkg))
        if (Fs.existsSync(Path.join(pkg, "node_modules"))) walk(Path.join(pkg, "node_modules"))
      }
    }
  }
  walk(modules)
  return found.sort()
}

// The README's fenced block of that language whose first line is `firstLine`.
const readmeBlock = (lang: string, firstLine: string): string => {
  const readme = Fs.readFileSync(Path.join(root, "README.md"), "utf8")
  const block = readme.split("```" + lang + "\n").slice(1).map((b) => b.slice(0, b.indexOf("```")))
    .find((b) => b.startsWith(firstLine))
  if (block === undefined) throw new Error(`README.md has no \`\`\`${lang} block starting with ${firstLine}`)
  return block
}

const readBin = (): string =>
  JSON.parse(Fs.readFileSync(Path.join(consumer, "node_modules/effect-workers/package.json"), "utf8")).bin[
    "effect-workers"
  ]

const expectFiveReadsInOneReader = (log: string) => {
  const events = Fs.readFileSync(log, "utf8").split("\n").filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as { e: string; pid: number; item?: number })
  const writer = events.filter((e) => e.e === "writer").map((e) => e.pid)
  const reads = events.filter((e) => e.e === "read")
  expect(reads.map((e) => e.item).sort()).toEqual([1, 2, 3, 4, 5])
  expect(new Set(reads.map((e) => e.pid)).size).toBe(1)
  expect(writer.length).toBeGreaterThan(0)
  expect(writer).not.toContain(reads[0]?.pid)
}

const consumerFiles: Record<string, string> = {
  "main.mjs": `
import { Effect, Option } from "effect"
import { TaskEngine, TaskResult, WorkerQueue } from "effect-workers"
import * as Redis from "effect-workers/redis"

const sql = process.env.CHECK_SQL === "1" ? await import("effect-workers/sql") : undefined
const code = (specifier) => import(specifier).then(() => "resolved", (e) => e.code)

const program = Effect.gen(function*() {
  const queue = yield* WorkerQueue.make({ worker: (n) => Effect.succeed(n * 2), concurrency: 2 })
  const values = yield* Effect.all([queue.require(1), queue.require(1), queue.require(2)], { concurrency: 3 })
  const results = yield* TaskEngine.applyToAll([1, 2, 3], (n) => Effect.succeed(n * n), { workers: 2 })
  return { values, squares: results.map((r) => Option.getOrNull(TaskResult.getSuccess(r))) }
})

const out = await Effect.runPromise(Effect.scoped(program))
console.log(JSON.stringify({
  ...out,
  redis: Object.keys(Redis),
  sql: sql === undefined ? null : Object.keys(sql),
  internal: await code("effect-workers/internal/options"),
  tsx: await code("tsx")
}))
`,
  "jobs.mjs": `
import { Effect, Schema } from "effect"
import { appendFileSync } from "node:fs"
import * as JobRunner from "effect-workers/JobRunner"

const log = (event) => appendFileSync(process.env.JOBS_LOG, JSON.stringify({ ...event, pid: process.pid }) + "\\n")
let written = false

export const runner = JobRunner.make({
  name: "packaged",
  module: import.meta.url,
  item: Schema.Number,
  settings: {
    numProcesses: 1,
    stopWhenEmpty: true,
    emptyQueueSleepTime: "20 millis",
    emptyQueueMaxSleepTime: "50 millis",
    gracefulShutdownTimeout: "5 seconds"
  },
  writer: () => {
    log({ e: "writer" })
    if (written) return []
    written = true
    return [1, 2, 3, 4, 5]
  },
  reader: (item) => Effect.sync(() => log({ e: "read", item }))
})

JobRunner.runMain(runner)
`,
  "browser.mjs": `
import { Effect, Option, Schema } from "effect"
import { DurableQueue, ResultCache, WorkerQueue } from "effect-workers"

const program = Effect.gen(function*() {
  const cache = yield* ResultCache.memory({ capacity: 10 })
  const queue = yield* WorkerQueue.make({ worker: (n) => Effect.succeed(n * 2), cache })
  const value = yield* queue.require(21)
  const jobs = yield* DurableQueue.memory({ name: "browser", schema: Schema.Number })
  const id = yield* jobs.offer(1)
  const hit = Option.getOrNull(yield* cache.get(21)) === 42 ? 1 : 0
  return { value, offered: typeof id === "string" && id.length > 0, hit }
})

Effect.runPromise(Effect.scoped(program)).then((r) => console.log(JSON.stringify(r)))
`,
  "check.ts": `
import { Effect, Option } from "effect"
import { TaskEngine, TaskResult, WorkerQueue } from "effect-workers"
import * as JobRunner from "effect-workers/JobRunner"
import { RedisClient } from "effect-workers/redis"

export const program = Effect.gen(function*() {
  const queue = yield* WorkerQueue.make({ worker: (n: number) => Effect.succeed(String(n)) })
  const value: string = yield* queue.require(1)
  // @ts-expect-error the queue's items are numbers
  yield* queue.require("1")
  const results = yield* TaskEngine.applyToAll([1, 2], (n: number) => Effect.succeed(n * 2), { workers: 2 })
  const first: Option.Option<number> = TaskResult.getSuccess(results[0]!)
  return { value, first }
})

export const runner = JobRunner.make({
  name: "typed",
  module: import.meta.url,
  writer: () => [1, 2, 3],
  reader: (item: number) => Effect.log(item)
})

export const client: typeof RedisClient = RedisClient

// @ts-expect-error internal modules are not part of the package's exports
export const hidden = import("effect-workers/internal/options")
`,
  // Every export has an inferred type, which TypeScript must name in types/declarations.d.ts.
  "declarations.ts": `
import { Duration, Effect, Layer } from "effect"
import { DurableQueue, Progress, ResultCache, TaskEngine, TreeQueue, WorkerQueue } from "effect-workers"
import * as Redis from "effect-workers/redis"

export const engine = TaskEngine.make({ handler: (n: number) => Effect.succeed(n * 2), workers: 2 })
export const ended = Effect.flatMap(engine, (e) => e.awaitEnd)
export const failed = Effect.fail(
  new TaskEngine.TaskEngineError({ reason: "StartTimeout", timeout: Duration.seconds(1) })
)
export const queue = WorkerQueue.make({ worker: (n: number) => Effect.succeed(n) })
export const required = Effect.flatMap(queue, (q) => q.require(1))
export const registry = Effect.flatMap(WorkerQueue.Registry, (r) => r.closeAll)
export const registryLayer = WorkerQueue.Registry.layer
export const testLayer = <Id>(tag: import("effect").Context.Tag<Id, WorkerQueue.WorkerQueue<number, number>>) =>
  WorkerQueue.layerTest(tag, { worker: (n: number) => Effect.succeed(n) })
export const cached = Effect.flatMap(ResultCache.memory<string, number>(), (c) => c.get("a"))
export const durable = Effect.flatMap(
  DurableQueue.memory({ name: "q", schema: (null as unknown as import("effect").Schema.Schema<number>) }),
  (q) => q.offer(1)
)
export const snapshots = Effect.flatMap(Progress.ProgressRecording, (r) => r.snapshots)
export const last = Effect.flatMap(Progress.ProgressRecording, (r) => r.last)
export const session = Progress.session({ title: "t" })
export const progressLayer = Layer.merge(Progress.layerTest, Progress.layerNone)
export const tree = TreeQueue.run({ initial: [{ process: () => Effect.void }], order: "lifo" })
export const redisLayer = Redis.RedisClient.layer({})
export const redisCache = Redis.ResultCache.make({
  schema: (null as unknown as import("effect").Schema.Schema<number>)
})
`,
  "tsconfig.json": JSON.stringify({
    compilerOptions: {
      target: "ES2022",
      module: "NodeNext",
      moduleResolution: "NodeNext",
      strict: true,
      exactOptionalPropertyTypes: true,
      declaration: true,
      emitDeclarationOnly: true,
      outDir: "types",
      skipLibCheck: true,
      types: ["node"]
    },
    files: ["check.ts", "declarations.ts"]
  })
}
