import { Tailscale } from "@effect-tailscale/core/Tailscale"
import * as TailscaleMetrics from "@effect-tailscale/core/TailscaleMetrics"
import * as FakeTailnet from "@effect-tailscale/testing/FakeTailnet"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"

const Device = FakeTailnet.device({ hostname: "api" }).pipe(Layer.provide(FakeTailnet.layer()))

layer(Device)("metrics", (it) => {
  it.effect("count lookups per device", () =>
    Effect.gen(function*() {
      const tailscale = yield* Tailscale
      yield* tailscale.peerByName("db")
      const lookups = Metric.withAttributes(TailscaleMetrics.lookups, { device: "api", kind: "peerByName" })
      assert.strictEqual((yield* Metric.value(lookups)).count, 1)
    }))
})
