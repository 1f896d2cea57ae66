/**
 * The seam between the Effect service and whatever actually moves packets: the native addon
 * (`@effect-tailscale/native`, wrapped by `@effect-tailscale/node`) or the in-memory fake tailnet
 * (`@effect-tailscale/testing`). Backends are thin and promise-based; every policy (timeouts,
 * scopes, decoding, error mapping, interruption safety) lives in core, once.
 *
 * Error contract: a backend rejects with a {@link BackendError}: an `Error` whose own `code` is
 * one of {@link BackendErrorCode} and whose `subject` names the offending field or what failed.
 * Core reads those two, never the message; anything else is treated as an internal error.
 *
 * Cancellation contract: a backend promise, once started, runs to completion (the native addon
 * cannot cancel a pending call without losing data inside the netstack). Core never abandons a
 * pending `read`, `accept` or `recv`: an interrupted call's promise is kept and handed to the next
 * caller, so nothing is lost. `close()` makes every pending and later call on that handle reject
 * with `DEVICE_CLOSED`.
 *
 * @since 0.1.0
 */

/**
 * Stable error codes carried by backend rejections.
 *
 * @category constants
 */
export const BackendErrorCodes = [
  "KEY_FILE",
  "INVALID_ARGUMENT",
  "CONTROL_UNREACHABLE",
  "NOT_AUTHORIZED",
  "TIMEOUT",
  "CONNECTION_REFUSED",
  "CONNECTION_RESET",
  "ADDRESS_IN_USE",
  "MESSAGE_TOO_LARGE",
  "DEVICE_CLOSED",
  "DEVICE_LOST",
  "INTERNAL"
] as const

/**
 * One of `BackendErrorCodes`: the `code` of every backend rejection.
 *
 * @category models
 */
export type BackendErrorCode = typeof BackendErrorCodes[number]

/**
 * What a backend rejects with: an `Error` that carries its failure as data. The native addon's
 * (and `backendError`'s) message reads `"<CODE>: <subject>: <detail>"`, for people and logs.
 *
 * @category models
 */
export interface BackendError extends Error {
  readonly code: BackendErrorCode
  /**
   * The offending field for `INVALID_ARGUMENT` (`port`, `tags[1]`); otherwise what failed: the
   * operation (`connect`, `TCP read`) or the closed handle (`TCP stream`).
   */
  readonly subject: string
}

/**
 * A `BackendError`, for backends written in JavaScript.
 *
 * @category constructors
 */
export const backendError = (code: BackendErrorCode, subject: string, detail: string): BackendError =>
  Object.assign(new Error(`${code}: ${subject}: ${detail}`), { code, subject })

/**
 * `ip` is an IPv4 dotted quad or an IPv6 address without brackets.
 *
 * @category models
 */
export interface RawSocketAddress {
  readonly ip: string
  readonly port: number
}

/**
 * A node's connection to control, as the backend reports it: tagged as `NodeStatus` is, times
 * as ISO-8601 (when offline: as control reported it, rounded to about ten minutes, and as
 * estimated locally).
 *
 * @category models
 */
export type RawNodeStatus =
  | { readonly _tag: "Unknown" }
  | { readonly _tag: "Online" }
  | { readonly _tag: "Offline"; readonly lastSeenControl?: string | undefined; readonly lastSeenEstimated: string }

/**
 * A tailnet user, as control describes them.
 *
 * @category models
 */
export interface RawUserProfile {
  readonly id: number
  /** An email address or "email-ish" name. */
  readonly loginName: string
  readonly displayName?: string | undefined
  readonly profilePicUrl?: string | undefined
}

/**
 * Every field of the crate's `Node`, and its owner, as plain data. Keys are public keys only.
 *
 * @category models
 */
export interface RawNodeInfo {
  readonly id: number
  readonly stableId: string
  readonly hostname: string
  /** Fully qualified name with the trailing dot; absent when control sent no tailnet suffix. */
  readonly fqdn?: string | undefined
  readonly tailnet?: string | undefined
  readonly capabilityVersion: number
  readonly status: RawNodeStatus
  readonly nodeCapabilities: Readonly<Record<string, ReadonlyArray<string>>>
  readonly tags: ReadonlyArray<string>
  /** The user who owns the node; absent for a tagged node, or when control sent no profile. */
  readonly user?: RawUserProfile | undefined
  /** CIDR, e.g. `100.64.0.1/32`. */
  readonly tailnetIpv4: string
  /** CIDR, e.g. `fd7a:115c:a1e0::1/128`. */
  readonly tailnetIpv6: string
  /** `nodekey:<hex>` */
  readonly nodeKey: string
  /** ISO-8601. Go's zero time (year 1) arrives as `0001-01-01T00:00:00Z` and means "never". */
  readonly nodeKeyExpiry?: string | undefined
  /** `mkey:<hex>` */
  readonly machineKey?: string | undefined
  /** `discokey:<hex>` */
  readonly discoKey?: string | undefined
  /** Base64 of the Tailnet Lock signature. */
  readonly tailnetLockKeySignature?: string | undefined
  /** CIDRs: the node's own addresses plus any subnet routes. */
  readonly acceptedRoutes: ReadonlyArray<string>
  /** `ip:port` / `[ip]:port` endpoints. */
  readonly underlayAddresses: ReadonlyArray<string>
  readonly derpRegion?: number | undefined
}

/**
 * Every peer as of one network map.
 *
 * @category models
 */
export interface RawPeerTable {
  /** Counts the network maps that updated the peers; 0 before the first. */
  readonly version: number
  readonly peers: ReadonlyArray<RawNodeInfo>
}

/**
 * A disco ping's pong.
 *
 * @category models
 */
export interface RawPong {
  /** Round trip in milliseconds (fractional). */
  readonly latencyMs: number
  /** The UDP `ip:port` that answered; absent when the pong came through DERP. */
  readonly endpoint?: string | null | undefined
}

/**
 * One peer's direct path.
 *
 * @category models
 */
export interface RawDirectPath {
  /** The peer's `nodekey:<hex>`. */
  readonly nodeKey: string
  /** `ip:port` or `[ip]:port`. */
  readonly endpoint: string
}

/**
 * Every peer on a direct path; the others' traffic goes through DERP.
 *
 * @category models
 */
export interface RawDirectPaths {
  /** Counts the changes; 0 before the first. */
  readonly version: number
  readonly paths: ReadonlyArray<RawDirectPath>
}

/**
 * The peer behind a tailnet address, and what the tailnet's policy grants it toward this device.
 *
 * @category models
 */
export interface RawWhoIs {
  readonly node: RawNodeInfo
  /** App capability name to its values, each a JSON text (the packet filter's `CapGrant`s). */
  readonly appCapabilities: Readonly<Record<string, ReadonlyArray<string>>>
}

/**
 * Whether control authorized the device, or where a person can approve it: tagged as `AuthState` is.
 *
 * @category models
 */
export type RawAuthState = { readonly _tag: "Authorized" } | { readonly _tag: "NeedsLogin"; readonly url: string }

/**
 * A received UDP datagram and its sender.
 *
 * @category models
 */
export interface RawDatagram {
  readonly data: Uint8Array
  readonly ip: string
  readonly port: number
}

/**
 * A TCP connection: `read` resolves with the next bytes (`null` at end of stream), `write` once every byte is taken.
 *
 * @category models
 */
export interface RawTcpStream {
  /** Next chunk; `null` once the peer has finished sending (end of stream). */
  read(): Promise<Uint8Array | null>
  /** Resolves once every byte is accepted by the network stack (backpressure). */
  write(data: Uint8Array): Promise<void>
  readonly localAddress: RawSocketAddress
  readonly remoteAddress: RawSocketAddress
  /** Graceful close (FIN after queued data). Idempotent. */
  close(): void
}

/**
 * A TCP listener: `accept` resolves with the next connection.
 *
 * @category models
 */
export interface RawTcpListener {
  accept(): Promise<RawTcpStream>
  readonly localAddress: RawSocketAddress
  close(): void
}

/**
 * A bound UDP socket.
 *
 * @category models
 */
export interface RawUdpSocket {
  recv(): Promise<RawDatagram>
  send(ip: string, port: number, data: Uint8Array): Promise<void>
  readonly localAddress: RawSocketAddress
  close(): void
}

/**
 * One device of a backend: addresses, lookups, sockets and shutdown, as promises.
 *
 * @category models
 */
export interface RawDevice {
  ipv4(): Promise<string>
  ipv6(): Promise<string>
  selfNode(): Promise<RawNodeInfo>
  authState(): Promise<RawAuthState>
  peerByName(name: string): Promise<RawNodeInfo | null>
  peerByIp(ip: string): Promise<RawNodeInfo | null>
  peersWithRoute(ip: string): Promise<Array<RawNodeInfo>>
  /**
   * The peer that owns a tailnet address with the app capabilities the policy grants it toward
   * this device, or `null` when no peer has the address. Optional: without it, a caller is
   * looked up with `peerByIp` and has no app capabilities.
   */
  whoIs?(ip: string): Promise<RawWhoIs | null>
  /**
   * Resolves with the peer table once its version differs from `known` (0: wait for the first
   * network map), or with `null` once the device is shut down or lost. Optional: without it,
   * `peers` and `peerChanges` fail.
   */
  watchPeers?(known: number): Promise<RawPeerTable | null>
  /**
   * Resolves with the direct paths once their version differs from `known` (without it: as
   * they are now), or with `null` once the device is shut down or lost. Optional: without it,
   * every peer is reported on the relay.
   */
  watchPaths?(known?: number): Promise<RawDirectPaths | null>
  /**
   * Disco-pings the peer that owns `ip` (its direct path if it has one, else its UDP addresses
   * and DERP at once) and resolves with the first pong; rejects `TIMEOUT` after `timeoutMs`.
   * Optional: without it, `ping` fails.
   */
  ping?(ip: string, timeoutMs: number): Promise<RawPong>
  /**
   * Sends traffic to addresses outside the tailnet through the peer `peer` names (hostname,
   * FQDN or tailnet address), which must offer itself as an exit node (control approved its
   * `0.0.0.0/0` and `::/0`), or through none (`null`: such addresses then have no route).
   * Resolves with the exit node; rejects `INVALID_ARGUMENT` for a peer that is not there or
   * offers no exit. Waits for the first network map. Optional: without it, `setExitNode` fails.
   */
  setExitNode?(peer: string | null): Promise<RawNodeInfo | null>
  tcpListen(ip: string, port: number): Promise<RawTcpListener>
  tcpConnect(ip: string, port: number): Promise<RawTcpStream>
  udpBind(ip: string, port: number): Promise<RawUdpSocket>
  /** Stops the device. Resolves `true` when it stopped gracefully within the timeout. Idempotent. */
  shutdown(timeoutMs: number): Promise<boolean>
  /**
   * Resolves with the cause once the device is lost (its runtime is gone: every call then fails
   * with `DEVICE_LOST`, its sockets with `DEVICE_CLOSED`), or with `null` once it is shut down.
   * Optional: without it, core never sees a device as lost.
   */
  waitLost?(): Promise<string | null>
  /**
   * Resolves with whether the device has a live session with control once that differs from
   * `known`, or with `null` once the device is shut down or lost. While control is away a
   * device keeps its addresses, peers and connections; only what needs control waits.
   * Optional: without it, core reports control as connected while the device runs.
   */
  watchControl?(known: boolean): Promise<boolean | null>
  /**
   * A new device built like this one (same options and identity) for when it is lost.
   * Optional: without it, core connects again with the same options.
   */
  respawn?(): Promise<RawDevice>
}

/**
 * Everything a device connects with, validated by core first.
 *
 * @category options
 */
export interface RawConnectOptions {
  /** Path of the key file: created when missing, never overwritten unless `overwriteBadKeyFile`. */
  readonly keyFile?: string | undefined
  readonly overwriteBadKeyFile?: boolean | undefined
  /** Key state as the JSON the crate writes to key files. */
  readonly keyState?: string | undefined
  readonly authKey?: string | undefined
  readonly controlUrl?: string | undefined
  readonly hostname?: string | undefined
  readonly tags?: ReadonlyArray<string> | undefined
  readonly ephemeral?: boolean | undefined
  readonly clientName?: string | undefined
  /**
   * Give up with `TIMEOUT` when control has not answered within this time. The backend owns this
   * limit: core waits a little longer only to end a backend that ignores it.
   */
  readonly connectTimeoutMs?: number | undefined
  /** A PEM file of CA certificates to trust beside the public web roots (process-wide). */
  readonly caFile?: string | undefined
  /**
   * The exit node (a peer's hostname, FQDN or tailnet address), looked up in each network map
   * until a peer has it, as Go's `ExitNodeIP` pref; until then outside addresses have no route.
   */
  readonly exitNode?: string | undefined
  /** A log subscription's id: this device's records go there only. */
  readonly logSink?: number | undefined
}

/**
 * A log record's level, as `tracing` names it.
 *
 * @category models
 */
export type RawLogLevel = "ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE"

/**
 * One log record from the backend, already redacted.
 *
 * @category models
 */
export interface RawLogRecord {
  readonly level: RawLogLevel
  readonly target: string
  readonly message: string
  readonly fields: Readonly<Record<string, string>>
}

/**
 * A subscription to the backend's log records; `unsubscribe` ends it.
 *
 * @category models
 */
export interface LogSubscription {
  /** Pass as `logSink` when connecting: that device's records then come here only. */
  readonly id: number
  /** Stops delivery to this subscription; other subscriptions keep theirs. */
  readonly unsubscribe: () => void
}

/**
 * What core runs on: the native addon (`@effect-tailscale/node`) or the fake tailnet.
 *
 * @category models
 */
export interface Backend {
  connect(options: RawConnectOptions): Promise<RawDevice>
  /**
   * Routes log records to `handler`, filtered by a `RUST_LOG`-style directive string: the
   * records of devices connected with this subscription's id, and nothing else. Optional: the
   * fake tailnet has no logs.
   */
  readonly subscribeLogs?: ((filter: string, handler: (record: RawLogRecord) => void) => LogSubscription) | undefined
  /**
   * Routes the log records that belong to no device (e.g. loading a key file outside a device)
   * to `handler`, filtered like `subscribeLogs`. A device's records never come here. Optional.
   */
  readonly subscribeProcessLogs?:
    | ((filter: string, handler: (record: RawLogRecord) => void) => LogSubscription)
    | undefined
}
