// The DurableQueue contract (test/helpers/durableContract.ts) on the redis store: one file per store, so the four
// stores run in separate forks.
import { contract } from "./helpers/durableContract.js"
import { redis, requireService } from "./helpers/services.js"

contract("redis", await requireService(redis))
