/**
 * The test-side half of test/helpers/fixtures.ts: the folder of this run's compiled fixtures comes from the global
 * setup through vitest's `inject`. Kept apart so the global setup, which runs outside a test worker, does not
 * import vitest's runtime.
 */
import { inject } from "vitest"
import { type Command, commandIn, compiledPath, type Loader } from "./fixtures.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** The folder of this run's compiled fixtures (test/globalSetup.ts). */
    compiledFixturesDir: string
  }
}

/**
 * The command that starts `source` (a `.ts` file under test/fixtures or examples, relative to the repository root
 * or absolute) with `args`: its compiled `.mjs` under plain `node` by default, or through tsx.
 */
export const fixtureCommand = (
  source: string,
  args: ReadonlyArray<string> = [],
  loader: Loader = "compiled"
): Command => {
  const dir = inject("compiledFixturesDir")
  if (loader === "compiled" && (dir === undefined || dir.length === 0)) {
    throw new Error("no compiled fixtures: vitest.config.ts must list test/globalSetup.ts as globalSetup")
  }
  return commandIn(dir, source, args, loader)
}

/** Where the global setup compiled `source` (a `.ts` path relative to the repository root or absolute). */
export const compiledFixture = (source: string): string => compiledPath(inject("compiledFixturesDir"), source)
