// Run after any `npm install` that rewrites package-lock.json: `node scripts/fix-lockfile.mjs`.
// npm install leaves out the optional native packages of other platforms when the registry this machine
// reaches does not serve them (npm/cli#4828), and npm 11's `npm ci` then refuses the lockfile as out of sync.
// This adds their entries (from the registry where it has them, else a placeholder whose os/cpu/libc, read off
// the package name, tells npm ci to skip it on this machine). Locked versions are never changed.
import { execFileSync } from "node:child_process"
import fs from "node:fs"
const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"))
const pkgs = lock.packages
const missing = new Map()
for (const [loc, entry] of Object.entries(pkgs)) {
  for (const [name, spec] of Object.entries(entry.optionalDependencies ?? {})) {
    // resolution: nested first, then up the tree
    let base = loc, found = false
    while (true) {
      const candidate = (base ? base + "/" : "") + "node_modules/" + name
      if (pkgs[candidate]) {
        found = true
        break
      }
      const i = base.lastIndexOf("/node_modules/")
      if (base === "") break
      base = i >= 0 ? base.slice(0, i) : ""
    }
    if (!found && !missing.has(name)) missing.set(name, { spec, dev: !!entry.dev, devOptional: !!entry.devOptional })
  }
}
console.log("missing", missing.size)
for (const [name, { spec, dev }] of missing) {
  let out
  try {
    out = execFileSync("npm", [
      "view",
      `${name}@${spec}`,
      "version",
      "os",
      "cpu",
      "libc",
      "dist.integrity",
      "license",
      "engines",
      "--json"
    ], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
  } catch {
    // Not served by the registry this machine reaches (it carries this platform's native packages only). A
    // placeholder with the platform read off the name lets npm ci see the package is not for this machine.
    const m =
      /-(android|darwin|freebsd|linux|openbsd|openharmony|win32)-(arm64|arm|x64|ia32|loong64|ppc64|riscv64|s390x)(?:-(gnu|musl|gnueabihf|musleabihf|msvc|eabi))?$/
        .exec(name)
    if (!m) {
      console.log("cannot place", name, spec)
      continue
    }
    const entry = { version: spec, cpu: [m[2]] }
    if (dev) entry.dev = true
    if (m[3] && m[3].startsWith("gnu")) entry.libc = ["glibc"]
    if (m[3] && m[3].startsWith("musl")) entry.libc = ["musl"]
    entry.optional = true
    entry.os = [m[1]]
    pkgs["node_modules/" + name] = entry
    console.log("placeholder", name, spec, JSON.stringify(entry))
    continue
  }
  let info = JSON.parse(out)
  if (Array.isArray(info)) info = info[info.length - 1]
  const entry = { version: info.version }
  if (info["dist.integrity"]) entry.integrity = info["dist.integrity"]
  if (info.cpu) entry.cpu = info.cpu
  if (dev) entry.dev = true
  if (info.engines) entry.engines = info.engines
  if (info.libc) entry.libc = info.libc
  if (info.license) entry.license = info.license
  entry.optional = true
  if (info.os) entry.os = info.os
  pkgs["node_modules/" + name] = entry
  console.log("added", name, info.version)
}
// keep npm's order: "" first, then sorted locations
const sorted = { "": pkgs[""] }
for (const k of Object.keys(pkgs).filter((k) => k !== "").sort()) sorted[k] = pkgs[k]
lock.packages = sorted
fs.writeFileSync("package-lock.json", JSON.stringify(lock, null, 2) + "\n")
