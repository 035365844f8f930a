/**
 * `layerInline`: every "reader process" runs in the current process, through the same reader host and the same
 * channel as a real one. Only the transport differs: messages are structured-cloned (so an item a process could
 * not receive fails here too) and delivered on the next microtask. `kill` interrupts the host's running `Effect`
 * readers and releases its context, and the reader's `exited` completes, as with a process; readers inherit the
 * caller's services, so `TestClock` drives them.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { ReaderChannel } from "./channel.js"
import { startReaderHost } from "./readerHost.js"
import { ReaderSpawner, type SpawnRequest } from "./spawner.js"

let inlineIds = 0

const spawnInline = ({ runner, settings }: SpawnRequest) =>
  Effect.gen(function*() {
    const processId = -++inlineIds
    const channel = new ReaderChannel(runner, `inline reader ${processId}`, (message) => {
      const copy: unknown = structuredClone(message)
      // Posts happen only once the handle is returned, after `host` is set.
      queueMicrotask(() => host?.receive(copy))
    }, settings.concurrentTasksPerProcess)
    const host = yield* startReaderHost(runner, settings, {
      send: (message) => queueMicrotask(() => channel.receive(message)),
      later: queueMicrotask,
      // After the messages sent before it, as a process's exit follows its last message.
      exit: (code) => queueMicrotask(() => channel.gone(code === 137 ? "was killed" : `exited with code ${code}`))
    })
    const kill = Effect.sync(() => {
      if (channel.isDead) return
      channel.gone("was killed")
      host?.kill()
    })
    yield* Effect.addFinalizer(() => channel.close(kill))
    yield* channel.ready
    return channel.handle(processId, kill)
  })

/** @internal */
export const layerInline: Layer.Layer<ReaderSpawner> = Layer.succeed(ReaderSpawner, { spawn: spawnInline })
