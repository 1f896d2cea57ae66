/**
 * This package's device on the real loopback tailnet, beyond the behaviours both tailnets share
 * (testing's conformance suite). The whole path against a Tailscale node we did not write:
 * `NodeTailscale` (tailscale-rs through the addon and the Effect service), its Node adapters and
 * a Go tsnet peer, on a real control server and DERP relay on loopback, inside the network
 * namespace `npm test` creates.
 */
import { Tailscale } from "@effect-tailscale/core/Tailscale"
import { defaults, TailscaleTimeouts } from "@effect-tailscale/core/Timeouts"
import { readExactly, sha256 } from "@effect-tailscale/test-support/bytes"
import { failureText, reasonTag } from "@effect-tailscale/test-support/reasons"
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Logger from "effect/Logger"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as References from "effect/References"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import * as http from "node:http"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as NodeTailscale from "../src/NodeTailscale.ts"
import * as TailnetAgent from "../src/TailnetAgent.ts"
import * as TailnetHttpServer from "../src/TailnetHttpServer.ts"
import * as TailnetSocket from "../src/TailnetSocket.ts"
import { connect, layer as loopbackTailnet, LoopbackTailnet, untilControl } from "./tailnet.ts"

const pattern = (bytes: number) => {
  const out = new Uint8Array(bytes)
  for (let i = 0; i < bytes; i++) out[i] = i % 251
  return out
}

/** A device that the Go peer can already see, so the first packets are not dropped. */
const joined = (hostname: string) =>
  Effect.gen(function*() {
    const tailnet = yield* LoopbackTailnet
    const device = yield* connect({ hostname })
    const ipv4 = yield* device.ipv4
    yield* tailnet.waitForPeer(NetAddress.formatIp(ipv4))
    return { device, ipv4: NetAddress.formatIp(ipv4), tailnet }
  })

const readAll = (device: { readonly stream: Stream.Stream<Uint8Array, unknown> }) =>
  Stream.runFold(device.stream, () => [] as Array<Uint8Array>, (chunks, chunk) => {
    chunks.push(chunk)
    return chunks
  }).pipe(Effect.map((chunks) => Buffer.concat(chunks)))

describe("loopback tailnet", () => {
  layer(loopbackTailnet(), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    // First in the file: trusting a CA is process-wide, and this file runs in its own process.
    it.effect("control's private CA: ControlUnreachable at once, naming the issuer, until caFile trusts it", () =>
      Effect.gen(function*() {
        const tailnet = yield* LoopbackTailnet
        const over = {
          controlUrl: tailnet.info.controlUrl,
          authKey: Redacted.make(tailnet.info.authKey),
          logFilter: "off"
        }
        const started = Date.now()
        const refused = yield* Effect.exit(NodeTailscale.make({ ...over, hostname: "private-ca-untrusted" }))
        assert.isBelow(Date.now() - started, 5_000)
        assert.strictEqual(reasonTag(refused), "ControlUnreachable")
        const text = failureText(refused)
        assert.include(text, "TLS handshake failed")
        assert.include(text, "UnknownIssuer")

        const device = yield* NodeTailscale.make({ ...over, hostname: "private-ca", caFile: tailnet.info.caFile })
        const ipv4 = yield* device.ipv4
        const peer = yield* tailnet.waitForPeer(NetAddress.formatIp(ipv4))
        assert.strictEqual(peer.hostname, "private-ca")
      }))

    it.effect("a caFile that holds no certificate is InvalidArgument naming the field", () =>
      Effect.gen(function*() {
        const dir = yield* Effect.acquireRelease(
          Effect.promise(() => mkdtemp(join(tmpdir(), "ca-file-"))),
          (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
        )
        const file = join(dir, "not-a-ca.pem")
        yield* Effect.promise(() => writeFile(file, "hello\n"))
        const tailnet = yield* LoopbackTailnet
        const exit = yield* Effect.exit(NodeTailscale.make({ controlUrl: tailnet.info.controlUrl, caFile: file }))
        assert.strictEqual(reasonTag(exit), "InvalidArgument")
        assert.include(failureText(exit), "caFile: holds no PEM certificate")
      }))

    it.effect("connecting has one limit: a control server that never answers is Timeout at the connect timeout", () =>
      Effect.gen(function*() {
        // Accepts TCP and says nothing, like a control server that hangs (reading, so that it
        // sees the device hang up).
        const silent = net.createServer((socket) => socket.resume())
        yield* Effect.acquireRelease(
          Effect.promise(() => new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve))),
          () => Effect.promise(() => new Promise<void>((resolve) => silent.close(() => resolve())))
        )
        const port = (silent.address() as net.AddressInfo).port
        const started = Date.now()
        const exit = yield* Effect.exit(
          NodeTailscale.make({ hostname: "silent-control", controlUrl: `https://127.0.0.1:${port}` }).pipe(
            Effect.provideService(TailscaleTimeouts, { ...defaults, connect: "1 second" })
          )
        )
        const elapsed = Date.now() - started
        assert.strictEqual(reasonTag(exit), "Timeout")
        // The addon's timer, not core's backstop two seconds later.
        assert.include(failureText(exit), "timed out after 1000 ms")
        assert.isBelow(elapsed, 2_500)
      }))

    it.effect("a control URL nobody listens on is ControlUnreachable", () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(
          NodeTailscale.make({ hostname: "nowhere", controlUrl: "https://127.0.0.1:9" })
        )
        assert.strictEqual(reasonTag(exit), "ControlUnreachable")
      }))

    it.effect("TCP: the Go peer dials our listener and we read its bytes", () =>
      Effect.gen(function*() {
        const { device, ipv4, tailnet } = yield* joined("tcp-listen-test")
        const listener = yield* device.listen(9000)
        const served = yield* Effect.forkScoped(Effect.scoped(Effect.gen(function*() {
          const connection = yield* listener.accept()
          const chunk = Option.getOrThrow(yield* connection.read())
          yield* connection.write(chunk)
          return Buffer.from(chunk).toString()
        })))
        const reply = yield* tailnet.dialFromPeer(`${ipv4}:9000`, "from the go peer")
        assert.strictEqual(Buffer.from(reply).toString(), "from the go peer")
        assert.strictEqual(yield* Fiber.join(served), "from the go peer")
      }))

    it.effect("TCP: 16 MiB arrives intact in both directions", () =>
      Effect.gen(function*() {
        const { device, ipv4, tailnet } = yield* joined("tcp-bulk-test")
        const size = 16 * 1024 * 1024
        // Outbound: through the Go peer's echo, hashed as it comes back.
        const payload = randomBytes(size)
        const stream = yield* device.dial(`${tailnet.info.peer.ipv4}:${tailnet.info.peer.tcpEchoPort}`)
        const echoed = yield* Effect.forkScoped(readExactly(stream, size))
        for (let offset = 0; offset < size; offset += 256 * 1024) {
          yield* stream.write(payload.subarray(offset, offset + 256 * 1024))
        }
        assert.deepStrictEqual(yield* Fiber.join(echoed), { bytes: size, sha256: sha256(payload) })
        // Inbound: the Go peer sends the pattern to our listener and closes.
        const listener = yield* device.listen(9001)
        const inbound = yield* Effect.forkScoped(Effect.scoped(Effect.gen(function*() {
          const connection = yield* listener.accept()
          const received = yield* readAll(connection)
          return { bytes: received.length, sha256: sha256(received) }
        })))
        const sent = yield* tailnet.sendFromPeer(`${ipv4}:9001`, size)
        assert.strictEqual(sent.sha256, sha256(pattern(size)))
        assert.deepStrictEqual(yield* Fiber.join(inbound), sent)
      }), 180_000)

    it.effect("UDP: datagrams echo through the Go peer; an oversize one is MessageTooLarge", () =>
      Effect.gen(function*() {
        const { device, tailnet } = yield* joined("udp-test")
        const socket = yield* device.bindUdp(5300)
        const to = { ip: tailnet.info.peer.ipv4, port: tailnet.info.peer.udpEchoPort }
        // The first datagrams can race the WireGuard handshake: resend until one comes back.
        let echoed: string | undefined
        for (let attempt = 0; attempt < 20 && echoed === undefined; attempt++) {
          yield* socket.send(to, `ping ${attempt}`)
          const reply = yield* Effect.option(socket.receive({ timeout: "1 second" }))
          if (Option.isSome(reply)) {
            echoed = Buffer.from(reply.value.data).toString()
            assert.strictEqual(NetAddress.formatIp(reply.value.from.ip), to.ip)
            assert.strictEqual(reply.value.from.port, to.port)
          }
        }
        assert.match(echoed ?? "", /^ping \d+$/)
        const big = yield* Effect.exit(socket.send(to, new Uint8Array(5000)))
        assert.strictEqual(reasonTag(big), "MessageTooLarge")
      }))

    it.effect("HTTP: an http.Server on our listener answers the Go peer", () =>
      Effect.gen(function*() {
        const { device, ipv4, tailnet } = yield* joined("http-server-test")
        const listener = yield* device.listen(8080)
        const server = http.createServer((request, response) => {
          response.end(`hello ${request.url} from ${request.socket.remoteAddress}`)
        })
        yield* TailnetSocket.serve(listener, server)
        const fetched = yield* tailnet.fetchFromPeer(`http://${ipv4}:8080/page`)
        assert.strictEqual(fetched.status, 200)
        assert.strictEqual(fetched.body, `hello /page from ${tailnet.info.peer.ipv4}`)
      }))

    it.effect("HTTP: an Effect HttpServer on our tailnet port answers the Go peer", () =>
      Effect.gen(function*() {
        const { device, ipv4, tailnet } = yield* joined("effect-http-test")
        const app = Effect.gen(function*() {
          const request = yield* HttpServerRequest.HttpServerRequest
          return HttpServerResponse.text(`effect says hi to ${request.url}`)
        })
        yield* HttpServer.serveEffect(app).pipe(
          Effect.provideService(
            HttpServer.HttpServer,
            yield* TailnetHttpServer.make(8081).pipe(
              Effect.provideService(Tailscale, device)
            )
          )
        )
        const fetched = yield* tailnet.fetchFromPeer(`http://${ipv4}:8081/effect`)
        assert.deepStrictEqual(fetched, { status: 200, body: "effect says hi to /effect" })
      }))

    it.effect("HTTP: http.request through the TailnetAgent reaches the Go peer's server", () =>
      Effect.gen(function*() {
        const { device, tailnet } = yield* joined("http-client-test")
        const agent = yield* TailnetAgent.makeAgent.pipe(Effect.provideService(Tailscale, device))
        const get = (host: string) =>
          Effect.callback<{ status: number; body: string }, Error>((resume) => {
            const request = http.get({ host, port: tailnet.info.peer.httpPort, path: "/", agent }, (response) => {
              const chunks: Array<Buffer> = []
              response.on("data", (chunk: Buffer) => chunks.push(chunk))
              response.on(
                "end",
                () =>
                  resume(Effect.succeed({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }))
              )
            })
            request.on("error", (error) => resume(Effect.fail(error)))
          })
        for (const host of [tailnet.info.peer.hostname, tailnet.info.peer.ipv4]) {
          const response = yield* get(host)
          assert.deepStrictEqual(response, { status: 200, body: "hello from echo-peer\n" })
        }
      }))

    it.effect("identity: the same key file gives the same node key and stable id", () =>
      Effect.gen(function*() {
        const dir = yield* Effect.acquireRelease(
          Effect.promise(() => mkdtemp(join(tmpdir(), "ts-identity-"))),
          (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
        )
        const keyFile = join(dir, "keys.json")
        const identity = Effect.scoped(Effect.gen(function*() {
          const device = yield* connect({ hostname: "identity-test", keyFile, ephemeral: false })
          const self = yield* device.self
          return { nodeKey: self.nodeKey, stableId: self.stableId }
        }))
        const first = yield* identity
        const second = yield* identity
        assert.deepStrictEqual(second, first)
      }))

    it.effect("closing the scope shuts the device down gracefully, and says so", () =>
      Effect.gen(function*() {
        const reports: Array<unknown> = []
        const capture = Logger.make((options) => {
          if (String(options.message) === "tailscale device shut down") {
            reports.push(options.fiber.getRef(References.CurrentLogAnnotations))
          }
        })
        const scope = yield* Scope.make()
        yield* joined("scope-close-test").pipe(
          Scope.provide(scope),
          Effect.provide(Logger.layer([capture])),
          Effect.provideService(References.MinimumLogLevel, "Debug")
        )
        yield* Scope.close(scope, Exit.void)
        assert.deepStrictEqual(reports, [{ graceful: true, exit: "success" }])
      }))

    it.effect("20 devices created and closed in sequence leave no open handles", () =>
      Effect.gen(function*() {
        const resources = () => process.getActiveResourcesInfo().filter((kind) => kind !== "TTYWrap").length
        const before = resources()
        for (let i = 0; i < 20; i++) {
          const graceful = yield* Effect.scoped(Effect.gen(function*() {
            const device = yield* connect({ hostname: `lifecycle-${i}` })
            yield* device.ipv4
            return yield* device.shutdown
          }))
          assert.isTrue(graceful, `device ${i} shut down gracefully`)
        }
        yield* Effect.sleep("200 millis")
        assert.isAtMost(resources(), before)
      }), 120_000)
  })
})

describe("control outage", () => {
  // A tailnet of its own: control is away for a minute here.
  layer(loopbackTailnet(), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect(
      "control away 60 s: an open stream moves 10 MiB exact, dials, inbound connections and lookups work; after it, a new peer is reachable, and the device was never rebuilt",
      () =>
        Effect.gen(function*() {
          const { device, ipv4, tailnet } = yield* joined("outage")
          const { peer } = tailnet.info
          const seen: Array<string> = []
          yield* Effect.forkScoped(
            Stream.runForEach(device.states, (state) =>
              Effect.sync(() => seen.push(state._tag === "Running" ? `Running ${state.control}` : state._tag)))
          )
          const listener = yield* device.listen(9101)
          yield* Effect.forkScoped(Effect.forever(Effect.scoped(Effect.gen(function*() {
            const connection = yield* listener.accept()
            yield* connection.write(Option.getOrThrow(yield* connection.read()))
          }))))
          const stream = yield* device.dial({ ip: peer.ipv4, port: peer.tcpEchoPort })
          const size = 10 * 1024 * 1024
          const chunk = 64 * 1024
          const payload = randomBytes(size)
          const echoed = yield* Effect.forkScoped(readExactly(stream, size))

          yield* tailnet.stopControl
          yield* Effect.addFinalizer(() =>
            Effect.ignore(tailnet.startControl)
          )
          const outageEnds = Date.now() + 60_000
          yield* untilControl(device, "Unreachable", "15 seconds")
          // The 10 MiB go out in 160 writes spread over the outage; halfway, the rest of the
          // device is tried: lookups, a new dial, and a connection from the Go peer.
          for (let offset = 0, index = 0; offset < size; offset += chunk, index++) {
            yield* stream.write(payload.subarray(offset, offset + chunk))
            if (index % 16 === 15) yield* Effect.sleep("4 seconds")
            if (index === 80) {
              assert.strictEqual(NetAddress.formatIp(yield* device.ipv4), ipv4)
              assert.strictEqual((yield* device.self).hostname, "outage")
              assert.isTrue(Option.isSome(yield* device.peerByName(peer.hostname)))
              const dialed = yield* device.dial({ ip: peer.ipv4, port: peer.tcpEchoPort }, { timeout: "10 seconds" })
              yield* dialed.write("a new dial")
              const reply = yield* dialed.read({ timeout: "10 seconds" })
              assert.strictEqual(new TextDecoder().decode(Option.getOrThrow(reply)), "a new dial")
              assert.strictEqual(
                new TextDecoder().decode(yield* tailnet.dialFromPeer(`${ipv4}:9101`, "inbound")),
                "inbound"
              )
            }
          }
          assert.deepStrictEqual(yield* Fiber.join(echoed), { bytes: size, sha256: sha256(payload) })
          yield* Effect.sleep(Math.max(0, outageEnds - Date.now()))
          assert.deepStrictEqual(seen.at(-1), "Running Unreachable", "control was still away")

          yield* tailnet.startControl
          yield* untilControl(device, "Connected", "45 seconds")
          // A device that joins now is reachable without rebuilding ours.
          const { device: newcomer, ipv4: newcomerIpv4 } = yield* joined("outage-newcomer")
          const newcomerListener = yield* newcomer.listen(9102)
          yield* Effect.forkScoped(Effect.scoped(Effect.gen(function*() {
            const connection = yield* newcomerListener.accept()
            yield* connection.write(Option.getOrThrow(yield* connection.read()))
          })))
          const toNewcomer = yield* device.dial({ ip: newcomerIpv4, port: 9102 }, { timeout: "30 seconds" })
          yield* toNewcomer.write("hello newcomer")
          const reply = yield* toNewcomer.read({ timeout: "20 seconds" })
          assert.strictEqual(new TextDecoder().decode(Option.getOrThrow(reply)), "hello newcomer")
          const runs = seen.filter((tag, index) => tag !== seen[index - 1])
          assert.deepStrictEqual(runs.filter((tag) => tag !== "Connecting"), [
            "Running Connected",
            "Running Unreachable",
            "Running Connected"
          ])
        }),
      180_000
    )
  })
})
