/**
 * Who is on the other end of a connection accepted on the tailnet, as Go's `WhoIs` tells it: the
 * peer's node (stable id, hostname, addresses), the user who owns it (or its tags, for a tagged
 * node), its node capabilities, and the app capabilities the tailnet's policy grants it toward
 * this device, looked up from the connection's remote tailnet address. WireGuard authenticates
 * that address, so unlike `Tailscale-User-*` headers added by a proxy, it cannot be forged by
 * the caller.
 *
 * ```ts
 * const handle = (stream: TcpStream) =>
 *   Effect.gen(function*() {
 *     const caller = yield* TailnetCaller.ofStream(stream)
 *     const name = Option.match(caller.user, { onNone: () => caller.hostname, onSome: (user) => user.loginName })
 *     yield* stream.write(`hello, ${name}\n`)
 *   })
 * ```
 *
 * With `TailnetHttpServer.withCaller`, a handler reads the caller from context and checks what
 * it was granted:
 *
 * ```ts
 * const Files = Schema.Struct({ shares: Schema.Array(Schema.String) })
 * const handler = Effect.gen(function*() {
 *   if (!(yield* TailnetCaller.hasCapability("example.com/cap/files"))) return forbidden
 *   const grants = yield* TailnetCaller.capability("example.com/cap/files", Files)
 *   // ...
 * })
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Caller } from "./Caller.ts"
import { Tailscale } from "./Tailscale.ts"
import type { TailscaleError } from "./TailscaleError.ts"
import type { TcpStream } from "./TcpStream.ts"

/**
 * The caller's address belongs to no peer in this device's network map.
 *
 * @category errors
 * @since 0.1.0
 */
export class UnknownCaller extends Schema.TaggedError<UnknownCaller>()("UnknownCaller", {
  message: Schema.String,
  address: Schema.String
}) {}

/**
 * The peer that made the connection being handled (see `TailnetHttpServer.withCaller`): a
 * `NodeInfo` with the app capabilities granted to it.
 *
 * @category services
 * @since 0.1.0
 */
export class TailnetCaller extends Context.Service<TailnetCaller, Caller>()("@effect-tailscale/core/TailnetCaller") {}

/**
 * The peer that owns the tailnet address `ip`, with what the policy grants it, or `UnknownCaller`.
 *
 * @category lookups
 * @since 0.1.0
 */
export const lookup = (ip: string): Effect.Effect<Caller, UnknownCaller | TailscaleError, Tailscale> =>
  Effect.flatMap(Tailscale, (tailscale) => tailscale.whoIs(ip)).pipe(
    Effect.flatMap(Option.match({
      onNone: () =>
        Effect.fail(new UnknownCaller({ address: ip, message: `no peer of this device has the address ${ip}` })),
      onSome: Effect.succeed
    }))
  )

/**
 * Looks the caller up once per key (a connection) and keeps the answer for as long as the key
 * lives: later requests on a kept-alive connection cost nothing. A grant that changes while a
 * connection is open applies to the connections that follow.
 *
 * @category lookups
 * @since 0.1.0
 */
export const cachedPerConnection = () => {
  const known = new WeakMap<object, Caller>()
  return (connection: object, ip: string): Effect.Effect<Caller, UnknownCaller | TailscaleError, Tailscale> =>
    Effect.suspend(() => {
      const cached = known.get(connection)
      if (cached !== undefined) return Effect.succeed(cached)
      return Effect.tap(lookup(ip), (caller) => Effect.sync(() => known.set(connection, caller)))
    })
}

const streams = cachedPerConnection()

/**
 * The peer at the other end of `stream` (a connection accepted on, or dialed over, the tailnet).
 *
 * @category lookups
 * @since 0.1.0
 */
export const ofStream = (stream: TcpStream): Effect.Effect<Caller, UnknownCaller | TailscaleError, Tailscale> =>
  streams(stream, NetAddress.formatIp(stream.remoteAddress.address))

/**
 * Whether the caller in context has the capability `name` (an app capability granted toward
 * this device, or one of its node's).
 *
 * @category capabilities
 * @since 0.1.0
 */
export const hasCapability = (name: string): Effect.Effect<boolean, never, TailnetCaller> =>
  Effect.map(TailnetCaller, (caller) => caller.hasCapability(name))

/**
 * Every value the caller in context was granted under `name`, decoded with `schema` (none when
 * it was not granted); a value that does not decode fails with `InvalidCapability`.
 *
 * @category capabilities
 * @since 0.1.0
 */
export const capability = <S extends Schema.Top>(
  name: string,
  schema: S
): Effect.Effect<ReadonlyArray<S["Type"]>, TailscaleError, TailnetCaller | S["DecodingServices"]> =>
  Effect.flatMap(TailnetCaller, (caller) => caller.capability(name, schema))
