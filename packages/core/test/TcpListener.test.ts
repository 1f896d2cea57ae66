import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import type { RawTcpListener } from "../src/Backend.ts"
import * as Tailscale from "../src/Tailscale.ts"
import { memoryBackend, scriptedStream } from "./memoryBackend.ts"

describe("TCP listeners", () => {
  it.effect("an interrupted accept keeps the connection for the next accept", () =>
    Effect.gen(function*() {
      const incoming = Promise.withResolvers<ReturnType<typeof scriptedStream>["stream"]>()
      let accepts = 0
      let listenerClosed = 0
      const listener: RawTcpListener = {
        accept: () => {
          accepts++
          return incoming.promise
        },
        localAddress: { ip: "100.64.0.2", port: 9000 },
        close: () => {
          listenerClosed++
        }
      }
      const seen: Array<string> = []
      const { backend } = memoryBackend({
        tcpListen: async (ip, port) => {
          seen.push(`${ip}:${port}`)
          return listener
        }
      })
      const service = yield* Tailscale.make(backend)
      const scope = yield* Scope.make()
      const bound = yield* service.listen(9000, { address: "ipv4" }).pipe(Scope.provide(scope))
      assert.deepStrictEqual(seen, ["100.64.0.2:9000"], "binds only the named family")
      const first = yield* Effect.forkChild(Effect.scoped(bound.accept()))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(first)
      const connection = scriptedStream()
      incoming.resolve(connection.stream)
      const accepted = yield* bound.accept().pipe(Scope.provide(scope))
      assert.strictEqual(accepted.remoteAddress.port, 7001)
      assert.strictEqual(accepts, 1)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(listenerClosed, 1)
      assert.strictEqual(connection.closeCalls, 1)
    }))
})

describe("TCP listeners on both families", () => {
  it.effect("listen binds both of the device's addresses by default and closes both", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      let closed = 0
      const { backend } = memoryBackend({
        tcpListen: async (ip, port) => {
          seen.push(`${ip}:${port}`)
          return { accept: () => new Promise(() => {}), localAddress: { ip, port }, close: () => void closed++ }
        }
      })
      const service = yield* Tailscale.make(backend)
      yield* Effect.scoped(service.listen(9000))
      assert.strictEqual(seen.length, 2)
      assert.strictEqual(seen[0], "100.64.0.2:9000")
      assert.match(seen[1]!, /^fd7a:.*:9000$/)
      assert.strictEqual(closed, 2)
    }))
})
