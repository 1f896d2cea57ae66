import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as NetAddress from "effect/net/NetAddress"
import * as Scope from "effect/Scope"
import * as Tailscale from "../src/Tailscale.ts"
import { bytes, reasonOf, text } from "./helpers.ts"
import { memoryBackend, scriptedUdp } from "./memoryBackend.ts"

describe("UDP sockets", () => {
  it.effect("an interrupted receive loses nothing, and the socket closes once with its scope", () =>
    Effect.gen(function*() {
      const udp = scriptedUdp()
      const bound: Array<string> = []
      const { backend } = memoryBackend({
        udpBind: async (ip, port) => {
          bound.push(`[${ip}]:${port}`)
          return udp.socket
        }
      })
      const service = yield* Tailscale.make(backend)
      const scope = yield* Scope.make()
      const socket = yield* service.bindUdp(5300, { address: "ipv6" }).pipe(Scope.provide(scope))
      assert.deepStrictEqual(bound, ["[fd7a:115c:a1e0::2]:5300"], "\"ipv6\" binds the device's own IPv6")
      const first = yield* Effect.forkChild(socket.receive())
      yield* Effect.yieldNow
      yield* Fiber.interrupt(first)
      udp.incoming.resolve({ data: bytes("kept"), ip: "100.64.0.1", port: 7002 })
      const datagram = yield* socket.receive()
      assert.strictEqual(text(datagram.data), "kept")
      assert.strictEqual(NetAddress.formatIp(datagram.from.ip), "100.64.0.1")
      assert.strictEqual(udp.recvCalls, 1, "the interrupted call was reused, not repeated")
      yield* Scope.close(scope, Exit.void)
      yield* socket.close
      assert.strictEqual(udp.closeCalls, 1)
      assert.strictEqual(reasonOf(yield* Effect.exit(socket.receive()))._tag, "DeviceClosed")
    }))
})
