// The DurableQueue contract (test/helpers/durableContract.ts) on the memory store: one file per store, so the four
// stores run in separate forks.
import { contract } from "./helpers/durableContract.js"

contract("memory", true)
