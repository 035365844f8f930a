#!/usr/bin/env node
// The `effect-workers` executable. The package ships TypeScript sources, so the tsx loader is registered first
// (it also lets `effect-workers run ./jobs.ts` load a TypeScript runner module); compiled builds import cli.js.
import { existsSync } from "node:fs"

const compiled = new URL("./cli.js", import.meta.url)
if (existsSync(compiled)) {
  const { main } = await import(compiled.href)
  main(process.argv)
} else {
  const { register } = await import("tsx/esm/api")
  register()
  const { main } = await import(new URL("./cli.ts", import.meta.url).href)
  main(process.argv)
}
