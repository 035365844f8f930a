/**
 * The conventions of CONTRIBUTING.md that a program can check: every `@category` in src/ is one of the listed
 * ones, and the list there is the one this test reads.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "..")

const sources = (dir: string): Array<string> =>
  Fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = Path.join(dir, entry.name)
    return entry.isDirectory() ? sources(file) : entry.name.endsWith(".ts") ? [file] : []
  })

describe("conventions (CONTRIBUTING.md)", () => {
  it("every JSDoc @category in src/ is one of CONTRIBUTING.md's list", () => {
    const contributing = Fs.readFileSync(Path.join(root, "CONTRIBUTING.md"), "utf8")
    const table = contributing.slice(contributing.indexOf("## JSDoc categories"))
    const listed = new Set(Array.from(table.matchAll(/^\| `([^`]+)` \|/gm), (m) => m[1]))
    expect(listed.size).toBeGreaterThan(10)
    const unknown: Array<string> = []
    for (const file of sources(Path.join(root, "src"))) {
      for (const [, category] of Fs.readFileSync(file, "utf8").matchAll(/@category (.+)$/gm)) {
        if (!listed.has(category!.trim())) unknown.push(`${Path.relative(root, file)}: ${category}`)
      }
    }
    expect(unknown).toEqual([])
  })
})
