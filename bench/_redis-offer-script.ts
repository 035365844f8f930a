/**
 * Redis's own time in the offer script, per job: the script timed inside Redis (`TIME` at its start and end, so
 * the machine's load and the client do not count), batches of `--batch` generated-id jobs into a fresh queue,
 * `--batches` a round, `--rounds` rounds with the variants interleaved. Variants: this tree's script, the same
 * without the `since` write (issue #15's job listing), and `--baseline <dir>`'s script (a checkout before #11).
 *
 *   npx tsx bench/_redis-offer-script.ts [--batch 1000] [--batches 20] [--rounds 5] [--baseline /tmp/perf16]
 */
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as scripts from "../src/internal/durableQueue/redisScripts.js"
import { keysOf } from "../src/internal/durableQueue/redisStore.js"
import { arg, cleanup, median } from "./_shared.js"

const BATCH = arg("batch", 1_000)
const BATCHES = arg("batches", 20)
const ROUNDS = arg("rounds", 5)
const baseDir = process.argv.includes("--baseline") ? process.argv[process.argv.indexOf("--baseline") + 1] : undefined

/** The script's body with its elapsed µs returned instead of its reply. */
const timedLua = (lua: string): string =>
  `local __t = redis.call('TIME')\n${
    // The script's last line returns its reply (1, or the events channel's subscriber count): kept as a local.
    lua.replace(
      /return ([^\n]*)\s*$/,
      "local __r = $1"
    )}\nlocal __e = redis.call('TIME')\nreturn (tonumber(__e[1]) - tonumber(__t[1])) * 1000000 + tonumber(__e[2]) - tonumber(__t[2])`

interface Variant {
  readonly name: string
  readonly run: (redis: Redis, prefix: string) => Promise<number>
}

const ours = (name: string, lua: string): Variant => ({
  name,
  run: async (redis, prefix) => {
    const k = keysOf(prefix, "jobs")
    const keys = scripts.offer.keys.map((key) => k[key])
    const channels = scripts.offer.channels.map((channel) => k[channel])
    let us = 0
    for (let b = 0; b < BATCHES; b++) {
      const args: Array<string> = []
      for (let i = 0; i < BATCH; i++) args.push(randomUUID(), `{"n":${i}}`, "")
      us += Number(await redis.eval(timedLua(lua), keys.length, ...keys, ...args, ...channels))
    }
    return us / (BATCH * BATCHES)
  }
})

const main = async () => {
  const redis = new Redis({ host: "127.0.0.1", port: 6379 })
  const variants: Array<Variant> = [
    ours("this tree's offer script", scripts.offer.lua),
    ours("without the since write", scripts.offer.lua.replace("bulk('HSET', since, entered)", ""))
  ]
  if (baseDir !== undefined) {
    const base = await import(`${baseDir}/src/internal/durableQueue/redisScripts.ts`) as { offer: string }
    variants.push({
      name: `baseline (${baseDir})`,
      run: async (redis, prefix) => {
        let us = 0
        for (let b = 0; b < BATCHES; b++) {
          const args: Array<string> = []
          for (let i = 0; i < BATCH; i++) args.push(randomUUID(), `{"n":${i}}`, "0")
          const keys = ["waiting", "payloads", "ids", "wake"].map((s) => `${prefix}${s}`)
          us += Number(await redis.eval(timedLua(base.offer), 4, ...keys, ...args))
        }
        return us / (BATCH * BATCHES)
      }
    })
  }
  const results = variants.map(() => [] as Array<number>)
  for (let r = 0; r < ROUNDS; r++) {
    for (let v = 0; v < variants.length; v++) {
      const i = (v + r) % variants.length
      const prefix = `offer-script-${randomUUID()}:`
      results[i]!.push(await variants[i]!.run(redis, prefix))
      await cleanup(redis, `${prefix}*`)
    }
  }
  for (let v = 0; v < variants.length; v++) {
    console.log(
      `${variants[v]!.name}: ${median(results[v]!).toFixed(2)} µs of Redis per job (median of ${ROUNDS}; ${
        results[v]!.map((x) => x.toFixed(2)).join(", ")
      })`
    )
  }
  await redis.quit()
}

main().then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
