import { Tailscale } from "@effect-tailscale/core/Tailscale"
import * as FakeTailnet from "@effect-tailscale/testing/FakeTailnet"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"

const Tailnet = FakeTailnet.layer()
const Laptop = FakeTailnet.device({ hostname: "laptop" })
// A peer that offers itself as an exit node, with a server outside the tailnet behind it.
const Gateway = Layer.effectDiscard(Effect.gen(function*() {
  const tailnet = yield* FakeTailnet.FakeTailnet
  yield* tailnet.addDevice({ hostname: "gateway" })
  yield* tailnet.offerExitNode("gateway", true)
  const outside = yield* tailnet.listenOutside("gateway", { ip: "192.0.2.80", port: 80 })
  yield* Effect.forkScoped(Effect.forever(outside.accept().pipe(Effect.flatMap((c) => c.write("hi")))))
}))

layer(Layer.merge(Laptop, Gateway).pipe(Layer.provideMerge(Tailnet)))("exit node", (it) => {
  it.effect("reach an address outside the tailnet through a chosen exit node", () =>
    Effect.gen(function*() {
      const tailscale = yield* Tailscale
      // No exit node yet: nothing routes 192.0.2.80.
      const refused = yield* Effect.flip(tailscale.dial("192.0.2.80:80"))
      assert.strictEqual(refused.reason._tag, "ConnectionRefused")

      const gateway = yield* tailscale.setExitNode("gateway")
      assert.isTrue(Option.exists(gateway, (node) => node.isExitNodeOption))
      const stream = yield* tailscale.dial("192.0.2.80:80")
      const reply = Option.getOrThrow(yield* stream.read())
      assert.strictEqual(new TextDecoder().decode(reply), "hi")
    }))
})
