/**
 * A generated website for the crawl demo, served on 127.0.0.1 at a random free port. The same `pages` and `seed`
 * always give the same site, so an interrupted crawl can resume against a fresh server. Some pages are slow,
 * some answer 503 a few times before recovering, some links lead to 404s, and images are shared between pages.
 */
import * as Effect from "effect/Effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"

export interface SitePage {
  readonly links: ReadonlyArray<string>
  readonly images: ReadonlyArray<string>
  readonly delayMs: number
  /** How many requests get 503 before the page is served. */
  readonly failFirst: number
  readonly body: string
}

export interface Site {
  readonly pages: ReadonlyMap<string, SitePage>
  readonly images: ReadonlyMap<string, { readonly bytes: number; readonly failFirst: number }>
}

/** mulberry32: a small deterministic PRNG, so the site is reproducible from the seed. */
const prng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export const pagePath = (i: number) => (i === 0 ? "/" : `/page/${i}.html`)

export const generate = (pageCount: number, seed: number): Site => {
  const rand = prng(seed)
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1))
  const imageCount = Math.max(1, Math.ceil(pageCount / 4))
  const images = new Map<string, { bytes: number; failFirst: number }>()
  for (let k = 0; k < imageCount; k++) {
    images.set(`/img/${k}.png`, { bytes: int(800, 12_000), failFirst: rand() < 0.02 ? 1 : 0 })
  }
  const pages = new Map<string, SitePage>()
  for (let i = 0; i < pageCount; i++) {
    const links = new Set<string>()
    // A spine of forward links keeps every page reachable; random links add cycles and fan-out.
    for (const j of [2 * i + 1, 2 * i + 2]) if (j < pageCount) links.add(pagePath(j))
    for (let n = int(1, 4); n > 0; n--) links.add(pagePath(int(0, pageCount - 1)))
    if (rand() < 0.06) links.add(`/missing/${i}.html`)
    const imgs = new Set<string>()
    for (let n = int(0, 3); n > 0; n--) imgs.add(`/img/${int(0, imageCount - 1)}.png`)
    const delayMs = rand() < 0.03 ? int(200, 700) : 0
    const failFirst = rand() < 0.05 ? int(1, 2) : 0
    const body = [
      `<!doctype html><html><head><title>Page ${i}</title></head><body><h1>Page ${i}</h1>`,
      ...[...links].map((l) => `<p><a href="${l}">${l}</a></p>`),
      ...[...imgs].map((src) => `<img src="${src}" alt="">`),
      `<p>${"Lorem ipsum dolor sit amet. ".repeat(int(10, 60))}</p></body></html>`
    ].join("\n")
    pages.set(pagePath(i), { links: [...links], images: [...imgs], delayMs, failFirst, body })
  }
  return { pages, images }
}

export interface Server {
  readonly base: string
  /** Requests served, by status. */
  readonly served: () => Readonly<Record<number, number>>
}

/** Serves `site` on 127.0.0.1 at a free port for the life of the scope. */
export const serve = (site: Site) =>
  Effect.acquireRelease(
    Effect.async<{ server: http.Server; base: string; served: Record<number, number> }>((resume) => {
      const failures = new Map<string, number>()
      const served: Record<number, number> = {}
      const reply = (res: http.ServerResponse, status: number, type: string, body: string | Buffer) => {
        served[status] = (served[status] ?? 0) + 1
        res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body) })
        res.end(body)
      }
      const shouldFail = (path: string, failFirst: number) => {
        const seen = failures.get(path) ?? 0
        failures.set(path, seen + 1)
        return seen < failFirst
      }
      const server = http.createServer((req, res) => {
        const path = (req.url ?? "/").split("?")[0]!
        const page = site.pages.get(path)
        if (page !== undefined) {
          if (shouldFail(path, page.failFirst)) return reply(res, 503, "text/plain", "busy, try again")
          const send = () => reply(res, 200, "text/html", page.body)
          return page.delayMs > 0 ? void setTimeout(send, page.delayMs) : send()
        }
        const image = site.images.get(path)
        if (image !== undefined) {
          if (shouldFail(path, image.failFirst)) return reply(res, 503, "text/plain", "busy, try again")
          return reply(res, 200, "image/png", Buffer.alloc(image.bytes, 0x42))
        }
        reply(res, 404, "text/plain", "not found")
      })
      server.keepAliveTimeout = 5_000
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({ server, base: `http://127.0.0.1:${port}`, served }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ base, served }): Server => ({ base, served: () => ({ ...served }) })))
