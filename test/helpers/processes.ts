/**
 * Child processes for the cross-process tests: spawn a fixture (compiled once per run by the global setup, started
 * with plain `node`; see test/helpers/fixtures.ts), read its stdout lines, wait for a line or its exit with a
 * deadline, and kill whatever is left in `finally`.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as Fs from "node:fs"
import { fixtureCommand } from "./compiled.js"
import type { Loader } from "./fixtures.js"

export interface Child {
  readonly process: ChildProcess
  readonly lines: Array<string>
  readonly stderr: Array<string>
  /** Resolves with the first line matching, fails after `timeoutMs`. */
  readonly waitFor: (match: (line: string) => boolean, timeoutMs?: number) => Promise<string>
  /** Resolves with the exit code (or signal name), fails after `timeoutMs`. */
  readonly exited: (timeoutMs?: number) => Promise<number | string>
  readonly kill: (signal?: NodeJS.Signals) => void
}

/**
 * Starts `fixture` (a `.ts` path under test/fixtures or examples) with `args`: its compiled form under `node`, or
 * through tsx with `loader: "tsx"`.
 */
export const spawnFixture = (
  fixture: string,
  args: ReadonlyArray<string>,
  options: { readonly loader?: Loader | undefined; readonly env?: Record<string, string> | undefined } = {}
): Child => {
  const command = fixtureCommand(fixture, args, options.loader)
  const child = spawn(command.command, command.args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...command.env, ...options.env }
  })
  const lines: Array<string> = []
  const stderr: Array<string> = []
  const listeners = new Set<() => void>()
  let buffer = ""
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    buffer += chunk
    let index
    while ((index = buffer.indexOf("\n")) >= 0) {
      lines.push(buffer.slice(0, index))
      buffer = buffer.slice(index + 1)
    }
    for (const listener of listeners) listener()
  })
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => stderr.push(chunk))
  let exit: number | string | undefined
  child.on("exit", (code, signal) => {
    exit = code ?? signal ?? "unknown"
    for (const listener of listeners) listener()
  })
  const waitUntil = <A>(check: () => A | undefined, what: string, timeoutMs: number) =>
    new Promise<A>((resolve, reject) => {
      const listener = () => {
        const found = check()
        if (found !== undefined) {
          clearTimeout(timer)
          listeners.delete(listener)
          resolve(found)
        }
      }
      const timer = setTimeout(() => {
        listeners.delete(listener)
        reject(
          new Error(`${fixture}: timed out waiting for ${what}; stdout: ${lines.join("|")}; stderr: ${stderr.join("")}`)
        )
      }, timeoutMs)
      listeners.add(listener)
      listener()
    })
  return {
    process: child,
    lines,
    stderr,
    waitFor: (match, timeoutMs = 45_000) => waitUntil(() => lines.find(match), "a line", timeoutMs),
    exited: (timeoutMs = 45_000) => waitUntil(() => exit, "its exit", timeoutMs),
    kill: (signal = "SIGKILL") => {
      if (exit === undefined) child.kill(signal)
    }
  }
}

/** The JSON lines a fixture appended to `file` (none when it wrote nothing yet). */
export const readJsonLines = <A>(file: string): Array<A> =>
  Fs.existsSync(file)
    ? Fs.readFileSync(file, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l) as A)
    : []

/** Whether a process with this pid exists (signal 0 checks without sending anything). */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
