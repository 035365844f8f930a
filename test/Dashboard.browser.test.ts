/**
 * The dashboard in a real browser: Debian's chromium (`/usr/bin/chromium`, installed by `.ci/run` when missing)
 * driven by playwright-core, one browser for the file. Queues on Redis and PostgreSQL; every wait is for text or
 * an attribute on the page, bounded by a timeout. Without chromium a local run skips loudly; under CI=true it fails.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { Redis } from "ioredis"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type BrowserContext, chromium, type Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as DashboardNode from "../src/DashboardNode.js"
import type * as DurableQueueApi from "../src/DurableQueue.js"
import * as RedisDurableQueue from "../src/redis/DurableQueue.js"
import * as RedisClient from "../src/redis/RedisClient.js"
import * as SqlDurableQueue from "../src/sql/DurableQueue.js"
import { clientLayer, uniqueTable } from "./fixtures/sql-client.js"
import { postgres, redis, requireService } from "./helpers/services.js"

const CHROMIUM = "/usr/bin/chromium"
const hasChromium = existsSync(CHROMIUM)
if (!hasChromium) {
  const message = `${CHROMIUM} is missing (apt-get install -y chromium)`
  if (process.env.CI === "true") throw new Error(`${message}: the dashboard's browser tests cannot run under CI=true`)
  console.warn(
    `\n!!!!!!!!\n!!! ${message}: SKIPPING the dashboard's browser tests (they fail under CI=true)\n!!!!!!!!\n`
  )
}
const up = hasChromium && (await requireService(redis)) && (await requireService(postgres))

/**
 * Bounded waits on the page: nets for an element that should come (a wrong page fails on what it shows, or here
 * after the wait). 8 s was short at load 20 (three tests failed on clicks and the test's 30 s while chromium, the
 * servers and the queues shared two cores with everything else).
 */
const WAIT = { timeout: 30_000 }

let context: BrowserContext
let profile: string

beforeAll(async () => {
  if (!up) return
  profile = mkdtempSync(join(tmpdir(), "ew-chromium-"))
  // A persistent context is how playwright takes a --user-data-dir of our own; the flags keep chromium from
  // reaching out (this machine's network refuses it) and from needing a sandbox or a GPU.
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync"
    ]
  })
}, 20_000)

afterAll(async () => {
  await context?.close()
  if (profile !== undefined) rmSync(profile, { recursive: true, force: true })
})

const layers = Layer.mergeAll(RedisClient.layer(), clientLayer("pg"))

/** Runs `f` with a scope for the queues and the dashboard, closed (and the Redis keys / table dropped) after. */
const withScope = async (
  f: (
    run: <A, E>(effect: Effect.Effect<A, E, Scope.Scope | RedisClient.RedisClient | SqlClient.SqlClient>) => Promise<A>,
    ids: { prefix: string; table: string }
  ) => Promise<void>
) => {
  const scope = Effect.runSync(Scope.make())
  const runtime = await Effect.runPromise(Layer.toRuntime(layers).pipe(Scope.extend(scope)))
  const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope | RedisClient.RedisClient | SqlClient.SqlClient>) =>
    Effect.runPromise(Effect.provide(Scope.extend(effect, scope), runtime))
  const ids = { prefix: `test:dash:${crypto.randomUUID()}:`, table: uniqueTable("dash") }
  try {
    await f(run, ids)
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await Effect.runPromise(
      Effect.gen(function*() {
        yield* Effect.promise(async () => {
          const raw = new Redis()
          const keys = await raw.keys(`${ids.prefix}*`)
          if (keys.length > 0) await raw.del(...keys)
          await raw.quit()
        })
        const sql = yield* SqlClient.SqlClient
        yield* Effect.ignore(
          sql`DROP TABLE IF EXISTS ${sql(ids.table)}, ${sql(`${ids.table}_paused`)}, ${sql(`${ids.table}_marks`)}`
        )
      }).pipe(Effect.scoped, Effect.provide(layers), Effect.ignore)
    )
  }
}

const settings = { schema: Schema.String, pollInterval: "20 millis", leaseDuration: "2 seconds" } as const

const redisQueue = (prefix: string, name: string, maxAttempts = 3) =>
  RedisDurableQueue.make({ ...settings, name, prefix, maxAttempts })
const pgQueue = (tableName: string, name: string, maxAttempts = 3) =>
  SqlDurableQueue.make({ ...settings, name, tableName, maxAttempts })

/** The number shown for `state` in the card of queue `name`. */
const count = (page: Page, name: string, state: string) =>
  page.locator(`[data-queue="${name}"] [data-count="${state}"] b`)

/** The rows of the job table of queue `name` while it shows `state`. */
const listed = (page: Page, name: string, state: string) =>
  page.locator(`[data-queue="${name}"] tr[data-listed="${state}"]`)

const open = async (url: string) => {
  const page = await context.newPage()
  const dialogs: Array<string> = []
  page.on("dialog", (dialog) => {
    dialogs.push(dialog.message())
    void dialog.dismiss()
  })
  await page.goto(url)
  await page.locator("#live.on").waitFor(WAIT)
  return { page, dialogs }
}

const offerAll = (queue: DurableQueueApi.DurableQueue<string>, n: number, label: string) =>
  Effect.forEach(Array.from({ length: n }, (_, i) => `${label}-${i}`), (id) => queue.offer(id, { id }), {
    discard: true
  })

describe.skipIf(!up)("Dashboard in chromium", { timeout: 120_000 }, () => {
  it("shows the counts of queues on Redis and PostgreSQL and updates them as jobs finish, without reloading", async () => {
    await withScope(async (run, { prefix, table }) => {
      const onRedis = await run(redisQueue(prefix, "on-redis"))
      const onPg = await run(pgQueue(table, "on-pg"))
      await run(Effect.all([offerAll(onRedis, 12, "r"), offerAll(onPg, 9, "p")]))
      const { url } = await run(
        DashboardNode.serve({ queues: [onRedis, onPg], interval: "200 millis", readOnly: true })
      )
      const { page } = await open(url)
      await expect.poll(() => count(page, "on-redis", "waiting").textContent(), WAIT).toBe("12")
      await expect.poll(() => count(page, "on-pg", "waiting").textContent(), WAIT).toBe("9")
      // The job table (waiting by default) lists them in the order they will run, with the oldest one's age.
      await expect.poll(() => listed(page, "on-pg", "waiting").count(), WAIT).toBe(9)
      expect(await listed(page, "on-redis", "waiting").first().locator("td").first().textContent()).toBe("r-0")
      await expect.poll(() => count(page, "on-redis", "oldest").textContent(), WAIT).toMatch(/^\d+(\.\d)? s$/)
      // Jobs finish one at a time: the page follows without a reload.
      await run(Effect.forkScoped(onRedis.run(() => Effect.sleep("20 millis"))))
      await run(Effect.forkScoped(onPg.run(() => Effect.sleep("20 millis"))))
      await expect.poll(() => count(page, "on-redis", "waiting").textContent(), WAIT).toBe("0")
      await expect.poll(() => count(page, "on-pg", "waiting").textContent(), WAIT).toBe("0")
      await expect.poll(() => count(page, "on-redis", "done").textContent(), WAIT).toBe("12")
      await expect.poll(() => count(page, "on-pg", "done").textContent(), WAIT).toBe("9")
      await expect.poll(() => count(page, "on-pg", "oldest").textContent(), WAIT).toBe("–")
      // The done tab lists what the store keeps.
      await page.locator(`[data-queue="on-pg"] a[data-tab="done"]`).click(WAIT)
      await expect.poll(() => listed(page, "on-pg", "done").count(), WAIT).toBe(9)
      expect(await listed(page, "on-pg", "waiting").count()).toBe(0)
      await page.locator(`[data-queue="on-redis"] a[data-tab="done"]`).click(WAIT)
      await expect.poll(() => listed(page, "on-redis", "done").count(), WAIT).toBe(12)
      // The rates, sampled without job events: every job done counted over the last minute.
      await expect.poll(() => page.locator(`[data-queue="on-redis"] .muted`).first().textContent(), WAIT)
        .toContain("12 done")
    })
  })

  it("pausing from the button stops jobs from starting until Resume", async () => {
    await withScope(async (run, { prefix }) => {
      const queue = await run(redisQueue(prefix, "pausable"))
      let started = 0
      await run(Effect.forkScoped(queue.run(() => Effect.sync(() => void started++))))
      const { url } = await run(DashboardNode.serve({ queues: [queue], interval: "200 millis", openActions: true }))
      const { page } = await open(url)
      await page.locator(`[data-queue="pausable"] button[data-action="pause"]`).click(WAIT)
      await page.locator(`[data-queue="pausable"] [data-paused="true"]`).waitFor(WAIT)
      expect(await run(queue.isPaused)).toBe(true)
      await run(offerAll(queue, 5, "held"))
      await expect.poll(() => count(page, "pausable", "waiting").textContent(), WAIT).toBe("5")
      // Two more snapshots after the page saw the five waiting: the runner polls every 20 ms, so a lease would
      // have shown by then.
      const seen = Date.now()
      await expect.poll(async () => Number(await page.locator("[data-queue]").first().getAttribute("data-at")), WAIT)
        .toBeGreaterThan(seen + 400)
      expect(started).toBe(0)
      expect(await count(page, "pausable", "waiting").textContent()).toBe("5")
      // Cancel from the job table: one fewer to run.
      await listed(page, "pausable", "waiting").filter({ hasText: "held-2" }).locator(`button[data-action="cancel"]`)
        .click(WAIT)
      await expect.poll(() => count(page, "pausable", "waiting").textContent(), WAIT).toBe("4")
      await page.locator(`[data-queue="pausable"] button[data-action="resume"]`).click(WAIT)
      await expect.poll(() => count(page, "pausable", "waiting").textContent(), WAIT).toBe("0")
      await expect.poll(() => started, WAIT).toBe(4)
      expect(Option.map(await run(queue.status("held-2")), (s) => s.state)).toEqual(Option.some("cancelled"))
    })
  })

  it("retries a dead letter from its button and sees it done; a hostile id is shown as text, never run", async () => {
    await withScope(async (run, { table }) => {
      const queue = await run(pgQueue(table, "letters", 1))
      const hostile = `<img src=x onerror=alert(1)>`
      let attempts = 0
      await run(
        Effect.forkScoped(
          queue.run(() => ++attempts === 1 ? Effect.fail(`first try fails <script>alert(2)</script>`) : Effect.void)
        )
      )
      const { url } = await run(DashboardNode.serve({ queues: [queue], interval: "200 millis", openActions: true }))
      const { dialogs, page } = await open(url)
      await run(queue.offer("x", { id: hostile }))
      const letter = page.locator(`[data-queue="letters"] table.dead tr`).filter({ hasText: hostile })
      await letter.waitFor(WAIT)
      expect(await letter.locator("td").first().textContent()).toBe(hostile)
      expect(await letter.textContent()).toContain("<script>alert(2)</script>")
      expect(await page.locator("img, script:not([src])").count()).toBe(0)
      await letter.locator(`button[data-action="retry"]`).click(WAIT)
      await page.locator(`[data-queue="letters"] a[data-tab="done"]`).click(WAIT)
      await listed(page, "letters", "done").filter({ hasText: hostile }).waitFor(WAIT)
      await expect.poll(() => count(page, "letters", "dead").textContent(), WAIT).toBe("0")
      const status = await run(queue.status(hostile))
      expect(Option.map(status, (s) => s.state)).toEqual(Option.some("done"))
      expect(dialogs).toEqual([])
    })
  })

  it("read-only, and actions without an authorize hook or openActions: no button, action routes answer 403", async () => {
    await withScope(async (run, { prefix }) => {
      const queue = await run(redisQueue(prefix, "watched", 1))
      await run(Effect.forkScoped(queue.run(() => Effect.fail("always"))))
      await run(offerAll(queue, 2, "bad"))
      const readOnly = await run(
        DashboardNode.serve({ queues: [queue], interval: "200 millis", readOnly: true, openActions: true })
      )
      const closed = await run(DashboardNode.serve({ queues: [queue], interval: "200 millis" }))
      const hooked = await run(
        DashboardNode.serve({
          queues: [queue],
          interval: "200 millis",
          authorize: (request, access) => access === "view" || request.headers["x-user"] === "admin"
        })
      )
      for (const { url } of [readOnly, closed]) {
        const { page } = await open(url)
        await expect.poll(() => count(page, "watched", "dead").textContent(), WAIT).toBe("2")
        await page.locator(`[data-queue="watched"] table.dead tr[data-job]`).nth(1).waitFor(WAIT)
        expect(await page.locator("button").count()).toBe(0)
        const answer = await page.evaluate(async (base) => {
          const response = await fetch(`${base}api/action`, {
            method: "POST",
            headers: { "content-type": "application/json", "x-dashboard-action": "1" },
            body: JSON.stringify({ queue: "0", action: "retryAll" })
          })
          return { status: response.status, body: (await response.json()) as { readonly error?: unknown } }
        }, url)
        expect(answer.status).toBe(403)
        expect(String(answer.body.error)).toMatch(/read-only|actions are closed/)
        await page.close()
      }
      const post = (headers: Record<string, string>) =>
        fetch(`${hooked.url}api/action`, {
          method: "POST",
          headers: { "x-dashboard-action": "1", ...headers },
          body: JSON.stringify({ queue: "0", action: "pause" })
        })
      expect((await post({})).status).toBe(403)
      expect((await post({ "x-user": "admin" })).status).toBe(200)
      expect(await run(queue.isPaused)).toBe(true)
    })
  })

  it("hostile input on the action route: 4xx naming what was wrong, and the dashboard still serves", async () => {
    await withScope(async (run, { prefix }) => {
      const queue = await run(redisQueue(prefix, "target"))
      const { url } = await run(DashboardNode.serve({ queues: [queue], openActions: true }))
      const post = async (
        body: string | Uint8Array,
        headers: Record<string, string> = { "x-dashboard-action": "1" }
      ) => {
        const response = await fetch(`${url}api/action`, { method: "POST", headers, body })
        return [response.status, ((await response.json()) as { readonly error?: string }).error ?? ""] as const
      }
      expect(await post(JSON.stringify({ queue: "0", action: "pause" }), {})).toEqual([
        403,
        expect.stringContaining("x-dashboard-action")
      ])
      expect(await post(JSON.stringify({ queue: "7", action: "pause" }))).toEqual([
        404,
        expect.stringContaining("no queue")
      ])
      expect(await post("{not json")).toEqual([400, "the body is not JSON"])
      expect(await post(JSON.stringify({ queue: "0", action: "explode" }))).toEqual([
        400,
        expect.stringContaining("`action` must be one of")
      ])
      expect(await post(JSON.stringify({ queue: "0", action: "cancel", id: "" }))).toEqual([
        400,
        expect.stringContaining("`id`")
      ])
      expect(await post(JSON.stringify({ queue: "0", action: "retry", id: "nope" }))).toEqual([
        404,
        expect.stringContaining("no dead letter")
      ])
      expect(await post(new Uint8Array(200_000).fill(97))).toEqual([413, expect.stringContaining("more than 16384")])
      const page = await fetch(url)
      expect(page.status).toBe(200)
      expect(page.headers.get("content-security-policy")).toContain("script-src 'self'")
    })
  })
})
