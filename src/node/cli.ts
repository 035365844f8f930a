/**
 * The `effect-workers` command line: `effect-workers run ./jobs.ts [--processes N ...]` loads a module that defines
 * a runner (with `JobRunner.make`) and runs it until SIGTERM / SIGINT. Flags override the environment, which
 * overrides the settings in the module.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { isJobRunner, markLoadedByCli, run } from "../internal/jobRunner/runner.js"
import { seedDefaults, validateInput } from "../internal/jobRunner/settings.js"
import type * as Api from "../JobRunner.js"
import * as Progress from "../Progress.js"

const optionalInt = (name: string, description: string) =>
  Options.integer(name).pipe(Options.withDescription(description), Options.optional)
const optionalSeconds = (name: string, description: string) =>
  Options.float(name).pipe(Options.withDescription(`${description} (seconds)`), Options.optional)

const runCommand = Command.make(
  "run",
  {
    module: Args.text({ name: "module" }).pipe(Args.withDescription("the module that defines the runner")),
    name: Options.text("name").pipe(
      Options.withDescription("which runner, when the module defines several"),
      Options.optional
    ),
    processes: optionalInt("processes", "number of reader processes"),
    concurrency: optionalInt("concurrency", "concurrent tasks per process"),
    maxQueueSize: optionalInt("max-queue-size", "maximum queue size"),
    lookupBlockSize: optionalInt("lookup-block-size", "items the writer is asked for per call"),
    maxJobsPerProcess: optionalInt(
      "max-jobs-per-process",
      "jobs before a process retires once its replacement is ready, at most as many more until then (0 = never)"
    ),
    gracefulShutdownTimeout: optionalSeconds("graceful-shutdown-timeout", "how long running items get at shutdown"),
    metricsPort: optionalInt("metrics-port", "serve Prometheus metrics on <metrics-host>:<port>"),
    metricsHost: Options.text("metrics-host").pipe(
      Options.withDescription("the address the metrics endpoint binds (default 127.0.0.1; 0.0.0.0 for all)"),
      Options.optional
    ),
    threads: Options.boolean("threads").pipe(Options.withDescription("run readers in worker threads")),
    progress: Options.boolean("progress").pipe(
      Options.withDescription("show progress: panels in a terminal, plain lines otherwise")
    ),
    stopWhenEmpty: Options.boolean("stop-when-empty").pipe(
      Options.withDescription("stop once the writer has nothing more and every item is done")
    )
  },
  (args) =>
    Effect.gen(function*() {
      const file = Path.resolve(args.module)
      if (!Fs.existsSync(file)) return yield* Effect.fail(`no such module: ${args.module} (${file})`)
      const url = pathToFileURL(file).href
      markLoadedByCli()
      const mod = yield* Effect.tryPromise({
        try: () => import(url) as Promise<Record<string, unknown>>,
        catch: (e) => `${args.module} could not be loaded: ${e instanceof Error ? e.message : String(e)}`
      })
      const runners = Object.values(mod).filter(isJobRunner)
      const unique = Array.from(new Set(runners))
      const wanted = Option.getOrUndefined(args.name)
      const runner = wanted === undefined ? unique[0] : unique.find((r) => r.name === wanted)
      if (runner === undefined || (wanted === undefined && unique.length > 1)) {
        return yield* Effect.fail(
          unique.length === 0
            ? `${args.module} exports no JobRunner`
            : `${args.module} exports ${unique.length} runners (${
              unique.map((r) => r.name).join(", ")
            }); pick one with --name`
        )
      }
      const seconds = (o: Option.Option<number>) => Option.getOrUndefined(Option.map(o, (s) => s * 1000))
      const settings: Api.SettingsInput = {
        numProcesses: Option.getOrUndefined(args.processes),
        concurrentTasksPerProcess: Option.getOrUndefined(args.concurrency),
        maxQueueSize: Option.getOrUndefined(args.maxQueueSize),
        lookupBlockSize: Option.getOrUndefined(args.lookupBlockSize),
        maxJobsPerProcess: Option.getOrUndefined(args.maxJobsPerProcess),
        gracefulShutdownTimeout: seconds(args.gracefulShutdownTimeout),
        metricsPort: Option.getOrUndefined(args.metricsPort),
        metricsHost: Option.getOrUndefined(args.metricsHost),
        workerMode: args.threads ? "thread" : undefined,
        stopWhenEmpty: args.stopWhenEmpty ? true : undefined
      }
      // Flags are checked on their own first, so an error names the flag (`--processes`), not the setting.
      yield* validateInput(settings, seedDefaults).pipe(
        Effect.mapError((e) => `--${flagOf[e.field] ?? e.field}: expected ${e.expected}, got ${String(e.value)}`)
      )
      const running = run({ ...runner, module: runner.module ?? url }, { settings }, {})
      const summary = yield* (args.progress ? Effect.provide(running, Progress.layer()) : running)
      yield* Effect.logInfo(
        `JobRunner ${runner.name}: ${summary.processed} processed, ${summary.failed} failed, ${summary.restarts} restarts`
      )
    }).pipe(
      // One line, no stack trace, exit code 1: what went wrong is the user's module, flags or settings.
      Effect.catchAll((error) =>
        Effect.sync(() => {
          process.stderr.write(`effect-workers run: ${typeof error === "string" ? error : error.message}\n`)
          process.exitCode = 1
        })
      )
    )
)

const flagOf: Record<string, string> = {
  numProcesses: "processes",
  concurrentTasksPerProcess: "concurrency",
  maxQueueSize: "max-queue-size",
  lookupBlockSize: "lookup-block-size",
  maxJobsPerProcess: "max-jobs-per-process",
  gracefulShutdownTimeout: "graceful-shutdown-timeout",
  metricsPort: "metrics-port",
  metricsHost: "metrics-host"
}

/**
 * @since 0.1.0
 */
export const command = Command.make("effect-workers").pipe(Command.withSubcommands([runCommand]))

// src/node/cli.ts and dist/node/cli.js both sit two levels below the package root.
const packageVersion = (): string =>
  (createRequire(import.meta.url)("../../package.json") as { readonly version: string }).version

/**
 * Runs the CLI with `argv` (as `process.argv`), under `NodeRuntime.runMain`.
 *
 * @since 0.1.0
 */
export const main = (argv: ReadonlyArray<string>): void =>
  Command.run(command, { name: "effect-workers", version: packageVersion() })(argv).pipe(
    Effect.provide(NodeContext.layer),
    NodeRuntime.runMain
  )
