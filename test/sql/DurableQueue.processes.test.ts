/**
 * The SQL durable queue across real processes (issue 6's proof): three runner processes share one PostgreSQL
 * queue of 4,000 jobs; one is killed (SIGKILL) or terminated (SIGTERM) mid-run. Starts and completions are
 * logged by each runner in a file of its own, acknowledgements by a trigger on the queue table (every row that
 * goes from pending to acknowledged, with the acknowledging process's connection name).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as DurableQueue from "../../src/sql/DurableQueue.js"
import { withTable } from "../fixtures/sql-client.js"
import { CEILING_MS, Phases, pollUntil, scaled, STARTUP_MS } from "../helpers/phases.js"
import { spawnFixture } from "../helpers/processes.js"
import { postgres, requireService } from "../helpers/services.js"

const up = await requireService(postgres)

// 4,000, not the 10,000 of the first version: the guarantees are about the jobs the victim held when it stopped
// (its running ones plus its prefetch), which 4,000 jobs give as surely; offering and draining 10,000 took 27 s
// of the SIGKILL test's 34 s at load 16 (the phases it logs). The victim is stopped after 15 % are done, as after 1,500 of 10,000 before.
const JOBS = 4_000

describe.skipIf(!up)("sql DurableQueue across processes (PostgreSQL)", () => {
  for (const signal of ["SIGKILL", "SIGTERM"] as const) {
    it.live(
      `3 runner processes share ${
        JOBS.toLocaleString("en-US")
      } jobs, one gets ${signal} mid-run: every job acknowledged exactly once, done at least once${
        signal === "SIGTERM" ? " and only once" : ""
      }`,
      () =>
        withTable("pg", "dqp", (table) =>
          Effect.gen(function*() {
            const sql = yield* SqlClient.SqlClient
            const prefix = `${table}_b`
            const acks = sql(`${prefix}_acks`)
            const dir = mkdtempSync(join(tmpdir(), "ew-dqp-"))
            yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
            yield* Effect.addFinalizer(() =>
              Effect.ignore(
                sql`DROP TABLE IF EXISTS ${acks}; DROP FUNCTION IF EXISTS ${sql(`${prefix}_ack`)}() CASCADE`.unprepared
              )
            )
            // Deadlines come from the phases measured here (test/helpers/phases.ts), not from fixed guesses.
            const phases = new Phases()
            const queue = yield* DurableQueue.make({
              name: "jobs",
              tableName: table,
              schema: Schema.Number,
              pollInterval: "20 millis",
              leaseDuration: "3 seconds"
            })
            yield* sql`CREATE TABLE ${acks} (id TEXT NOT NULL, app TEXT NOT NULL)`
            yield* sql.unsafe(`CREATE FUNCTION ${prefix}_ack() RETURNS trigger AS $$
            BEGIN INSERT INTO ${prefix}_acks (id, app) VALUES (NEW.id, current_setting('application_name')); RETURN NEW; END
            $$ LANGUAGE plpgsql`)
            yield* sql.unsafe(`CREATE TRIGGER ${prefix}_ack AFTER UPDATE ON ${table} FOR EACH ROW
            WHEN (OLD.state = 0 AND NEW.state = 1) EXECUTE FUNCTION ${prefix}_ack()`)
            yield* Effect.forEach(Array.from({ length: JOBS }, (_, i) => i), (i) => queue.offer(i, { id: `j${i}` }), {
              concurrency: 64,
              discard: true
            })
            expect(yield* queue.size).toBe(JOBS)
            const offers = phases.mark("offers")

            const runners = Array.from(
              { length: 3 },
              () => spawnFixture("test/fixtures/sql-durableRunner.ts", [table, dir])
            )
            yield* Effect.addFinalizer(() => Effect.sync(() => runners.forEach((r) => r.kill())))
            yield* Effect.promise(() => Promise.all(runners.map((r) => r.waitFor((l) => l === "ready", STARTUP_MS))))
            const up = phases.mark("runners up")
            // Each runner's log: "started <id>" and "done <id>" lines, by pid.
            const logs = () =>
              new Map(
                readdirSync(dir).map((
                  file
                ) => [
                  Number(file.split(".")[0]),
                  readFileSync(join(dir, file), "utf8").split("\n").filter((l) => l.length > 0)
                ])
              )
            const doneCount = () =>
              [...logs().values()].reduce((n, lines) => n + lines.filter((l) => l.startsWith("done ")).length, 0)
            const count = (t: typeof acks) =>
              Effect.map(sql<{ n: string }>`SELECT COUNT(*) AS n FROM ${t}`, (rows) => Number(rows[0]!.n))
            // A job costs a few round trips, as an offer does; processes starting show how busy the machine is.
            yield* pollUntil(
              Effect.sync(() => doneCount() >= JOBS * 0.15),
              `the first ${JOBS * 0.15} jobs`,
              scaled({ measuredMs: offers + up, measuredWork: 1, work: 1, factor: 10, floorMs: 15_000 }),
              phases,
              "20 millis"
            )
            const victim = runners[0]!
            // Strike while the victim is running jobs (more started than done in its log), so the kill interrupts
            // some: with 2 ms jobs that is nearly always, but a loaded machine can catch it between fetches.
            const running = () => {
              const lines = logs().get(victim.process.pid!) ?? []
              return lines.filter((l) => l.startsWith("started ")).length >
                lines.filter((l) => l.startsWith("done ")).length
            }
            for (let i = 0; i < 500 && !running(); i++) yield* Effect.sleep("1 millis")
            victim.kill(signal)
            const toStop = phases.mark("to the stop")
            // Stopping drains at most 8 running 2 ms jobs: far less than starting took.
            expect(
              yield* Effect.promise(() =>
                victim.exited(scaled({ measuredMs: up, measuredWork: 1, work: 1, floorMs: 10_000 }))
              )
            ).toBe(
              signal === "SIGKILL" ? "SIGKILL" : 0
            )
            const atStop = yield* count(acks)
            // The rest at the measured rate, with two runners instead of three, after the victim's leases ran out.
            yield* pollUntil(
              Effect.map(count(acks), (n) => n >= JOBS),
              "the remaining jobs",
              scaled({
                measuredMs: toStop * 1.5,
                measuredWork: Math.max(1, atStop),
                work: JOBS - atStop,
                factor: 2,
                extraMs: 3_000
              }),
              phases
            )
            phases.mark("the rest")

            // Every job acknowledged exactly once, and nothing pending or leased.
            const ackRows = yield* sql<{ id: string; app: string }>`SELECT id, app FROM ${acks}`
            expect(atStop).toBeLessThan(JOBS)
            expect(ackRows.length).toBe(JOBS)
            expect(new Set(ackRows.map((r) => r.id)).size).toBe(JOBS)
            expect(yield* queue.size).toBe(0)
            // Every job done at least once.
            const final = logs()
            const doneTimes = new Map<string, number>()
            for (const lines of final.values()) {
              for (const line of lines) {
                if (line.startsWith("done ")) doneTimes.set(line.slice(5), (doneTimes.get(line.slice(5)) ?? 0) + 1)
              }
            }
            expect(doneTimes.size).toBe(JOBS)
            const redone = [...doneTimes.values()].filter((n) => n > 1).length
            const victimPid = victim.process.pid!
            const victimLines = final.get(victimPid) ?? []
            const victimStarted = new Set(victimLines.filter((l) => l.startsWith("started ")).map((l) => l.slice(8)))
            const victimDone = new Set(victimLines.filter((l) => l.startsWith("done ")).map((l) => l.slice(5)))
            // Started and never finished by the victim: the kill (or the stop) caught them running.
            const interrupted = [...victimStarted].filter((id) => !victimDone.has(id))
            const ackedBy = new Map(ackRows.map((r) => [r.id, r.app]))
            const cameBack = [...victimStarted].filter((id) => ackedBy.get(id) !== `runner-${victimPid}`)
            console.log(`${signal}: ${phases}`)
            console.log(
              `${signal}: victim started ${victimStarted.size} jobs, ${interrupted.length} of them interrupted; ${cameBack.length} came back to another runner; ${redone} done twice`
            )
            expect(victimStarted.size).toBeGreaterThan(0)
            if (signal === "SIGTERM") {
              // A terminated runner finishes and acknowledges what it started, and puts back what it had fetched.
              expect(redone).toBe(0)
              expect(interrupted).toEqual([])
              expect(cameBack).toEqual([])
            } else {
              // A killed runner's leased jobs come back after the lease: every job it was running when killed was
              // acknowledged by another runner. At most those and the ones it had finished without its acknowledgement
              // written yet are done twice.
              expect(cameBack).toEqual(expect.arrayContaining(interrupted))
              if (interrupted.length === 0) {
                console.log("SIGKILL: the kill found the victim between jobs (nothing running)")
              }
              expect(redone).toBeLessThanOrEqual(cameBack.length)
              expect(redone).toBeLessThanOrEqual(32)
            }
          }).pipe(Effect.scoped)),
      CEILING_MS
    )
  }
})
