/**
 * Who is on the other end of a connection accepted on the tailnet: the peer's `NodeInfo` (stable
 * id, hostname, tags, addresses), looked up from the connection's remote tailnet address.
 * WireGuard authenticates that address, so unlike `Tailscale-User-*` headers added by a proxy,
 * it cannot be forged by the caller.
 *
 * ```ts
 * const handle = (stream: TcpStream) =>
 *   Effect.gen(function*() {
 *     const caller = yield* TailnetCaller.ofStream(stream)
 *     yield* stream.write(`hello, ${caller.hostname}\n`)
 *   })
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { NodeInfo } from "./NodeInfo.ts"
import { Tailscale } from "./Tailscale.ts"
import type { TailscaleError } from "./TailscaleError.ts"
import type { TcpStream } from "./TcpStream.ts"

/** The caller's address belongs to no peer in this device's network map. */
export class UnknownCaller extends Schema.TaggedError<UnknownCaller>()("UnknownCaller", {
  message: Schema.String,
  address: Schema.String
}) {}

/** The peer that made the connection being handled (see `TailnetHttpServer.withCaller`). */
export class TailnetCaller extends Context.Service<TailnetCaller, NodeInfo>()("@effect-tailscale/core/TailnetCaller") {}

/** The peer that owns the tailnet address `ip`, or `UnknownCaller`. */
export const lookup = (ip: string): Effect.Effect<NodeInfo, UnknownCaller | TailscaleError, Tailscale> =>
  Effect.flatMap(Tailscale, (tailscale) => tailscale.peerByIp(ip)).pipe(
    Effect.flatMap(Option.match({
      onNone: () =>
        Effect.fail(new UnknownCaller({ address: ip, message: `no peer of this device has the address ${ip}` })),
      onSome: Effect.succeed
    }))
  )

/**
 * Looks the caller up once per key (a connection) and keeps the answer for as long as the key
 * lives: later requests on a kept-alive connection cost nothing.
 */
export const cachedPerConnection = () => {
  const known = new WeakMap<object, NodeInfo>()
  return (connection: object, ip: string): Effect.Effect<NodeInfo, UnknownCaller | TailscaleError, Tailscale> =>
    Effect.suspend(() => {
      const cached = known.get(connection)
      if (cached !== undefined) return Effect.succeed(cached)
      return Effect.tap(lookup(ip), (node) => Effect.sync(() => known.set(connection, node)))
    })
}

const streams = cachedPerConnection()

/** The peer at the other end of `stream` (a connection accepted on, or dialed over, the tailnet). */
export const ofStream = (stream: TcpStream): Effect.Effect<NodeInfo, UnknownCaller | TailscaleError, Tailscale> =>
  streams(stream, NetAddress.formatIp(stream.remoteAddress.address))
