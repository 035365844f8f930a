/**
 * TypeId-based guards for the library's errors. Each error class carries
 * `Symbol.for("effect-workers/<Module>/<Error>")` on its prototype, the same string as its Schema identifier, and its guard looks for that symbol: unlike
 * `instanceof` it also recognises an error made by another copy of effect-workers in the same program (two versions
 * installed side by side), and `instanceof` keeps working as before.
 */

/** Brands `ctor`'s prototype with `Symbol.for(id)` and returns the guard for it. @internal */
export const typeIdGuard = <T>(
  ctor: abstract new(...args: never) => T,
  id: string
): (u: unknown) => u is T => {
  const typeId = Symbol.for(id)
  Object.defineProperty(ctor.prototype, typeId, { value: typeId })
  return (u: unknown): u is T => typeof u === "object" && u !== null && typeId in u
}
