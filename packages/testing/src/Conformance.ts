/**
 * One behavioural suite for the `Tailscale` service, run against every tailnet provider (the
 * in-memory `FakeTailnet` and the real `LocalTailnet`): what passes on one must pass on the
 * other. That is how the fake earns trust. This module gives each provider (a device, an echo
 * peer, admin actions); the tests are in `test/conformance.test.ts`.
 *
 * @since 0.1.0
 */
import type { TailscaleService } from "@effect-tailscale/core/Tailscale"
import type { TailscaleError } from "@effect-tailscale/core/TailscaleError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { FakeTailnet, layer as fakeTailnetLayer } from "./FakeTailnet.ts"
import type { Topology } from "./HarnessProcess.ts"
import { connect, layer as localTailnetLayer, LocalTailnet } from "./LocalTailnet.ts"

/**
 * A peer on the tailnet with a TCP and a UDP echo.
 *
 * @category models
 */
export interface EchoPeer {
  readonly hostname: string
  readonly fqdn: string
  readonly ipv4: string
  readonly tcpEchoPort: number
  readonly udpEchoPort: number
}

/**
 * A TCP echo outside the tailnet, and how to make the echo peer the exit node that reaches it.
 *
 * @category models
 */
export interface ExitNodeLab {
  /** The echo peer offers itself as an exit node (control approves its default routes), or stops. */
  readonly offer: (on: boolean) => Effect.Effect<void, unknown>
  /** A TCP echo at an address outside the tailnet that only the echo peer, as exit node, reaches. */
  readonly outsideEcho: { readonly ip: string; readonly port: number }
}

/**
 * How a conformance device joins.
 *
 * @category options
 */
export interface JoinOptions {
  readonly authKey?: Redacted.Redacted<string> | undefined
  readonly withoutAuthKey?: boolean | undefined
  readonly reconnect?: boolean | undefined
  readonly tags?: ReadonlyArray<string> | undefined
  readonly exitNode?: string | undefined
}

/**
 * A tailnet user as the suite expects to see one.
 *
 * @category models
 */
export interface ExpectedUser {
  readonly id: number
  readonly loginName: string
  readonly displayName: string
}

/**
 * A tailnet the conformance suite runs on: it joins devices and knows an echo peer.
 *
 * @category services
 */
export interface TailnetProviderService {
  readonly name: string
  /** A device joined to the tailnet for the scope. */
  readonly join: (
    hostname: string,
    options?: JoinOptions
  ) => Effect.Effect<TailscaleService, TailscaleError, Scope.Scope>
  /** A peer with a TCP echo and a UDP echo. */
  readonly echoPeer: EchoPeer
  /** Waits until the echo peer can reach `ip` (on a real tailnet, netmaps take a moment). */
  readonly reachable: (ip: string) => Effect.Effect<void, unknown>
  readonly requireLogin: (on: boolean) => Effect.Effect<void, unknown>
  readonly completeLogin: (url: string) => Effect.Effect<void, unknown>
  /** Waits until the device with this node key has left control. */
  readonly waitLeft: (nodeKey: string) => Effect.Effect<void, unknown>
  /** Whether the echo peer's network map lists `ip`. */
  readonly echoPeerSees: (ip: string) => Effect.Effect<boolean, unknown>
  /**
   * Loses the device called `hostname` the way this tailnet does: the fake's fault, or (on the
   * loopback tailnet) the crate's runtime behind it stopped, as a crash would stop it.
   */
  readonly loseDevice: (hostname: string) => Effect.Effect<void, unknown>
  /** Takes control away (every device's session with it ends) or brings it back. */
  readonly setControlDown: (down: boolean) => Effect.Effect<void, unknown>
  /** The user who owns every untagged device joined with the tailnet's auth key (the echo peer's too). */
  readonly user: ExpectedUser
  /**
   * Replaces the policy's app capabilities with one grant from every node to every node
   * (`{}`: none), each capability with its JSON values.
   */
  readonly setAppCapabilities: (
    capabilities: Readonly<Record<string, ReadonlyArray<unknown>>>
  ) => Effect.Effect<void, unknown>
  /** Replaces the node capabilities of `device`'s node, as it and its peers see them. */
  readonly setNodeCapabilities: (
    device: TailscaleService,
    capabilities: Readonly<Record<string, ReadonlyArray<unknown>>>
  ) => Effect.Effect<void, unknown>
  /** Has the echo peer dial `address` (`ip:port`, `[ipv6]:port`), send `data`, and return what it read back. */
  readonly echoPeerDials: (address: string, data: string) => Effect.Effect<string, unknown>
  /** Exit nodes, where this tailnet has a place outside it (the loopback topology has none). */
  readonly exitNode: ExitNodeLab | undefined
}

/**
 * The tailnet under test: `fakeProvider` or `localProvider`.
 *
 * @category services
 */
export class TailnetProvider extends Context.Service<TailnetProvider, TailnetProviderService>()(
  "@effect-tailscale/testing/TailnetProvider"
) {}

/** Binds now; the returned effect serves until interrupted. */
const echoTcp = (device: TailscaleService, port: number) =>
  Effect.gen(function*() {
    const listener = yield* device.listen(port)
    return Effect.forever(Effect.gen(function*() {
      const connection = yield* listener.accept()
      yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
        const chunk = yield* connection.read()
        if (Option.isNone(chunk)) return yield* Effect.interrupt
        yield* connection.write(chunk.value)
      })))
    }))
  })

const echoUdp = (device: TailscaleService, port: number) =>
  Effect.gen(function*() {
    const socket = yield* device.bindUdp(port)
    return Effect.forever(Effect.gen(function*() {
      const datagram = yield* socket.receive()
      yield* socket.send({ ip: datagram.from.ip, port: datagram.from.port }, datagram.data)
    }))
  })

/** Where the outside echo listens: TEST-NET-1 (RFC 5737), as on the lan topology. */
const outsideEcho = { ip: "192.0.2.1", port: 7001 }

/** The fake tailnet's user, named as testcontrol names its one user (`AllNodesSameUser`). */
const fakeUser: ExpectedUser = { id: 123, loginName: "user-123@fake-control.example.net", displayName: "User 123" }

/**
 * The in-memory tailnet with an echo peer that runs on the fake device itself.
 *
 * @category layers
 */
export const fakeProvider: Layer.Layer<TailnetProvider> = Layer.effect(
  TailnetProvider,
  Effect.gen(function*() {
    const tailnet = yield* FakeTailnet
    const peer = yield* tailnet.addDevice({ hostname: "echo-peer" }).pipe(Effect.orDie)
    yield* Effect.forkScoped(yield* Effect.orDie(echoTcp(peer, 7001)))
    yield* Effect.forkScoped(yield* Effect.orDie(echoUdp(peer, 7002)))
    const outside = yield* Effect.orDie(tailnet.listenOutside("echo-peer", outsideEcho))
    yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
      const connection = yield* outside.accept()
      yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
        const chunk = yield* connection.read()
        if (Option.isNone(chunk)) return yield* Effect.interrupt
        yield* connection.write(chunk.value)
      })))
    })))
    const ipv4 = NetAddress.formatIp(yield* Effect.orDie(peer.ipv4))
    return {
      name: "FakeTailnet",
      join: (hostname, options) => tailnet.addDevice({ hostname, ephemeral: true, ...options }),
      echoPeer: {
        hostname: "echo-peer",
        fqdn: `echo-peer.${tailnet.domain}.`,
        ipv4,
        tcpEchoPort: 7001,
        udpEchoPort: 7002
      },
      reachable: () => Effect.void,
      requireLogin: tailnet.requireLogin,
      completeLogin: (url) => Effect.asVoid(tailnet.completeLogin(url)),
      // A fake device leaves the moment its scope closes.
      waitLeft: () => Effect.void,
      echoPeerSees: (ip) => Effect.map(peer.peerByIp(ip), Option.isSome),
      loseDevice: (hostname) => tailnet.loseDevice(hostname),
      setControlDown: tailnet.setControlDown,
      user: fakeUser,
      setAppCapabilities: (capabilities) =>
        tailnet.setAppCapabilities(Object.keys(capabilities).length === 0 ? [] : [{ capabilities }]),
      setNodeCapabilities: (device, capabilities) =>
        Effect.flatMap(device.self, (self) => tailnet.setNodeCapabilities(self.hostname, capabilities)),
      echoPeerDials: (address, data) =>
        Effect.scoped(Effect.gen(function*() {
          const stream = yield* peer.dial(address as `${string}:${number}`)
          yield* stream.write(data)
          const reply = yield* stream.read()
          return Option.match(reply, { onNone: () => "", onSome: (bytes) => new TextDecoder().decode(bytes) })
        })),
      exitNode: { offer: (on) => tailnet.offerExitNode("echo-peer", on), outsideEcho }
    }
  })
).pipe(Layer.provide(fakeTailnetLayer({ user: fakeUser })))

/** The loopback tailnet (or the LAN one, `localProviderOn`) as a provider. */
const localTailnetProvider = Layer.effect(
  TailnetProvider,
  Effect.gen(function*() {
    const tailnet = yield* LocalTailnet
    const { peer } = tailnet.info
    return {
      name: "LocalTailnet",
      // Only the tailnet: the device belongs to the caller's scope, not the layer's.
      join: (hostname, options) => connect({ hostname, ...options }).pipe(Effect.provideService(LocalTailnet, tailnet)),
      echoPeer: {
        hostname: peer.hostname,
        fqdn: peer.fqdn,
        ipv4: peer.ipv4,
        tcpEchoPort: peer.tcpEchoPort,
        udpEchoPort: peer.udpEchoPort
      },
      reachable: (ip) => Effect.asVoid(tailnet.waitForPeer(ip)),
      requireLogin: tailnet.requireLogin,
      completeLogin: tailnet.completeLogin,
      // Left: its map poll closed and it logged out, as control deletes an ephemeral node then.
      waitLeft: (nodeKey) => Effect.andThen(tailnet.waitForDisconnect(nodeKey), tailnet.waitLoggedOut(nodeKey)),
      echoPeerSees: (ip) => Effect.map(tailnet.peers, (peers) => peers.some((view) => view.ipv4 === ip)),
      loseDevice: (hostname) => tailnet.loseDevice(hostname),
      setControlDown: (down) => down ? tailnet.stopControl : tailnet.startControl,
      // testcontrol (AllNodesSameUser) makes one user, 123, for every node it registers.
      user: { id: 123, loginName: "user-123@fake-control.example.net", displayName: "User 123" },
      setAppCapabilities: tailnet.setAppCapabilities,
      setNodeCapabilities: (device, capabilities) =>
        Effect.flatMap(device.self, (self) => tailnet.setNodeCapabilities(self.nodeKey, capabilities)),
      echoPeerDials: (address, data) =>
        Effect.map(tailnet.dialFromPeer(address, data), (bytes) => new TextDecoder().decode(bytes)),
      exitNode: tailnet.info.outside === undefined ? undefined : {
        offer: tailnet.offerExitNode,
        outsideEcho: { ip: tailnet.info.outside.ip, port: tailnet.info.outside.tcpEchoPort }
      }
    } satisfies TailnetProviderService
  })
)

/**
 * The loopback tailnet: a Go peer, Tailscale's test control server and a DERP relay.
 *
 * @category layers
 */
export const localProvider: Layer.Layer<TailnetProvider, unknown> = localTailnetProvider.pipe(
  Layer.provide(localTailnetLayer())
)

/**
 * The local tailnet on `topology` (`lan`: the harness in a namespace of its own, with a TCP echo
 * outside the tailnet that only the Go peer reaches, for exit nodes).
 *
 * @category layers
 */
export const localProviderOn = (topology: Topology): Layer.Layer<TailnetProvider, unknown> =>
  localTailnetProvider.pipe(Layer.provide(localTailnetLayer({ topology })))

/**
 * A device the echo peer can already reach.
 *
 * @category utils
 */
export const joinReachable = (hostname: string) =>
  Effect.gen(function*() {
    const provider = yield* TailnetProvider
    const device = yield* provider.join(hostname)
    const ipv4 = NetAddress.formatIp(yield* device.ipv4)
    yield* provider.reachable(ipv4)
    return { device, ipv4, provider }
  })

/**
 * Sends until an echo comes back: on a real tailnet the first datagrams can race the handshake.
 *
 * @category utils
 */
export const udpEcho = (device: TailscaleService, peer: EchoPeer, localPort: number, payload: string) =>
  Effect.scoped(Effect.gen(function*() {
    const socket = yield* device.bindUdp(localPort)
    const attempt = Effect.andThen(
      socket.send({ ip: peer.ipv4, port: peer.udpEchoPort }, payload),
      Effect.option(socket.receive({ timeout: "1 second" }))
    )
    // 20 attempts at most: the first and 19 repeats, each waiting a second for the echo.
    const reply = yield* Effect.repeat(attempt, { until: Option.isSome, times: 19 })
    return Option.map(reply, (datagram) => new TextDecoder().decode(datagram.data))
  }))
