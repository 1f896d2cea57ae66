/**
 * Effect's HttpClient over the tailnet, and caller identity for servers, on both tailnets: one of
 * our devices serves HTTP with TailnetHttpServer, another calls it with TailnetHttpClient by bare
 * name, MagicDNS name and tailnet IP. On the loopback tailnet the client also reaches the Go
 * peer's server, and a raw stream handler learns who dialed it.
 */
import * as TailnetCaller from "@effect-tailscale/core/TailnetCaller"
import { Tailscale, type TailscaleService } from "@effect-tailscale/core/Tailscale"
import * as TailnetHttpClient from "@effect-tailscale/node/TailnetHttpClient"
import * as TailnetHttpServer from "@effect-tailscale/node/TailnetHttpServer"
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as HttpBody from "effect/http/HttpBody"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type * as Layer from "effect/Layer"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { fakeProvider, localProvider, TailnetProvider } from "../src/Conformance.ts"
import { knows } from "../src/Workloads.ts"

/** Two of our devices on the tailnet, each able to reach the other. */
const pair = (server: string, client: string) =>
  Effect.gen(function*() {
    const provider = yield* TailnetProvider
    const serverDevice = yield* provider.join(server)
    const clientDevice = yield* provider.join(client)
    const serverNode = (yield* knows(clientDevice, NetAddress.formatIp(yield* serverDevice.ipv4))).value
    yield* knows(serverDevice, NetAddress.formatIp(yield* clientDevice.ipv4))
    return { serverDevice, clientDevice, serverNode }
  })

/** Serves, on `port` of `device`: `/hello` (names the caller), `/bytes?n=` (a streamed body), `/echo`. */
const serveApp = (device: TailscaleService, port: number) =>
  Effect.gen(function*() {
    const app = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const url = new URL(request.url, "http://x")
      if (url.pathname === "/hello") {
        const caller = yield* TailnetCaller.TailnetCaller
        return HttpServerResponse.text(`hello ${caller.hostname} (${caller.stableId})`)
      }
      if (url.pathname === "/bytes") {
        const n = Number(url.searchParams.get("n"))
        const chunk = new Uint8Array(16_384).fill(120)
        const chunks = Stream.range(0, Math.ceil(n / chunk.length) - 1).pipe(
          Stream.map((i) => chunk.subarray(0, Math.min(chunk.length, n - i * chunk.length)))
        )
        return HttpServerResponse.stream(chunks, { contentType: "application/octet-stream" })
      }
      if (url.pathname === "/echo") return HttpServerResponse.text(yield* request.text)
      return HttpServerResponse.empty({ status: 404 })
    }).pipe(TailnetHttpServer.withCaller, Effect.provideService(Tailscale, device))
    const server = yield* TailnetHttpServer.make(port).pipe(Effect.provideService(Tailscale, device))
    yield* HttpServer.serveEffect(app).pipe(Effect.provideService(HttpServer.HttpServer, server))
  })

const client = (device: TailscaleService) => <A, E>(effect: Effect.Effect<A, E, HttpClient.HttpClient>) =>
  effect.pipe(Effect.provide(TailnetHttpClient.layer), Effect.provideService(Tailscale, device))

const features = (name: string, provider: Layer.Layer<TailnetProvider, unknown>) =>
  describe(name, () => {
    layer(provider, { excludeTestServices: true, timeout: "120 seconds" })((it) => {
      it.effect("requests reach a peer by bare name, MagicDNS name and tailnet IP, and the server knows the caller", () =>
        Effect.gen(function*() {
          const { clientDevice, serverDevice, serverNode } = yield* pair("http-server", "http-client")
          yield* serveApp(serverDevice, 8080)
          const me = yield* clientDevice.self
          const hosts = [
            "http-server",
            ...Option.toArray(serverNode.fqdn).map((fqdn) => fqdn.replace(/\.$/, "")),
            NetAddress.formatIp(serverNode.ipv4)
          ]
          assert.isAtLeast(hosts.length, 3)
          for (const host of hosts) {
            const text = yield* client(clientDevice)(
              HttpClient.get(`http://${host}:8080/hello`).pipe(Effect.flatMap((response) => response.text))
            )
            assert.strictEqual(text, `hello http-client (${me.stableId})`, host)
          }
        }))

      it.effect("bodies stream both ways: 2 MiB down, a posted body echoed", () =>
        Effect.gen(function*() {
          const { clientDevice, serverDevice } = yield* pair("stream-server", "stream-client")
          yield* serveApp(serverDevice, 8080)
          const size = 2 * 1024 * 1024
          const received = yield* client(clientDevice)(
            HttpClient.get(`http://stream-server:8080/bytes?n=${size}`).pipe(
              Effect.flatMap((response) =>
                Stream.runFold(response.stream, () => ({ chunks: 0, bytes: 0 }), (total, chunk) => ({
                  chunks: total.chunks + 1,
                  bytes: total.bytes + chunk.length
                }))
              )
            )
          )
          assert.strictEqual(received.bytes, size)
          assert.isAbove(received.chunks, 1, "the body arrived in pieces, not buffered whole")
          const echoed = yield* client(clientDevice)(
            HttpClient.post("http://stream-server:8080/echo", { body: HttpBody.text("x".repeat(100_000)) }).pipe(
              Effect.flatMap((response) => response.text)
            )
          )
          assert.strictEqual(echoed.length, 100_000)
        }))

      it.effect("an interrupted request ends, and the client still works after it", () =>
        Effect.gen(function*() {
          const { clientDevice, serverDevice } = yield* pair("slow-server", "slow-client")
          yield* serveApp(serverDevice, 8080)
          const call = client(clientDevice)
          const slow = yield* Effect.forkChild(call(
            HttpClient.get("http://slow-server:8080/bytes?n=67108864").pipe(
              Effect.flatMap((response) => Stream.runDrain(response.stream))
            )
          ))
          yield* Effect.sleep("300 millis")
          yield* Fiber.interrupt(slow)
          const text = yield* call(HttpClient.get("http://slow-server:8080/echo").pipe(Effect.flatMap((r) => r.text)))
          assert.strictEqual(text, "")
        }))

      it.effect("https:// is refused with a clear error, an unknown peer is an error", () =>
        Effect.gen(function*() {
          const provider = yield* TailnetProvider
          const device = yield* provider.join("https-client")
          const https = yield* Effect.flip(client(device)(HttpClient.get(`https://${provider.echoPeer.ipv4}:443/`)))
          assert.include(String(https.cause ?? https), "not supported over the tailnet")
          const unknown = yield* Effect.exit(client(device)(HttpClient.get("http://nobody-here:80/")))
          assert.isTrue(unknown._tag === "Failure")
        }))
    })
  })

describe("http client", () => {
  features("FakeTailnet", fakeProvider)
  features("LocalTailnet", localProvider)

  describe("LocalTailnet, the Go peer", () => {
    layer(localProvider, { excludeTestServices: true, timeout: "120 seconds" })((it) => {
      it.effect("GETs the Go peer's server by name and IP", () =>
        Effect.gen(function*() {
          const provider = yield* TailnetProvider
          const device = yield* provider.join("go-http-client")
          yield* provider.reachable(NetAddress.formatIp(yield* device.ipv4))
          for (const host of [provider.echoPeer.hostname, provider.echoPeer.ipv4]) {
            const text = yield* client(device)(
              HttpClient.get(`http://${host}:7003/`).pipe(Effect.flatMap((r) => r.text))
            )
            assert.strictEqual(text, "hello from echo-peer\n")
          }
        }))
    })
  })
})

const callerIdentity = (name: string, provider: Layer.Layer<TailnetProvider, unknown>) =>
  describe(name, () => {
    layer(provider, { excludeTestServices: true, timeout: "120 seconds" })((it) => {
      it.effect("a stream handler learns that the echo peer dialed it; an address of no peer is UnknownCaller", () =>
        Effect.gen(function*() {
          const provider = yield* TailnetProvider
          const device = yield* provider.join("caller-identity")
          const ipv4 = NetAddress.formatIp(yield* device.ipv4)
          yield* provider.reachable(ipv4)
          const listener = yield* device.listen(9100)
          const handled = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
            const connection = yield* listener.accept()
            const caller = yield* TailnetCaller.ofStream(connection).pipe(Effect.provideService(Tailscale, device))
            yield* connection.write(`you are ${caller.hostname}`)
            return caller
          })))
          // The echo peer reads back as many bytes as it sent.
          const expected = `you are ${provider.echoPeer.hostname}`
          const reply = yield* provider.echoPeerDials(`${ipv4}:9100`, "?".repeat(expected.length))
          const caller = yield* Fiber.join(handled)
          assert.strictEqual(caller.hostname, provider.echoPeer.hostname)
          assert.strictEqual(NetAddress.formatIp(caller.ipv4), provider.echoPeer.ipv4)
          assert.strictEqual(reply, expected)
          const unknown = yield* Effect.flip(
            TailnetCaller.lookup("100.64.99.99").pipe(Effect.provideService(Tailscale, device))
          )
          assert.strictEqual(unknown._tag, "UnknownCaller")
        }))
    })
  })

describe("caller identity", () => {
  callerIdentity("FakeTailnet", fakeProvider)
  callerIdentity("LocalTailnet", localProvider)
})
