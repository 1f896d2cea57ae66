import { PeerPath } from "@effect-tailscale/core/PeerPath"
import { Tailscale } from "@effect-tailscale/core/Tailscale"
import * as FakeTailnet from "@effect-tailscale/testing/FakeTailnet"
import { assert, layer } from "@effect/vitest"
import { Duration, Effect, Layer } from "effect"

const Tailnet = FakeTailnet.layer()
const Api = FakeTailnet.device({ hostname: "api" })
const Db = Layer.effectDiscard(
  Effect.flatMap(FakeTailnet.FakeTailnet, (tailnet) => tailnet.addDevice({ hostname: "db" }))
)

layer(Layer.merge(Api, Db).pipe(Layer.provideMerge(Tailnet)))("paths", (it) => {
  it.effect("ping a peer, and see which path its traffic takes", () =>
    Effect.gen(function*() {
      const tailscale = yield* Tailscale
      // Every peer starts on the relay.
      assert.strictEqual((yield* tailscale.pathTo("db"))._tag, "Relay")

      // On the fake tailnet a test decides when a direct path appears.
      const tailnet = yield* FakeTailnet.FakeTailnet
      yield* tailnet.setPath("api", "db", { direct: "192.168.1.20:41641" })
      const pong = yield* tailscale.ping("db", { timeout: "5 seconds" })
      assert.deepStrictEqual(pong.path, PeerPath.Direct({ endpoint: "192.168.1.20:41641" }))
      assert.isTrue(Duration.isLessThan(pong.latency, Duration.seconds(5)))
    }))
})
