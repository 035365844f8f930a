// The DurableQueue contract (test/helpers/durableContract.ts) on the pg store: one file per store, so the four
// stores run in separate forks.
import { contract } from "./helpers/durableContract.js"
import { postgres, requireService } from "./helpers/services.js"

contract("pg", await requireService(postgres))
