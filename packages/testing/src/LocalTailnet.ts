/**
 * A real tailnet on loopback for integration tests: Tailscale's test control server, a DERP
 * relay, STUN and a Go `tsnet` peer called `echo-peer` (TCP echo, UDP echo, HTTP), all from the
 * harness of `@effect-tailscale/tailnet-harness`. The layer builds the harness if its binary is missing, starts it, and
 * stops it when its scope closes, also when a test fails. It refuses to start unless loopback is
 * the only network interface. With `topology: "lan"` the harness runs in a network namespace of
 * its own on a LAN with this process, where devices can go direct (`pathTo` tells). With
 * `topology: "nat"` this process and a Go peer (`nat-peer`) are each behind a masquerading
 * router, with control, DERP and STUN outside; the peer calls are then that peer's.
 *
 * @since 0.1.0
 */
import type { Backend, RawDevice } from "@effect-tailscale/core/Backend"
import * as Tailscale_ from "@effect-tailscale/core/Tailscale"
import { type Named, type NamedTag, Tailscale } from "@effect-tailscale/core/Tailscale"
import type { TailscaleError } from "@effect-tailscale/core/TailscaleError"
import * as NativeBackend from "@effect-tailscale/node/NativeBackend"
import type * as NodeTailscale from "@effect-tailscale/node/NodeTailscale"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import {
  adminRequest,
  adminRequestBytes,
  type HarnessInfo,
  type LanSegment,
  type NatNetwork,
  startHarness,
  type StartOptions,
  type Topology
} from "./HarnessProcess.ts"

export {
  /**
   * What the harness prints when it is ready (`HarnessProcess.HarnessInfo`).
   *
   * @category models
   */
  HarnessInfo
} from "./HarnessProcess.ts"

/**
 * The loopback (or LAN) tailnet could not start, or a harness call failed.
 *
 * @category errors
 */
export class LocalTailnetError extends Schema.TaggedError<LocalTailnetError>()("LocalTailnetError", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/**
 * A node as the Go echo peer sees it.
 *
 * @category models
 */
export interface PeerView {
  readonly hostname: string
  readonly ipv4: string
  readonly ipv6: string
  readonly online: boolean
  /** The endpoints (`ip:port`) the node advertised to control. */
  readonly endpoints: ReadonlyArray<string>
  /** The UDP endpoint of the direct path the Go peer trusts and sends on; empty when it relays. */
  readonly curAddr: string
  /** The DERP region code the Go peer relays to the node through. */
  readonly relay: string
  /** WireGuard bytes the Go peer received from and sent to the node. */
  readonly rxBytes: number
  readonly txBytes: number
}

/**
 * The path the Go peer sends to a node on: `Direct` (UDP to the node's endpoint) once a direct
 * path is confirmed and trusted, `Relay` (through a DERP region) until then or without one.
 *
 * @category models
 */
export type PeerPath =
  | { readonly _tag: "Direct"; readonly endpoint: string }
  | { readonly _tag: "Relay"; readonly region: string }

/**
 * The Go peer's disco ping of a node: the round trip, and the path the pong came back by.
 *
 * @category models
 */
export interface GoPong {
  readonly latencyMs: number
  readonly path: PeerPath
}

/** The fields of Go's `ipnstate.PingResult` that `pingFromPeer` reads. */
interface GoPingResult {
  readonly Err?: string
  readonly LatencySeconds?: number
  readonly Endpoint?: string
  readonly DERPRegionID?: number
  readonly DERPRegionCode?: string
}

/**
 * A byte count and its SHA-256, to compare transfers.
 *
 * @category models
 */
export interface Transfer {
  readonly bytes: number
  readonly sha256: string
}

/**
 * The loopback tailnet: its addresses, the Go echo peer's view and actions, and control's admin API (restart, stop, logins).
 *
 * @category services
 */
export interface LocalTailnetService {
  readonly info: HarnessInfo
  readonly topology: Topology
  /** The LAN between this process and the harness (`lan` topology); undefined on the others. */
  readonly lan: LanSegment | undefined
  /** The routers, addresses and namespaces of the `nat` topology; undefined on the others. */
  readonly nat: NatNetwork | undefined
  /**
   * Drops every UDP datagram in or out of this process's namespace by its link to the harness
   * (`lan`) or to its router (`nat`): direct paths die; DERP, over TCP, goes on. Or lets them
   * through again.
   */
  readonly blockUdp: (blocked: boolean) => Effect.Effect<void, LocalTailnetError>
  /** The native addon as a backend; `connect` joins through it, so `loseDevice` can reach its devices. */
  readonly backend: Backend
  /**
   * Stops the crate's runtime of the device last joined (or built again) as `hostname`, as a
   * crash inside it would: the device is lost, and its layer builds it again from its keys.
   */
  readonly loseDevice: (hostname: string) => Effect.Effect<void, LocalTailnetError>
  /** Waits until the Go peer sees `ip` in its network map. */
  readonly waitForPeer: (ip: string) => Effect.Effect<PeerView, LocalTailnetError>
  /** Waits until the Go peer no longer sees `ip` (an ephemeral node removed). */
  readonly waitForPeerGone: (ip: string, timeoutMs?: number) => Effect.Effect<void, LocalTailnetError>
  /** Waits until the node (`nodekey:<hex>`) has no streaming map poll open: it left control. */
  readonly waitForDisconnect: (nodeKey: string, timeoutMs?: number) => Effect.Effect<void, LocalTailnetError>
  readonly peers: Effect.Effect<ReadonlyArray<PeerView>, LocalTailnetError>
  /**
   * The path the Go peer sends to the node with `ip` on now. The Go peer keeps a path only while
   * it talks to the node (it confirms it every few seconds then), so ask during traffic.
   */
  readonly pathTo: (ip: string) => Effect.Effect<PeerPath, LocalTailnetError>
  /** The Go peer dials `address` ("ip:port"), sends `data`, and returns what it read back. */
  readonly dialFromPeer: (address: string, data: Uint8Array | string) => Effect.Effect<Uint8Array, LocalTailnetError>
  /** Like `dialFromPeer` but reports the length and SHA-256 of what came back (for big transfers). */
  readonly dialFromPeerHashed: (address: string, data: Uint8Array) => Effect.Effect<Transfer, LocalTailnetError>
  /** The Go peer dials `address`, sends `bytes` of the pattern (byte i = i mod 251) and closes. */
  readonly sendFromPeer: (address: string, bytes: number) => Effect.Effect<Transfer, LocalTailnetError>
  /** The Go peer GETs `url` over the tailnet. */
  readonly fetchFromPeer: (url: string) => Effect.Effect<{ status: number; body: string }, LocalTailnetError>
  /**
   * The Go peer disco-pings the node with `ip`, as `tailscale ping` does, and reports how the
   * pong came back: `Direct` by a UDP endpoint or `Relay` through a DERP region.
   */
  readonly pingFromPeer: (ip: string) => Effect.Effect<GoPong, LocalTailnetError>
  /**
   * Replaces the policy's app capabilities: one grant from every node to every node whose `app`
   * part is `capabilities` (each name with its JSON values), as testcontrol's global app caps.
   * `{}` takes them away.
   */
  readonly setAppCapabilities: (
    capabilities: Readonly<Record<string, ReadonlyArray<unknown>>>
  ) => Effect.Effect<void, LocalTailnetError>
  /** Replaces the capabilities of the node with `nodeKey` (`nodekey:<hex>`), as it and its peers see them. */
  readonly setNodeCapabilities: (
    nodeKey: string,
    capabilities: Readonly<Record<string, ReadonlyArray<unknown>>>
  ) => Effect.Effect<void, LocalTailnetError>
  /**
   * The Go peer offers itself as an exit node (it advertises `0.0.0.0/0` and `::/0` and control
   * approves them), or stops; devices see the routes in their next network map.
   */
  readonly offerExitNode: (on: boolean) => Effect.Effect<void, LocalTailnetError>
  /** New registrations wait for an interactive login. */
  readonly requireLogin: (on: boolean) => Effect.Effect<void, LocalTailnetError>
  /** Approves a login URL a device reported. */
  readonly completeLogin: (url: string) => Effect.Effect<void, LocalTailnetError>
  /** Map requests per node seen by control (`streaming` and `lite`). */
  /**
   * Stops control (listener and every connection), waits `downMs` (default 300), and starts it
   * again on the same address with the same state, as a control server restarted for a deploy.
   */
  readonly restartControl: (downMs?: number) => Effect.Effect<void, LocalTailnetError>
  /** Stops control until `startControl`. */
  readonly stopControl: Effect.Effect<void, LocalTailnetError>
  readonly startControl: Effect.Effect<void, LocalTailnetError>
  readonly mapRequests: Effect.Effect<Record<string, Record<string, number>>, LocalTailnetError>
  /** Waits until the node with `nodeKey` (`nodekey:<hex>`) has logged out of control. */
  readonly waitLoggedOut: (nodeKey: string, timeoutMs?: number) => Effect.Effect<void, LocalTailnetError>
  /** The map requests control has seen from the node with `nodeKey` (`nodekey:<hex>`). */
  readonly mapRequestsOf: (
    nodeKey: string
  ) => Effect.Effect<{ readonly streaming: number; readonly lite: number }, LocalTailnetError>
}

/**
 * The loopback tailnet in context.
 *
 * @category services
 */
export class LocalTailnet extends Context.Service<LocalTailnet, LocalTailnetService>()(
  "@effect-tailscale/testing/LocalTailnet"
) {}

const failure = (what: string) => (cause: unknown) =>
  new LocalTailnetError({ message: `${what}: ${cause instanceof Error ? cause.message : String(cause)}`, cause })

/**
 * Starts the loopback tailnet (or, with `topology`, the `lan` or `nat` one) for the current scope.
 *
 * @category constructors
 */
export const make = (options?: StartOptions): Effect.Effect<LocalTailnetService, LocalTailnetError, Scope.Scope> =>
  Effect.gen(function*() {
    const harness = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => startHarness(options),
        catch: failure(`starting the ${options?.topology ?? "loopback"} tailnet`)
      }),
      (running) => Effect.promise(() => running.stop())
    )
    const info = harness.ready
    // Control's calls go to the harness that runs control; the Go peer's to the one that runs
    // the peer (another process on the nat topology).
    const adminOf = (adminUrl: string) => (path: string, init?: Parameters<typeof adminRequest>[2]) =>
      Effect.tryPromise({
        try: () => adminRequest(adminUrl, path, init),
        catch: (cause) => failure(`harness ${path.split("?")[0]}`)(`${String(cause)}\n${harness.stderrTail()}`)
      })
    const admin = adminOf(info.adminUrl)
    const peerAdminUrl = info.peerAdminUrl ?? info.adminUrl
    const peerAdmin = adminOf(peerAdminUrl)
    const json = <A>(path: string, init?: Parameters<typeof adminRequest>[2]) =>
      Effect.map(admin(path, init), (text) => JSON.parse(text) as A)
    const peerJson = <A>(path: string, init?: Parameters<typeof adminRequest>[2]) =>
      Effect.map(peerAdmin(path, init), (text) => JSON.parse(text) as A)
    const q = encodeURIComponent
    const native = yield* NativeBackend.make().pipe(Effect.mapError(failure("loading the native addon")))
    // The device last joined or built again under each hostname, for loseDevice.
    const latest = new Map<string, RawDevice>()
    const track = (hostname: string, raw: RawDevice): RawDevice => {
      latest.set(hostname, raw)
      return new Proxy(raw, {
        get: (target, key) => {
          if (key === "respawn" && target.respawn) return async () => track(hostname, await target.respawn!())
          const value: unknown = Reflect.get(target, key, target)
          return typeof value === "function" ? value.bind(target) : value
        }
      })
    }
    const backend: Backend = {
      ...native,
      connect: async (options) => track(options.hostname ?? "", await native.connect(options))
    }

    const peers = peerJson<Array<PeerView>>("/peers")
    const service: LocalTailnetService = {
      info,
      topology: options?.topology ?? "loopback",
      lan: harness.lan,
      nat: harness.nat,
      blockUdp: (blocked) => Effect.tryPromise({ try: () => harness.blockUdp(blocked), catch: failure("blockUdp") }),
      backend,
      loseDevice: (hostname) =>
        Effect.try({
          try: () => {
            const raw = latest.get(hostname) as (RawDevice & { abortRuntime?: () => void }) | undefined
            if (raw?.abortRuntime === undefined) throw new Error(`no device joined as ${hostname}`)
            raw.abortRuntime()
          },
          catch: failure("loseDevice")
        }),
      waitForPeer: (ip) => peerJson<PeerView>(`/wait-peer?ip=${q(ip)}&timeout=30000`),
      waitForPeerGone: (ip, timeoutMs = 60_000) =>
        Effect.asVoid(peerAdmin(`/wait-peer-gone?ip=${q(ip)}&timeout=${timeoutMs}`)),
      waitForDisconnect: (nodeKey, timeoutMs = 15_000) =>
        Effect.asVoid(admin(`/wait-disconnected?nodekey=${q(nodeKey)}&timeout=${timeoutMs}`)),
      peers,
      pathTo: (ip) =>
        Effect.flatMap(peers, (views) => {
          const view = views.find((candidate) => candidate.ipv4 === ip || candidate.ipv6 === ip)
          if (view === undefined) return Effect.fail(failure("pathTo")(`the Go peer does not see ${ip}`))
          return Effect.succeed<PeerPath>(
            view.curAddr === "" ? { _tag: "Relay", region: view.relay } : { _tag: "Direct", endpoint: view.curAddr }
          )
        }),
      dialFromPeer: (address, data) =>
        Effect.tryPromise({
          try: () =>
            adminRequestBytes(peerAdminUrl, `/dial-tcp?addr=${q(address)}&timeout=30000`, {
              method: "POST",
              body: data
            }),
          catch: failure("harness /dial-tcp")
        }),
      dialFromPeerHashed: (address, data) =>
        peerJson<Transfer>(`/dial-tcp-hash?addr=${q(address)}&timeout=60000`, { method: "POST", body: data }),
      sendFromPeer: (address, bytes) => peerJson<Transfer>(`/send-tcp?addr=${q(address)}&n=${bytes}&timeout=60000`),
      fetchFromPeer: (url) => peerJson<{ status: number; body: string }>(`/fetch?url=${q(url)}&timeout=30000`),
      pingFromPeer: (ip) =>
        Effect.flatMap(peerJson<GoPingResult>(`/ping?ip=${q(ip)}&timeout=15000`), (result) =>
          result.Err
            ? Effect.fail(failure("pingFromPeer")(`the Go peer's ping of ${ip} failed: ${result.Err}`))
            : Effect.succeed<GoPong>({
              latencyMs: (result.LatencySeconds ?? 0) * 1000,
              path: result.Endpoint
                ? { _tag: "Direct", endpoint: result.Endpoint }
                : { _tag: "Relay", region: result.DERPRegionCode ?? String(result.DERPRegionID ?? "") }
            })),
      setAppCapabilities: (capabilities) =>
        Effect.asVoid(admin("/app-caps", { method: "POST", body: JSON.stringify(capabilities) })),
      setNodeCapabilities: (nodeKey, capabilities) =>
        Effect.asVoid(
          admin(`/node-caps?nodekey=${q(nodeKey)}`, { method: "POST", body: JSON.stringify(capabilities) })
        ),
      offerExitNode: (on) => Effect.asVoid(admin(`/exit-node?on=${on}`, { method: "POST" })),
      requireLogin: (on) => Effect.asVoid(admin(`/require-auth?on=${on}`, { method: "POST" })),
      completeLogin: (url) => Effect.asVoid(admin(`/complete-auth?url=${q(url)}`, { method: "POST" })),
      restartControl: (downMs = 300) => Effect.asVoid(admin(`/control-restart?downMs=${downMs}`, { method: "POST" })),
      stopControl: Effect.asVoid(admin("/control-stop", { method: "POST" })),
      startControl: Effect.asVoid(admin("/control-start", { method: "POST" })),
      waitLoggedOut: (nodeKey, timeoutMs = 10_000) =>
        Effect.asVoid(admin(`/wait-logged-out?nodekey=${q(nodeKey)}&timeout=${timeoutMs}`)),
      mapRequests: json("/map-requests"),
      mapRequestsOf: (nodeKey) =>
        Effect.map(json<Record<string, Record<string, number>>>("/map-requests"), (counts) => {
          // testcontrol names nodes by the first five base64 characters of their key.
          const name = `[${Buffer.from(nodeKey.slice("nodekey:".length), "hex").toString("base64").slice(0, 5)}]`
          return { streaming: counts.streaming?.[name] ?? 0, lite: counts.lite?.[name] ?? 0 }
        })
    }
    return service
  })

/**
 * The loopback (or `lan`, or `nat`) tailnet for the layer's lifetime.
 *
 * @category layers
 */
export const layer = (options?: StartOptions): Layer.Layer<LocalTailnet, LocalTailnetError> =>
  Layer.effect(LocalTailnet, make(options))

/**
 * How a device joins the loopback tailnet (the control URL and CA are the tailnet's).
 *
 * @category options
 */
export interface DeviceOptions extends Omit<NodeTailscale.NodeTailscaleOptions, "controlUrl"> {
  /** Join without the tailnet's auth key (for interactive login). */
  readonly withoutAuthKey?: boolean | undefined
}

/**
 * Connects a device to the local tailnet for the current scope, trusting the tailnet's CA.
 *
 * @category constructors
 */
export const connect = (options: DeviceOptions = {}) =>
  Effect.gen(function*() {
    const tailnet = yield* LocalTailnet
    return yield* Tailscale_.make(tailnet.backend, {
      ephemeral: true,
      // The crate's records are noise in test output; TS_TEST_LOG=debug (etc.) shows them.
      logFilter: process.env.TS_TEST_LOG ?? "off",
      ...options,
      controlUrl: tailnet.info.controlUrl,
      caFile: tailnet.info.caFile,
      ...(options.withoutAuthKey || options.authKey ? {} : { authKey: Redacted.make(tailnet.info.authKey) })
    })
  })

/**
 * A `Tailscale` device joined to the local tailnet.
 *
 * @category layers
 */
export const device = (options: DeviceOptions = {}): Layer.Layer<Tailscale, TailscaleError, LocalTailnet> =>
  Layer.effect(Tailscale, connect(options))

/**
 * A device joined to the local tailnet under `tag` (from `Tailscale.named`).
 *
 * @category layers
 */
export const deviceNamed = <Name extends string>(
  tag: NamedTag<Name>,
  options: DeviceOptions = {}
): Layer.Layer<Named<Name>, TailscaleError, LocalTailnet> => Layer.effect(tag, connect(options))
