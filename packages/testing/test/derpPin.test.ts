/**
 * A DERP node pinned by certificate (`CertName: "sha256-raw:<hex>"`), as self-hosted relays are,
 * with a self-signed certificate: the device relays through it, and a wrong pin says why.
 * Each describe starts a tailnet of its own (the pin is chosen when the harness starts).
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import { connect, layer as localTailnet, LocalTailnet } from "../src/LocalTailnet.ts"
import { capture, type Captured } from "./captured.ts"

const panics = (records: ReadonlyArray<Captured>) => records.filter((record) => record.annotations.target === "panic")
const derpFailures = (records: ReadonlyArray<Captured>) =>
  records.filter((record) => String(record.annotations.error ?? "").includes("derp server"))

describe("a DERP node pinned by its certificate", () => {
  layer(localTailnet({ args: ["-derp-pin", "self-signed"] }), { excludeTestServices: true, timeout: "120 seconds" })(
    (it) => {
      it.effect("relays a TCP echo with the Go peer, self-signed, with no TLS failure and no panic", () =>
        Effect.gen(function*() {
          const logs = capture()
          const tailnet = yield* LocalTailnet
          assert.match(tailnet.info.derpCertName ?? "", /^sha256-raw:[0-9a-f]{64}$/)
          const device = yield* connect({ hostname: "pinned-derp", logFilter: "warn" }).pipe(
            Effect.provide(Logger.layer([logs.logger]))
          )
          yield* tailnet.waitForPeer(NetAddress.formatIp(yield* device.ipv4))
          const { peer } = tailnet.info
          const stream = yield* device.dial({ ip: peer.ipv4, port: peer.tcpEchoPort }, { timeout: "20 seconds" })
          yield* stream.write("pinned")
          const reply = yield* stream.read({ timeout: "20 seconds" })
          assert.strictEqual(new TextDecoder().decode(Option.getOrThrow(reply)), "pinned")
          assert.deepStrictEqual(panics(logs.records), [])
          assert.deepStrictEqual(derpFailures(logs.records), [])
        }))
    }
  )
})

describe("a DERP node pinned with a hash its certificate does not have", () => {
  layer(localTailnet({ args: ["-derp-pin", "wrong"] }), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect("the device says why (the pin and the certificate's hash), and its runtime lives on", () =>
      Effect.gen(function*() {
        const logs = capture()
        const tailnet = yield* LocalTailnet
        const device = yield* connect({ hostname: "wrong-pin", logFilter: "warn" }).pipe(
          Effect.provide(Logger.layer([logs.logger]))
        )
        // Packets for the Go peer make the device dial its home relay.
        const { peer } = tailnet.info
        yield* Effect.exit(device.dial({ ip: peer.ipv4, port: peer.tcpEchoPort }, { timeout: "8 seconds" }))
        const failed = derpFailures(logs.records).map((record) => String(record.annotations.error))
        assert.isNotEmpty(failed)
        assert.include(failed[0], "does not match its pin")
        assert.include(failed[0], tailnet.info.derpCertName!)
        assert.notInclude(failed[0], "io error occurred")
        assert.deepStrictEqual(panics(logs.records), [])
        yield* device.ipv4
      }))
  })
})
