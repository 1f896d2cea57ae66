/**
 * Effect's `HttpServer` on the tailnet: an `HttpRouter` or any `HttpServer.serve` app answers
 * requests that arrive on a tailnet port of this device.
 *
 * ```ts
 * HttpRouter.serve(app).pipe(
 *   Layer.provide(NodeHttpServer.layer(80)),
 *   Layer.provide(NodeTailscale.layerConfig())
 * )
 * ```
 *
 * @since 0.1.0
 */
import { Tailscale } from "@effect-tailscale/core/Tailscale"
import type { TailscaleError } from "@effect-tailscale/core/TailscaleError"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Effect from "effect/Effect"
import * as HttpServer from "effect/http/HttpServer"
import * as Layer from "effect/Layer"
import * as NetAddress from "effect/net/NetAddress"
import type * as Scope from "effect/Scope"
import * as http from "node:http"
import { serve } from "./NodeHttp.ts"

/** An `HttpServer` listening on `port` of the device's tailnet IPv4 address, for the scope. */
export const make = (port: number): Effect.Effect<HttpServer.HttpServer["Service"], TailscaleError, Tailscale | Scope.Scope> =>
  Effect.gen(function*() {
    const tailscale = yield* Tailscale
    const listener = yield* tailscale.listen(port)
    const server = http.createServer()
    const stop = serve(listener.raw, server)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        stop()
        server.close()
        server.closeAllConnections()
      })
    )
    return HttpServer.make({
      address: NetAddress.inetAddressFromIpStringUnsafe(listener.localAddress.ip, listener.localAddress.port),
      serve: (app, middleware) =>
        Effect.gen(function*() {
          const handler = yield* NodeHttpServer.makeHandler(app, {
            scope: yield* Effect.scope,
            ...(middleware === undefined ? {} : { middleware: middleware as never })
          })
          server.on("request", handler)
          yield* Effect.addFinalizer(() => Effect.sync(() => server.off("request", handler)))
        })
    })
  })

/** `HttpServer` plus the Node HTTP services it needs, on a tailnet port. */
export const layer = (port: number): Layer.Layer<
  HttpServer.HttpServer | Layer.Success<typeof NodeHttpServer.layerHttpServices>,
  TailscaleError,
  Tailscale
> => Layer.mergeAll(Layer.effect(HttpServer.HttpServer, make(port)), NodeHttpServer.layerHttpServices)
