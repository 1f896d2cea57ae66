/**
 * The local proxies on the loopback tailnet, used by real clients: curl through SOCKS5 (names
 * resolved on the tailnet) and through HTTP CONNECT reaches the Go peer's HTTP server, and a
 * plain SOCKS5 client gets the TCP echo and the protocol's error codes; a `ws` client reaches a
 * WebSocket server on another of our devices through the socket factory.
 */
import { Tailscale } from "@effect-tailscale/core/Tailscale"
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as NetAddress from "effect/net/NetAddress"
import * as Scope from "effect/Scope"
import { execFile } from "node:child_process"
import * as http from "node:http"
import * as net from "node:net"
import type { Duplex } from "node:stream"
import { promisify } from "node:util"
import { WebSocket, WebSocketServer } from "ws"
import * as TailnetProxy from "../src/TailnetProxy.ts"
import * as TailnetSocket from "../src/TailnetSocket.ts"
import { connect, layer as loopbackTailnet, LoopbackTailnet, untilPeer } from "./tailnet.ts"

const curl = (...args: ReadonlyArray<string>) =>
  Effect.promise(() =>
    promisify(execFile)("curl", ["--silent", "--show-error", "--max-time", "30", ...args]).then(
      ({ stdout }) => ({ ok: true as const, stdout }),
      (error: { code?: number; stderr?: string }) => ({
        ok: false as const,
        stdout: "",
        code: error.code,
        stderr: error.stderr
      })
    )
  )

/** A SOCKS5 CONNECT by hand: the reply code, and the echo of `payload` when connected. */
const socks5 = (port: number, host: string, targetPort: number, payload: string) =>
  Effect.promise(() =>
    new Promise<{ code: number; echoed: string }>((resolve, reject) => {
      const socket = net.connect(port, "127.0.0.1")
      let stage = 0
      let received: Buffer = Buffer.alloc(0)
      let code = -1
      socket.on("error", reject)
      socket.on("connect", () => socket.write(Buffer.from([0x05, 0x01, 0x00])))
      socket.on("close", () => resolve({ code, echoed: received.toString() }))
      socket.on("data", (chunk: Buffer) => {
        if (stage === 0) {
          stage = 1
          const name = Buffer.from(host)
          const portBytes = Buffer.alloc(2)
          portBytes.writeUInt16BE(targetPort)
          socket.write(Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x03, name.length]), name, portBytes]))
        } else if (stage === 1) {
          stage = 2
          code = chunk[1]!
          if (code !== 0) return socket.end()
          socket.write(payload)
          received = chunk.subarray(10)
        } else {
          received = Buffer.concat([received, chunk])
          if (received.length >= payload.length) socket.end()
        }
      })
    })
  )

describe("proxy", () => {
  layer(loopbackTailnet(), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    const withProxy = <A, E>(
      hostname: string,
      body: (proxy: TailnetProxy.TailnetProxyService) => Effect.Effect<A, E, LoopbackTailnet>
    ) =>
      Effect.gen(function*() {
        const tailnet = yield* LoopbackTailnet
        const device = yield* connect({ hostname })
        yield* tailnet.waitForPeer(NetAddress.formatIp(yield* device.ipv4))
        const proxy = yield* TailnetProxy.make().pipe(Effect.provideService(Tailscale, device))
        return yield* body(proxy)
      })

    it.effect("curl through SOCKS5 and through HTTP CONNECT reaches the Go peer by name", () =>
      withProxy("proxy-curl", (proxy) =>
        Effect.gen(function*() {
          const tailnet = yield* LoopbackTailnet
          const url = `http://${tailnet.info.peer.hostname}:${tailnet.info.peer.httpPort}/`
          const viaSocks = yield* curl("--socks5-hostname", `127.0.0.1:${proxy.socksPort}`, url)
          assert.deepStrictEqual(viaSocks, { ok: true, stdout: "hello from echo-peer\n" })
          const viaConnect = yield* curl("--proxytunnel", "--proxy", proxy.httpUrl, url)
          assert.deepStrictEqual(viaConnect, { ok: true, stdout: "hello from echo-peer\n" })
          const byIp = yield* curl(
            "--proxy",
            proxy.socksUrl,
            `http://${tailnet.info.peer.ipv4}:${tailnet.info.peer.httpPort}/`
          )
          assert.deepStrictEqual(byIp, { ok: true, stdout: "hello from echo-peer\n" })
        })))

    it.effect("a SOCKS5 client gets the echo, and refusal and unknown hosts as SOCKS5 reply codes", () =>
      withProxy("proxy-socks", (proxy) =>
        Effect.gen(function*() {
          const tailnet = yield* LoopbackTailnet
          const echo = yield* socks5(
            proxy.socksPort,
            tailnet.info.peer.hostname,
            tailnet.info.peer.tcpEchoPort,
            "through socks"
          )
          assert.deepStrictEqual(echo, { code: 0, echoed: "through socks" })
          const refused = yield* socks5(proxy.socksPort, tailnet.info.peer.ipv4, 1, "x")
          assert.strictEqual(refused.code, 0x05, "connection refused")
          const unknown = yield* socks5(proxy.socksPort, "nobody-here", 80, "x")
          assert.strictEqual(unknown.code, 0x04, "host unreachable")
          const viaConnect = yield* curl("--proxytunnel", "--proxy", proxy.httpUrl, "http://nobody-here:80/")
          assert.isFalse(viaConnect.ok)
        })))

    it.effect("a ws client connects through the socket factory to a WebSocket server on another device", () =>
      Effect.gen(function*() {
        const tailnet = yield* LoopbackTailnet
        const server = yield* connect({ hostname: "ws-server" })
        const client = yield* connect({ hostname: "ws-client" })
        yield* untilPeer(client, yield* server.self, "30 seconds")
        yield* tailnet.waitForPeer(NetAddress.formatIp(yield* client.ipv4))

        // The server: a ws WebSocketServer on an http.Server that takes its connections from the tailnet.
        const listener = yield* server.listen(8090)
        const httpServer = http.createServer()
        const wss = new WebSocketServer({ server: httpServer })
        wss.on("connection", (socket) => socket.on("message", (data) => socket.send(`echo: ${String(data)}`)))
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            wss.close()
            httpServer.close()
          })
        )
        yield* TailnetSocket.serve(listener, httpServer)

        const socketTo = yield* TailnetSocket.makeSocketFactory.pipe(Effect.provideService(Tailscale, client))
        const reply = yield* Effect.promise(() =>
          new Promise<string>((resolve, reject) => {
            const ws = new WebSocket("ws://ws-server:8090/", {
              createConnection:
                ((options: { host: string; port: number }, done: (error: Error | null, socket?: Duplex) => void) => {
                  socketTo(options.host, Number(options.port)).then((socket) => done(null, socket), (error: Error) =>
                    done(error))
                  return undefined
                }) as never
            })
            ws.on("open", () =>
              ws.send("hi"))
            ws.on("message", (data) => {
              resolve(String(data))
              ws.close()
            })
            ws.on("error", reject)
          })
        )
        assert.strictEqual(reply, "echo: hi")
      }))

    it.effect("closing its scope stops the proxies", () =>
      Effect.gen(function*() {
        const tailnet = yield* LoopbackTailnet
        const device = yield* connect({ hostname: "proxy-close" })
        const scope = yield* Scope.make()
        const proxy = yield* TailnetProxy.make().pipe(Effect.provideService(Tailscale, device), Scope.provide(scope))
        yield* Scope.close(scope, Exit.void)
        const after = yield* curl(
          "--socks5-hostname",
          `127.0.0.1:${proxy.socksPort}`,
          `http://${tailnet.info.peer.hostname}:7003/`
        )
        assert.isFalse(after.ok)
      }))
  })
})
