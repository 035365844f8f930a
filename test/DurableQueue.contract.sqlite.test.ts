// The DurableQueue contract (test/helpers/durableContract.ts) on the sqlite store: one file per store, so the four
// stores run in separate forks.
import { contract } from "./helpers/durableContract.js"

contract("sqlite", true)
