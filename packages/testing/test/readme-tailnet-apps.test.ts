import { TailnetCaller } from "@effect-tailscale/core/TailnetCaller"
import * as TailnetHttpClient from "@effect-tailscale/node/TailnetHttpClient"
import * as TailnetHttpServer from "@effect-tailscale/node/TailnetHttpServer"
import * as FakeTailnet from "@effect-tailscale/testing/FakeTailnet"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { HttpClient, HttpRouter, HttpServerResponse } from "effect/http"

// A server that greets whoever calls it: the caller's identity comes from the tailnet itself.
const greeter = HttpRouter.add(
  "GET",
  "/",
  Effect.gen(function*() {
    const caller = yield* TailnetCaller
    return HttpServerResponse.text(`hello ${caller.hostname}`)
  }).pipe(TailnetHttpServer.withCaller)
)

const Greeter = HttpRouter.serve(greeter).pipe(
  Layer.provide(TailnetHttpServer.layer(80)),
  Layer.provide(FakeTailnet.device({ hostname: "greeter" }))
)

// The app: an Effect HttpClient whose requests go over its own device.
const App = TailnetHttpClient.layer.pipe(Layer.provide(FakeTailnet.device({ hostname: "app" })))

layer(Layer.mergeAll(Greeter, App).pipe(Layer.provide(FakeTailnet.layer())))("greeter", (it) => {
  it.effect("knows who is calling", () =>
    Effect.gen(function*() {
      const response = yield* HttpClient.get("http://greeter/")
      assert.strictEqual(yield* response.text, "hello app")
    }))
})
