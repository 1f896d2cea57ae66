import { Tailscale } from "@effect-tailscale/core/Tailscale"
import * as NodeTailscale from "@effect-tailscale/node/NodeTailscale"
import { Console, Effect, Option } from "effect"
import * as NetAddress from "effect/net/NetAddress"

const program = Effect.gen(function*() {
  const tailscale = yield* Tailscale
  const peer = yield* tailscale.peerByName("echo-peer")
  if (Option.isNone(peer)) return yield* Console.log("echo-peer is not on this tailnet")
  yield* Console.log(`echo-peer is at ${NetAddress.formatIp(peer.value.ipv4)} (${peer.value.status._tag})`)

  const stream = yield* tailscale.dial("echo-peer:7001")
  yield* stream.write("ping")
  const reply = yield* stream.read({ timeout: "20 seconds" })
  yield* Console.log(`echo-peer replied: ${
    Option.match(reply, {
      onNone: () => "nothing",
      onSome: (bytes) => new TextDecoder().decode(bytes)
    })
  }`)
})

// TS_AUTH_KEY, TS_CONTROL_URL, TS_HOSTNAME, TS_KEY_FILE, TS_EPHEMERAL and SSL_CERT_FILE come from the environment.
const TailscaleLive = NodeTailscale.layerConfig()

program.pipe(Effect.scoped, Effect.provide(TailscaleLive), Effect.runPromise)
