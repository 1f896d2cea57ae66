/**
 * Several devices in one program, declared as layers under names (Tailscale.named), on both
 * tailnets: one serves, the other dials it by name, and code written for `Tailscale` (the HTTP
 * client) runs on a named device through `asTailscale`.
 */
import * as Tailscale from "@effect-tailscale/core/Tailscale"
import type { TailscaleError } from "@effect-tailscale/core/TailscaleError"
import * as TailnetHttpClient from "@effect-tailscale/node/TailnetHttpClient"
import { failureText } from "@effect-tailscale/test-support/reasons"
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as HttpClient from "effect/http/HttpClient"
import * as Layer from "effect/Layer"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as FakeTailnet from "../src/FakeTailnet.ts"
import * as LocalTailnet from "../src/LocalTailnet.ts"
import { knows } from "../src/Workloads.ts"

const Office = Tailscale.named("office")
const Home = Tailscale.named("home")

type Devices = Tailscale.Named<"office"> | Tailscale.Named<"home">

const namedDevices = (name: string, devices: Layer.Layer<Devices, TailscaleError | LocalTailnet.LocalTailnetError>) =>
  describe(name, () => {
    layer(devices, { excludeTestServices: true, timeout: "120 seconds" })((it) => {
      it.effect("two named devices from layers talk to each other, by name", () =>
        Effect.gen(function*() {
          const office = yield* Office
          const home = yield* Home
          assert.strictEqual((yield* office.self).hostname, "office")
          assert.strictEqual((yield* home.self).hostname, "home")
          yield* knows(home, NetAddress.formatIp(yield* office.ipv4))
          yield* knows(office, NetAddress.formatIp(yield* home.ipv4))

          const listener = yield* office.listen(9200)
          yield* Effect.forkScoped(Effect.scoped(Effect.gen(function*() {
            const connection = yield* listener.accept()
            const chunk = yield* connection.read()
            yield* connection.write(`office got ${new TextDecoder().decode(Option.getOrThrow(chunk))}`)
          })))
          const stream = yield* home.dial("office:9200", { timeout: "30 seconds" })
          yield* stream.write("hello")
          const reply = yield* stream.read({ timeout: "20 seconds" })
          assert.strictEqual(new TextDecoder().decode(Option.getOrThrow(reply)), "office got hello")
        }))

      it.effect("code written for Tailscale runs on a named device (asTailscale)", () =>
        Effect.gen(function*() {
          const home = yield* Home
          const office = yield* Office
          yield* knows(home, NetAddress.formatIp(yield* office.ipv4))
          // Home's HTTP client reaches a name that only resolves on the tailnet.
          const exit = yield* Effect.exit(
            HttpClient.get("http://office:9/").pipe(
              Effect.provide(TailnetHttpClient.layer.pipe(Layer.provide(Tailscale.asTailscale(Home))))
            )
          )
          // Nobody listens on office:9: refused by office itself, which proves the request went there.
          assert.isTrue(Exit.isFailure(exit))
          // The HTTP client's error wraps the TailscaleError: its reason is in the text.
          assert.include(failureText(exit), "ConnectionRefused")
        }))
    })
  })

describe("named devices", () => {
  namedDevices(
    "FakeTailnet",
    Layer.mergeAll(
      FakeTailnet.deviceNamed(Office, { hostname: "office" }),
      FakeTailnet.deviceNamed(Home, { hostname: "home" })
    ).pipe(Layer.provide(FakeTailnet.layer()))
  )
  namedDevices(
    "LocalTailnet",
    Layer.mergeAll(
      LocalTailnet.deviceNamed(Office, { hostname: "office" }),
      LocalTailnet.deviceNamed(Home, { hostname: "home" })
    ).pipe(Layer.provide(LocalTailnet.layer()))
  )
})
