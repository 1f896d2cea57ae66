// Type-checked by `tsc` with a user's default strict settings (no skipLibCheck, no
// allowImportingTsExtensions), under NodeNext and bundler resolution.
import { Tailscale } from "@effect-tailscale/core/Tailscale"
import type { TailscaleError } from "@effect-tailscale/core/TailscaleError"
import * as NodeTailscale from "@effect-tailscale/node/NodeTailscale"
import * as FakeTailnet from "@effect-tailscale/testing/FakeTailnet"
import { Effect, Layer, Option } from "effect"
import * as NetAddress from "effect/net/NetAddress"

const program: Effect.Effect<string, TailscaleError, Tailscale> = Effect.gen(function*() {
  const tailscale = yield* Tailscale
  const peer = yield* tailscale.peerByName("echo-peer")
  return Option.match(peer, {
    onNone: () => "no peer",
    onSome: (node) => NetAddress.formatIp(node.ipv4)
  })
})

export const live: Layer.Layer<Tailscale, unknown> = NodeTailscale.layerConfig({})
export const onFake = program.pipe(
  Effect.provide(FakeTailnet.device({ hostname: "checked" }).pipe(Layer.provide(FakeTailnet.layer({ seed: 1 }))))
)
export const run = program.pipe(Effect.provide(live))
