/**
 * A PostgreSQL restart during a run, on a throwaway server of our own (initdb into a temp directory, its own
 * loopback port, started and stopped with pg_ctl) so the machine's PostgreSQL is never touched: the DurableQueue
 * runner reconnects and goes on, and nothing is lost. Skipped loudly when initdb is not installed (it fails under
 * CI=true only if initdb exists but the test cannot run).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { execFile, execFileSync } from "node:child_process"
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import * as DurableQueue from "../../src/sql/DurableQueue.js"
import { clientLayer } from "../fixtures/sql-client.js"
import { freePort } from "../helpers/net.js"

const run = promisify(execFile)

const bin = (() => {
  const root = "/usr/lib/postgresql"
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a))
  const found = versions.map((v) => join(root, v, "bin")).find((dir) =>
    existsSync(join(dir, "initdb")) && existsSync(join(dir, "pg_ctl"))
  )
  return found
})()

// initdb refuses to run as root: as root, the server's commands run as the `postgres` user.
const owner = (() => {
  if (process.getuid?.() !== 0) return { ok: true as const, uid: undefined, gid: undefined }
  try {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim())
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim())
    execFileSync("runuser", ["--help"], { stdio: "ignore" })
    return { ok: true as const, uid, gid }
  } catch {
    return { ok: false as const, uid: undefined, gid: undefined }
  }
})()

const canRun = bin !== undefined && owner.ok
if (!canRun) {
  const message = bin === undefined
    ? "initdb/pg_ctl are not installed (looked under /usr/lib/postgresql/*/bin): the PostgreSQL restart test cannot run"
    : "running as root without a `postgres` user or runuser: the PostgreSQL restart test cannot run initdb"
  if (process.env.CI === "true" && bin !== undefined) throw new Error(message)
  console.warn(`\n!!! ${message}: SKIPPING it${bin !== undefined ? " (it fails under CI=true)" : ""}\n`)
}

const pgCommand = (command: string, args: ReadonlyArray<string>, timeout = 30_000) => {
  const path = join(bin!, command)
  return owner.uid === undefined
    ? run(path, args, { timeout })
    : run("runuser", ["-u", "postgres", "--", path, ...args], { timeout })
}

describe.skipIf(!canRun)("PostgreSQL restart (a throwaway server)", () => {
  it.live(
    "DurableQueue: PostgreSQL restarts mid-run; the runner reconnects and every job is done, none lost",
    () =>
      Effect.gen(function*() {
        const dir = mkdtempSync(join(tmpdir(), "ew-pg-"))
        const data = join(dir, "data")
        if (owner.uid !== undefined) chownSync(dir, owner.uid, owner.gid!)
        const port = yield* Effect.promise(freePort)
        const start = () =>
          pgCommand("pg_ctl", [
            "-D",
            data,
            "-l",
            join(dir, "server.log"),
            "-w",
            "-t",
            "30",
            "-o",
            `-p ${port} -c listen_addresses=127.0.0.1 -k ${dir} -c fsync=off`,
            "start"
          ])
        const stop = (mode: "fast" | "immediate") =>
          pgCommand("pg_ctl", ["-D", data, "-m", mode, "-w", "-t", "30", "stop"])
        yield* Effect.addFinalizer(() =>
          Effect.promise(() => stop("immediate").catch(() => undefined)).pipe(
            Effect.ensuring(Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
          )
        )
        yield* Effect.promise(() =>
          pgCommand("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"], 60_000)
        )
        yield* Effect.promise(start)
        yield* Effect.promise(() =>
          pgCommand("psql", [
            "-h",
            "127.0.0.1",
            "-p",
            String(port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            "CREATE DATABASE test"
          ])
        )

        yield* Effect.gen(function*() {
          const queue = yield* DurableQueue.make({
            name: "jobs",
            schema: Schema.Number,
            pollInterval: "10 millis",
            leaseDuration: "1 second"
          })
          const jobs = 400
          yield* Effect.forEach(Array.from({ length: jobs }, (_, i) => i), (i) => queue.offer(i, { id: `j${i}` }), {
            concurrency: 16,
            discard: true
          })
          const done = new Set<number>()
          const runs = new Map<number, number>()
          let completions = 0
          const concurrency = 8
          yield* Effect.forkScoped(
            queue.run(
              (n) =>
                Effect.zipRight(
                  Effect.sleep("10 millis"),
                  Effect.sync(() => (completions++, done.add(n), runs.set(n, (runs.get(n) ?? 0) + 1)))
                ),
              { concurrency }
            )
          )
          for (let i = 0; i < 3_000 && done.size < 50; i++) yield* Effect.sleep("5 millis")
          // Restart: a fast shutdown (connections are cut, the data is checkpointed), down for a moment, then up on
          // the same port and directory.
          // What this runner holds at the stop, read from the table itself: a session of the test locks the table
          // against writes (the runner's leases and acknowledgements wait on it), reads the leased rows, and the
          // server is stopped while the lock is held, so no lease or acknowledgement lands between the read and the
          // stop (its own transaction then fails at COMMIT: the connection is cut).
          const sql = yield* SqlClient.SqlClient
          let held: ReadonlySet<string> = new Set()
          let stopping = 0
          yield* sql.withTransaction(Effect.gen(function*() {
            yield* sql`LOCK TABLE effect_workers_queue IN EXCLUSIVE MODE`
            const rows = yield* sql<{ readonly id: string }>`SELECT id FROM effect_workers_queue
              WHERE queue_name = 'jobs' AND state = 0 AND acquired_by IS NOT NULL`
            held = new Set(rows.map((row) => row.id))
            stopping = yield* Clock.currentTimeMillis
            yield* Effect.promise(() => stop("fast"))
          })).pipe(Effect.exit)
          expect(stopping).toBeGreaterThan(0)
          const during = done.size
          yield* Effect.sleep("500 millis")
          yield* Effect.promise(start)
          const outage = (yield* Clock.currentTimeMillis) - stopping
          const restarted = done.size
          for (let i = 0; i < 3_000 && done.size < jobs; i++) yield* Effect.sleep("10 millis")
          expect(during).toBeLessThan(jobs)
          expect(restarted).toBeLessThan(jobs)
          expect(done.size).toBe(jobs)
          for (let i = 0; i < 500 && (yield* Effect.orDie(queue.size)) > 0; i++) yield* Effect.sleep("10 millis")
          expect(yield* queue.size).toBe(0)
          // Acknowledgements that failed during the outage are retried and the jobs' leases kept: a job is run again
          // only when its lease lapsed during the outage before its acknowledgement got through, so only a job this
          // runner held at the stop (the outage, stop, 500 ms, start, outlasts the 1 s lease at any load). How many
          // it holds is not a constant: the 8 running, what it leased ahead (up to 256 per SQL lease, two leases in
          // flight on PostgreSQL), and the finished jobs whose acknowledgement had not landed: a fixed bound of 40
          // failed with 105 redone beside 15-22 busy processes. So each job run twice must be one the table showed
          // leased at the stop, and none may run three times.
          const redone = [...runs].filter(([, n]) => n > 1).map(([n]) => `j${n}`)
          console.log(
            `PostgreSQL restart: ${
              completions - jobs
            } of ${jobs} jobs run twice, ${held.size} held at the stop (outage ${outage} ms)`
          )
          expect(redone.length).toBe(completions - jobs)
          expect(redone.filter((id) => !held.has(id))).toEqual([])
          expect([...runs.values()].every((n) => n <= 2)).toBe(true)
        }).pipe(Effect.scoped, Effect.provide(clientLayer("pg", String(port))))
      }).pipe(Effect.scoped),
    90_000
  )
})
