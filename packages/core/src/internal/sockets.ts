/**
 * The service's socket calls: `dial`, `listen` and `bindUdp`. Each opens a backend handle that
 * the caller's scope owns from the moment it exists, even when the call is interrupted, and
 * wraps it as a metered `TcpStream`, `TcpListener` or `UdpSocket`.
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import { type BindAddress, type DialTarget, formatIp } from "../Address.ts"
import type { NodeInfo } from "../NodeInfo.ts"
import type { BindOptions, CallOptions, ListenOptions, TailscaleService } from "../Tailscale.ts"
import { invalidArgument, TailscaleError } from "../TailscaleError.ts"
import * as TcpListener from "../TcpListener.ts"
import * as TcpStream from "../TcpStream.ts"
import { type Timeouts, within } from "../Timeouts.ts"
import * as UdpSocket from "../UdpSocket.ts"
import { parseDialTarget, parseIp, parsePort } from "./address.ts"
import { fromBackend } from "./backendErrors.ts"
import { dualStack } from "./dualListener.ts"
import type { DeviceMeter } from "./metering.ts"
import { open } from "./owned.ts"
import type { Supervised } from "./supervisor.ts"

/** The IANA dynamic range, where `listen(0)` picks a port. */
const EPHEMERAL_FIRST = 49152
const EPHEMERAL_COUNT = 65536 - EPHEMERAL_FIRST

/** `listen(0)`: a free port from the dynamic range, tried at random until one is not in use. */
const ephemeral = <A>(bind: (port: number) => Effect.Effect<A, TailscaleError>) => {
  const attempt = (tries: number): Effect.Effect<A, TailscaleError> =>
    bind(EPHEMERAL_FIRST + Math.floor(Math.random() * EPHEMERAL_COUNT)).pipe(
      Effect.catchReason(
        "TailscaleError",
        "AddressInUse",
        (reason) => tries > 1 ? attempt(tries - 1) : Effect.fail(new TailscaleError({ reason }))
      )
    )
  return attempt(32)
}

/** What the socket calls need from the service. */
export interface SocketDeps {
  readonly supervised: Supervised
  readonly timeouts: Timeouts
  readonly meter: DeviceMeter
  readonly ownIpv4: (limit: Duration.Input) => Effect.Effect<NetAddress.Ipv4Address, TailscaleError>
  readonly ownIpv6: (limit: Duration.Input) => Effect.Effect<NetAddress.Ipv6Address, TailscaleError>
  /** A peer by name, for `dial("name:port")`; the dial's own limit bounds it. */
  readonly peerNamed: (name: string) => Effect.Effect<Option.Option<NodeInfo>, TailscaleError>
  /**
   * Waits until the device has its first map of peers (a lookup of `ip`'s routes), for
   * `dial({ ip })`; the dial's own limit bounds it.
   */
  readonly peersKnown: (ip: NetAddress.IpAddress) => Effect.Effect<void, TailscaleError>
}

export const makeSockets = (
  { meter, ownIpv4, ownIpv6, peerNamed, peersKnown, supervised, timeouts }: SocketDeps
): Pick<TailscaleService, "dial" | "listen" | "bindUdp"> => {
  const bindIp = (address: BindAddress | undefined, limit: Duration.Input) =>
    address === undefined || address === "ipv4" || address === "ipv6"
      ? (address === "ipv6" ? ownIpv6(limit) : ownIpv4(limit))
      : Effect.gen(function*() {
        // The network stack would take any address and never deliver to it.
        const ip = yield* parseIp("address", address)
        const own = [formatIp(yield* ownIpv4(limit)), formatIp(yield* ownIpv6(limit))]
        if (!own.includes(formatIp(ip))) {
          return yield* Effect.fail(
            invalidArgument("address", `${formatIp(ip)} is not an address of this device (it has ${own.join(" and ")})`)
          )
        }
        return ip
      })

  return {
    dial: Effect.fn("Tailscale.dial")(function*(target: DialTarget, options?: CallOptions) {
      const limit = options?.timeout ?? timeouts.dial
      const parsed = yield* parseDialTarget(target)
      const connect = Effect.gen(function*() {
        let ip: NetAddress.IpAddress
        if (parsed._tag === "Ip") {
          ip = parsed.ip
          // As a dial by name waits for the name: a dial made as the device starts would
          // otherwise be refused by its own network stack, before any route is in.
          yield* peersKnown(ip)
        } else {
          const peer = yield* peerNamed(parsed.name)
          if (Option.isNone(peer)) {
            return yield* Effect.fail(
              invalidArgument("peer", `no peer called ${JSON.stringify(parsed.name)} on this tailnet`)
            )
          }
          ip = parsed.family === "ipv6" ? peer.value.ipv6 : peer.value.ipv4
        }
        const device = yield* supervised.current
        const raw = yield* open(
          () => device.raw.tcpConnect(formatIp(ip), parsed.port),
          (error) => fromBackend("dial", error)
        )
        return device.stream(raw)
      })
      // The connection is owned by the scope the moment it exists, even if interrupted here.
      return yield* Effect.uninterruptibleMask((restore) =>
        restore(connect.pipe(within("dial", limit))).pipe(
          Effect.flatMap((raw) => TcpStream.fromRaw(raw, meter)),
          Effect.onExit((exit) =>
            meter.dial(
              Exit.isSuccess(exit) ? "success" : Option.match(Exit.findErrorOption(exit), {
                onNone: () => "interrupted",
                onSome: (error) => error.reason._tag
              })
            )
          )
        )
      )
    }),
    listen: Effect.fn("Tailscale.listen")(function*(port: number, options?: ListenOptions) {
      const limit = options?.timeout ?? timeouts.netmap
      const valid = yield* parsePort("port", port, true)
      // Interruptible only while waiting: a listener that exists is always owned or closed.
      return yield* Effect.uninterruptibleMask((restore) => {
        const listenOn = (ip: NetAddress.IpAddress, at: number) =>
          Effect.flatMap(
            restore(supervised.current),
            (device) =>
              restore(open(() => device.raw.tcpListen(formatIp(ip), at), (error) => fromBackend("listen", error))).pipe(
                Effect.map(device.listener)
              )
          )
        // Both of the device's addresses unless one is named, as a `net.Server` listens on both.
        const bind = (at: number) =>
          options?.address !== undefined
            ? Effect.flatMap(restore(bindIp(options.address, limit)), (ip) => listenOn(ip, at))
            : Effect.gen(function*() {
              const ipv4 = yield* restore(ownIpv4(limit))
              const ipv6 = yield* restore(ownIpv6(limit))
              const first = yield* listenOn(ipv4, at)
              const second = yield* Effect.onError(listenOn(ipv6, at), () => Effect.sync(() => first.close()))
              return dualStack(first, second)
            })
        return (valid === 0 ? ephemeral(bind) : bind(valid)).pipe(
          Effect.flatMap((raw) => TcpListener.fromRaw(raw, meter))
        )
      })
    }),
    bindUdp: Effect.fn("Tailscale.bindUdp")(function*(port: number, options?: BindOptions) {
      if (port === 0) {
        return yield* Effect.fail(
          invalidArgument("port", "UDP needs an explicit port (1..65535): tailscale-rs has no ephemeral UDP ports")
        )
      }
      const valid = yield* parsePort("port", port)
      const ip = yield* bindIp(options?.address, options?.timeout ?? timeouts.netmap)
      return yield* Effect.uninterruptibleMask((restore) =>
        restore(
          Effect.flatMap(supervised.current, (device) =>
            open(() =>
              device.raw.udpBind(formatIp(ip), valid), (error) => fromBackend("bindUdp", error)).pipe(
                Effect.map(device.udp)
              ))
        ).pipe(
          Effect.flatMap((raw) =>
            UdpSocket.fromRaw(raw, meter)
          )
        )
      )
    })
  }
}
