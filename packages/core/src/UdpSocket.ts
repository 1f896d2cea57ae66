/**
 * A UDP socket on the tailnet, owned by a `Scope`. Datagrams hold at most 4096 bytes.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as NetAddress from "effect/net/NetAddress"
import * as Stream from "effect/Stream"
import { formatIp, type IpInput } from "./Address.ts"
import type { RawUdpSocket } from "./Backend.ts"
import { parseIp, parsePort } from "./internal/address.ts"
import { fromBackend } from "./internal/backendErrors.ts"
import { inetFromRaw } from "./internal/inet.ts"
import { notBytes, shown, toBytes } from "./internal/inputs.ts"
import { withinCallLimit } from "./internal/limits.ts"
import { type SocketMeter, unmetered } from "./internal/metering.ts"
import { own } from "./internal/owned.ts"
import * as Pending from "./internal/pending.ts"
import { deviceClosed, invalidArgument, type TailscaleError } from "./TailscaleError.ts"

/**
 * The most a datagram can carry through the crate's network stack (the addon's `MAX_DATAGRAM_BYTES`, checked by a test).
 *
 * @category constants
 */
export const maxDatagramBytes = 4096

/**
 * A received datagram: its bytes and who sent it.
 *
 * @category models
 */
export interface Datagram {
  readonly data: Uint8Array
  readonly from: { readonly ip: NetAddress.IpAddress; readonly port: number }
}

/**
 * A UDP socket on the device, owned by a scope: `send`, `receive` or the `datagrams` stream.
 *
 * @category models
 */
export interface UdpSocket {
  /** Where it listens or is bound: the device's tailnet address and port. */
  readonly localAddress: NetAddress.InetAddress
  readonly send: (to: { readonly ip: IpInput; readonly port: number }, data: Uint8Array | string) => Effect.Effect<
    void,
    TailscaleError
  >
  /** The next datagram. Interrupting it loses nothing. */
  readonly receive: (options?: { readonly timeout?: Duration.Input | undefined }) => Effect.Effect<
    Datagram,
    TailscaleError
  >
  readonly datagrams: Stream.Stream<Datagram, TailscaleError>
  /** Idempotent; pending calls fail with `DeviceClosed`. */
  readonly close: Effect.Effect<void>
}

/**
 * Wraps a backend socket for the current scope (for backends and test doubles).
 *
 * @category constructors
 */
export const fromRaw = (raw: RawUdpSocket, meter: SocketMeter = unmetered) =>
  Effect.gen(function*() {
    const pending = yield* Pending.make(() => raw.recv(), (error) => fromBackend("receive", error))
    const { close, isClosed } = yield* own(raw)

    // Sends and receives are the hot path of every exchange: plain combinators, no generators.
    const send = (to: { readonly ip: IpInput; readonly port: number }, data: Uint8Array | string) =>
      typeof to !== "object" || to === null
        ? Effect.fail(invalidArgument("to", `must be { ip, port } (got ${shown(to)})`))
        : Effect.flatMap(parseIp("to.ip", to.ip), (ip) =>
          Effect.flatMap(parsePort("to.port", to.port), (port) => {
            if (isClosed()) return Effect.fail(deviceClosed("UDP socket"))
            const bytes = toBytes(data)
            if (bytes === undefined) return notBytes("data", data)
            return Effect.tryPromise({
              try: () => raw.send(formatIp(ip), port, bytes),
              catch: (error) => fromBackend("send", error)
            }).pipe(Effect.andThen(meter.sent(bytes.length)))
          }))

    const receive = (options?: { readonly timeout?: Duration.Input | undefined }) =>
      Effect.suspend(() =>
        isClosed()
          ? Effect.fail(deviceClosed("UDP socket"))
          : pending.take.pipe(
            withinCallLimit("receive", "read", options?.timeout),
            Effect.flatMap((datagram) =>
              Effect.flatMap(parseIp("from.ip", datagram.ip), (ip) =>
                Effect.as(meter.received(datagram.data.length), {
                  data: datagram.data,
                  from: { ip, port: datagram.port }
                }))
            )
          )
      )

    const socket: UdpSocket = {
      localAddress: inetFromRaw(raw.localAddress),
      send,
      receive,
      datagrams: Stream.fromEffectRepeat(receive()),
      close
    }
    return socket
  })
