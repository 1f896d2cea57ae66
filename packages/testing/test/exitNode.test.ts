/**
 * Exit nodes on the LAN tailnet, beyond what the conformance suite checks on both tailnets: the
 * Go peer offers itself as an exit node and reaches a TCP echo and an HTTP server at an address
 * only the harness's namespace has (192.0.2.1 on its loopback; this namespace has no route
 * there). Which peer the crate sends outside traffic to is told from the Go peer's own count of
 * WireGuard bytes from the device, for UDP datagrams, which the addon hands to the crate without
 * looking at their destination: only a chosen exit node may receive them (`ts_runtime` patch 23).
 */
import { Tailscale, type TailscaleService } from "@effect-tailscale/core/Tailscale"
import * as TailnetHttpClient from "@effect-tailscale/node/TailnetHttpClient"
import * as TailnetProxy from "@effect-tailscale/node/TailnetProxy"
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as HttpClient from "effect/http/HttpClient"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { connect, layer as localTailnet, LocalTailnet } from "../src/LocalTailnet.ts"

const outsideBody = "hello from outside the tailnet\n"

/** A device the Go peer knows, and the Go peer offering itself as exit node for the scope. */
const deviceWithExitOffered = (hostname: string, options: { readonly exitNode?: string } = {}) =>
  Effect.gen(function*() {
    const tailnet = yield* LocalTailnet
    yield* tailnet.offerExitNode(true)
    yield* Effect.addFinalizer(() => Effect.ignore(tailnet.offerExitNode(false)))
    const device = yield* connect({ hostname, ...options })
    const ipv4 = NetAddress.formatIp(yield* device.ipv4)
    yield* tailnet.waitForPeer(ipv4)
    yield* device.peerByName(tailnet.info.peer.hostname).pipe(
      Effect.map(Option.exists((peer) => peer.isExitNodeOption)),
      Effect.repeat({ until: (offered) => offered, schedule: Schedule.spaced("50 millis"), times: 200 })
    )
    return { device, ipv4, tailnet }
  })

/** WireGuard bytes the Go peer has received from the node with `ipv4`. */
const receivedFrom = (ipv4: string) =>
  Effect.flatMap(
    LocalTailnet,
    (tailnet) => Effect.map(tailnet.peers, (peers) => peers.find((peer) => peer.ipv4 === ipv4)?.rxBytes ?? 0)
  )

/** Sends `count` datagrams of 1,000 bytes to `ip:port` and lets them drain. */
const sendUdp = (device: TailscaleService, ip: string, port: number, count: number) =>
  Effect.scoped(Effect.gen(function*() {
    const socket = yield* device.bindUdp(40_000 + Math.floor(Math.random() * 1_000))
    const payload = new Uint8Array(1_000).fill(7)
    for (let i = 0; i < count; i++) yield* socket.send({ ip, port }, payload)
    yield* Effect.sleep("500 millis")
  }))

const curl = (...args: ReadonlyArray<string>) =>
  Effect.promise(() =>
    promisify(execFile)("curl", ["--silent", "--show-error", "--max-time", "30", ...args]).then(
      ({ stdout }) => stdout,
      (error: { stderr?: string }) => `failed: ${error.stderr ?? ""}`
    )
  )

describe("exit node", () => {
  layer(localTailnet({ topology: "lan" }), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect("outside traffic reaches only the chosen exit node: none before it is chosen, all after", () =>
      Effect.gen(function*() {
        const { device, ipv4, tailnet } = yield* deviceWithExitOffered("exit-udp")
        const outside = tailnet.info.outside!
        const datagrams = 200

        const before = yield* receivedFrom(ipv4)
        yield* sendUdp(device, outside.ip, 7002, datagrams)
        const unchosen = (yield* receivedFrom(ipv4)) - before
        // The crate used every approved exit node's default routes: 200 KB went to the Go peer.
        assert.isBelow(unchosen, 20_000, `${unchosen} bytes reached the Go peer before it was chosen`)

        yield* device.setExitNode(tailnet.info.peer.hostname)
        const chosenBefore = yield* receivedFrom(ipv4)
        yield* sendUdp(device, outside.ip, 7002, datagrams)
        const chosen = (yield* receivedFrom(ipv4)) - chosenBefore
        assert.isAbove(chosen, datagrams * 1_000, `only ${chosen} bytes reached the chosen exit node`)
      }))

    it.effect("TailnetHttpClient, and curl through TailnetProxy, reach a server outside the tailnet", () =>
      Effect.gen(function*() {
        const { device, tailnet } = yield* deviceWithExitOffered("exit-http", {
          exitNode: "echo-peer"
        })
        const outside = tailnet.info.outside!
        const url = `http://${outside.ip}:${outside.httpPort}/`
        const body = yield* HttpClient.get(url).pipe(
          Effect.flatMap((response) => response.text),
          Effect.provide(TailnetHttpClient.layer),
          Effect.provideService(Tailscale, device)
        )
        assert.strictEqual(body, outsideBody)
        const proxy = yield* TailnetProxy.make().pipe(Effect.provideService(Tailscale, device))
        assert.strictEqual(yield* curl("--proxy", proxy.socksUrl, url), outsideBody)
        assert.strictEqual(yield* curl("--proxytunnel", "--proxy", proxy.httpUrl, url), outsideBody)

        // Without the exit node the same request has no route.
        yield* device.setExitNode(null)
        const refused = yield* Effect.exit(
          HttpClient.get(url).pipe(
            Effect.provide(TailnetHttpClient.layer),
            Effect.provideService(Tailscale, device)
          )
        )
        assert.isTrue(refused._tag === "Failure")
      }))

    it.effect("a device built again keeps its exit node", () =>
      Effect.gen(function*() {
        const { device, tailnet } = yield* deviceWithExitOffered("exit-respawn")
        yield* device.setExitNode(tailnet.info.peer.ipv4)
        const outside = tailnet.info.outside!
        const echo = (text: string) =>
          Effect.scoped(Effect.gen(function*() {
            const stream = yield* device.dial(`${outside.ip}:${outside.tcpEchoPort}`)
            yield* stream.write(text)
            const reply = yield* stream.read()
            return Option.match(reply, { onNone: () => "", onSome: (bytes) => new TextDecoder().decode(bytes) })
          }))
        assert.strictEqual(yield* echo("before"), "before")
        yield* tailnet.loseDevice("exit-respawn")
        // The service builds the device again from its keys; the new one was told the exit node.
        const again = yield* echo("after").pipe(
          Effect.retry({ schedule: Schedule.spaced("200 millis"), times: 50 })
        )
        assert.strictEqual(again, "after")
      }))
  })
})
