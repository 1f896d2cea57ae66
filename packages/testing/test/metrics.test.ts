/** TailscaleMetrics on both tailnets: bytes, open connections, dials by outcome, lookups, states. */
import * as TailscaleMetrics from "@effect-tailscale/core/TailscaleMetrics"
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { fakeProvider, joinReachable, localProvider, type TailnetProvider } from "../src/Conformance.ts"

const count = (metric: Metric.Metric<number, Metric.CounterState<number>>, attributes: Record<string, string>) =>
  Effect.map(Metric.value(Metric.withAttributes(metric, attributes)), (state) => state.count)

const metrics = (name: string, provider: Layer.Layer<TailnetProvider, unknown>) =>
  describe(name, () => {
    layer(provider, { excludeTestServices: true, timeout: "120 seconds" })((it) => {
      it.effect("count bytes, open connections, dials by outcome and lookups, per device", () =>
        Effect.gen(function*() {
          const hostname = `metrics-${name.toLowerCase()}`
          const device = { device: hostname }
          const scope = yield* Scope.make()
          const { device: tailscale, provider: tailnet } = yield* joinReachable(hostname).pipe(Scope.provide(scope))
          const peer = tailnet.echoPeer

          const stream = yield* tailscale.dial({ peer: peer.hostname, port: peer.tcpEchoPort }, {
            timeout: "30 seconds"
          })
            .pipe(Scope.provide(scope))
          assert.strictEqual(yield* count(TailscaleMetrics.connectionsOpen, device), 1)
          const payload = "m".repeat(1000)
          yield* stream.write(payload)
          let echoed = 0
          while (echoed < payload.length) {
            const chunk = yield* stream.read({ timeout: "20 seconds" })
            echoed += Option.getOrThrow(chunk).length
          }
          assert.strictEqual(yield* count(TailscaleMetrics.bytesSent, device), 1000)
          assert.strictEqual(yield* count(TailscaleMetrics.bytesReceived, device), 1000)

          yield* Effect.exit(
            tailscale.dial({ ip: peer.ipv4, port: 1 }, { timeout: "20 seconds" }).pipe(Scope.provide(scope))
          )
          for (let i = 0; i < 3; i++) yield* tailscale.peerByName(peer.hostname)

          assert.strictEqual(yield* count(TailscaleMetrics.dials, { ...device, outcome: "success" }), 1)
          assert.strictEqual(yield* count(TailscaleMetrics.dials, { ...device, outcome: "ConnectionRefused" }), 1)
          assert.strictEqual(yield* count(TailscaleMetrics.lookups, { ...device, kind: "peerByName" }), 3)
          const states = yield* Metric.value(Metric.withAttributes(TailscaleMetrics.deviceStates, device))
          assert.isAtLeast(states.occurrences.get("Running") ?? 0, 1)

          yield* stream.close
          assert.strictEqual(yield* count(TailscaleMetrics.connectionsOpen, device), 0)
          yield* Scope.close(scope, Exit.void)
          // Another device's figures are its own.
          assert.strictEqual(yield* count(TailscaleMetrics.bytesSent, { device: "someone-else" }), 0)
        }))
    })
  })

describe("metrics", () => {
  metrics("FakeTailnet", fakeProvider)
  metrics("LocalTailnet", localProvider)
})
