/**
 * `Tailscale` mocks for unit tests: implement only the members a test uses; any other member
 * fails with an "unimplemented" defect when called, so a test never passes by accident.
 *
 * ```ts
 * const layer = TailscaleMock.layer({
 *   peerByName: () => Effect.succeed(Option.none())
 * })
 * ```
 *
 * @since 0.1.0
 */
import { Tailscale } from "@effect-tailscale/core/Tailscale"
import type { TailscaleService } from "@effect-tailscale/core/Tailscale"
import { invalidArgument } from "@effect-tailscale/core/TailscaleError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as Result from "effect/Result"

/**
 * A layer providing a partial `Tailscale`.
 *
 * @category layers
 */
export const layer = (implementation: Layer.PartialEffectful<TailscaleService>): Layer.Layer<Tailscale> =>
  Layer.mock(Tailscale)(implementation)

const unsafe = <A>(result: Result.Result<A, unknown>): A => Result.getOrThrow(result)
const ipv4 = (text: string) => unsafe(NetAddress.ipv4FromString(text))
const ipv6 = (text: string) => unsafe(NetAddress.ipv6FromString(text))

/**
 * A device alone on its tailnet: it has addresses and finds no peers; dialing anything fails.
 *
 * @category utils
 */
export const alone = (addresses: { readonly ipv4?: string; readonly ipv6?: string } = {}) =>
  layer({
    ipv4: Effect.succeed(ipv4(addresses.ipv4 ?? "100.64.0.1")),
    ipv6: Effect.succeed(ipv6(addresses.ipv6 ?? "fd7a:115c:a1e0::1")),
    peerByName: () => Effect.succeed(Option.none()),
    peerByIp: () => Effect.succeed(Option.none()),
    whoIs: () => Effect.succeed(Option.none()),
    peersWithRoute: () => Effect.succeed([]),
    dial: () => Effect.fail(invalidArgument("peer", "no peers on this tailnet")),
    shutdown: Effect.succeed(true)
  })
