/**
 * The demo `npm start` runs. Without TS_AUTH_KEY it starts a real tailnet on loopback (control,
 * DERP and a Go peer called echo-peer) and, as the device "demo": prints its addresses, finds
 * echo-peer by name, round-trips a TCP message and a UDP datagram, serves a small HTTP page that
 * the Go peer fetches, and shuts down. With TS_AUTH_KEY (and optionally TS_CONTROL_URL) it joins
 * that tailnet instead and does what it can there. `--topology lan` or `--topology nat` puts
 * the loopback tailnet's Go peer on a LAN with the device, or each behind a NAT of its own
 * (network namespaces), where traffic goes direct; the demo says which path it took. `--json`
 * prints the results as one JSON object on the last line.
 */
import type { Tailscale } from "@effect-tailscale/core/Tailscale"
import * as NodeTailscale from "@effect-tailscale/node/NodeTailscale"
import * as TailnetSocket from "@effect-tailscale/node/TailnetSocket"
import type { Topology } from "@effect-tailscale/testing/HarnessProcess"
import { connect, layer as localTailnet, LocalTailnet } from "@effect-tailscale/testing/LocalTailnet"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as http from "node:http"

const json = process.argv.includes("--json")
const topologyArg = process.argv.includes("--topology")
  ? process.argv[process.argv.indexOf("--topology") + 1]
  : undefined
const topologies: ReadonlyArray<Topology> = ["loopback", "lan", "nat"]
if (topologyArg !== undefined && !topologies.includes(topologyArg as Topology)) {
  console.error(`--topology must be one of ${topologies.join(", ")} (got ${topologyArg})`)
  process.exit(2)
}
const topology = (topologyArg ?? "loopback") as Topology
const say = (line: string) => Effect.sync(() => json || console.log(line))
const ip = NetAddress.formatIp

const since = (started: number) => Clock.currentTimeMillis.pipe(Effect.map((now) => `${now - started} ms`))

const describe = Effect.fn("demo.describe")(function*(
  tailscale: typeof Tailscale.Service,
  peerName: string,
  joinStarted: number
) {
  const ipv4 = ip(yield* tailscale.ipv4)
  const ipv6 = ip(yield* tailscale.ipv6)
  yield* say(`  joined as ${ipv4} and ${ipv6} (first address ${yield* since(joinStarted)} after connect started)`)
  const self = yield* tailscale.self
  yield* say(`  self node: ${self.hostname} (${self.stableId}), ${self.tags.length} tags`)
  const peer = yield* tailscale.peerByName(peerName)
  yield* say(
    Option.match(peer, {
      onNone: () => `  no peer called ${peerName}`,
      onSome: (node) => `  found ${node.hostname} at ${ip(node.ipv4)} (${node.status._tag})`
    })
  )
  return { ipv4, ipv6, peer }
})

/** Resends until an echo comes back: the first datagrams can race the WireGuard handshake. */
const udpRoundTrip = (tailscale: typeof Tailscale.Service, to: { ip: string; port: number }) =>
  Effect.scoped(Effect.gen(function*() {
    const socket = yield* tailscale.bindUdp(5300)
    for (let attempt = 0; attempt < 20; attempt++) {
      yield* socket.send(to, "datagram from demo")
      const reply = yield* Effect.option(socket.receive({ timeout: "1 second" }))
      if (Option.isSome(reply)) return new TextDecoder().decode(reply.value.data) === "datagram from demo"
    }
    return false
  }))

const onLoopback = Effect.gen(function*() {
  yield* say(`▸ starting a tailnet (${topology}: control, DERP, and a Go peer)`)
  const tailnet = yield* LocalTailnet
  const peerInfo = tailnet.info.peer
  yield* say(`  control at ${tailnet.info.controlUrl}`)
  yield* say("▸ joining as demo")
  const joinStarted = yield* Clock.currentTimeMillis
  const tailscale = yield* connect({ hostname: "demo" })
  const { ipv4, ipv6, peer } = yield* describe(tailscale, peerInfo.hostname, joinStarted)
  const found = Option.getOrThrow(peer)
  yield* tailnet.waitForPeer(ipv4)

  yield* say(`▸ TCP: sending a message to ${peerInfo.hostname}'s echo service`)
  const echoStarted = yield* Clock.currentTimeMillis
  const tcpEcho = yield* Effect.scoped(Effect.gen(function*() {
    const stream = yield* tailscale.dial({ peer: peerInfo.hostname, port: peerInfo.tcpEchoPort })
    yield* stream.write("hello, tailnet")
    const reply = yield* stream.read({ timeout: "20 seconds" })
    return Option.exists(reply, (bytes) => new TextDecoder().decode(bytes) === "hello, tailnet")
  }))
  yield* say(`  echoed back: ${tcpEcho} (dial and round trip: ${yield* since(echoStarted)})`)

  yield* say(`▸ ping: a disco ping of ${peerInfo.hostname}, and the path traffic takes`)
  const pong = yield* tailscale.ping(found, { timeout: "10 seconds" })
  const path = pong.path._tag === "Direct" ? `direct to ${pong.path.endpoint}` : "through the DERP relay"
  yield* say(`  pong in ${Duration.toMillis(pong.latency).toFixed(1)} ms, ${path}`)

  yield* say(`▸ UDP: sending a datagram to ${peerInfo.hostname}`)
  const udpEcho = yield* udpRoundTrip(tailscale, { ip: ip(found.ipv4), port: peerInfo.udpEchoPort })
  yield* say(`  echoed back: ${udpEcho}`)

  yield* say(`▸ HTTP: serving a page on the tailnet for ${peerInfo.hostname} to fetch`)
  const fetched = yield* Effect.scoped(Effect.gen(function*() {
    const listener = yield* tailscale.listen(8080)
    const server = http.createServer((request, response) => {
      response.end(`hello ${request.socket.remoteAddress}, this is demo`)
    })
    yield* TailnetSocket.serve(listener, server)
    return yield* tailnet.fetchFromPeer(`http://${ipv4}:8080/`)
  }))
  const httpFromPeer = fetched.status === 200 && fetched.body === `hello ${peerInfo.ipv4}, this is demo`
  yield* say(`  ${peerInfo.hostname} got ${fetched.status}: "${fetched.body}"`)

  yield* say("▸ shutting down")
  const shutdownGraceful = yield* tailscale.shutdown
  yield* say(`  graceful: ${shutdownGraceful}`)
  return {
    ok: tcpEcho && udpEcho && httpFromPeer && shutdownGraceful,
    ipv4,
    ipv6,
    peer: { name: found.hostname, ipv4: ip(found.ipv4) },
    topology,
    path: pong.path._tag,
    tcpEcho,
    udpEcho,
    httpFromPeer,
    shutdownGraceful
  }
}).pipe(Effect.provide(localTailnet({ topology })))

const onRealTailnet = Effect.gen(function*() {
  yield* say("▸ joining the tailnet from TS_AUTH_KEY")
  const joinStarted = yield* Clock.currentTimeMillis
  const tailscale = yield* NodeTailscale.make({
    ...(yield* NodeTailscale.fromEnv),
    hostname: yield* Config.String("TS_HOSTNAME").pipe(Config.withDefault("demo"))
  })
  const peerName = yield* Config.String("DEMO_PEER").pipe(Config.withDefault("echo-peer"))
  const { ipv4, ipv6, peer } = yield* describe(tailscale, peerName, joinStarted)
  const shutdownGraceful = yield* tailscale.shutdown
  return {
    ok: true,
    ipv4,
    ipv6,
    peer: Option.getOrNull(Option.map(peer, (node) => ({ name: node.hostname, ipv4: ip(node.ipv4) }))),
    shutdownGraceful
  }
})

const program = Effect.gen(function*() {
  const useRealTailnet = Option.isSome(yield* Config.option(Config.String("TS_AUTH_KEY")))
  const result: { readonly ok: boolean } = useRealTailnet
    ? yield* Effect.scoped(onRealTailnet)
    : yield* Effect.scoped(onLoopback)
  if (json) console.log(JSON.stringify(result))
  else console.log(result.ok ? "✔ demo finished" : "✘ demo finished with failures")
  return result.ok
})

Effect.runPromise(program).then(
  (ok) => {
    process.exitCode = ok ? 0 : 1
  },
  (error: unknown) => {
    if (json) console.log(JSON.stringify({ ok: false, error: String(error) }))
    else console.error(`✘ ${String(error)}`)
    process.exitCode = 1
  }
)
