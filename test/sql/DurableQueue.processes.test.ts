/**
 * The SQL durable queue across real processes (issue 6's proof): three runner processes share one PostgreSQL
 * queue of 10,000 jobs; one is killed (SIGKILL) or terminated (SIGTERM) mid-run. Completions are counted in a
 * table of their own (written by the handler), acknowledgements by a trigger on the queue table (every row that
 * goes from pending to acknowledged, with the acknowledging process's connection name).
 */
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as DurableQueue from "../../src/sql/DurableQueue.js"
import { withTable } from "../fixtures/sql-client.js"
import { spawnFixture } from "../helpers/processes.js"
import { postgres, requireService } from "../helpers/services.js"

const up = await requireService(postgres)

const JOBS = 10_000

describe.skipIf(!up)("sql DurableQueue across processes (PostgreSQL)", () => {
  for (const signal of ["SIGKILL", "SIGTERM"] as const) {
    it.live(`3 runner processes share ${JOBS.toLocaleString("en-US")} jobs, one gets ${signal} mid-run: every job acknowledged exactly once, done at least once${signal === "SIGTERM" ? " and only once" : ""}`, () =>
      withTable("pg", "dqp", (table) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const prefix = `${table}_b`
          const [started, done, acks] = [sql(`${prefix}_started`), sql(`${prefix}_done`), sql(`${prefix}_acks`)]
          yield* Effect.addFinalizer(() =>
            Effect.ignore(sql`DROP TABLE IF EXISTS ${started}, ${done}, ${acks}; DROP FUNCTION IF EXISTS ${sql(`${prefix}_ack`)}() CASCADE`.unprepared)
          )
          const queue = yield* DurableQueue.make({ name: "jobs", tableName: table, schema: Schema.Number, pollInterval: "20 millis", leaseDuration: "3 seconds" })
          yield* sql`CREATE TABLE ${started} (id TEXT NOT NULL, pid INTEGER NOT NULL)`
          yield* sql`CREATE TABLE ${done} (id TEXT NOT NULL, pid INTEGER NOT NULL)`
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

          const runners = Array.from({ length: 3 }, () => spawnFixture("test/fixtures/sql-durableRunner.ts", [table, prefix]))
          yield* Effect.addFinalizer(() => Effect.sync(() => runners.forEach((r) => r.kill())))
          yield* Effect.promise(() => Promise.all(runners.map((r) => r.waitFor((l) => l === "ready"))))
          const count = (t: typeof done) => Effect.map(sql<{ n: string }>`SELECT COUNT(*) AS n FROM ${t}`, (rows) => Number(rows[0]!.n))
          for (let i = 0; i < 3_000 && (yield* count(done)) < 1_500; i++) yield* Effect.sleep("10 millis")
          const victim = runners[0]!
          victim.kill(signal)
          expect(yield* Effect.promise(() => victim.exited())).toBe(signal === "SIGKILL" ? "SIGKILL" : 0)
          const atStop = yield* count(acks)
          for (let i = 0; i < 4_500 && (yield* count(acks)) < JOBS; i++) yield* Effect.sleep("10 millis")

          // Every job acknowledged exactly once, and nothing pending or leased.
          const ackRows = yield* sql<{ id: string; app: string }>`SELECT id, app FROM ${acks}`
          expect(atStop).toBeLessThan(JOBS)
          expect(ackRows.length).toBe(JOBS)
          expect(new Set(ackRows.map((r) => r.id)).size).toBe(JOBS)
          expect(yield* queue.size).toBe(0)
          // Every job done at least once.
          const doneRows = yield* sql<{ id: string; n: string }>`SELECT id, COUNT(*) AS n FROM ${done} GROUP BY id`
          expect(doneRows.length).toBe(JOBS)
          const redone = doneRows.filter((r) => Number(r.n) > 1).length
          const victimPid = victim.process.pid!
          const victimStarted = new Set(
            (yield* sql<{ id: string }>`SELECT DISTINCT id FROM ${started} WHERE pid = ${victimPid}`).map((r) => r.id)
          )
          const ackedBy = new Map(ackRows.map((r) => [r.id, r.app]))
          const cameBack = [...victimStarted].filter((id) => ackedBy.get(id) !== `runner-${victimPid}`)
          console.log(`${signal}: victim started ${victimStarted.size} jobs; ${cameBack.length} came back to another runner; ${redone} done twice`)
          expect(victimStarted.size).toBeGreaterThan(0)
          if (signal === "SIGTERM") {
            // A terminated runner finishes and acknowledges what it started, and puts back what it had fetched.
            expect(redone).toBe(0)
            expect(cameBack).toEqual([])
          } else {
            // A killed runner's leased jobs come back after the lease. At most the jobs it was running or had
            // finished without its acknowledgement written yet are done twice.
            expect(cameBack.length).toBeGreaterThan(0)
            expect(redone).toBeLessThanOrEqual(cameBack.length)
            expect(redone).toBeLessThanOrEqual(32)
          }
        }).pipe(Effect.scoped)
      ), 90_000)
  }
})
