/**
 * Direct (peer-to-peer UDP) paths between our device and the Go peer. On the `lan` topology the
 * harness runs in a network namespace of its own, joined to this one by a veth pair, so the device
 * has a LAN address to advertise; on `loopback` it has none and everything goes through DERP. On
 * `nat` this namespace and the Go peer are each behind a masquerading router, and a direct path
 * needs STUN and hole punching through both.
 * The path is told two ways: the Go peer's own view (`pathTo`, the path it sends on), and this
 * namespace's packet counters while bytes move (UDP datagrams for a direct path, TCP segments to
 * DERP for a relay), which is how the path our device sends on shows: the two ends choose theirs
 * independently, and the Go peer is usually direct seconds before the crate.
 */
import { PeerPath as DevicePath } from "@effect-tailscale/core/PeerPath"
import type { TailscaleService } from "@effect-tailscale/core/Tailscale"
import * as TailscaleMetrics from "@effect-tailscale/core/TailscaleMetrics"
import type { TcpStream } from "@effect-tailscale/core/TcpStream"
import { readExactly, sha256 } from "@effect-tailscale/test-support/bytes"
import { assert, describe, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { execFileSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  connect,
  layer as localTailnet,
  LocalTailnet,
  LocalTailnetError,
  type LocalTailnetService,
  make as makeLocalTailnet,
  type PeerPath
} from "../src/LocalTailnet.ts"

const starts = 3
const directWithinMs = 15_000
const transferBytes = 4 * 1024 * 1024

/** A field of /proc/net/snmp, of this process's network namespace: "Udp" "OutDatagrams", … */
const snmp = (): (protocol: string, field: string) => number => {
  const lines = readFileSync("/proc/net/snmp", "utf8").split("\n").map((line) => line.trim().split(/\s+/))
  return (protocol, field) => {
    const [header, values] = lines.filter((line) => line[0] === `${protocol}:`)
    const index = header?.indexOf(field) ?? -1
    if (index < 0 || values === undefined) throw new Error(`/proc/net/snmp has no ${protocol} ${field}`)
    return Number(values[index])
  }
}

/** Bytes received and sent on `interfaceName`, from /proc/net/dev (of this namespace, unlike /sys). */
const interfaceBytes = (interfaceName: string): { readonly rx: number; readonly tx: number } => {
  const line = readFileSync("/proc/net/dev", "utf8").split("\n").find((row) =>
    row.trim().startsWith(`${interfaceName}:`)
  )
  if (line === undefined) throw new Error(`/proc/net/dev has no ${interfaceName}`)
  const fields = line.split(":")[1]!.trim().split(/\s+/).map(Number)
  return { rx: fields[0]!, tx: fields[8]! }
}

/**
 * Bytes sent and received on this namespace's TCP connections to the DERP relay at
 * `relay` ("ip:port"), from the kernel's per-socket counters (`ss -ti`). Unlike the namespace's
 * totals, these belong to this tailnet alone, whatever else runs beside it.
 */
const relayBytes = (relay: { readonly ip: string; readonly port: number }) => {
  const sockets = execFileSync("ss", [
    "-tinH",
    "state",
    "established",
    `( dst ${relay.ip} and dport = :${relay.port} )`
  ], {
    encoding: "utf8"
  })
  const total = (field: string) =>
    [...sockets.matchAll(new RegExp(`\\b${field}:(\\d+)`, "g"))].reduce((sum, match) => sum + Number(match[1]), 0)
  return {
    connections: sockets.split("\n").filter((line) => /^\d/.test(line)).length,
    sent: total("bytes_sent"),
    received: total("bytes_received")
  }
}

interface Counters {
  readonly udpIn: number
  readonly udpOut: number
  readonly tcpIn: number
  readonly tcpOut: number
  readonly lanRx: number
  readonly lanTx: number
  readonly relaySent: number
  readonly relayReceived: number
}

const counters = (interfaceName: string, relay: { readonly ip: string; readonly port: number }): Counters => {
  const read = snmp()
  const lan = interfaceBytes(interfaceName)
  const relayed = relayBytes(relay)
  return {
    udpIn: read("Udp", "InDatagrams"),
    udpOut: read("Udp", "OutDatagrams"),
    tcpIn: read("Tcp", "InSegs"),
    tcpOut: read("Tcp", "OutSegs"),
    lanRx: lan.rx,
    lanTx: lan.tx,
    relaySent: relayed.sent,
    relayReceived: relayed.received
  }
}

const difference = (before: Counters, after: Counters): Counters => ({
  udpIn: after.udpIn - before.udpIn,
  udpOut: after.udpOut - before.udpOut,
  tcpIn: after.tcpIn - before.tcpIn,
  tcpOut: after.tcpOut - before.tcpOut,
  lanRx: after.lanRx - before.lanRx,
  lanTx: after.lanTx - before.lanTx,
  relaySent: after.relaySent - before.relaySent,
  relayReceived: after.relayReceived - before.relayReceived
})

/** One round trip through the Go peer's TCP echo. */
const echo = (stream: TcpStream, message: Uint8Array | string) =>
  Effect.gen(function*() {
    const bytes = typeof message === "string" ? new TextEncoder().encode(message) : message
    yield* stream.write(bytes)
    const reply = yield* readExactly(stream, bytes.length)
    assert.strictEqual(reply.sha256, sha256(bytes))
  })

/**
 * The device's `tailscale_direct_peers` gauge once it reads `expected`, or what it reads after
 * 5 s (a watch of the runtime updates it, a moment after the path changes).
 */
const directPeersOf = (hostname: string, expected: number) =>
  Effect.gen(function*() {
    const gauge = Metric.withAttributes(TailscaleMetrics.directPeers, { device: hostname })
    const read = Effect.map(Metric.value(gauge), (state) => Number(state.value))
    return yield* read.pipe(
      Effect.repeat({ until: (value) => value === expected, schedule: Schedule.spaced("100 millis") }),
      Effect.timeoutOrElse({ duration: "5 seconds", orElse: () => read })
    )
  })

/**
 * A tailnet packet carries at most 1280 bytes: the fewest packets a direct path needs for
 * `bytes`. Not the UDP datagrams the kernel counts: a run of packets sent at once is one datagram
 * there, segmented on the way out (`UDP_SEGMENT`) and coalesced on the way in (`UDP_GRO`).
 */
const packetsFor = (bytes: number) => Math.ceil(bytes / 1280)

const probe = randomBytes(32 * 1024)

/**
 * Whether our device sends to the Go peer directly: an echo of `probe`, with UDP sent from this
 * namespace meanwhile and less than a quarter of the probe sent to the relay (about all of it
 * when the device relays).
 */
const deviceSendsDirect = (stream: TcpStream, relay: { readonly ip: string; readonly port: number }) =>
  Effect.gen(function*() {
    const udpBefore = snmp()("Udp", "OutDatagrams")
    const relayBefore = relayBytes(relay).sent
    yield* echo(stream, probe)
    return snmp()("Udp", "OutDatagrams") > udpBefore &&
      relayBytes(relay).sent - relayBefore < probe.length / 4
  })

/** Where the tailnet's DERP relay listens. */
const relayOf = (tailnet: LocalTailnetService) => ({
  ip: new URL(tailnet.info.controlUrl).hostname,
  port: tailnet.info.derpPort
})

/** A device joined to the tailnet, seen by the Go peer, with a stream open to its TCP echo. */
const joinAndEcho = (hostname: string) =>
  Effect.gen(function*() {
    const tailnet = yield* LocalTailnet
    const device: TailscaleService = yield* connect({ hostname })
    const ipv4 = NetAddress.formatIp(yield* device.ipv4)
    yield* tailnet.waitForPeer(ipv4)
    const stream = yield* device.dial(`${tailnet.info.peer.ipv4}:${tailnet.info.peer.tcpEchoPort}`)
    yield* echo(stream, "hello")
    return { device, ipv4, stream, tailnet }
  })

/**
 * Probes every 100 ms, with traffic both ways (the Go peer keeps a path only while it sends to
 * the node), until both ends send directly or `deadline` (from `performance.now()`) passes.
 * Returns the last path the Go peer reported and when (ms after `began`) each end was first seen
 * sending directly.
 */
const waitForDirect = (stream: TcpStream, ip: string, began: number, deadline: number) =>
  Effect.gen(function*() {
    const tailnet = yield* LocalTailnet
    const relay = relayOf(tailnet)
    let peerPath: PeerPath = { _tag: "Relay", region: "" }
    let peerDirectMs: number | undefined
    let deviceDirectMs: number | undefined
    while (performance.now() < deadline) {
      const deviceDirect = yield* deviceSendsDirect(stream, relay)
      peerPath = yield* tailnet.pathTo(ip)
      const now = Math.round(performance.now() - began)
      if (deviceDirect) deviceDirectMs ??= now
      if (peerPath._tag === "Direct") peerDirectMs ??= now
      if (deviceDirect && peerPath._tag === "Direct") break
      yield* Effect.sleep("100 millis")
    }
    return { peerPath, peerDirectMs, deviceDirectMs }
  })

const escaped = (address: string) => address.replaceAll(".", "\\.")

/**
 * On each of `starts` starts of a device (`<name>-<start>`): both ends direct within
 * `directWithinMs`, each at the address the other reaches it by (`device`, `peer`: the LAN
 * addresses, or the routers' outside ones behind NATs); the device's `pathTo`, `ping` and gauge
 * agree; the Go peer's disco ping comes back direct; and 4 MiB each way move as UDP datagrams
 * on `interfaceName` with next to nothing through DERP. Returns a line of figures per start.
 */
const directOnEachStart = (
  name: string,
  at: { readonly interfaceName: string; readonly device: string; readonly peer: string }
) =>
  Effect.gen(function*() {
    const tailnet = yield* LocalTailnet
    const figures: Array<string> = []
    for (let start = 1; start <= starts; start++) {
      yield* Effect.scoped(Effect.gen(function*() {
        const hostname = `${name}-${start}`
        const began = performance.now()
        const { device, ipv4, stream } = yield* joinAndEcho(hostname)

        const { deviceDirectMs, peerDirectMs, peerPath: path } = yield* waitForDirect(
          stream,
          ipv4,
          began,
          began + directWithinMs
        )
        // Both ends advertise the address the other reaches them by: the Go peer's as our device
        // sees it, ours as the Go peer has it.
        const goPeer = Option.getOrThrow(yield* device.peerByName(tailnet.info.peer.hostname))
        const seen = (yield* tailnet.peers).find((view) => view.ipv4 === ipv4)
        const advertised = `the Go peer advertises [${goPeer.underlayAddresses.join(", ")}], ` +
          `the device [${seen?.endpoints.join(", ")}]`
        const where =
          `start ${start}: the Go peer direct after ${peerDirectMs} ms, our device after ${deviceDirectMs} ms; ${advertised}`
        assert.strictEqual(path._tag, "Direct", where)
        assert.isDefined(deviceDirectMs, where)
        if (path._tag === "Direct") assert.match(path.endpoint, new RegExp(`^${escaped(at.device)}:\\d+$`))
        assert.isTrue(goPeer.underlayAddresses.some((endpoint) => endpoint.startsWith(`${at.peer}:`)), advertised)
        assert.isTrue(seen?.endpoints.some((endpoint) => endpoint.startsWith(`${at.device}:`)), advertised)

        // What the device itself reports: the path, a disco ping's path, and the gauge.
        const ownPath = yield* device.pathTo(goPeer)
        assert.strictEqual(ownPath._tag, "Direct", where)
        if (ownPath._tag === "Direct") assert.match(ownPath.endpoint, new RegExp(`^${escaped(at.peer)}:\\d+$`))
        const pong = yield* device.ping(goPeer)
        assert.deepStrictEqual(pong.path, ownPath, "a ping goes the way traffic goes")
        assert.strictEqual(yield* directPeersOf(hostname, 1), 1)
        // The Go peer's disco ping (tailscale ping) of the device comes back by the direct path.
        const goPong = yield* tailnet.pingFromPeer(ipv4)
        assert.strictEqual(goPong.path._tag, "Direct", JSON.stringify(goPong))
        if (goPong.path._tag === "Direct") {
          assert.match(goPong.path.endpoint, new RegExp(`^${escaped(at.device)}:\\d+$`))
        }

        // Bulk data both ways through the echo, counted in this namespace as it moves.
        const payload = randomBytes(transferBytes)
        // The device keeps its connection to its home relay open, direct or not.
        assert.isAtLeast(relayBytes(relayOf(tailnet)).connections, 1, "no connection to the relay")
        const before = counters(at.interfaceName, relayOf(tailnet))
        const echoed = yield* Effect.forkScoped(readExactly(stream, transferBytes))
        for (let offset = 0; offset < transferBytes; offset += 256 * 1024) {
          yield* stream.write(payload.subarray(offset, offset + 256 * 1024))
        }
        assert.deepStrictEqual(yield* Fiber.join(echoed), { bytes: transferBytes, sha256: sha256(payload) })
        const moved = difference(before, counters(at.interfaceName, relayOf(tailnet)))

        // UDP carried it; through DERP it would be thousands of TCP segments instead.
        assert.isAbove(moved.udpOut, 0, JSON.stringify(moved))
        assert.isAbove(moved.udpIn, 0, JSON.stringify(moved))
        assert.isBelow(moved.tcpIn + moved.tcpOut, packetsFor(transferBytes) / 20, JSON.stringify(moved))
        assert.isBelow(moved.relaySent + moved.relayReceived, transferBytes / 100, JSON.stringify(moved))
        assert.isAtLeast(moved.lanRx, transferBytes)
        assert.isAtLeast(moved.lanTx, transferBytes)
        figures.push(
          `start ${start}: the Go peer direct after ${peerDirectMs} ms (to ${
            path._tag === "Direct" ? path.endpoint : ""
          }), our device after ${deviceDirectMs} ms (to ${
            ownPath._tag === "Direct" ? ownPath.endpoint : ""
          }); ${transferBytes} B each way: UDP ${moved.udpOut} out / ${moved.udpIn} in datagrams, ` +
            `TCP ${moved.tcpOut} out / ${moved.tcpIn} in segments, DERP ${moved.relaySent} B out / ` +
            `${moved.relayReceived} B in, ${at.interfaceName} ${moved.lanTx} B out / ${moved.lanRx} B in`
        )
      }))
    }
    return figures
  })

/**
 * A device (`hostname`) direct to the Go peer; UDP blocked a quarter into an 8 MiB echo: the
 * relay takes over within 10 s and the bytes arrive exact, the device's `pathTo`, `ping` and
 * gauge say Relay, the Go peer's disco ping comes back through DERP; UDP unblocked: direct again
 * within `directWithinMs`. `where` names the topology in the console figure.
 */
const fallbackAndBack = (hostname: string, where: string) =>
  Effect.gen(function*() {
    const tailnet = yield* LocalTailnet
    const relay = relayOf(tailnet)
    const began = performance.now()
    const { device, ipv4, stream } = yield* joinAndEcho(hostname)
    const direct = yield* waitForDirect(stream, ipv4, began, began + directWithinMs)
    assert.isDefined(direct.deviceDirectMs, "direct before UDP is blocked")

    const size = 8 * 1024 * 1024
    const chunk = 64 * 1024
    const payload = randomBytes(size)
    const echoed = yield* Effect.forkScoped(readExactly(stream, size))
    yield* Effect.addFinalizer(() => Effect.ignore(tailnet.blockUdp(false)))
    let blockedAt: number | undefined
    let relayedAfterMs: number | undefined
    let relayedBefore = 0
    for (let offset = 0; offset < size; offset += chunk) {
      if (offset === size / 4) {
        yield* tailnet.blockUdp(true)
        blockedAt = performance.now()
        relayedBefore = relayBytes(relay).sent
      }
      yield* stream.write(payload.subarray(offset, offset + chunk))
      if (
        blockedAt !== undefined && relayedAfterMs === undefined && relayBytes(relay).sent - relayedBefore > chunk
      ) {
        relayedAfterMs = Math.round(performance.now() - blockedAt)
      }
    }
    assert.deepStrictEqual(yield* Fiber.join(echoed), { bytes: size, sha256: sha256(payload) })
    assert.isDefined(relayedAfterMs, "nothing went through the relay while UDP was blocked")
    assert.isAtMost(relayedAfterMs!, 10_000, `the relay took over after ${relayedAfterMs} ms`)
    // The device says so too, and its pings come back through the relay.
    const goPeer = Option.getOrThrow(yield* device.peerByName(tailnet.info.peer.hostname))
    assert.deepStrictEqual(yield* device.pathTo(goPeer), DevicePath.Relay({ region: goPeer.derpRegion }))
    assert.strictEqual((yield* device.ping(goPeer)).path._tag, "Relay")
    assert.strictEqual(yield* directPeersOf(hostname, 0), 0)
    // The Go peer's disco ping now travels through DERP, and the device answers it there.
    const goPong = yield* tailnet.pingFromPeer(ipv4)
    assert.strictEqual(goPong.path._tag, "Relay", JSON.stringify(goPong))

    yield* tailnet.blockUdp(false)
    const unblocked = performance.now()
    const again = yield* waitForDirect(stream, ipv4, unblocked, unblocked + directWithinMs)
    assert.isDefined(again.deviceDirectMs, "direct again after UDP came back")
    assert.strictEqual((yield* device.pathTo(goPeer))._tag, "Direct")
    console.log(
      `fallback ${where}: the relay took over ${relayedAfterMs} ms after UDP was blocked; direct again ${again.deviceDirectMs} ms after it was unblocked`
    )
  })

describe("direct paths", () => {
  it.effect("without `ip` (iproute2) the lan topology fails with LocalTailnetError, never skips", () =>
    Effect.gen(function*() {
      // PATH without ip, for this test only.
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          const saved = process.env.PATH
          const empty = mkdtempSync(join(tmpdir(), "no-ip-"))
          process.env.PATH = empty
          return { saved, empty }
        }),
        ({ empty, saved }) =>
          Effect.sync(() => {
            process.env.PATH = saved
            rmSync(empty, { recursive: true, force: true })
          })
      )
      const error = yield* Effect.flip(makeLocalTailnet({ topology: "lan" }))
      assert.instanceOf(error, LocalTailnetError)
      assert.match(error.message, /^starting the lan tailnet: the lan topology needs `ip` from iproute2/)
    }).pipe(Effect.scoped))

  layer(localTailnet({ topology: "lan" }), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect(
      `on a LAN the device goes direct to the Go peer within ${
        directWithinMs / 1000
      } s, on each of ${starts} starts, and its bytes move as UDP between the LAN addresses`,
      () =>
        Effect.gen(function*() {
          const tailnet = yield* LocalTailnet
          const lan = tailnet.lan
          if (lan === undefined) return assert.fail("the lan topology has no LAN segment")
          assert.strictEqual(tailnet.topology, "lan")
          assert.match(tailnet.info.controlUrl, new RegExp(`^https://${escaped(lan.harnessAddress)}:`))
          const figures = yield* directOnEachStart("lan-device", {
            interfaceName: lan.interfaceName,
            device: lan.deviceAddress,
            peer: lan.harnessAddress
          })
          console.log(`direct paths on a LAN:\n  ${figures.join("\n  ")}`)
        }),
      240_000
    )
  })

  it.effect("without `nft` (nftables) the nat topology fails with LocalTailnetError, never skips", () =>
    Effect.gen(function*() {
      // PATH with `ip` but without nft, for this test only.
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          const saved = process.env.PATH
          const onlyIp = mkdtempSync(join(tmpdir(), "no-nft-"))
          symlinkSync(execFileSync("sh", ["-c", "command -v ip"], { encoding: "utf8" }).trim(), join(onlyIp, "ip"))
          process.env.PATH = onlyIp
          return { saved, onlyIp }
        }),
        ({ onlyIp, saved }) =>
          Effect.sync(() => {
            process.env.PATH = saved
            rmSync(onlyIp, { recursive: true, force: true })
          })
      )
      const error = yield* Effect.flip(makeLocalTailnet({ topology: "nat" }))
      assert.instanceOf(error, LocalTailnetError)
      assert.match(error.message, /^starting the nat tailnet: the nat topology needs `nft` \(nftables\)/)
    }).pipe(Effect.scoped))

  layer(localTailnet({ topology: "nat" }), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect(
      `behind two NATs the device goes direct to the NATed Go peer within ${
        directWithinMs / 1000
      } s, on each of ${starts} starts, by the routers' outside addresses, and its bytes move as UDP`,
      () =>
        Effect.gen(function*() {
          const tailnet = yield* LocalTailnet
          const nat = tailnet.nat
          if (nat === undefined) return assert.fail("the nat topology has no network")
          assert.strictEqual(tailnet.topology, "nat")
          assert.isUndefined(tailnet.lan)
          assert.strictEqual(tailnet.info.peer.hostname, "nat-peer")
          assert.match(tailnet.info.controlUrl, new RegExp(`^https://${escaped(nat.harnessAddress)}:`))
          // Each end is seen at its router's outside address, the one STUN and the pings show.
          const figures = yield* directOnEachStart("nat-device", {
            interfaceName: nat.interfaceName,
            device: nat.deviceRouter.outside,
            peer: nat.peerRouter.outside
          })
          console.log(`direct paths through two NATs:\n  ${figures.join("\n  ")}`)
        }),
      240_000
    )

    it.effect(
      "behind two NATs, with UDP blocked mid-transfer, the transfer moves to the relay within 10 s and arrives exact; unblocked, it goes direct again",
      () => fallbackAndBack("nat-fallback", "behind two NATs"),
      120_000
    )
  })

  layer(localTailnet({ topology: "lan" }), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect(
      "with UDP blocked mid-transfer, the transfer moves to the relay within 10 s and arrives exact; unblocked, it goes direct again",
      () => fallbackAndBack("lan-fallback", "on a LAN"),
      120_000
    )
  })

  layer(localTailnet(), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect("the loopback topology still works: no LAN, and the device echoes with the Go peer", () =>
      Effect.gen(function*() {
        const { ipv4, stream, tailnet } = yield* joinAndEcho("loopback-device")
        assert.strictEqual(tailnet.topology, "loopback")
        assert.isUndefined(tailnet.lan)
        assert.match(tailnet.info.controlUrl, /^https:\/\/127\.0\.0\.1:/)
        yield* echo(stream, "and again")
        // The Go peer reports a path either way (DERP today: the device has no address to advertise here).
        const path = yield* tailnet.pathTo(ipv4)
        assert.oneOf(path._tag, ["Direct", "Relay"])
      }))
  })
})
