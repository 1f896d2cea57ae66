/**
 * How this device's traffic reaches a peer, as `tailscale status` and `tailscale ping` show it:
 * `Direct` over UDP to the peer's `endpoint` (found by disco pings through NATs and on a LAN),
 * or `Relay` through a DERP server, the peer's home `region` (`None` when control gave it none).
 * Every peer starts on the relay; a direct path replaces it once one answers, and traffic falls
 * back to the relay within seconds of the direct path going quiet.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import type * as Option from "effect/Option"

/**
 * `Direct` (UDP to `endpoint`, `ip:port` or `[ip]:port`) or `Relay` (DERP, the peer's home region).
 *
 * @category models
 * @since 0.1.0
 */
export type PeerPath = Data.TaggedEnum<{
  Direct: { readonly endpoint: string }
  Relay: { readonly region: Option.Option<number> }
}>

/**
 * Constructors and matchers for `PeerPath`.
 *
 * @category constructors
 * @since 0.1.0
 */
export const PeerPath = Data.taggedEnum<PeerPath>()

/**
 * What one `Tailscale.ping` measured: the round trip of a disco ping and the path its pong took.
 *
 * @category models
 * @since 0.1.0
 */
export interface Pong {
  readonly latency: Duration.Duration
  readonly path: PeerPath
}
