// Plain JavaScript, run with plain `node` (no type stripping): joins the loopback tailnet that
// the prebuilt harness serves (@effect-tailscale/tailnet-harness, started through testing's
// re-export of its launcher), dials the Go echo peer, and prints what came back and which addon
// build was loaded, as one JSON line.
import * as NativeBackend from "@effect-tailscale/node/NativeBackend"
import * as NodeTailscale from "@effect-tailscale/node/NodeTailscale"
import { adminRequest, startHarness } from "@effect-tailscale/testing/HarnessProcess"
import { Effect, Option, Redacted } from "effect"
import * as NetAddress from "effect/net/NetAddress"

const harness = await startHarness()
const info = harness.ready
try {
  const program = Effect.gen(function*() {
    const tailscale = yield* NodeTailscale.make({
      controlUrl: info.controlUrl,
      caFile: info.caFile,
      authKey: Redacted.make(info.authKey),
      hostname: "from-tarballs",
      ephemeral: true,
      logFilter: "off"
    })
    const ipv4 = NetAddress.formatIp(yield* tailscale.ipv4)
    yield* Effect.promise(() => adminRequest(info.adminUrl, `/wait-peer?ip=${ipv4}&timeout=30000`))
    const stream = yield* tailscale.dial(`${info.peer.hostname}:${info.peer.tcpEchoPort}`)
    yield* stream.write("hello from the tarballs")
    const reply = yield* stream.read({ timeout: "20 seconds" })
    const build = yield* NativeBackend.buildInfo()
    return { ipv4, echoed: new TextDecoder().decode(Option.getOrThrow(reply)), build }
  })
  console.log(JSON.stringify(await Effect.runPromise(Effect.scoped(program))))
} finally {
  await harness.stop()
}
