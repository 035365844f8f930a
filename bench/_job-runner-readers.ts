/**
 * The runners of bench/job-runner.ts, in a module of their own: the benchmark compiles it (with the reader entry)
 * once per run, so reader processes start from JavaScript as a user's compiled runner does, and load only this
 * (not piscina and tinypool, which the benchmark imports). The writers are module state of the benchmark's own
 * instance; reader processes never call them.
 */
import { createHash } from "node:crypto"
import * as JobRunner from "../src/JobRunner.js"

/** Items 0..total-1, `desired` at a time. */
export const counter = (total: number) => {
  let next = 0
  return (desired: number) => {
    const n = Math.min(desired, total - next)
    return Array.from({ length: Math.max(0, n) }, () => next++)
  }
}

export const writers = { cpu: counter(0), trivial: counter(0), defaults: counter(0) }

export const hash = (payload: string, rounds: number): string => {
  let digest = payload
  for (let i = 0; i < rounds; i++) digest = createHash("sha256").update(digest).digest("hex")
  return digest
}

export const cpuRunner = JobRunner.make({
  name: "benchCpu",
  module: import.meta.url,
  writer: (desired) => writers.cpu(desired),
  reader: (n: number) => {
    hash(`payload-${n}`, Number(process.env.BENCH_ROUNDS ?? "20000"))
  },
  settings: {
    numProcesses: 2,
    concurrentTasksPerProcess: 1,
    maxJobsPerProcess: 0,
    preventRequeuingTime: 0,
    stopWhenEmpty: true
  }
})

export const trivialRunner = JobRunner.make({
  name: "benchTrivial",
  module: import.meta.url,
  writer: (desired) => writers.trivial(desired),
  reader: (n: number) => n + 1,
  settings: {
    numProcesses: 2,
    concurrentTasksPerProcess: 64,
    maxQueueSize: 4000,
    lookupBlockSize: 2000,
    maxJobsPerProcess: 0,
    preventRequeuingTime: 0,
    stopWhenEmpty: true
  }
})

export const defaultsRunner = JobRunner.make({
  name: "benchDefaults",
  module: import.meta.url,
  writer: (desired) => writers.defaults(desired),
  reader: (n: number) => n + 1,
  // The seed's defaults but for the end: the run stops when the writer is empty.
  settings: { stopWhenEmpty: true }
})
