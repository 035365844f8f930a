/**
 * The runner's settings: the seed's defaults, then the definition's, then the environment (`NAME_SETTING`, read
 * through `Config`), then `run`'s overrides. Code values are checked by the shared option checker (a typo names the
 * nearest setting); env values by `Config` (a bad one names the variable).
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Api from "../../JobRunner.js"
import type { OptionError } from "../../OptionError.js"
import { checker } from "../options.js"
import { isJobRunner } from "./definition.js"

/** @internal */
export const envPrefix = (name: string): string =>
  name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/[^A-Za-z0-9]+/g, "_").replace(/^_+|_+$/g, "").toUpperCase()

/** @internal */
export const seedDefaults: Api.Settings = {
  numProcesses: 2,
  maxQueueSize: 300,
  lookupBlockSize: 10,
  concurrentTasksPerProcess: 4,
  maxJobsPerProcess: 200,
  preventRequeuingTime: Duration.seconds(300),
  emptyQueueSleepTime: Duration.seconds(1),
  emptyQueueMaxSleepTime: Duration.seconds(30),
  fullQueueSleepTime: Duration.seconds(5),
  queueInteractionTimeout: Duration.millis(10),
  gracefulShutdownTimeout: Duration.seconds(30),
  jobTimeout: Duration.zero,
  metricsPort: 0,
  metricsHost: "127.0.0.1",
  workerMode: "process",
  stopWhenEmpty: false
}

const known = Object.keys(seedDefaults)

/** @internal */
export const validateInput = (
  input: Api.SettingsInput,
  base: Api.Settings
): Effect.Effect<Api.Settings, OptionError> => {
  const c = checker("JobRunner")
  return Effect.zipRight(
    c.knownKeys(input, known, "settings"),
    Effect.all({
      numProcesses: c.integer("numProcesses", input.numProcesses, base.numProcesses, 1),
      maxQueueSize: c.integer("maxQueueSize", input.maxQueueSize, base.maxQueueSize, 1),
      lookupBlockSize: c.integer("lookupBlockSize", input.lookupBlockSize, base.lookupBlockSize, 1),
      concurrentTasksPerProcess: c.integer(
        "concurrentTasksPerProcess",
        input.concurrentTasksPerProcess,
        base.concurrentTasksPerProcess,
        1
      ),
      maxJobsPerProcess: c.integer("maxJobsPerProcess", input.maxJobsPerProcess, base.maxJobsPerProcess, 0),
      preventRequeuingTime: c.duration("preventRequeuingTime", input.preventRequeuingTime, base.preventRequeuingTime),
      emptyQueueSleepTime: c.duration("emptyQueueSleepTime", input.emptyQueueSleepTime, base.emptyQueueSleepTime),
      emptyQueueMaxSleepTime: c.duration(
        "emptyQueueMaxSleepTime",
        input.emptyQueueMaxSleepTime,
        base.emptyQueueMaxSleepTime
      ),
      fullQueueSleepTime: c.duration("fullQueueSleepTime", input.fullQueueSleepTime, base.fullQueueSleepTime),
      queueInteractionTimeout: c.duration(
        "queueInteractionTimeout",
        input.queueInteractionTimeout,
        base.queueInteractionTimeout
      ),
      gracefulShutdownTimeout: c.duration(
        "gracefulShutdownTimeout",
        input.gracefulShutdownTimeout,
        base.gracefulShutdownTimeout
      ),
      jobTimeout: c.duration("jobTimeout", input.jobTimeout, base.jobTimeout),
      metricsPort: c.integer("metricsPort", input.metricsPort, base.metricsPort, 0).pipe(
        Effect.flatMap((p) => c.require("metricsPort", p, p <= 65535, "a port from 0 (off) to 65535"))
      ),
      metricsHost: c.require(
        "metricsHost",
        input.metricsHost ?? base.metricsHost,
        input.metricsHost === undefined || (typeof input.metricsHost === "string" && input.metricsHost.trim() !== ""),
        "a host name or address (a non-empty string)"
      ),
      workerMode: c.require(
        "workerMode",
        input.workerMode ?? base.workerMode,
        input.workerMode === undefined || input.workerMode === "process" || input.workerMode === "thread",
        "\"process\" or \"thread\""
      ),
      stopWhenEmpty: c.require(
        "stopWhenEmpty",
        input.stopWhenEmpty ?? base.stopWhenEmpty,
        input.stopWhenEmpty === undefined || typeof input.stopWhenEmpty === "boolean",
        "a boolean"
      )
    })
  )
}

const envConfig = (prefix: string, base: Api.Settings): Config.Config<Api.Settings> => {
  const v = (suffix: string) => `${prefix}_${suffix}`
  const int = (suffix: string, fallback: number, min: number) =>
    Config.integer(v(suffix)).pipe(
      Config.validate({ message: `Expected an integer from ${min} and up`, validation: (n) => n >= min }),
      Config.withDefault(fallback)
    )
  const seconds = (suffix: string, fallback: Duration.Duration) =>
    Config.number(v(suffix)).pipe(
      Config.validate({
        message: "Expected a finite, non-negative number of seconds",
        validation: (n) => Number.isFinite(n) && n >= 0
      }),
      Config.map((n) => Duration.millis(Math.round(n * 1000))),
      Config.withDefault(fallback)
    )
  return Config.all({
    numProcesses: int("NUM_PROCESSES", base.numProcesses, 1),
    maxQueueSize: int("MAX_QUEUE_SIZE", base.maxQueueSize, 1),
    lookupBlockSize: int("LOOKUP_BLOCK_SIZE", base.lookupBlockSize, 1),
    concurrentTasksPerProcess: int("CONCURRENT_TASKS_PER_PROCESS", base.concurrentTasksPerProcess, 1),
    maxJobsPerProcess: int("MAX_JOBS_PER_PROCESS", base.maxJobsPerProcess, 0),
    preventRequeuingTime: seconds("PREVENT_REQUEUING_TIME", base.preventRequeuingTime),
    emptyQueueSleepTime: seconds("EMPTY_QUEUE_SLEEP_TIME", base.emptyQueueSleepTime),
    emptyQueueMaxSleepTime: seconds("EMPTY_QUEUE_MAX_SLEEP_TIME", base.emptyQueueMaxSleepTime),
    fullQueueSleepTime: seconds("FULL_QUEUE_SLEEP_TIME", base.fullQueueSleepTime),
    queueInteractionTimeout: seconds("QUEUE_INTERACTION_TIMEOUT", base.queueInteractionTimeout),
    gracefulShutdownTimeout: seconds("GRACEFUL_SHUTDOWN_TIMEOUT", base.gracefulShutdownTimeout),
    jobTimeout: seconds("JOB_TIMEOUT", base.jobTimeout),
    metricsPort: Config.integer(v("METRICS_PORT")).pipe(
      Config.validate({
        message: "Expected a port from 0 (off) to 65535",
        validation: (n) => n >= 0 && n <= 65535
      }),
      Config.withDefault(base.metricsPort)
    ),
    metricsHost: Config.nonEmptyString(v("METRICS_HOST")).pipe(Config.withDefault(base.metricsHost)),
    workerMode: Config.literal("process", "thread")(v("WORKER_MODE")).pipe(Config.withDefault(base.workerMode)),
    stopWhenEmpty: Config.boolean(v("STOP_WHEN_EMPTY")).pipe(Config.withDefault(base.stopWhenEmpty))
  })
}

/** @internal */
export const resolveSettings = (
  runner: Api.JobRunner.Any,
  overrides?: Api.SettingsInput | undefined
): Effect.Effect<Api.Settings, ConfigError.ConfigError | OptionError> =>
  Effect.gen(function*() {
    const definition = isJobRunner(runner) ? runner.settings : {}
    const fromCode = yield* validateInput(definition, seedDefaults)
    const fromEnv = yield* envConfig(envPrefix(runner.name), fromCode)
    return yield* validateInput(overrides ?? {}, fromEnv)
  })
