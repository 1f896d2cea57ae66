/**
 * A deterministic tailnet in memory, for testing code that uses the `Tailscale` service without
 * a network or the native addon. It implements core's `Backend`, so all of core's real code
 * (decoding, errors, timeouts, sockets, adapters) runs on it. This module holds the tailnet's
 * state (nodes, ports, faults), shared by every device it builds, and the public service on it;
 * `internal/fakeDevice.ts` builds each device, and `internal/fakeNet.ts` moves the bytes.
 *
 * - Deterministic: node N gets 100.64.0.N and the matching fd7a:115c:a1e0:ab12:4843:cd96:6240:N
 *   address (as Tailscale's test control server assigns them), names under `domain`, and ids
 *   and keys drawn from `seed`. Same seed and same order of joins, same tailnet.
 * - Control plane: a required auth key (a wrong one is `NotAuthorized`), interactive login,
 *   peers that come and go, ephemeral devices removed when their scope closes.
 * - Identity and policy: every untagged node is owned by the tailnet's user (`user`, changed
 *   per node with `setUser`), a tagged node by its tags; the test grants app capabilities
 *   (`setAppCapabilities`) and node capabilities (`setNodeCapabilities`), which `whoIs` and
 *   `TailnetCaller` report as on a real tailnet.
 * - Exit nodes: a node offers itself (`offerExitNode`), and dials of the devices that chose it
 *   to addresses outside the tailnet reach the servers the test opens there (`listenOutside`).
 * - Faults: control down, a peer offline, connections reset, added latency, UDP loss.
 * - Time is Effect's `Clock`: latency under `TestClock` advances only with `TestClock.adjust`.
 *
 * @since 0.1.0
 */
import type { Backend, RawConnectOptions, RawNodeInfo, RawUserProfile } from "@effect-tailscale/core/Backend"
import {
  type Named,
  type NamedTag,
  Tailscale,
  type TailscaleOptions,
  type TailscaleService
} from "@effect-tailscale/core/Tailscale"
import * as Tailscale_ from "@effect-tailscale/core/Tailscale"
import { AddressInUse, invalidArgument, TailscaleError } from "@effect-tailscale/core/TailscaleError"
import * as TcpListener from "@effect-tailscale/core/TcpListener"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as NetAddress from "effect/net/NetAddress"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import {
  connectDevice,
  type FakeNode,
  inTailnet,
  listenOutside,
  nodeInfo,
  type TailnetState
} from "./internal/fakeDevice.ts"
import { MAX_DATAGRAM_BYTES } from "./internal/fakeNet.ts"

/**
 * How the in-memory tailnet behaves: the auth key control requires, a seed, latency and faults.
 *
 * @category options
 */
export interface FakeTailnetOptions {
  /** Seeds node ids and keys. Default 1. */
  readonly seed?: number | undefined
  /** MagicDNS suffix. Default `tail-test.ts.net`, as the loopback tailnet uses. */
  readonly domain?: string | undefined
  /** The auth key control requires. Default `tskey-auth-fake`. */
  readonly authKey?: string | undefined
  /** Bytes one direction of a TCP connection buffers before writes wait. Default 16 KiB. */
  readonly tcpBuffer?: number | undefined
  /**
   * The user who owns every untagged device that joins. Default: user 1,
   * `user-1@example.com`, "User 1".
   */
  readonly user?: FakeUser | undefined
}

/**
 * A tailnet user: who owns a node that is not tagged.
 *
 * @category models
 */
export interface FakeUser {
  readonly id: number
  readonly loginName: string
  readonly displayName?: string | undefined
  readonly profilePicUrl?: string | undefined
}

/**
 * An app-capability grant of the tailnet's policy (a grant with an `app` part): callers that
 * `from` names get `capabilities` toward the devices `to` names. Each entry is `"*"` (the
 * default), a hostname, an address or a CIDR; each capability has a list of JSON values.
 *
 * @category models
 */
export interface AppGrant {
  readonly from?: ReadonlyArray<string> | undefined
  readonly to?: ReadonlyArray<string> | undefined
  readonly capabilities: Readonly<Record<string, ReadonlyArray<unknown>>>
}

/**
 * The largest UDP datagram, as in tailscale-rs's network stack.
 *
 * @category constants
 */
export const maxDatagramBytes = MAX_DATAGRAM_BYTES

/**
 * The in-memory tailnet: add devices, and inject faults (control down, a peer offline, resets, latency, loss, a lost device).
 *
 * @category services
 */
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
  /**
   * While down, connecting fails with `ControlUnreachable` and a device still waiting for its
   * registration waits until its timeout; registered devices go on from their network map and
   * report `Running` with control `Unreachable` (`Connected` again once it is back).
   */
  readonly setControlDown: (down: boolean) => Effect.Effect<void>
  /** An offline node shows as offline to its peers and cannot be reached. */
  readonly setOffline: (hostname: string, offline: boolean) => Effect.Effect<void>
  /** Resets every open TCP connection of the node, as a peer's RST would. */
  readonly resetConnections: (hostname: string) => Effect.Effect<void>
  /** Delay added to each connect, write and datagram. */
  readonly setLatency: (latency: Duration.Input) => Effect.Effect<void>
  /** Drops every `n`th datagram (0: none). */
  readonly setUdpLoss: (everyNth: number) => Effect.Effect<void>
  /** Makes `user` the owner of the (untagged) node, or leaves it with none: its peers see the change. */
  readonly setUser: (hostname: string, user: FakeUser | undefined) => Effect.Effect<void>
  /** Replaces the policy's app-capability grants; every device sees them at once. */
  readonly setAppCapabilities: (grants: ReadonlyArray<AppGrant>) => Effect.Effect<void>
  /** Replaces the node's capabilities (each name with its JSON values), as it and its peers see them. */
  readonly setNodeCapabilities: (
    hostname: string,
    capabilities: Readonly<Record<string, ReadonlyArray<unknown>>>
  ) => Effect.Effect<void>
  /**
   * Loses the node's device, as when tailscale-rs's runtime stops: its calls fail with
   * `DeviceLost`, its sockets close, and the service builds it again (same node, same addresses)
   * unless reconnection is off.
   */
  readonly loseDevice: (hostname: string, cause?: string) => Effect.Effect<void>
  /**
   * The node offers itself as an exit node (control approves its `0.0.0.0/0` and `::/0`), or
   * stops: devices see the routes, and may choose it with `setExitNode` or the `exitNode` option.
   */
  readonly offerExitNode: (hostname: string, on: boolean) => Effect.Effect<void>
  /**
   * A TCP server outside the tailnet (at `ip`, any address outside `100.64.0.0/10` and
   * `fd7a:115c:a1e0::/48`) that the node `exitNode` reaches: a device that chose that node as its
   * exit node dials it there. Owned by the scope.
   */
  readonly listenOutside: (
    exitNode: string,
    address: { readonly ip: string; readonly port: number }
  ) => Effect.Effect<TcpListener.TcpListener, TailscaleError, Scope.Scope>
  /**
   * The path the node's traffic to `peer` takes, as its `pathTo` and `ping` report it: a direct
   * path to an endpoint (`"ip:port"`), or `"relay"` (DERP, where every path starts).
   */
  readonly setPath: (
    hostname: string,
    peer: string,
    path: "relay" | { readonly direct: string }
  ) => Effect.Effect<void>
}

/**
 * The in-memory tailnet in context.
 *
 * @category services
 */
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

/**
 * An in-memory tailnet for the current scope.
 *
 * @category constructors
 */
export const make = (options: FakeTailnetOptions = {}): Effect.Effect<FakeTailnetService> =>
  Effect.gen(function*() {
    const runPromise = Effect.runPromiseWith(yield* Effect.context<never>())
    const next = random(options.seed ?? 1)
    const randomHex = (bytes: number) => hex(next, bytes)
    const nodes = new Map<number, FakeNode>()
    let joined = 0
    let latency = Duration.zero
    const owner: RawUserProfile = options.user ?? { id: 1, loginName: "user-1@example.com", displayName: "User 1" }
    const jsonTexts = (capabilities: Readonly<Record<string, ReadonlyArray<unknown>>>) =>
      Object.fromEntries(
        Object.entries(capabilities).map(([name, values]) => [name, values.map((value) => JSON.stringify(value))])
      )

    const register = (connect: RawConnectOptions): FakeNode => {
      const id = ++joined
      const node: FakeNode = {
        id,
        stableId: `n${randomHex(6)}CNTRL`,
        hostname: connect.hostname ?? `node-${id}`,
        ipv4: `100.64.${id >> 8}.${id & 255}`,
        ipv6: `fd7a:115c:a1e0:ab12:4843:cd96:62${(64 + (id >> 8)).toString(16)}:${(id & 255).toString(16)}`,
        nodeKey: `nodekey:${randomHex(32)}`,
        machineKey: `mkey:${randomHex(32)}`,
        discoKey: `discokey:${randomHex(32)}`,
        tags: connect.tags ?? [],
        user: (connect.tags ?? []).length > 0 ? undefined : owner,
        nodeCapabilities: {},
        ephemeral: connect.ephemeral ?? false,
        offline: false,
        listeners: new Map(),
        udp: new Map(),
        streams: new Set(),
        directPaths: new Map(),
        exitNode: false,
        outside: new Map()
      }
      nodes.set(id, node)
      state.peersChanged()
      return node
    }

    const state: TailnetState = {
      domain: options.domain ?? "tail-test.ts.net",
      authKey: options.authKey ?? "tskey-auth-fake",
      capacity: options.tcpBuffer ?? 16 * 1024,
      nodes,
      logins: new Map(),
      losers: new Map(),
      controlDown: false,
      controlWatchers: new Set(),
      peersVersion: 0,
      peerWatchers: new Set(),
      peersChanged: () => {
        state.peersVersion++
        for (const watcher of [...state.peerWatchers]) watcher()
      },
      pathsVersion: 0,
      pathWatchers: new Set(),
      grants: [],
      requireLogin: false,
      udpLossEvery: 0,
      datagramsSent: 0,
      ephemeralPort: 49152,
      delay: () => Duration.isZero(latency) ? Promise.resolve() : runPromise(Effect.sleep(latency)),
      randomHex,
      register
    }

    const backend: Backend = { connect: (connectOptions) => connectDevice(state, connectOptions) }
    const find = (hostname: string) => [...nodes.values()].filter((node) => node.hostname === hostname)

    const service: FakeTailnetService = {
      authKey: state.authKey,
      domain: state.domain,
      backend,
      addDevice: (deviceOptions = {}) => {
        const { withoutAuthKey, ...rest } = deviceOptions
        return Tailscale_.make(backend, {
          ...rest,
          ...(withoutAuthKey || rest.authKey ? {} : { authKey: Redacted.make(state.authKey) })
        })
      },
      nodes: Effect.sync(() => [...nodes.values()].map((node) => nodeInfo(node, state.domain))),
      requireLogin: (on) => Effect.sync(() => void (state.requireLogin = on)),
      completeLogin: (url) =>
        Effect.sync(() => {
          const complete = state.logins.get(url)
          state.logins.delete(url)
          complete?.()
          return complete !== undefined
        }),
      setControlDown: (down) =>
        Effect.sync(() => {
          state.controlDown = down
          for (const watcher of [...state.controlWatchers]) watcher()
        }),
      setOffline: (hostname, offline) =>
        Effect.sync(() => {
          find(hostname).forEach((node) => (node.offline = offline))
          state.peersChanged()
        }),
      resetConnections: (hostname) =>
        Effect.sync(() => find(hostname).forEach((node) => node.streams.forEach((stream) => stream.resetConnection()))),
      setLatency: (input) => Effect.sync(() => void (latency = Duration.fromInputUnsafe(input))),
      setUdpLoss: (everyNth) => Effect.sync(() => void (state.udpLossEvery = everyNth)),
      setUser: (hostname, user) =>
        Effect.sync(() => {
          find(hostname).forEach((node) => (node.user = user))
          state.peersChanged()
        }),
      setAppCapabilities: (grants) =>
        Effect.sync(() => {
          state.grants = grants.map((grant) => ({
            from: grant.from ?? ["*"],
            to: grant.to ?? ["*"],
            capabilities: jsonTexts(grant.capabilities)
          }))
          state.peersChanged()
        }),
      setNodeCapabilities: (hostname, capabilities) =>
        Effect.sync(() => {
          find(hostname).forEach((node) => (node.nodeCapabilities = jsonTexts(capabilities)))
          state.peersChanged()
        }),
      loseDevice: (hostname, cause = "lost by FakeTailnet.loseDevice") =>
        Effect.sync(() => find(hostname).forEach((node) => state.losers.get(node)?.(cause))),
      offerExitNode: (hostname, on) =>
        Effect.sync(() => {
          find(hostname).forEach((node) => (node.exitNode = on))
          state.peersChanged()
        }),
      listenOutside: (exitNode, address) =>
        Effect.gen(function*() {
          const node = find(exitNode)[0]
          if (node === undefined) {
            return yield* Effect.fail(invalidArgument("exitNode", `no node called ${JSON.stringify(exitNode)}`))
          }
          const ip = NetAddress.ipFromString(address.ip)
          if (Result.isFailure(ip) || inTailnet(address.ip)) {
            return yield* Effect.fail(
              invalidArgument("ip", `must be an address outside the tailnet (got ${JSON.stringify(address.ip)})`)
            )
          }
          const raw = listenOutside(node, NetAddress.formatIp(ip.success), address.port)
          if (raw === undefined) {
            return yield* Effect.fail(
              new TailscaleError({
                reason: new AddressInUse({ message: `TCP ${address.ip}:${address.port} is already served` })
              })
            )
          }
          return yield* TcpListener.fromRaw(raw)
        }),
      setPath: (hostname, peer, path) =>
        Effect.sync(() => {
          for (const node of find(hostname)) {
            for (const other of find(peer)) {
              if (path === "relay") node.directPaths.delete(other.id)
              else node.directPaths.set(other.id, path.direct)
            }
          }
          state.pathsVersion++
          for (const watcher of [...state.pathWatchers]) watcher()
        })
    }
    return service
  })

/**
 * An in-memory tailnet for the layer's lifetime.
 *
 * @category layers
 */
export const layer = (options?: FakeTailnetOptions): Layer.Layer<FakeTailnet> =>
  Layer.effect(FakeTailnet, make(options))

/**
 * A `Tailscale` device on the `FakeTailnet` in context.
 *
 * @category layers
 */
export const device = (
  options?: TailscaleOptions & { readonly withoutAuthKey?: boolean | undefined }
): Layer.Layer<Tailscale, TailscaleError, FakeTailnet> =>
  Layer.effect(Tailscale, Effect.flatMap(FakeTailnet, (tailnet) => tailnet.addDevice(options)))

/**
 * A device on the `FakeTailnet` in context, under `tag` (from `Tailscale.named`).
 *
 * @category layers
 */
export const deviceNamed = <Name extends string>(
  tag: NamedTag<Name>,
  options?: TailscaleOptions & { readonly withoutAuthKey?: boolean | undefined }
): Layer.Layer<Named<Name>, TailscaleError, FakeTailnet> =>
  Layer.effect(tag, Effect.flatMap(FakeTailnet, (tailnet) => tailnet.addDevice(options)))
