#!/usr/bin/env node
// The `effect-workers` executable. The published package runs the compiled CLI that the build puts next to this
// file (dist/node/cli.js). In the repository's sources there is no cli.js: the tsx loader is registered and
// cli.ts runs. tsx is also registered, when it can be found, for a TypeScript runner module
// (`effect-workers run ./jobs.ts`); the reader processes then get it too.
import { existsSync } from "node:fs"

const compiled = new URL("./cli.js", import.meta.url)
const fromSources = !existsSync(compiled)
const typescriptModule = process.argv.slice(2).some((arg) => /\.[cm]?tsx?$/.test(arg))

if (fromSources) {
  const { register } = await import("tsx/esm/api")
  register()
} else if (typescriptModule) {
  try {
    const { register } = await import("tsx/esm/api")
    register()
  } catch {
    // Without tsx, Node loads the module itself (Node 23.6+ strips types) or says why it cannot.
  }
}

const { main } = await import(fromSources ? new URL("./cli.ts", import.meta.url).href : compiled.href)
main(process.argv)
