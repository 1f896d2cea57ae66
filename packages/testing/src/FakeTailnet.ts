/**
 * A deterministic tailnet in memory, for testing code that uses the `Tailscale` service without
 * a network or the native addon. It implements core's `Backend`, so all of core's real code
 * (decoding, errors, timeouts, sockets, adapters) runs on it. One module: the tailnet's state
 * (nodes, ports, faults) is shared by every device it builds; the byte-level plumbing is in
 * `internal/fakeNet.ts`.
 *
 * - Deterministic: node N gets 100.64.0.N and the matching fd7a:115c:a1e0:ab12:4843:cd96:6240:N
 *   address (as Tailscale's test control server assigns them), names under `domain`, and ids
 *   and keys drawn from `seed`. Same seed and same order of joins, same tailnet.
 * - Control plane: a required auth key (a wrong one is `NotAuthorized`), interactive login,
 *   peers that come and go, ephemeral devices removed when their scope closes.
 * - Faults: control down, a peer offline, connections reset, added latency, UDP loss.
 * - Time is Effect's `Clock`: latency under `TestClock` advances only with `TestClock.adjust`.
 *
 * @since 0.1.0
 */
import type {
  Backend,
  RawAuthState,
  RawConnectOptions,
  RawDevice,
  RawNodeInfo,
  RawSocketAddress,
  RawTcpListener,
  RawUdpSocket
} from "@effect-tailscale/core/Backend"
import { type Named, type NamedTag, Tailscale, type TailscaleOptions, type TailscaleService } from "@effect-tailscale/core/Tailscale"
import * as Tailscale_ from "@effect-tailscale/core/Tailscale"
import type { TailscaleError } from "@effect-tailscale/core/TailscaleError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as NetAddress from "effect/net/NetAddress"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import { Channel, fail, type FakeStream, streamPair } from "./internal/fakeNet.ts"

/** How the in-memory tailnet behaves: the auth key control requires, a seed, latency and faults. */
export interface FakeTailnetOptions {
  /** Seeds node ids and keys. Default 1. */
  readonly seed?: number | undefined
  /** MagicDNS suffix. Default `tail-test.ts.net`, as the loopback tailnet uses. */
  readonly domain?: string | undefined
  /** The auth key control requires. Default `tskey-auth-fake`. */
  readonly authKey?: string | undefined
  /** Bytes one direction of a TCP connection buffers before writes wait. Default 16 KiB. */
  readonly tcpBuffer?: number | undefined
}

/** The largest UDP datagram, as in tailscale-rs's network stack. */
export const maxDatagramBytes = 4096
const UDP_QUEUE = 32

interface Node {
  readonly id: number
  readonly stableId: string
  readonly hostname: string
  readonly ipv4: string
  readonly ipv6: string
  readonly nodeKey: string
  readonly machineKey: string
  readonly discoKey: string
  readonly tags: ReadonlyArray<string>
  readonly ephemeral: boolean
  offline: boolean
  /** By `"<own ip>|<port>"`: the IPv4 and IPv6 address each have their ports. */
  readonly listeners: Map<string, Channel<FakeStream>>
  readonly udp: Map<number, Channel<{ data: Uint8Array; ip: string; port: number }>>
  readonly streams: Set<FakeStream>
}

/** The in-memory tailnet: add devices, and inject faults (control down, a peer offline, resets, latency, loss, a lost device). */
export interface FakeTailnetService {
  readonly authKey: string
  readonly domain: string
  /** Connect devices with `Tailscale.make(backend, options)` to take full control of options. */
  readonly backend: Backend
  /** A device on this tailnet for the scope, joined with the tailnet's auth key unless told otherwise. */
  readonly addDevice: (
    options?: TailscaleOptions & { readonly withoutAuthKey?: boolean | undefined }
  ) => Effect.Effect<TailscaleService, TailscaleError, Scope.Scope>
  /** Nodes currently on the tailnet, in join order. */
  readonly nodes: Effect.Effect<ReadonlyArray<RawNodeInfo>>
  /** New devices without an auth key wait for `completeLogin` instead of being refused. */
  readonly requireLogin: (on: boolean) => Effect.Effect<void>
  /** Approves a login URL that a device reported through `authState`. */
  readonly completeLogin: (url: string) => Effect.Effect<boolean>
  /** While down, connecting fails with `ControlUnreachable` and waits for control never end. */
  readonly setControlDown: (down: boolean) => Effect.Effect<void>
  /** An offline node shows as offline to its peers and cannot be reached. */
  readonly setOffline: (hostname: string, offline: boolean) => Effect.Effect<void>
  /** Resets every open TCP connection of the node, as a peer's RST would. */
  readonly resetConnections: (hostname: string) => Effect.Effect<void>
  /** Delay added to each connect, write and datagram. */
  readonly setLatency: (latency: Duration.Input) => Effect.Effect<void>
  /** Drops every `n`th datagram (0: none). */
  readonly setUdpLoss: (everyNth: number) => Effect.Effect<void>
  /**
   * Loses the node's device, as when tailscale-rs's runtime stops: its calls fail with
   * `DeviceLost`, its sockets close, and the service builds it again (same node, same addresses)
   * unless reconnection is off.
   */
  readonly loseDevice: (hostname: string, cause?: string) => Effect.Effect<void>
}

/** The in-memory tailnet in context. */
export class FakeTailnet extends Context.Service<FakeTailnet, FakeTailnetService>()(
  "@effect-tailscale/testing/FakeTailnet"
) {}

/** mulberry32: small, seedable, and the same on every platform. */
const random = (seed: number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const hex = (next: () => number, bytes: number) =>
  Array.from({ length: bytes }, () => Math.floor(next() * 256).toString(16).padStart(2, "0")).join("")

const normalizeIp = (text: string) => {
  const parsed = NetAddress.ipFromString(text)
  return Result.isSuccess(parsed) ? NetAddress.formatIp(parsed.success) : text
}

/** An in-memory tailnet for the current scope. */
export const make = (options: FakeTailnetOptions = {}): Effect.Effect<FakeTailnetService> =>
  Effect.gen(function*() {
    const runPromise = Effect.runPromiseWith(yield* Effect.context<never>())
    const next = random(options.seed ?? 1)
    const domain = options.domain ?? "tail-test.ts.net"
    const authKey = options.authKey ?? "tskey-auth-fake"
    const capacity = options.tcpBuffer ?? 16 * 1024
    const nodes = new Map<number, Node>()
    const logins = new Map<string, () => void>()
    let joined = 0
    let controlDown = false
    let requireLogin = false
    let latency = Duration.zero
    let udpLossEvery = 0
    let datagramsSent = 0
    let ephemeralPort = 49152

    const delay = (): Promise<void> =>
      Duration.isZero(latency) ? Promise.resolve() : runPromise(Effect.sleep(latency))
    const never = <A>() => new Promise<A>(() => {})

    const byIp = (ip: string) => [...nodes.values()].find((node) => node.ipv4 === ip || node.ipv6 === ip)

    const info = (node: Node): RawNodeInfo => ({
      id: node.id,
      stableId: node.stableId,
      hostname: node.hostname,
      fqdn: `${node.hostname}.${domain}.`,
      tailnet: domain,
      capabilityVersion: 130,
      status: node.offline
        ? { kind: "offline", lastSeenEstimated: new Date(0).toISOString() }
        : { kind: "online" },
      nodeCapabilities: {},
      tags: node.tags,
      tailnetIpv4: `${node.ipv4}/32`,
      tailnetIpv6: `${node.ipv6}/128`,
      nodeKey: node.nodeKey,
      nodeKeyExpiry: "0001-01-01T00:00:00Z",
      machineKey: node.machineKey,
      discoKey: node.discoKey,
      acceptedRoutes: [`${node.ipv4}/32`, `${node.ipv6}/128`],
      underlayAddresses: [],
      derpRegion: 900
    })

    const register = (connect: RawConnectOptions): Node => {
      const id = ++joined
      const node: Node = {
        id,
        stableId: `n${hex(next, 6)}CNTRL`,
        hostname: connect.hostname ?? `node-${id}`,
        ipv4: `100.64.${id >> 8}.${id & 255}`,
        ipv6: `fd7a:115c:a1e0:ab12:4843:cd96:62${(64 + (id >> 8)).toString(16)}:${(id & 255).toString(16)}`,
        nodeKey: `nodekey:${hex(next, 32)}`,
        machineKey: `mkey:${hex(next, 32)}`,
        discoKey: `discokey:${hex(next, 32)}`,
        tags: connect.tags ?? [],
        ephemeral: connect.ephemeral ?? false,
        offline: false,
        listeners: new Map(),
        udp: new Map(),
        streams: new Set()
      }
      nodes.set(id, node)
      return node
    }

    // Each connected device's way to be lost, by node.
    const losers = new Map<Node, (cause: string) => void>()

    const connectDevice = async (connect: RawConnectOptions, existing?: Node): Promise<RawDevice> => {
      if (controlDown) throw fail("CONTROL_UNREACHABLE", "connect: the control server is down")
      // Registration: immediate with the right key, refused with a wrong one, and with none
      // either refused or (with requireLogin) waiting for a person to approve a login URL.
      type Registration = { readonly _tag: "Ok"; readonly node: Node } | { readonly _tag: "Refused" }
      let registration: Promise<Registration>
      let loginUrl: string | undefined
      if (existing !== undefined) {
        existing.offline = false
        registration = Promise.resolve({ _tag: "Ok", node: existing })
      } else if (connect.authKey === authKey) {
        registration = Promise.resolve({ _tag: "Ok", node: register(connect) })
      } else if (connect.authKey === undefined && requireLogin) {
        const url = `https://login.fake/a/${hex(next, 10)}`
        loginUrl = url
        registration = new Promise((resolve) =>
          logins.set(url, () => {
            loginUrl = undefined
            resolve({ _tag: "Ok", node: register(connect) })
          })
        )
      } else {
        registration = Promise.resolve({ _tag: "Refused" })
      }

      let closed: Promise<boolean> | undefined
      let registered: Node | undefined
      let lostCause: string | undefined
      let settleEnded: (cause: string | null) => void = () => {}
      const ended = new Promise<string | null>((resolve) => (settleEnded = resolve))
      const lose = (cause: string) => {
        if (closed || lostCause !== undefined || registered === undefined) return
        lostCause = cause
        closeSockets(registered)
        registered.offline = true
        losers.delete(registered)
        settleEnded(cause)
      }
      void registration.then((result) => {
        if (result._tag !== "Ok") return
        registered = result.node
        losers.set(registered, lose)
        if (closed) stop() // shut down before registration finished
      })
      const closedError = () => fail("DEVICE_CLOSED", "the device is closed")
      const self = async (what: string): Promise<Node> => {
        if (lostCause !== undefined) {
          throw fail("DEVICE_LOST", `${what}: the device's runtime has stopped (${lostCause}); it must be connected again`)
        }
        if (closed) throw closedError()
        if (controlDown) return never()
        const result = await registration
        if (closed) throw closedError()
        if (result._tag === "Refused") {
          throw fail("NOT_AUTHORIZED", `${what}: control refused this device's registration: invalid authkey`)
        }
        return result.node
      }
      const peers = (node: Node) => [...nodes.values()].filter((peer) => peer !== node)
      const bindable = (node: Node, ip: string) => {
        const normalized = normalizeIp(ip)
        if (normalized !== node.ipv4 && normalized !== node.ipv6) {
          throw fail("INVALID_ARGUMENT", `ip: ${ip} is not an address of this device`)
        }
        return normalized
      }

      const device: RawDevice = {
        ipv4: async () => (await self("ipv4")).ipv4,
        ipv6: async () => (await self("ipv6")).ipv6,
        selfNode: async () => info(await self("selfNode")),
        authState: async (): Promise<RawAuthState> => {
          if (closed) throw closedError()
          if (loginUrl !== undefined) return { authorized: false, loginUrl }
          await self("authState")
          return { authorized: true }
        },
        peerByName: async (name) => {
          const node = await self("peerByName")
          const wanted = name.replace(/\.$/, "")
          const peer = peers(node).find((p) => p.hostname === wanted || `${p.hostname}.${domain}` === wanted)
          return peer ? info(peer) : null
        },
        peerByIp: async (ip) => {
          const node = await self("peerByIp")
          const peer = byIp(normalizeIp(ip))
          return peer && peer !== node ? info(peer) : null
        },
        peersWithRoute: async (ip) => {
          const node = await self("peersWithRoute")
          const peer = byIp(normalizeIp(ip))
          return peer && peer !== node ? [info(peer)] : []
        },
        tcpListen: async (ip, port) => {
          const node = await self("tcpListen")
          const endpoint = `${bindable(node, ip)}|${port}`
          if (node.listeners.has(endpoint)) throw fail("ADDRESS_IN_USE", `TCP ${ip}:${port} is already bound on this device`)
          const incoming = new Channel<FakeStream>()
          node.listeners.set(endpoint, incoming)
          let listenerClosed = false
          const listener: RawTcpListener = {
            accept: () => incoming.take(),
            localAddress: { ip, port },
            close: () => {
              if (listenerClosed) return
              listenerClosed = true
              // A device built again after a loss may listen on the same endpoint by now.
              if (node.listeners.get(endpoint) === incoming) node.listeners.delete(endpoint)
              incoming.close(fail("DEVICE_CLOSED", "the TCP listener is closed"))
            }
          }
          return listener
        },
        tcpConnect: async (ip, port) => {
          const node = await self("tcpConnect")
          const target = byIp(normalizeIp(ip))
          // Nobody there, or offline: SYNs go unanswered, as on a real tailnet; the caller's
          // dial timeout ends the wait.
          if (target === undefined || target.offline || node.offline) return never()
          await delay()
          const incoming = target.listeners.get(`${normalizeIp(ip)}|${port}`)
          if (incoming === undefined) {
            throw fail("CONNECTION_REFUSED", `TCP connect: the peer refused the connection to ${ip}:${port}`)
          }
          const local: RawSocketAddress = { ip: ip.includes(":") ? node.ipv6 : node.ipv4, port: ephemeralPort++ }
          const [ours, theirs] = streamPair(local, { ip: normalizeIp(ip), port }, { capacity, delay })
          node.streams.add(ours)
          target.streams.add(theirs)
          incoming.push(theirs)
          return ours
        },
        udpBind: async (ip, port) => {
          const node = await self("udpBind")
          const address = bindable(node, ip)
          if (node.udp.has(port)) throw fail("ADDRESS_IN_USE", `UDP ${ip}:${port} is already bound on this device`)
          const inbox = new Channel<{ data: Uint8Array; ip: string; port: number }>()
          node.udp.set(port, inbox)
          let socketClosed = false
          const socket: RawUdpSocket = {
            recv: () => inbox.take(),
            send: async (toIp, toPort, data) => {
              if (socketClosed || node.udp.get(port) !== inbox) throw fail("DEVICE_CLOSED", "the UDP socket is closed")
              if (data.length > maxDatagramBytes) {
                throw fail("MESSAGE_TOO_LARGE", `UDP send: ${data.length} bytes is more than the ${maxDatagramBytes} a datagram can hold`)
              }
              const to = normalizeIp(toIp)
              if (to.includes(":") !== address.includes(":")) {
                throw fail("INVALID_ARGUMENT", "UDP send: address family mismatch")
              }
              await delay()
              datagramsSent++
              if (udpLossEvery > 0 && datagramsSent % udpLossEvery === 0) return
              const target = byIp(to)
              const queue = target && !target.offline ? target.udp.get(toPort) : undefined
              if (queue && queue.size < UDP_QUEUE) queue.push({ data: new Uint8Array(data), ip: address, port })
            },
            localAddress: { ip, port },
            close: () => {
              if (socketClosed) return
              socketClosed = true
              if (node.udp.get(port) === inbox) node.udp.delete(port)
              inbox.close(fail("DEVICE_CLOSED", "the UDP socket is closed"))
            }
          }
          return socket
        },
        shutdown: (_timeoutMs) => {
          closed ??= Promise.resolve(stop())
          settleEnded(lostCause ?? null)
          return closed
        },
        waitLost: () => ended,
        respawn: () => connectDevice(connect, registered)
      }
      const closeSockets = (node: Node) => {
        for (const stream of node.streams) stream.close()
        for (const listener of node.listeners.values()) listener.close(closedError())
        for (const socket of node.udp.values()) socket.close(closedError())
        node.streams.clear()
        node.listeners.clear()
        node.udp.clear()
      }
      const stop = (): boolean => {
        if (loginUrl !== undefined) logins.delete(loginUrl)
        if (registered === undefined || lostCause !== undefined) return true
        losers.delete(registered)
        closeSockets(registered)
        if (registered.ephemeral) nodes.delete(registered.id)
        else registered.offline = true
        return true
      }
      return device
    }

    const backend: Backend = { connect: (options) => connectDevice(options) }
    const find = (hostname: string) => [...nodes.values()].filter((node) => node.hostname === hostname)

    const service: FakeTailnetService = {
      authKey,
      domain,
      backend,
      addDevice: (deviceOptions = {}) => {
        const { withoutAuthKey, ...rest } = deviceOptions
        return Tailscale_.make(backend, {
          ...rest,
          ...(withoutAuthKey || rest.authKey ? {} : { authKey: Redacted.make(authKey) })
        })
      },
      nodes: Effect.sync(() => [...nodes.values()].map(info)),
      requireLogin: (on) => Effect.sync(() => void (requireLogin = on)),
      completeLogin: (url) =>
        Effect.sync(() => {
          const complete = logins.get(url)
          logins.delete(url)
          complete?.()
          return complete !== undefined
        }),
      setControlDown: (down) => Effect.sync(() => void (controlDown = down)),
      setOffline: (hostname, offline) => Effect.sync(() => find(hostname).forEach((node) => (node.offline = offline))),
      resetConnections: (hostname) =>
        Effect.sync(() => find(hostname).forEach((node) => node.streams.forEach((stream) => stream.resetConnection()))),
      setLatency: (input) => Effect.sync(() => void (latency = Duration.fromInputUnsafe(input))),
      setUdpLoss: (everyNth) => Effect.sync(() => void (udpLossEvery = everyNth)),
      loseDevice: (hostname, cause = "lost by FakeTailnet.loseDevice") =>
        Effect.sync(() => find(hostname).forEach((node) => losers.get(node)?.(cause)))
    }
    return service
  })

/** An in-memory tailnet for the layer's lifetime. */
export const layer = (options?: FakeTailnetOptions): Layer.Layer<FakeTailnet> => Layer.effect(FakeTailnet, make(options))

/** A `Tailscale` device on the `FakeTailnet` in context. */
export const device = (
  options?: TailscaleOptions & { readonly withoutAuthKey?: boolean | undefined }
): Layer.Layer<Tailscale, TailscaleError, FakeTailnet> =>
  Layer.effect(Tailscale, Effect.flatMap(FakeTailnet, (tailnet) => tailnet.addDevice(options)))

/** A device on the `FakeTailnet` in context, under `tag` (from `Tailscale.named`). */
export const deviceNamed = <Name extends string>(
  tag: NamedTag<Name>,
  options?: TailscaleOptions & { readonly withoutAuthKey?: boolean | undefined }
): Layer.Layer<Named<Name>, TailscaleError, FakeTailnet> =>
  Layer.effect(tag, Effect.flatMap(FakeTailnet, (tailnet) => tailnet.addDevice(options)))
