/**
 * One device of `FakeTailnet`: the `RawDevice` its backend hands to core on each connect. It
 * owns what passes between a device and its tailnet: registration (auth key, interactive login),
 * lookups, the sockets of the device's node, and the device's end (shutdown, loss, a respawn on
 * the same node). It keeps no tailnet state of its own: that comes in as `TailnetState`, which
 * `FakeTailnet.ts` makes and its fault switches change, so the public module stays options,
 * service and layers. Backend-shaped (promises), no Effect, like the byte plumbing in `fakeNet.ts`.
 */
import type {
  RawAuthState,
  RawConnectOptions,
  RawDevice,
  RawNodeInfo,
  RawSocketAddress,
  RawTcpListener,
  RawUdpSocket,
  RawUserProfile,
  RawWhoIs
} from "@effect-tailscale/core/Backend"
import * as IpNetwork from "effect/net/IpNetwork"
import * as NetAddress from "effect/net/NetAddress"
import * as Result from "effect/Result"
import { Channel, fail, type FakeStream, MAX_DATAGRAM_BYTES, streamPair, UDP_QUEUE } from "./fakeNet.ts"

/** A datagram in a UDP socket's queue, with the sender's address. */
export interface Datagram {
  readonly data: Uint8Array
  readonly ip: string
  readonly port: number
}

/** A node of the tailnet: its identity, and the sockets its device has open. */
export interface FakeNode {
  readonly id: number
  readonly stableId: string
  readonly hostname: string
  readonly ipv4: string
  readonly ipv6: string
  readonly nodeKey: string
  readonly machineKey: string
  readonly discoKey: string
  readonly tags: ReadonlyArray<string>
  /** The user who owns the node (none when tagged). */
  user: RawUserProfile | undefined
  /** Node capabilities: each name with its values as JSON texts. */
  nodeCapabilities: Readonly<Record<string, ReadonlyArray<string>>>
  readonly ephemeral: boolean
  offline: boolean
  /** By `"<own ip>|<port>"`: the IPv4 and IPv6 address each have their ports. */
  readonly listeners: Map<string, Channel<FakeStream>>
  readonly udp: Map<number, Channel<Datagram>>
  readonly streams: Set<FakeStream>
  /** The direct path to each peer that has one (`ip:port`, by peer id); the rest go through DERP. */
  readonly directPaths: Map<number, string>
  /** Whether it offers itself as an exit node: control approved its `0.0.0.0/0` and `::/0`. */
  exitNode: boolean
  /**
   * By `"<ip>|<port>"`: servers outside the tailnet that this node reaches as exit node
   * (`FakeTailnet.listenOutside`); the dials of devices that chose it go there.
   */
  readonly outside: Map<string, Channel<FakeStream>>
}

/**
 * An app-capability grant of the policy: callers matching `from` get `capabilities` toward the
 * devices matching `to`. Each entry is `"*"`, a hostname, an address or a CIDR.
 */
export interface FakeGrant {
  readonly from: ReadonlyArray<string>
  readonly to: ReadonlyArray<string>
  /** Capability name to its values, each a JSON text. */
  readonly capabilities: Readonly<Record<string, ReadonlyArray<string>>>
}

/**
 * What a device reads and changes of its tailnet, shared by every device of one `FakeTailnet`.
 * The mutable fields are the fault switches `FakeTailnet`'s service sets, and counters.
 */
export interface TailnetState {
  /** MagicDNS suffix. */
  readonly domain: string
  /** The auth key control accepts. */
  readonly authKey: string
  /** Bytes one direction of a TCP connection buffers before writes wait. */
  readonly capacity: number
  /** Every node by id, in join order. */
  readonly nodes: Map<number, FakeNode>
  /** Login URLs waiting for `completeLogin`, each with what approving it does. */
  readonly logins: Map<string, () => void>
  /** Each connected device's way to be lost, by node. */
  readonly losers: Map<FakeNode, (cause: string) => void>
  /**
   * While down, connecting fails and a device that is not registered yet waits forever; a
   * registered one goes on from its network map, as the crate's devices do.
   */
  controlDown: boolean
  /** Called whenever `controlDown` changes: each registered device's control watches. */
  readonly controlWatchers: Set<() => void>
  /** Counts the changes to the nodes (joins, leaves, going offline or online): the peer tables' version. */
  peersVersion: number
  /** Called whenever the nodes change: each device's peer watches. */
  readonly peerWatchers: Set<() => void>
  /** Marks a change to the nodes and tells every peer watch. */
  readonly peersChanged: () => void
  /** Counts the changes to any node's direct paths: the path watches' version. */
  pathsVersion: number
  /** Called whenever a direct path changes: each device's path watches. */
  readonly pathWatchers: Set<() => void>
  /** The policy's app-capability grants. */
  grants: ReadonlyArray<FakeGrant>
  /** Devices without an auth key wait for a login instead of being refused. */
  requireLogin: boolean
  /** Drops every `n`th datagram (0: none). */
  udpLossEvery: number
  /** Datagrams sent so far on the tailnet, which `udpLossEvery` counts. */
  datagramsSent: number
  /** The local port of the next outgoing TCP connection. */
  ephemeralPort: number
  /** Waits the tailnet's latency (on Effect's `Clock`). */
  readonly delay: () => Promise<void>
  /** `bytes` seeded random bytes as hex: ids, keys and login URLs. */
  readonly randomHex: (bytes: number) => string
  /** Adds a node for a device control accepted. */
  readonly register: (connect: RawConnectOptions) => FakeNode
}

/** The node as core's backend reports a node. */
export const nodeInfo = (node: FakeNode, domain: string): RawNodeInfo => ({
  id: node.id,
  stableId: node.stableId,
  hostname: node.hostname,
  fqdn: `${node.hostname}.${domain}.`,
  tailnet: domain,
  capabilityVersion: 130,
  status: node.offline
    ? { _tag: "Offline", lastSeenEstimated: new Date(0).toISOString() }
    : { _tag: "Online" },
  nodeCapabilities: node.nodeCapabilities,
  tags: node.tags,
  ...(node.user === undefined || node.tags.length > 0 ? {} : { user: node.user }),
  tailnetIpv4: `${node.ipv4}/32`,
  tailnetIpv6: `${node.ipv6}/128`,
  nodeKey: node.nodeKey,
  nodeKeyExpiry: "0001-01-01T00:00:00Z",
  machineKey: node.machineKey,
  discoKey: node.discoKey,
  acceptedRoutes: [`${node.ipv4}/32`, `${node.ipv6}/128`, ...(node.exitNode ? ["0.0.0.0/0", "::/0"] : [])],
  underlayAddresses: [],
  derpRegion: 900
})

const normalizeIp = (text: string) => {
  const parsed = NetAddress.ipFromString(text)
  return Result.isSuccess(parsed) ? NetAddress.formatIp(parsed.success) : text
}

const byIp = (state: TailnetState, ip: string) =>
  [...state.nodes.values()].find((node) => node.ipv4 === ip || node.ipv6 === ip)

const tailnetRanges = [IpNetwork.fromStringUnsafe("100.64.0.0/10"), IpNetwork.fromStringUnsafe("fd7a:115c:a1e0::/48")]

/** Whether `ip` is in the tailnet's own ranges, where peers have their addresses; anything else is outside. */
export const inTailnet = (ip: string) => {
  const parsed = NetAddress.ipFromString(ip)
  return Result.isSuccess(parsed) && tailnetRanges.some((range) => IpNetwork.contains(range, parsed.success))
}

/** The peer of `node` that `wanted` names: a tailnet address, or a hostname or FQDN. */
const findPeer = (state: TailnetState, node: FakeNode, wanted: string) => {
  const name = wanted.replace(/\.$/, "").toLowerCase()
  return [...state.nodes.values()].find((peer) =>
    peer !== node &&
    (peer.ipv4 === normalizeIp(wanted) || peer.ipv6 === normalizeIp(wanted) || peer.hostname === name ||
      `${peer.hostname}.${state.domain}` === name)
  )
}

/** A device's exit node: wanted by name or address until a peer has it, then that peer. */
type ExitChoice = { readonly _tag: "Wanted"; readonly peer: string } | {
  readonly _tag: "Chosen"
  readonly node: FakeNode
}

/** Whether `node` is what a grant's entry names: `"*"`, its hostname, an address or a CIDR of its. */
const names = (entry: string, node: FakeNode) => {
  if (entry === "*" || entry === node.hostname) return true
  const network = IpNetwork.fromString(entry.includes("/") ? entry : `${entry}/${entry.includes(":") ? 128 : 32}`)
  if (Result.isFailure(network)) return false
  return [node.ipv4, node.ipv6].some((ip) => {
    const parsed = NetAddress.ipFromString(ip)
    return Result.isSuccess(parsed) && IpNetwork.contains(network.success, parsed.success)
  })
}

/** The app capabilities the grants give `caller` toward `self`, values in grant order. */
export const appCapabilities = (grants: ReadonlyArray<FakeGrant>, caller: FakeNode, self: FakeNode) => {
  const granted: Record<string, Array<string>> = {}
  for (const grant of grants) {
    if (!grant.from.some((entry) => names(entry, caller)) || !grant.to.some((entry) => names(entry, self))) continue
    for (const [name, values] of Object.entries(grant.capabilities)) (granted[name] ??= []).push(...values)
  }
  return granted
}

const never = <A>() => new Promise<A>(() => {})

const deviceClosed = () => fail("DEVICE_CLOSED", "device", "is closed")

/** `ip` as one of the node's own addresses, normalized; any other address is `INVALID_ARGUMENT`. */
const bindable = (node: FakeNode, ip: string) => {
  const normalized = normalizeIp(ip)
  if (normalized !== node.ipv4 && normalized !== node.ipv6) {
    throw fail("INVALID_ARGUMENT", "ip", `${ip} is not an address of this device`)
  }
  return normalized
}

type Registration = { readonly _tag: "Ok"; readonly node: FakeNode } | { readonly _tag: "Refused" }

/** A device's registration, and its login URL while it waits for a person to approve it. */
interface Pending {
  readonly result: Promise<Registration>
  loginUrl: string | undefined
}

/**
 * Registration: the same node for a device built again, immediate with the right key, refused
 * with a wrong one, and with none either refused or (with requireLogin) waiting for a person to
 * approve a login URL.
 */
const registration = (state: TailnetState, connect: RawConnectOptions, existing: FakeNode | undefined): Pending => {
  if (existing !== undefined) {
    existing.offline = false
    state.peersChanged()
    return { result: Promise.resolve({ _tag: "Ok", node: existing }), loginUrl: undefined }
  }
  if (connect.authKey === state.authKey) {
    return { result: Promise.resolve({ _tag: "Ok", node: state.register(connect) }), loginUrl: undefined }
  }
  if (connect.authKey === undefined && state.requireLogin) {
    const url = `https://login.fake/a/${state.randomHex(10)}`
    const pending: Pending = {
      loginUrl: url,
      result: new Promise((resolve) =>
        state.logins.set(url, () => {
          pending.loginUrl = undefined
          resolve({ _tag: "Ok", node: state.register(connect) })
        })
      )
    }
    return pending
  }
  return { result: Promise.resolve({ _tag: "Refused" }), loginUrl: undefined }
}

/** A TCP listener on the node: dials to `ip:port` wait in its queue for `accept`. */
const listenTcp = (node: FakeNode, ip: string, port: number): RawTcpListener => {
  const endpoint = `${bindable(node, ip)}|${port}`
  if (node.listeners.has(endpoint)) {
    throw fail("ADDRESS_IN_USE", "TCP listen", `${ip}:${port} is already bound on this device`)
  }
  return queueListener(node.listeners, endpoint, { ip, port })
}

/**
 * A listener whose connections wait in a queue registered in `table` under `endpoint` until
 * `accept`; closing it takes the queue out of `table`, unless another listener holds the
 * endpoint by then (a device built again after a loss may listen on the same endpoint).
 */
const queueListener = (
  table: Map<string, Channel<FakeStream>>,
  endpoint: string,
  localAddress: { readonly ip: string; readonly port: number }
): RawTcpListener => {
  const incoming = new Channel<FakeStream>()
  table.set(endpoint, incoming)
  let listenerClosed = false
  return {
    accept: () => incoming.take(),
    localAddress,
    close: () => {
      if (listenerClosed) return
      listenerClosed = true
      if (table.get(endpoint) === incoming) table.delete(endpoint)
      incoming.close(fail("DEVICE_CLOSED", "TCP listener", "is closed"))
    }
  }
}

/**
 * Dials `ip:port` from the node: a stream pair whose far end waits in the target's listener, or
 * for an address outside the tailnet, in the exit node's server there.
 */
const dialTcp = async (
  state: TailnetState,
  node: FakeNode,
  ip: string,
  port: number,
  exitNode: FakeNode | undefined
): Promise<FakeStream> => {
  if (!inTailnet(normalizeIp(ip))) return dialOutside(state, node, ip, port, exitNode)
  const target = byIp(state, normalizeIp(ip))
  // Nobody there, or offline: SYNs go unanswered, as on a real tailnet; the caller's
  // dial timeout ends the wait.
  if (target === undefined || target.offline || node.offline) return never()
  await state.delay()
  const incoming = target.listeners.get(`${normalizeIp(ip)}|${port}`)
  if (incoming === undefined) {
    throw fail("CONNECTION_REFUSED", "TCP connect", `the peer refused the connection to ${ip}:${port}`)
  }
  return connectStreams(state, node, ip, port, target, incoming)
}

/** A dial to an address outside the tailnet: through the exit node, or no route (as the addon fails). */
const dialOutside = async (
  state: TailnetState,
  node: FakeNode,
  ip: string,
  port: number,
  exitNode: FakeNode | undefined
): Promise<FakeStream> => {
  if (exitNode === undefined || !exitNode.exitNode) {
    throw fail(
      "CONNECTION_REFUSED",
      "TCP connect",
      `no route to ${ip}:${port}: the address is outside the tailnet, no peer's subnet route covers it${
        exitNode === undefined ? ", and no exit node is set" : ""
      }`
    )
  }
  if (exitNode.offline || node.offline) return never()
  await state.delay()
  const incoming = exitNode.outside.get(`${normalizeIp(ip)}|${port}`)
  if (incoming === undefined) {
    throw fail("CONNECTION_REFUSED", "TCP connect", `${ip}:${port} refused the exit node's connection`)
  }
  return connectStreams(state, node, ip, port, exitNode, incoming)
}

/**
 * A connection from `node` to `ip:port`, accepted by `far` (the peer, or the exit node for an
 * outside address): our end is returned, theirs waits in `incoming` for `accept`.
 */
const connectStreams = (
  state: TailnetState,
  node: FakeNode,
  ip: string,
  port: number,
  far: FakeNode,
  incoming: Channel<FakeStream>
): FakeStream => {
  const local: RawSocketAddress = { ip: ip.includes(":") ? node.ipv6 : node.ipv4, port: state.ephemeralPort++ }
  const [ours, theirs] = streamPair(local, { ip: normalizeIp(ip), port }, {
    capacity: state.capacity,
    delay: state.delay
  })
  node.streams.add(ours)
  far.streams.add(theirs)
  incoming.push(theirs)
  return ours
}

/**
 * A TCP listener at `ip:port` outside the tailnet, reached through `exitNode`; `undefined` when
 * that endpoint is served already. `ip` must be normalized and outside the tailnet.
 */
export const listenOutside = (exitNode: FakeNode, ip: string, port: number): RawTcpListener | undefined => {
  const endpoint = `${ip}|${port}`
  if (exitNode.outside.has(endpoint)) return undefined
  return queueListener(exitNode.outside, endpoint, { ip, port })
}

/** A UDP socket on the node; what it sends goes through the tailnet's latency and loss. */
const bindUdp = (state: TailnetState, node: FakeNode, ip: string, port: number): RawUdpSocket => {
  const address = bindable(node, ip)
  if (node.udp.has(port)) throw fail("ADDRESS_IN_USE", "UDP bind", `${ip}:${port} is already bound on this device`)
  const inbox = new Channel<Datagram>()
  node.udp.set(port, inbox)
  let socketClosed = false
  return {
    recv: () => inbox.take(),
    send: async (toIp, toPort, data) => {
      if (socketClosed || node.udp.get(port) !== inbox) throw fail("DEVICE_CLOSED", "UDP socket", "is closed")
      if (data.length > MAX_DATAGRAM_BYTES) {
        throw fail(
          "MESSAGE_TOO_LARGE",
          "UDP send",
          `${data.length} bytes is more than the ${MAX_DATAGRAM_BYTES} a datagram can hold`
        )
      }
      const to = normalizeIp(toIp)
      if (to.includes(":") !== address.includes(":")) {
        throw fail("INVALID_ARGUMENT", "UDP send", "address family mismatch")
      }
      await state.delay()
      state.datagramsSent++
      if (state.udpLossEvery > 0 && state.datagramsSent % state.udpLossEvery === 0) return
      const target = byIp(state, to)
      const queue = target && !target.offline ? target.udp.get(toPort) : undefined
      if (queue && queue.size < UDP_QUEUE) queue.push({ data: new Uint8Array(data), ip: address, port })
    },
    localAddress: { ip, port },
    close: () => {
      if (socketClosed) return
      socketClosed = true
      if (node.udp.get(port) === inbox) node.udp.delete(port)
      inbox.close(fail("DEVICE_CLOSED", "UDP socket", "is closed"))
    }
  }
}

/** Closes every stream, listener and UDP socket of the node. */
const closeSockets = (node: FakeNode) => {
  for (const stream of node.streams) stream.close()
  for (const listener of node.listeners.values()) listener.close(deviceClosed())
  for (const socket of node.udp.values()) socket.close(deviceClosed())
  node.streams.clear()
  node.listeners.clear()
  node.udp.clear()
}

/** Connects a device to the tailnet; given the node of a lost device, builds that device again. */
export const connectDevice = async (
  state: TailnetState,
  connect: RawConnectOptions,
  existing?: FakeNode
): Promise<RawDevice> => {
  if (state.controlDown) throw fail("CONTROL_UNREACHABLE", "connect", "the control server is down")
  const pending = registration(state, connect, existing)

  let closed: Promise<boolean> | undefined
  let registered: FakeNode | undefined
  let lostCause: string | undefined
  let settleEnded: (cause: string | null) => void = () => {}
  const ended = new Promise<string | null>((resolve) => (settleEnded = resolve))
  const lose = (cause: string) => {
    if (closed || lostCause !== undefined || registered === undefined) return
    lostCause = cause
    closeSockets(registered)
    registered.offline = true
    state.losers.delete(registered)
    state.peersChanged()
    settleEnded(cause)
  }
  const stop = (): boolean => {
    if (pending.loginUrl !== undefined) state.logins.delete(pending.loginUrl)
    if (registered === undefined || lostCause !== undefined) return true
    state.losers.delete(registered)
    closeSockets(registered)
    if (registered.ephemeral) state.nodes.delete(registered.id)
    else registered.offline = true
    state.peersChanged()
    return true
  }
  void pending.result.then((result) => {
    if (result._tag !== "Ok") return
    registered = result.node
    state.losers.set(registered, lose)
    if (closed) stop() // shut down before registration finished
  })
  /** This device's node, once registered; the device's state decides how a call fails or waits. */
  const self = async (what: string): Promise<FakeNode> => {
    if (lostCause !== undefined) {
      throw fail("DEVICE_LOST", what, `the device's runtime has stopped (${lostCause}); it must be connected again`)
    }
    if (closed) throw deviceClosed()
    if (state.controlDown && registered === undefined) return never()
    const result = await pending.result
    if (closed) throw deviceClosed()
    if (result._tag === "Refused") {
      throw fail("NOT_AUTHORIZED", what, `control refused this device's registration: invalid authkey`)
    }
    return result.node
  }
  /**
   * Resolves with what `next` gives for this device's node, once it gives something: checked now,
   * at registration, and whenever `watchers` are called; `null` once the device ends.
   */
  const watchUntil = <A>(watchers: Set<() => void>, next: (node: FakeNode) => A | undefined) =>
    new Promise<A | null>((resolve) => {
      const done = (value: A | null) => {
        watchers.delete(check)
        resolve(value)
      }
      const check = () => {
        if (closed || lostCause !== undefined) return done(null)
        if (registered === undefined) return
        const value = next(registered)
        if (value !== undefined) done(value)
      }
      watchers.add(check)
      void ended.then(() => done(null))
      void pending.result.then(check)
      check()
    })
  const peers = (node: FakeNode) => [...state.nodes.values()].filter((peer) => peer !== node)
  const info = (node: FakeNode) => nodeInfo(node, state.domain)
  let exit: ExitChoice | undefined = connect.exitNode === undefined
    ? undefined
    : { _tag: "Wanted", peer: connect.exitNode }
  /** The exit node: a wanted one is looked up until a peer has it, as in each network map. */
  const exitNodeOf = (node: FakeNode): FakeNode | undefined => {
    if (exit?._tag === "Wanted") {
      const found = findPeer(state, node, exit.peer)
      if (found !== undefined) exit = { _tag: "Chosen", node: found }
    }
    return exit?._tag === "Chosen" && state.nodes.has(exit.node.id) ? exit.node : undefined
  }

  return {
    ipv4: async () => (await self("ipv4")).ipv4,
    ipv6: async () => (await self("ipv6")).ipv6,
    selfNode: async () => info(await self("selfNode")),
    authState: async (): Promise<RawAuthState> => {
      if (closed) throw deviceClosed()
      if (pending.loginUrl !== undefined) return { _tag: "NeedsLogin", url: pending.loginUrl }
      await self("authState")
      return { _tag: "Authorized" }
    },
    peerByName: async (name) => {
      const node = await self("peerByName")
      const wanted = name.replace(/\.$/, "")
      const peer = peers(node).find((p) => p.hostname === wanted || `${p.hostname}.${state.domain}` === wanted)
      return peer ? info(peer) : null
    },
    peerByIp: async (ip) => {
      const node = await self("peerByIp")
      const peer = byIp(state, normalizeIp(ip))
      return peer && peer !== node ? info(peer) : null
    },
    whoIs: async (ip): Promise<RawWhoIs | null> => {
      const node = await self("whoIs")
      const peer = byIp(state, normalizeIp(ip))
      if (peer === undefined || peer === node) return null
      return { node: info(peer), appCapabilities: appCapabilities(state.grants, peer, node) }
    },
    peersWithRoute: async (ip) => {
      const node = await self("peersWithRoute")
      if (!inTailnet(normalizeIp(ip))) {
        // Only the chosen exit node's default routes count, as on the addon.
        const exitNode = exitNodeOf(node)
        return exitNode?.exitNode ? [info(exitNode)] : []
      }
      const peer = byIp(state, normalizeIp(ip))
      return peer && peer !== node ? [info(peer)] : []
    },
    setExitNode: async (wanted) => {
      const node = await self("setExitNode")
      if (wanted === null) {
        exit = undefined
        return null
      }
      const peer = findPeer(state, node, wanted)
      if (peer === undefined) {
        throw fail("INVALID_ARGUMENT", "peer", `no peer has that name or tailnet address (got "${wanted}")`)
      }
      if (!peer.exitNode) {
        throw fail(
          "INVALID_ARGUMENT",
          "peer",
          `does not offer itself as an exit node (control has approved no 0.0.0.0/0 and ::/0 routes for it) (got "${wanted}")`
        )
      }
      exit = { _tag: "Chosen", node: peer }
      return info(peer)
    },
    tcpListen: async (ip, port) => listenTcp(await self("tcpListen"), ip, port),
    tcpConnect: async (ip, port) => {
      const node = await self("tcpConnect")
      return dialTcp(state, node, ip, port, exitNodeOf(node))
    },
    udpBind: async (ip, port) => bindUdp(state, await self("udpBind"), ip, port),
    shutdown: (_timeoutMs) => {
      closed ??= Promise.resolve(stop())
      settleEnded(lostCause ?? null)
      return closed
    },
    watchPaths: (known) =>
      watchUntil(state.pathWatchers, (node) =>
        known === undefined || state.pathsVersion !== known
          ? {
            version: state.pathsVersion,
            paths: [...node.directPaths].flatMap(([id, endpoint]) => {
              const peer = state.nodes.get(id)
              return peer === undefined ? [] : [{ nodeKey: peer.nodeKey, endpoint }]
            })
          }
          : undefined),
    ping: async (ip, _timeoutMs) => {
      const node = await self("ping")
      const peer = byIp(state, normalizeIp(ip))
      if (peer === undefined || peer === node) {
        throw fail("INVALID_ARGUMENT", "ip", `is not the tailnet address of a peer (got "${ip}")`)
      }
      // An offline peer never answers: core's limit ends the wait, as the backend's would.
      if (peer.offline) return never()
      const started = performance.now()
      await state.delay()
      await state.delay()
      return { latencyMs: performance.now() - started, endpoint: node.directPaths.get(peer.id) ?? null }
    },
    waitLost: () => ended,
    watchPeers: (known) =>
      watchUntil(
        state.peerWatchers,
        (node) =>
          state.peersVersion !== known ? { version: state.peersVersion, peers: peers(node).map(info) } : undefined
      ),
    watchControl: (known) =>
      watchUntil(state.controlWatchers, () => !state.controlDown !== known ? !state.controlDown : undefined),
    // The device built again keeps the exit node chosen last.
    respawn: () =>
      connectDevice(state, {
        ...connect,
        exitNode: exit === undefined ? undefined : exit._tag === "Wanted" ? exit.peer : exit.node.ipv4
      }, registered)
  }
}
