/**
 * Effect's `HttpServer` on the tailnet: an `HttpRouter` or any `HttpServer.serve` app answers
 * requests that arrive on a tailnet port of this device.
 *
 * ```ts
 * HttpRouter.serve(app).pipe(
 *   Layer.provide(TailnetHttpServer.layer(80)),
 *   Layer.provide(NodeTailscale.layerConfig())
 * )
 * ```
 *
 * It listens on both of the device's addresses. A handler learns who is calling with
 * `TailnetHttpServer.caller` (the peer's `NodeInfo`, its user and the app capabilities granted to it,
 * looked up from the connection's tailnet address once per connection), or reads `TailnetCaller` after `withCaller`.
 *
 * @since 0.1.0
 */
import type { Caller } from "@effect-tailscale/core/Caller"
import * as TailnetCaller from "@effect-tailscale/core/TailnetCaller"
import { Tailscale } from "@effect-tailscale/core/Tailscale"
import type { TailscaleError } from "@effect-tailscale/core/TailscaleError"
import * as PlatformHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Effect from "effect/Effect"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as http from "node:http"
import { serve } from "./TailnetSocket.ts"

/**
 * An `HttpServer` listening on `port` of both of the device's tailnet addresses, for the scope.
 *
 * @category constructors
 */
export const make = (
  port: number
): Effect.Effect<HttpServer.HttpServer["Service"], TailscaleError, Tailscale | Scope.Scope> =>
  Effect.gen(function*() {
    const tailscale = yield* Tailscale
    const listener = yield* tailscale.listen(port)
    const server = http.createServer()
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        server.close()
        server.closeAllConnections()
      })
    )
    yield* serve(listener, server)
    return HttpServer.make({
      address: listener.localAddress,
      serve: (app, middleware) =>
        Effect.gen(function*() {
          const handler = yield* PlatformHttpServer.makeHandler(app, {
            scope: yield* Effect.scope,
            ...(middleware === undefined ? {} : { middleware: middleware as never })
          })
          server.on("request", handler)
          yield* Effect.addFinalizer(() => Effect.sync(() => server.off("request", handler)))
        })
    })
  })

/**
 * `HttpServer` plus the Node HTTP services it needs, on a tailnet port.
 *
 * @category layers
 */
export const layer = (port: number): Layer.Layer<
  HttpServer.HttpServer | Layer.Success<typeof PlatformHttpServer.layerHttpServices>,
  TailscaleError,
  Tailscale
> => Layer.mergeAll(Layer.effect(HttpServer.HttpServer, make(port)), PlatformHttpServer.layerHttpServices)

const callers = TailnetCaller.cachedPerConnection()

/**
 * The peer that sent the request being handled: its `NodeInfo` with the user who owns it and the
 * app capabilities the policy grants it toward this device, from the connection's remote
 * tailnet address (looked up once per connection). `UnknownCaller` when no peer has it.
 *
 * @category utils
 */
export const caller: Effect.Effect<
  Caller,
  TailnetCaller.UnknownCaller | TailscaleError,
  HttpServerRequest.HttpServerRequest | Tailscale
> = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const ip = Option.getOrElse(request.remoteAddress, () => "")
  // The Node request's socket is the connection: keep the answer for its lifetime.
  const source = request.source as { readonly socket?: object } | undefined
  return yield* callers(source?.socket ?? request, ip)
})

/**
 * Runs `handler` with `TailnetCaller` provided: the peer that sent the request.
 *
 * @category utils
 */
export const withCaller = <A, E, R>(
  handler: Effect.Effect<A, E, R>
): Effect.Effect<
  A,
  E | TailnetCaller.UnknownCaller | TailscaleError,
  Exclude<R, TailnetCaller.TailnetCaller> | HttpServerRequest.HttpServerRequest | Tailscale
> => Effect.flatMap(caller, (node) => Effect.provideService(handler, TailnetCaller.TailnetCaller, node))
