import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as NetAddress from "effect/net/NetAddress"
import * as Socket from "effect/socket/Socket"
import * as Stream from "effect/Stream"
import {
  backendError,
  type RawDatagram,
  type RawTcpListener,
  type RawTcpStream,
  type RawUdpSocket
} from "../src/Backend.ts"
import { toDatagramSocket, toSocket, toSocketServer } from "../src/EffectSocket.ts"
import * as Tailscale from "../src/Tailscale.ts"
import { memoryBackend, scriptedStream } from "./memoryBackend.ts"

const text = (data: Uint8Array) => new TextDecoder().decode(data)

describe("effect/socket adapters", () => {
  it.effect("a TcpStream is a Socket: chunks, then a clean close at end of stream", () =>
    Effect.gen(function*() {
      const script = scriptedStream()
      const { backend } = memoryBackend({ tcpConnect: async () => script.stream })
      const service = yield* Tailscale.make(backend)
      const socket = toSocket(yield* service.dial("100.64.0.1:7001"))
      const writer = yield* socket.writer
      yield* writer.write("hello")
      yield* writer.writeAll([new Uint8Array([1, 2])])
      assert.deepStrictEqual(script.written.map((b) => Array.from(b)), [[104, 101, 108, 108, 111], [1, 2]])
      script.answer(0, new TextEncoder().encode("a"))
      script.answer(1, null)
      const reader = yield* socket.reader
      assert.strictEqual(text((yield* reader.pull)[0] as Uint8Array), "a")
      const end = yield* Effect.flip(reader.pull)
      assert.strictEqual(end.reason._tag, "SocketCloseError")
      assert.strictEqual(end.reason._tag === "SocketCloseError" ? end.reason.code : 0, 1000)
      yield* writer.write(new Socket.CloseEvent())
      assert.strictEqual(script.closeCalls, 1)
    }))

  it.effect("Socket.toStream reads a tailnet connection to its end", () =>
    Effect.gen(function*() {
      const script = scriptedStream()
      const { backend } = memoryBackend({ tcpConnect: async () => script.stream })
      const service = yield* Tailscale.make(backend)
      const socket = toSocket(yield* service.dial("100.64.0.1:7001"))
      script.answer(0, new TextEncoder().encode("x"))
      script.answer(1, new TextEncoder().encode("y"))
      script.answer(2, null)
      const chunks = yield* Stream.runCollect(Socket.toStream(socket).pipe(Stream.catch(() => Stream.empty)))
      assert.deepStrictEqual(chunks.map(text), ["x", "y"])
    }))

  it.live("a SocketServer runs the handler per connection and closes each after it", () =>
    Effect.gen(function*() {
      const connections = [scriptedStream(), scriptedStream()]
      const waiting = [
        Promise.withResolvers<RawTcpStream>(),
        Promise.withResolvers<RawTcpStream>(),
        Promise.withResolvers<RawTcpStream>()
      ]
      let accepted = 0
      const listener: RawTcpListener = {
        accept: () => waiting[accepted++]!.promise,
        localAddress: { ip: "100.64.0.2", port: 9000 },
        close: () => {}
      }
      const { backend } = memoryBackend({ tcpListen: async () => listener })
      const service = yield* Tailscale.make(backend)
      const server = toSocketServer(yield* service.listen(9000, { address: "ipv4" }))
      assert.strictEqual(server.address._tag, "InetAddressV4")
      const handled: Array<string> = []
      const running = yield* Effect.forkChild(server.run((socket) =>
        Effect.scoped(Effect.gen(function*() {
          const reader = yield* socket.reader
          const chunk = (yield* reader.pull)[0] as Uint8Array
          handled.push(text(chunk))
          const writer = yield* socket.writer
          yield* writer.write(chunk)
        }))
      ))
      connections.forEach((connection, index) => {
        connection.answer(0, new TextEncoder().encode(`request ${index}`))
        waiting[index]!.resolve(connection.stream)
      })
      for (let i = 0; i < 50 && handled.length < 2; i++) yield* Effect.sleep("1 millis")
      assert.deepStrictEqual(handled.sort(), ["request 0", "request 1"])
      assert.deepStrictEqual(connections.map((c) => c.written.map(text)), [["request 0"], ["request 1"]])
      assert.deepStrictEqual(connections.map((c) => c.closeCalls), [1, 1])
      yield* Fiber.interrupt(running)
    }))

  it.effect("a UdpSocket is a DatagramSocket: addressed datagrams both ways, size errors typed", () =>
    Effect.gen(function*() {
      const incoming = Promise.withResolvers<RawDatagram>()
      const sent: Array<string> = []
      const raw: RawUdpSocket = {
        recv: () => incoming.promise,
        send: async (ip, port, data) => {
          if (data.length > 4096) throw backendError("MESSAGE_TOO_LARGE", "UDP send", "too big")
          sent.push(`${ip}:${port} ${text(data)}`)
        },
        localAddress: { ip: "100.64.0.2", port: 5000 },
        close: () => {}
      }
      const { backend } = memoryBackend({ udpBind: async () => raw })
      const service = yield* Tailscale.make(backend)
      const socket = toDatagramSocket(yield* service.bindUdp(5000))
      const reader = yield* socket.reader
      assert.strictEqual(NetAddress.formatInet(reader.address), "100.64.0.2:5000")
      incoming.resolve({ data: new TextEncoder().encode("hi"), ip: "100.64.0.1", port: 7002 })
      const [datagram] = yield* reader.pull
      assert.strictEqual(text(datagram!.payload), "hi")
      assert.strictEqual(NetAddress.formatInet(datagram!.address), "100.64.0.1:7002")
      const writer = yield* socket.writer
      yield* writer.write({ payload: "back", address: datagram })
      yield* writer.writeAll([{ payload: "two", address: datagram!.address }])
      assert.deepStrictEqual(sent, ["100.64.0.1:7002 back", "100.64.0.1:7002 two"])
      const big = yield* Effect.exit(writer.write({ payload: new Uint8Array(5000), address: datagram!.address }))
      assert.isTrue(Exit.isFailure(big))
      const error = Exit.isFailure(big) ? Exit.findErrorOption(big) : undefined
      const reason = error && error._tag === "Some" ? error.value.reason : undefined
      assert.strictEqual(reason?._tag, "DatagramSocketWriteError")
      assert.strictEqual(reason?._tag === "DatagramSocketWriteError" ? reason.kind : "", "MessageTooLarge")
      const unaddressed = yield* Effect.exit(writer.write({ payload: "x" }))
      assert.isTrue(Exit.isFailure(unaddressed))
    }))
})
