import * as Tailscale from "@effect-tailscale/core/Tailscale"
import * as FakeTailnet from "@effect-tailscale/testing/FakeTailnet"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"

// Two devices in one program, each a layer under its own name
// (NodeTailscale.layerNamed(Office, options) in production).
const Office = Tailscale.named("office")
const Lab = Tailscale.named("lab")

const Devices = Layer.mergeAll(
  FakeTailnet.deviceNamed(Office, { hostname: "office" }),
  FakeTailnet.deviceNamed(Lab, { hostname: "lab" })
).pipe(Layer.provide(FakeTailnet.layer()))

layer(Devices)("named devices", (it) => {
  it.effect("each is its own node", () =>
    Effect.gen(function*() {
      const office = yield* Office
      const lab = yield* Lab
      assert.strictEqual((yield* office.self).hostname, "office")
      assert.strictEqual((yield* lab.self).hostname, "lab")
    }))
})
