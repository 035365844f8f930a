import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { OptionError } from "../src/OptionError.js"
import * as Progress from "../src/Progress.js"
import { fixtureCommand } from "./helpers/compiled.js"

const fakeTerminal = (columns = 60, rows = 20) => {
  const writes: Array<string> = []
  return { writes, output: { write: (s: string) => writes.push(s), isTTY: true, columns, rows } }
}

const HIDE = "\x1b[?25l"
const SHOW = "\x1b[?25h"
// eslint-disable-next-line no-control-regex
const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r/g, "")

describe("Progress", () => {
  it.effect("test layer: total is unknown until the first tracked item; rate, elapsed and ETA follow the Clock", () =>
    Effect.gen(function*() {
      const progress = yield* Progress.Progress
      const scope = yield* Scope.make()
      const session = yield* progress.session({ title: "t", workers: ["a", "b"] }).pipe(Scope.extend(scope))
      let snap = yield* session.snapshot
      assert.isTrue(Option.isNone(snap.total))
      assert.isTrue(Option.isNone(snap.eta))
      assert.deepStrictEqual(snap.workers.map((w) => [w.id, w.description]), [["a", "waiting for work"], [
        "b",
        "waiting for work"
      ]])
      yield* session.addTotal(10)
      yield* session.setWorker("a", "fetching /x")
      yield* TestClock.adjust("2 seconds")
      yield* session.addCompleted(4)
      snap = yield* session.snapshot
      assert.deepStrictEqual(snap.total, Option.some(10))
      assert.strictEqual(snap.rate, 2)
      assert.deepStrictEqual(snap.eta, Option.some(Duration.seconds(3)))
      assert.strictEqual(Duration.toMillis(snap.elapsed), 2000)
      assert.strictEqual(snap.workers[0]!.state, "busy")
      assert.strictEqual(snap.workers[0]!.description, "fetching /x")
      yield* session.setQueueSize(7)
      yield* session.setQueueSize(2)
      snap = yield* session.snapshot
      assert.strictEqual(snap.queueSize, 2)
      assert.strictEqual(snap.queueHighWater, 7)
      yield* Scope.close(scope, Exit.void)
      const recording = yield* Progress.ProgressRecording
      const all = yield* recording.snapshots
      const last = all[all.length - 1]!
      assert.strictEqual(last.state, "done")
      assert.deepStrictEqual(last.workers.map((w) => w.description), ["done", "done"])
      // One snapshot on open and one per report, in order, plus the close.
      assert.strictEqual(all.length, 1 + 5 + 1)
    }).pipe(Effect.provide(Progress.layerTest)))

  it.effect("a session records how it ended: failure message and interruption", () =>
    Effect.gen(function*() {
      const recording = yield* Progress.ProgressRecording
      yield* Effect.scoped(Progress.session({ title: "f" })).pipe(
        Effect.zipRight(Effect.scoped(Effect.zipRight(Progress.session(), Effect.fail(new Error("disk full"))))),
        Effect.exit
      )
      assert.strictEqual((yield* recording.last)!.state, "failed")
      assert.deepStrictEqual((yield* recording.last)!.error, Option.some("disk full"))
      const fiber = yield* Effect.scoped(Effect.zipRight(Progress.session(), Effect.never)).pipe(Effect.fork)
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(fiber)
      assert.strictEqual((yield* recording.last)!.state, "interrupted")
    }).pipe(Effect.provide(Progress.layerTest)))

  it.effect("terminal: frames are bounded by fps however many reports arrive", () =>
    Effect.gen(function*() {
      const { output, writes } = fakeTerminal()
      yield* Effect.scoped(Effect.gen(function*() {
        const session = yield* Progress.session({ workers: 4 })
        for (let step = 0; step < 10; step++) {
          for (let i = 0; i < 1000; i++) yield* session.addCompleted(1)
          yield* TestClock.adjust("100 millis")
        }
      })).pipe(Effect.provide(Progress.layerTerminal({ output, fps: 10 })))
      const frames = writes.filter((w) => w.includes("Overall")).length
      // One frame per 100 ms tick (plus the first and the final frame), not one per report.
      assert.isAtMost(frames, 13)
      assert.isAtLeast(frames, 10)
    }))

  it.effect("terminal: panels fit the terminal's width and height, with a line for the rows left out", () =>
    Effect.gen(function*() {
      const { output, writes } = fakeTerminal(40, 12)
      yield* Effect.scoped(Effect.gen(function*() {
        const session = yield* Progress.session({ workers: 30 })
        yield* session.setWorker(1, "a very long description that cannot possibly fit in forty columns")
        yield* TestClock.adjust("200 millis")
      })).pipe(Effect.provide(Progress.layerTerminal({ output })))
      const frame = writes[writes.length - 2] ?? ""
      const lines = stripAnsi(frame).split("\n").filter((l) => l.length > 0)
      assert.isAtMost(lines.length, 11)
      for (const line of lines) assert.isAtMost([...line].length, 40, line)
      assert.isTrue(lines.some((l) => /… and \d+ more/.test(l)), lines.join("\n"))
    }))

  it.effect("terminal: redraws in place and restores the cursor on success, failure and interruption", () =>
    Effect.gen(function*() {
      for (const ending of ["success", "failure", "interrupt"] as const) {
        const { output, writes } = fakeTerminal()
        const body = Effect.scoped(Effect.gen(function*() {
          const session = yield* Progress.session({ workers: 2 })
          yield* session.setWorker(1, "working")
          yield* TestClock.adjust("300 millis")
          if (ending === "failure") return yield* Effect.fail(new Error("boom"))
          if (ending === "interrupt") return yield* Effect.interrupt
        }))
        yield* Effect.exit(body.pipe(Effect.provide(Progress.layerTerminal({ output }))))
        const text = writes.join("")
        assert.isTrue(text.startsWith(HIDE), ending)
        assert.isTrue(text.endsWith(SHOW), `${ending}: cursor restored`)
        // Later frames move the cursor up over the previous one instead of scrolling.
        assert.include(text, "\x1b[", ending)
        assert.isTrue(writes.slice(1).some((w) => w.includes(`${"\x1b"}[`) && /\[\d+A/.test(w)), ending)
        const final = stripAnsi(writes[writes.length - 2]!)
        assert.include(final, ending === "success" ? "done" : ending === "failure" ? "failed: boom" : "interrupted")
      }
    }))

  it.effect("lines: one plain line per interval, and a final line, without escape codes", () =>
    Effect.gen(function*() {
      const writes: Array<string> = []
      const output = { write: (s: string) => writes.push(s), isTTY: false }
      yield* Effect.scoped(Effect.gen(function*() {
        const session = yield* Progress.session({ title: "crawl", workers: 2 })
        yield* session.addTotal(4)
        yield* TestClock.adjust("1 second")
        yield* session.addCompleted(2)
        yield* TestClock.adjust("1 second")
      })).pipe(Effect.provide(Progress.layerLines({ output, interval: "1 second" })))
      assert.strictEqual(writes.length, 3)
      assert.isFalse(writes.join("").includes("\x1b"))
      assert.include(writes[1]!, "[crawl] 2/4 (50.0%)")
      assert.include(writes[2]!, "done")
    }))

  it.effect("layer picks panels for a TTY and lines otherwise; layerNone writes nothing", () =>
    Effect.gen(function*() {
      const tty = fakeTerminal()
      const pipe: Array<string> = []
      const use = (layer: Layer.Layer<Progress.Progress, unknown>) =>
        Effect.scoped(Effect.zipRight(Progress.session({ workers: 1 }), TestClock.adjust("3 seconds"))).pipe(
          Effect.provide(layer),
          Effect.orDie
        )
      const ci = process.env.CI
      delete process.env.CI
      try {
        yield* use(Progress.layer({ output: tty.output }))
      } finally {
        if (ci !== undefined) process.env.CI = ci
      }
      yield* use(Progress.layer({ output: { write: (s: string) => pipe.push(s) } }))
      assert.include(tty.writes.join(""), HIDE)
      assert.isTrue(pipe.length > 0)
      assert.isFalse(pipe.join("").includes("\x1b"))
      yield* use(Progress.layerNone)
    }))

  it.effect("a graceful stop shows `stopping: N running — Ctrl-C again to force` in panels and lines", () =>
    Effect.gen(function*() {
      const session = yield* Progress.session({ title: "crawl", workers: 3 })
      yield* session.setWorker(1, "GET /a")
      yield* session.setWorker(2, "GET /b")
      yield* session.setStopping!
      const snap = yield* session.snapshot
      assert.strictEqual(snap.state, "stopping")
      const text = "stopping: 2 running — Ctrl-C again to force"
      assert.isTrue(Progress.formatPanels(snap, 80, 20).some((line) => line.includes(text)))
      assert.include(Progress.formatLine(snap), text)
    }).pipe(Effect.scoped, Effect.provide(Progress.layerNone)))

  it.effect("bad options fail with OptionError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(Progress.layerTerminal({ fps: 0 })).pipe(Effect.scoped))
      assert.include(error.message, "Progress: expected `fps`")
      const build = (layer: Layer.Layer<Progress.Progress, OptionError>) =>
        Effect.flip(Layer.build(layer).pipe(Effect.scoped))
      assert.strictEqual((yield* build(Progress.layerTerminal({ fps: 1e12 }))).field, "fps")
      assert.include(
        (yield* build(Progress.layerTerminal({ fsp: 5 } as { fps?: number }))).message,
        "did you mean `fps`?"
      )
      assert.include(
        (yield* build(Progress.layerLines({ intervall: "1 second" } as { interval?: Duration.DurationInput }))).message,
        "did you mean `interval`?"
      )
      assert.strictEqual(
        (yield* build(Progress.layer({ output: { write: 5 } as unknown as Progress.Output }))).field,
        "output"
      )
      assert.strictEqual(
        (yield* build(Progress.layerLines({ output: "stdout" as unknown as Progress.Output }))).field,
        "output"
      )
      // A session's worker count has no error channel: a huge one is a defect carrying the OptionError.
      const exit = yield* Effect.exit(
        Progress.session({ workers: 1e12 }).pipe(Effect.scoped, Effect.provide(Progress.layerNone))
      )
      assert.isTrue(Exit.isFailure(exit) && String(Cause.squash(exit.cause)).includes("`workers`"))
    }))

  it.live(
    "live display in a real terminal (tmux): panels drawn in place, sized to the pane, cursor restored on exit and Ctrl-C",
    () =>
      Effect.gen(function*() {
        const tmux = (() => {
          try {
            return execFileSync("which", ["tmux"]).toString().trim()
          } catch {
            return ""
          }
        })()
        if (tmux === "") {
          console.warn("tmux not installed: skipping the real-terminal check")
          return
        }
        const socket = `efw-progress-${process.pid}`
        const t = (...args: Array<string>) => execFileSync(tmux, ["-L", socket, ...args]).toString()
        const gates = mkdtempSync(join(tmpdir(), "efw-progress-"))
        /**
         * Runs the fixture in a 70×30 pane; its leaves hold until their gate file exists. Once a busy worker is on
         * screen, `interrupt` presses Ctrl-C (the run is certainly still going: the gate is shut), otherwise the gate
         * opens and the run finishes.
         */
        const watch = (name: string, interrupt: boolean, mode = "runMain") =>
          Effect.gen(function*() {
            const gate = join(gates, name)
            const fixture = fixtureCommand("test/fixtures/treeQueue-display.ts", [mode, gate])
            const env = Object.entries(fixture.env).map(([k, v]) => `${k}=${v}`).join(" ")
            // The shell traps SIGINT (a trap, unlike an ignore, is not inherited), so that a child killed by Ctrl-C
            // does not take the shell with it and its status is printed.
            const command = `trap 'true' INT; env -u CI TERM=xterm-256color ${env} ${fixture.command} ${
              fixture.args.join(" ")
            }; echo EXITED $?; sleep 60`
            // remain-on-exit: should the pane's shell end early, its last screen can still be read and shown.
            t(
              "new-session",
              "-d",
              "-s",
              name,
              "-x",
              "70",
              "-y",
              "30",
              command,
              ";",
              "set-option",
              "-t",
              name,
              "remain-on-exit",
              "on"
            )
            let screen = ""
            let sawRunning = false
            let cursorHiddenWhileRunning = false
            for (let i = 0; i < 600 && !screen.includes("EXITED") && !screen.includes("Pane is dead"); i++) {
              yield* Effect.sleep("100 millis")
              screen = t("capture-pane", "-p", "-t", name)
              if (!sawRunning && screen.includes("fetching leaf")) {
                sawRunning = true
                cursorHiddenWhileRunning = t("display", "-p", "-t", name, "#{cursor_flag}").trim() === "0"
                if (interrupt) t("send-keys", "-t", name, "C-c")
                else writeFileSync(gate, "")
              }
            }
            const cursorShown = t("display", "-p", "-t", name, "#{cursor_flag}").trim() === "1"
            return { screen, sawRunning, cursorHiddenWhileRunning, cursorShown }
          })
        try {
          const done = yield* watch("done", false)
          const { screen } = done
          assert.include(screen, "EXITED 0", screen)
          assert.include(screen, "FINISHED 13", screen)
          assert.isTrue(done.sawRunning, "a frame with a busy worker was on screen")
          assert.isTrue(done.cursorHiddenWhileRunning, "cursor hidden while drawing")
          // Drawn in place: exactly one copy of the panels remains, not one per frame.
          assert.strictEqual(screen.split("╭─ Overall").length - 1, 1, screen)
          assert.strictEqual(screen.split("display check · workers").length - 1, 1, screen)
          assert.include(screen, "12/12 (100.0%)", screen)
          for (const line of screen.split("\n")) assert.isAtMost([...line].length, 70)
          assert.isTrue(done.cursorShown, "cursor shown after exit")
          // Ctrl-C in the real terminal: the final frame says so and the cursor comes back.
          const stopped = yield* watch("stopped", true)
          assert.isTrue(stopped.sawRunning, stopped.screen)
          assert.include(stopped.screen, "interrupted", stopped.screen)
          assert.notInclude(stopped.screen, "FINISHED", stopped.screen)
          assert.include(stopped.screen, "EXITED", stopped.screen)
          assert.strictEqual(stopped.screen.split("╭─ Overall").length - 1, 1, stopped.screen)
          assert.isTrue(stopped.cursorShown, "cursor shown after Ctrl-C")
          // A graceful Ctrl-C under runMain's default teardown ends with 130, as a shell expects (it was 0).
          assert.include(stopped.screen, "EXITED 130", stopped.screen)
          // A plain runPromise program has no handler: Ctrl-C kills it, and the cursor still comes back (it stayed
          // hidden: Node runs no exit listener when a signal kills the process).
          const killed = yield* watch("killed", true, "plain")
          assert.isTrue(killed.sawRunning, killed.screen)
          assert.isTrue(killed.cursorHiddenWhileRunning, "cursor hidden while drawing")
          assert.include(killed.screen, "EXITED 130", killed.screen)
          assert.notInclude(killed.screen, "FINISHED", killed.screen)
          assert.isTrue(killed.cursorShown, "cursor shown after Ctrl-C killed a plain program")
        } finally {
          t("kill-server")
          rmSync(gates, { recursive: true, force: true })
        }
      }),
    240_000
  )
})
