/**
 * A device under load and churn on the loopback tailnet, at sizes that killed it before (the
 * crate's Registry actor panicked when a mailbox filled: native/patches/ts_runtime-0.6.1/02):
 * every call succeeds or fails with a typed, retryable reason, and the device works afterwards.
 * `npm run stress` runs the same workloads at full size.
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as NetAddress from "effect/net/NetAddress"
import { connect, layer as localTailnet, LocalTailnet } from "../src/LocalTailnet.ts"
import * as Workloads from "../src/Workloads.ts"

const joined = (hostname: string) =>
  Effect.gen(function*() {
    const tailnet = yield* LocalTailnet
    const device = yield* connect({ hostname })
    yield* tailnet.waitForPeer(NetAddress.formatIp(yield* device.ipv4))
    const { peer } = tailnet.info
    return { device, tailnet, echoPeer: { hostname: peer.hostname, port: peer.tcpEchoPort } }
  })

const assertSurvived = (tally: Workloads.Tally) => {
  assert.strictEqual(tally.otherFailures, 0, JSON.stringify(tally.reasons))
  assert.strictEqual(tally.succeeded + tally.typedFailures, tally.attempted)
  assert.isTrue(tally.healthyAfter, "the device should still look peers up and dial")
}

describe("survival", () => {
  layer(localTailnet(), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect("an idle device sends control a handful of updates, not a stream of them", () =>
      Effect.gen(function*() {
        const { device, tailnet } = yield* joined("survival-idle")
        const nodeKey = (yield* device.self).nodeKey
        yield* Effect.sleep("5 seconds")
        const { lite } = yield* tailnet.mapRequestsOf(nodeKey)
        // Each netmap used to bring new DERP latencies and another update: 4 a second (the
        // harness's throttle), without end.
        assert.isAtMost(lite, 8, `${lite} lite map requests in 5 s of idling`)
      }))

    it.effect("1,000 concurrent dials with echo, each within 15 s", () =>
      Effect.gen(function*() {
        const { device, echoPeer } = yield* joined("survival-dials")
        // The crate picks a dial's local port at random: about 30 of 1,000 dials to one peer
        // port shared an endpoint, and 0.5-1.7 % of them waited out a 30 s limit.
        const tally = yield* Workloads.concurrentDials(device, echoPeer, 1000, "15 seconds")
        assertSurvived(tally)
        assert.strictEqual(tally.succeeded, 1000, JSON.stringify(tally.reasons))
      }), { timeout: 180_000 })

    it.effect(
      "400 dials one after another, each within 5 s, none from a just-closed endpoint",
      () =>
        Effect.gen(function*() {
          const { device, echoPeer } = yield* joined("survival-redials")
          // A closed connection's socket stays in the netstack through TIME-WAIT; a dial from its
          // endpoint had its SYN-ACK taken by the old socket and connected only after 15 s.
          const tally = yield* Workloads.sequentialDials(device, echoPeer, 400, "5 seconds")
          assertSurvived(tally)
          assert.strictEqual(tally.succeeded, 400, JSON.stringify(tally.reasons))
        }),
      { timeout: 120_000 }
    )

    it.effect("5,000 concurrent lookups", () =>
      Effect.gen(function*() {
        const { device, echoPeer } = yield* joined("survival-lookups")
        const tally = yield* Workloads.concurrentLookups(device, echoPeer, 5_000)
        assertSurvived(tally)
        assert.strictEqual(tally.succeeded, 5_000, JSON.stringify(tally.reasons))
      }), { timeout: 120_000 })

    it.effect("five short-lived clients dial a long-lived device and leave", () =>
      Effect.gen(function*() {
        const { device, echoPeer, tailnet } = yield* joined("survival-server")
        yield* Workloads.serveEcho(device, 7100)
        const tally = yield* Workloads.churn(
          (index) =>
            connect({ hostname: `survival-client-${index}` }).pipe(Effect.provideService(LocalTailnet, tailnet)),
          { hostname: "survival-server", port: 7100 },
          device,
          echoPeer,
          5
        )
        assertSurvived(tally)
        // Under a loaded machine control can take longer than the client's wait to tell the
        // server about a new client; that is a typed Timeout, never the server dying.
        assert.isAtLeast(tally.succeeded, 4, JSON.stringify(tally.reasons))
      }), { timeout: 180_000 })
  })
})
