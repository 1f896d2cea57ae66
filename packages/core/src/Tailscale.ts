/**
 * The `Tailscale` service: one tailnet device, its addresses, peers and sockets.
 *
 * The interface documents each call; `make` builds the addresses, lookups and state here, from
 * the same helpers (timeouts, decoding, metering). Option checks (`internal/options.ts`),
 * supervision (`internal/supervisor.ts`) and the socket calls (`internal/sockets.ts`) live in
 * their own modules.
 *
 * ```ts
 * const program = Effect.gen(function*() {
 *   const tailscale = yield* Tailscale
 *   const ip = yield* tailscale.ipv4
 *   const stream = yield* tailscale.dial("db:5432")
 * })
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { type BindAddress, type DialTarget, formatIp, type IpInput } from "./Address.ts"
import { AuthState } from "./AuthState.ts"
import { type Backend, backendError } from "./Backend.ts"
import type { Caller } from "./Caller.ts"
import { decodeWhoIs } from "./Caller.ts"
import type { DeviceState } from "./DeviceState.ts"
import { parseIp } from "./internal/address.ts"
import { fromBackend } from "./internal/backendErrors.ts"
import { shown } from "./internal/inputs.ts"
import { callLimit, withinBackendLimit } from "./internal/limits.ts"
import * as Logs from "./internal/logs.ts"
import * as Metering from "./internal/metering.ts"
import { cachedDecoder } from "./internal/nodeDecoding.ts"
import { validateOptions } from "./internal/options.ts"
import { openDevice } from "./internal/owned.ts"
import { pathTo, pongFrom, watchDirectCount } from "./internal/paths.ts"
import { peerChanges, watchTable } from "./internal/peerWatch.ts"
import { makeSockets } from "./internal/sockets.ts"
import { defaultReconnectSchedule, type Generation, supervise } from "./internal/supervisor.ts"
import { NodeInfo } from "./NodeInfo.ts"
import type { PeerChange } from "./PeerChange.ts"
import type { PeerPath, Pong } from "./PeerPath.ts"
import type { TailscaleError } from "./TailscaleError.ts"
import { internal, invalidArgument } from "./TailscaleError.ts"
import type * as TcpListener from "./TcpListener.ts"
import type * as TcpStream from "./TcpStream.ts"
import { defaults as defaultTimeouts, TailscaleTimeouts, toMillis, within } from "./Timeouts.ts"
import type * as UdpSocket from "./UdpSocket.ts"

/**
 * The longest a ping waits: the backend pings again every second until its limit, even after
 * the caller gave up (a backend call runs to completion), so an unbounded ping is bounded here.
 */
const PING_LIMIT_MS = 600_000

/**
 * Options every waiting call takes.
 *
 * @category options
 */
export interface CallOptions {
  /**
   * Overrides the default from `TailscaleTimeouts` for this call. For lookups it bounds the wait
   * for the device's first network map; once the device has one, they answer from it at once.
   */
  readonly timeout?: Duration.Input | undefined
}

/**
 * Where a UDP socket binds.
 *
 * @category options
 */
export interface BindOptions extends CallOptions {
  /** The device's own `"ipv4"` (default) or `"ipv6"` address, or an explicit one. */
  readonly address?: BindAddress | undefined
}

/**
 * Where a TCP listener listens.
 *
 * @category options
 */
export interface ListenOptions extends CallOptions {
  /**
   * Only this one of the device's addresses: `"ipv4"`, `"ipv6"`, or the address itself.
   * Default: both, so peers reach the listener over either family.
   */
  readonly address?: BindAddress | undefined
}

/**
 * A device on the tailnet: its addresses and node, peer lookups, TCP and UDP sockets owned by scopes, its state, and shutdown.
 *
 * @category services
 */
export interface TailscaleService {
  /** This device's IPv4 tailnet address; waits for the first network map. */
  readonly ipv4: Effect.Effect<NetAddress.Ipv4Address, TailscaleError>
  /** This device's IPv6 tailnet address; waits for the first network map. */
  readonly ipv6: Effect.Effect<NetAddress.Ipv6Address, TailscaleError>
  /** This device's own node. */
  readonly self: Effect.Effect<NodeInfo, TailscaleError>
  /** Authorized, or needs a person to log in at a URL. */
  readonly authState: Effect.Effect<AuthState, TailscaleError>
  /** A peer by bare hostname or FQDN (a trailing dot is allowed). */
  readonly peerByName: (name: string, options?: CallOptions) => Effect.Effect<Option.Option<NodeInfo>, TailscaleError>
  /** The peer that owns a tailnet IP. */
  readonly peerByIp: (ip: IpInput, options?: CallOptions) => Effect.Effect<Option.Option<NodeInfo>, TailscaleError>
  /**
   * Who has the tailnet address `ip`, as Go's `WhoIs` tells: the peer's node (with the user who
   * owns it, or its tags) and the app capabilities the tailnet's policy grants it toward this
   * device. None when no peer has the address. `TailnetCaller` uses it.
   */
  readonly whoIs: (ip: IpInput, options?: CallOptions) => Effect.Effect<Option.Option<Caller>, TailscaleError>
  /**
   * The peers whose routes are the most specific match for `ip` (several for redundant subnet
   * routers): where this device's traffic to `ip` goes. A peer's default route (`0.0.0.0/0`,
   * `::/0`) counts only when it is the chosen exit node (`setExitNode`), as only then does the
   * device use it; so for an address outside the tailnet that no subnet route covers, this is
   * the exit node, or nobody.
   */
  readonly peersWithRoute: (
    ip: IpInput,
    options?: CallOptions
  ) => Effect.Effect<ReadonlyArray<NodeInfo>, TailscaleError>
  /** A TCP connection to `"peer:port"`, `"ip:port"`, `{ peer, port }` or `{ ip, port }`, owned by the scope. */
  readonly dial: (
    target: DialTarget,
    options?: CallOptions
  ) => Effect.Effect<TcpStream.TcpStream, TailscaleError, Scope.Scope>
  /**
   * A TCP listener on this device, owned by the scope: on both of its addresses unless
   * `address` names one. Port 0 picks a free port (see `localAddress`).
   */
  readonly listen: (
    port: number,
    options?: ListenOptions
  ) => Effect.Effect<TcpListener.TcpListener, TailscaleError, Scope.Scope>
  /** A UDP socket on this device (port 1..65535), owned by the scope. */
  readonly bindUdp: (
    port: number,
    options?: BindOptions
  ) => Effect.Effect<UdpSocket.UdpSocket, TailscaleError, Scope.Scope>
  /**
   * Disco-pings a peer (by name, tailnet IP or `NodeInfo`), as `tailscale ping` does: through
   * its direct path when it has one, else to its UDP endpoints and through its DERP region at
   * once. The first pong gives the round trip and the path it took. Fails `Timeout` within the
   * dial limit (or `timeout`; 10 minutes at most), and `InvalidArgument` when no peer has that
   * name or address.
   */
  readonly ping: (peer: PeerInput, options?: CallOptions) => Effect.Effect<Pong, TailscaleError>
  /**
   * The path this device's traffic to a peer takes now: `Direct` once disco found one that
   * answers, else `Relay`. Only peers this device talks to get a direct path.
   */
  readonly pathTo: (peer: PeerInput, options?: CallOptions) => Effect.Effect<PeerPath, TailscaleError>
  /**
   * Sends this device's traffic to addresses outside the tailnet (`dial`, and so
   * `TailnetHttpClient` and `TailnetProxy`) through `peer` (by name, tailnet IP or `NodeInfo`) as
   * exit node, as tsnet's `EditPrefs` with an exit node does; `null` for none. Succeeds with the
   * exit node. The peer must offer itself as one (control approved both of its default routes,
   * `0.0.0.0/0` and `::/0`); one that does not, or no peer with that name or address, is
   * `InvalidArgument`. No other peer's default routes are ever used: without an exit node, a
   * dial to an outside address that no subnet route covers fails at once with
   * `ConnectionRefused` (no route). The choice is kept when the device is built again.
   */
  readonly setExitNode: (
    peer: PeerInput | null,
    options?: CallOptions
  ) => Effect.Effect<Option.Option<NodeInfo>, TailscaleError>
  /** Every peer, as of the latest network map (the first one is waited for, within the netmap limit). */
  readonly peers: Effect.Effect<ReadonlyArray<NodeInfo>, TailscaleError>
  /**
   * Every peer as `Added`, then each change as network maps arrive (no polling): `Added`,
   * `Changed` (with the node as it was) and `Removed`. It goes on across a rebuilt device
   * (reporting only what really changed) and ends when the service's scope closes.
   */
  readonly peerChanges: Stream.Stream<PeerChange, TailscaleError>
  /** Where the device is now: `Connecting`, `NeedsLogin`, `Running`, `Reconnecting` or `Stopped`. */
  readonly state: Effect.Effect<DeviceState>
  /** The current state, then every change, until the device stops. */
  readonly states: Stream.Stream<DeviceState>
  /**
   * Stops the device now (the layer does it anyway when its scope closes). Succeeds with `true`
   * when it stopped gracefully within the shutdown timeout. Idempotent.
   */
  readonly shutdown: Effect.Effect<boolean>
}

/**
 * A peer by bare hostname or FQDN, by tailnet IP, or as a `NodeInfo` from a lookup.
 *
 * @category models
 */
export type PeerInput = string | IpInput | NodeInfo

/**
 * The device in context: `yield* Tailscale`. Provided by `NodeTailscale.layer` (or the fake tailnet in tests).
 *
 * @category services
 */
export class Tailscale extends Context.Service<Tailscale, TailscaleService>()("@effect-tailscale/core/Tailscale") {}

/**
 * The identifier of a device declared with `named`.
 *
 * @category models
 */
export interface Named<Name extends string> {
  readonly _: unique symbol
  readonly name: Name
}

/**
 * The service key of a named device: `yield*` it like `Tailscale`.
 *
 * @category models
 */
export type NamedTag<Name extends string> = Context.Service<Named<Name>, TailscaleService>

/**
 * A device under its own name, for a program with several (e.g. serving on one tailnet and
 * dialing on another). Build it with a layer that takes a tag (`NodeTailscale.layerNamed`,
 * `FakeTailnet.deviceNamed`); `asTailscale` lends it to code that asks for `Tailscale`.
 *
 * ```ts
 * const Office = Tailscale.named("office")
 * const program = Effect.gen(function*() {
 *   const office = yield* Office
 *   return yield* office.ipv4
 * })
 * ```
 *
 * @category constructors
 */
export const named = <const Name extends string>(name: Name): NamedTag<Name> =>
  Context.Service<Named<Name>, TailscaleService>(`@effect-tailscale/core/Tailscale/${name}`)

/**
 * Forwards the backend's log records that belong to no device (e.g. a key file loaded outside a
 * device) to the current logger for the lifetime of the scope, filtered by `filter` (`RUST_LOG`
 * style, default `"warn"`), annotated `tailscaleProcess: true`. Each device's own records go to
 * the logger it was connected under (`logFilter`), never here.
 *
 * @category utils
 */
export const processLogs = (backend: Backend, filter = "warn"): Effect.Effect<void, TailscaleError, Scope.Scope> =>
  Effect.asVoid(Logs.forwardProcess(backend, filter))

/**
 * Provides the named device as `Tailscale`, for layers and code written for one device.
 *
 * @category layers
 */
export const asTailscale = <Name extends string>(tag: NamedTag<Name>): Layer.Layer<Tailscale, never, Named<Name>> =>
  Layer.effect(Tailscale, Effect.service(tag))

/**
 * How a device joins: identity (key file or key state), auth key, control URL, hostname, tags, and how it behaves when lost.
 *
 * @category options
 */
export interface TailscaleOptions {
  /** Key file: created (mode 0600) when missing; an invalid one is an error unless `overwriteBadKeyFile`. */
  readonly keyFile?: string | undefined
  readonly overwriteBadKeyFile?: boolean | undefined
  /** In-memory key state (the key file's JSON). Without either, the identity is fresh and not saved. */
  readonly keyState?: Redacted.Redacted<string> | undefined
  readonly authKey?: Redacted.Redacted<string> | undefined
  /** Default: Tailscale's control plane. */
  readonly controlUrl?: string | URL | undefined
  /** Default: the OS hostname. */
  readonly hostname?: string | undefined
  readonly tags?: ReadonlyArray<string> | undefined
  /** Leave the tailnet soon after the device goes offline. */
  readonly ephemeral?: boolean | undefined
  /** Reported to control as the client application. */
  readonly clientName?: string | undefined
  /**
   * A PEM file of CA certificates to trust beside the public web roots, for a self-hosted
   * control server (or DERP relay) with a private CA. Process-wide: once added, every device in
   * the process trusts them.
   */
  readonly caFile?: string | undefined
  /**
   * The exit node: a peer (hostname, FQDN or tailnet address) that carries traffic to addresses
   * outside the tailnet, as Go's `ExitNodeIP` pref. It is looked up in each network map until a
   * peer has it (building the layer does not wait for that); until then such addresses have no
   * route. `setExitNode` changes it, and checks the peer offers itself as one.
   */
  readonly exitNode?: string | undefined
  /** `RUST_LOG`-style filter for the backend's log records (default `"warn"`; `"off"` for none). */
  readonly logFilter?: string | undefined
  /**
   * When the device is lost (the crate's runtime stopped, e.g. after control was away too long),
   * build it again from the same identity (default `true`). With `false`, every later call
   * fails with `DeviceLost` and the state becomes `Stopped`.
   */
  readonly reconnect?: boolean | undefined
  /**
   * Delays between attempts to build a lost device again. Default: exponential from 250 ms,
   * doubling up to 30 s, jittered, until the scope closes.
   */
  readonly reconnectSchedule?: Schedule.Schedule<unknown, TailscaleError> | undefined
}

/**
 * Connects a device through `backend` and builds the service. The device belongs to the scope:
 * it is shut down (within the shutdown timeout) when the scope closes, whatever the exit.
 *
 * @category constructors
 */
export const make: (
  backend: Backend,
  options?: TailscaleOptions
) => Effect.Effect<TailscaleService, TailscaleError, Scope.Scope> = Effect.fn("Tailscale.connect")(function*(
  backend: Backend,
  options: TailscaleOptions = {}
) {
  const timeouts = yield* TailscaleTimeouts
  const connectOptions = yield* validateOptions(options)
  const logSink = yield* Logs.forward(backend, options.logFilter ?? "warn")

  const connectMs = toMillis(timeouts.connect)
  // The exit node chosen last (`setExitNode`), for a device connected again.
  const chosen = { exitNode: connectOptions.exitNode }
  const connectAgain = () =>
    backend.connect({
      ...connectOptions,
      exitNode: chosen.exitNode,
      ...(connectMs === undefined ? {} : { connectTimeoutMs: connectMs }),
      ...(logSink === undefined ? {} : { logSink })
    })
  // The backend owns the connect limit (`connectTimeoutMs`). A device that arrives after the
  // caller gave up (interruption, the backstop) is shut down.
  const connectFirst = openDevice(connectAgain, (error) => fromBackend("connect", error)).pipe(
    withinBackendLimit("connect", timeouts.connect)
  )
  const supervised = yield* Effect.uninterruptibleMask((restore) =>
    restore(connectFirst).pipe(
      Effect.flatMap((device) =>
        supervise(device, {
          reconnect: options.reconnect ?? true,
          schedule: options.reconnectSchedule ?? defaultReconnectSchedule,
          // A backend takes a number: a shutdown without a limit gets the default one.
          shutdownMs: toMillis(timeouts.shutdown) ?? toMillis(defaultTimeouts.shutdown)!,
          connectAgain
        })
      )
    )
  )
  yield* Effect.addFinalizer((exit) =>
    supervised.shutdown.pipe(
      Effect.tap((graceful) =>
        Effect.logDebug("tailscale device shut down").pipe(
          Effect.annotateLogs({ graceful, exit: Exit.isSuccess(exit) ? "success" : "failure or interruption" })
        )
      )
    )
  )

  const attempt = <A>(operation: string, device: Generation, run: (device: Generation) => Promise<A>) =>
    Effect.tryPromise({ try: () => run(device), catch: (error) => fromBackend(operation, error) })

  /** A call that may wait, for a rebuilt device or the first network map, within `limit`. */
  const call = <A>(operation: string, limit: Duration.Input, run: (device: Generation) => Promise<A>) =>
    Effect.flatMap(supervised.current, (device) => attempt(operation, device, run)).pipe(within(operation, limit))

  // The crate's own node and its peer table each wait for the first network map, then answer
  // from memory: the limit bounds that wait (and one for a rebuilt device), so a call to a
  // device that is up and past it skips the timer (lookups are a hot path, and the timer was
  // most of their cost).
  const netmapCall = <A>(
    part: "self" | "peers",
    operation: string,
    limit: Duration.Input,
    run: (device: Generation) => Promise<A>
  ): Effect.Effect<A, TailscaleError> =>
    Effect.suspend(() => {
      const ready = supervised.now()
      if (ready !== undefined && ready.netmap[part]) return attempt(operation, ready, run)
      return call(operation, limit, (device) =>
        run(device).then((value) => {
          device.netmap[part] = true
          return value
        }))
    })

  const netmapLimit = (options?: CallOptions) => callLimit(options?.timeout, timeouts.netmap)

  const decodeAddress = <A>(family: string, parse: (text: string) => Result.Result<A, unknown>) => (text: string) => {
    const parsed = parse(text)
    return Result.isSuccess(parsed)
      ? Effect.succeed(parsed.success)
      : Effect.fail(internal(`${family}: the backend sent ${JSON.stringify(text)}`))
  }
  const ownIpv4 = (limit: Duration.Input) =>
    netmapCall("self", "ipv4", limit, (d) => d.raw.ipv4()).pipe(
      Effect.flatMap(decodeAddress("ipv4", NetAddress.ipv4FromString))
    )
  const ownIpv6 = (limit: Duration.Input) =>
    netmapCall("self", "ipv6", limit, (d) => d.raw.ipv6()).pipe(
      Effect.flatMap(decodeAddress("ipv6", NetAddress.ipv6FromString))
    )

  // DNS names are case-insensitive, but the crate matches names exactly: try as given, then in
  // lower case (how control normalizes them).
  const lookupName = (operation: string, limit: Duration.Input, name: string) =>
    netmapCall("peers", operation, limit, (d) => d.raw.peerByName(name)).pipe(
      Effect.flatMap((found) =>
        found === null && name !== name.toLowerCase()
          ? netmapCall("peers", operation, limit, (d) => d.raw.peerByName(name.toLowerCase()))
          : Effect.succeed(found)
      )
    )

  const meter = Metering.forDevice(options.hostname ?? "default")
  yield* SubscriptionRef.changes(supervised.state).pipe(
    Stream.runForEach((state) => meter.state(state._tag)),
    Effect.forkScoped
  )

  const decodeNodeInfo = cachedDecoder()
  const decodeOptional = (raw: unknown) =>
    raw === null || raw === undefined ? Effect.succeedNone : Effect.asSome(decodeNodeInfo(raw))
  const sockets = makeSockets({
    supervised,
    timeouts,
    meter,
    ownIpv4,
    ownIpv6,
    peerNamed: (name) => lookupName("dial", "Infinity", name).pipe(Effect.flatMap(decodeOptional)),
    // The device's first peer map; until it is in, the network stack refuses a dial at once.
    peersKnown: (ip) =>
      supervised.now()?.netmap.peers
        ? Effect.void
        : Effect.asVoid(netmapCall("peers", "dial", "Infinity", (d) => d.raw.peersWithRoute(formatIp(ip))))
  })

  yield* watchDirectCount(supervised, meter.directPeers).pipe(Effect.forkScoped)

  /** The peer `input` names, or `InvalidArgument` when no peer has that name or address. */
  const resolvePeer = (operation: string, input: PeerInput, limit: Duration.Input) =>
    Effect.gen(function*() {
      if (input instanceof NodeInfo) return input
      const byName = typeof input === "string" && Result.isFailure(NetAddress.ipFromString(input))
      if (byName && input.replace(/\.$/, "") === "") {
        return yield* Effect.fail(invalidArgument("peer", "must not be empty"))
      }
      const found = byName
        ? yield* lookupName(operation, limit, input)
        : yield* Effect.flatMap(
          parseIp("peer", input),
          (ip) => netmapCall("peers", operation, limit, (d) => d.raw.peerByIp(formatIp(ip)))
        )
      if (found === null) {
        return yield* Effect.fail(invalidArgument("peer", `no peer has the name or address ${shown(input)}`))
      }
      return yield* decodeNodeInfo(found)
    })

  const service: TailscaleService = {
    ipv4: ownIpv4(timeouts.netmap).pipe(Effect.withSpan("Tailscale.ipv4")),
    ipv6: ownIpv6(timeouts.netmap).pipe(Effect.withSpan("Tailscale.ipv6")),
    self: netmapCall("self", "self", timeouts.netmap, (d) => d.raw.selfNode()).pipe(
      Effect.flatMap(decodeNodeInfo),
      Effect.withSpan("Tailscale.self")
    ),
    authState: call("authState", timeouts.netmap, (d) => d.raw.authState()).pipe(
      Effect.map((state) =>
        state._tag === "Authorized" ? AuthState.Authorized() : AuthState.NeedsLogin({ url: state.url })
      ),
      Effect.withSpan("Tailscale.authState")
    ),
    peerByName: Effect.fn("Tailscale.peerByName")(function*(name: string, options?: CallOptions) {
      if (typeof name !== "string") {
        return yield* Effect.fail(invalidArgument("name", `must be a string (got ${shown(name)})`))
      }
      if (name.replace(/\.$/, "") === "") return yield* Effect.fail(invalidArgument("name", "must not be empty"))
      yield* meter.lookup("peerByName")
      const raw = yield* lookupName("peerByName", yield* netmapLimit(options), name)
      return yield* decodeOptional(raw)
    }),
    peerByIp: Effect.fn("Tailscale.peerByIp")(function*(input: IpInput, options?: CallOptions) {
      const ip = yield* parseIp("ip", input)
      yield* meter.lookup("peerByIp")
      const raw = yield* netmapCall(
        "peers",
        "peerByIp",
        yield* netmapLimit(options),
        (d) => d.raw.peerByIp(formatIp(ip))
      )
      return yield* decodeOptional(raw)
    }),
    whoIs: Effect.fn("Tailscale.whoIs")(function*(input: IpInput, options?: CallOptions) {
      const ip = formatIp(yield* parseIp("ip", input))
      yield* meter.lookup("whoIs")
      const limit = yield* netmapLimit(options)
      const raw = yield* netmapCall("peers", "whoIs", limit, (d) =>
        d.raw.whoIs
          ? d.raw.whoIs(ip)
          // A backend without `whoIs`: the peer, with no app capabilities.
          : d.raw.peerByIp(ip).then((node) => node === null ? null : { node, appCapabilities: {} }))
      return raw === null ? Option.none() : Option.some(yield* decodeWhoIs(raw))
    }),
    peersWithRoute: Effect.fn("Tailscale.peersWithRoute")(function*(input: IpInput, options?: CallOptions) {
      const ip = yield* parseIp("ip", input)
      yield* meter.lookup("peersWithRoute")
      const raw = yield* netmapCall(
        "peers",
        "peersWithRoute",
        yield* netmapLimit(options),
        (d) => d.raw.peersWithRoute(formatIp(ip))
      )
      return yield* Effect.forEach(raw, decodeNodeInfo)
    }),
    setExitNode: Effect.fn("Tailscale.setExitNode")(function*(input: PeerInput | null, options?: CallOptions) {
      const limit = yield* netmapLimit(options)
      let peer: string | null = null
      if (input instanceof NodeInfo) peer = formatIp(input.ipv4)
      else if (typeof input === "string" && Result.isFailure(NetAddress.ipFromString(input))) {
        if (input.replace(/\.$/, "") === "") return yield* Effect.fail(invalidArgument("peer", "must not be empty"))
        peer = input
      } else if (input !== null) peer = formatIp(yield* parseIp("peer", input))
      const raw = yield* call("setExitNode", limit, (d) =>
        d.raw.setExitNode === undefined
          ? Promise.reject(backendError("INTERNAL", "setExitNode", "this backend cannot set an exit node"))
          : d.raw.setExitNode(peer))
      const exitNode = yield* decodeOptional(raw)
      chosen.exitNode = Option.match(exitNode, { onNone: () => undefined, onSome: (node) => formatIp(node.ipv4) })
      return exitNode
    }),
    peers: Effect.gen(function*() {
      // A device that ends meanwhile is followed by its successor, or the gate's failure.
      while (true) {
        const table = yield* watchTable(yield* supervised.current, 0, "peers")
        if (table !== null) return yield* Effect.forEach(table.peers, decodeNodeInfo)
      }
    }).pipe(within("peers", timeouts.netmap), Effect.withSpan("Tailscale.peers")),
    peerChanges: peerChanges(supervised, decodeNodeInfo),
    ping: Effect.fn("Tailscale.ping")(function*(input: PeerInput, options?: CallOptions) {
      const limit = yield* callLimit(options?.timeout, timeouts.dial)
      return yield* Effect.gen(function*() {
        const peer = yield* resolvePeer("ping", input, limit)
        const raw = yield* call("ping", "Infinity", (d) =>
          d.raw.ping === undefined
            ? Promise.reject(backendError("INTERNAL", "ping", "this backend cannot ping"))
            : d.raw.ping(formatIp(peer.ipv4), Math.min(toMillis(limit) ?? PING_LIMIT_MS, PING_LIMIT_MS)))
        return pongFrom(peer, raw)
      }).pipe(within("ping", limit))
    }),
    pathTo: Effect.fn("Tailscale.pathTo")(function*(input: PeerInput, options?: CallOptions) {
      const limit = yield* netmapLimit(options)
      const peer = yield* resolvePeer("pathTo", input, limit)
      return yield* pathTo(supervised, peer).pipe(within("pathTo", limit))
    }),
    ...sockets,
    state: SubscriptionRef.get(supervised.state),
    states: SubscriptionRef.changes(supervised.state).pipe(
      Stream.takeUntil((state) => state._tag === "Stopped")
    ),
    shutdown: supervised.shutdown.pipe(Effect.withSpan("Tailscale.shutdown"))
  }
  return service
})
