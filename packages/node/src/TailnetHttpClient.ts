/**
 * Effect's `HttpClient` over the tailnet: requests to `http://<peer>:<port>/…` (a bare peer
 * name, its MagicDNS name, or a tailnet IP) are sent through the device, with Effect's own
 * request and response types, streaming bodies and interruption.
 *
 * ```ts
 * const body = HttpClient.get("http://echo-peer:7003/").pipe(
 *   Effect.flatMap((response) => response.text),
 *   Effect.provide(TailnetHttpClient.layer),
 *   Effect.provide(NodeTailscale.layerConfig())
 * )
 * ```
 *
 * Plain http only: WireGuard already encrypts and authenticates tailnet traffic. An `https:`
 * request fails with a clear error instead of sending TLS over a connection nobody configured.
 *
 * @since 0.1.0
 */
import type { Tailscale } from "@effect-tailscale/core/Tailscale"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Effect from "effect/Effect"
import type * as HttpClient from "effect/http/HttpClient"
import * as Layer from "effect/Layer"
import * as https from "node:https"
import type { Duplex } from "node:stream"
import { makeAgent } from "./TailnetAgent.ts"

/** Refuses every connection: `https:` URLs are not sent over the tailnet. */
class HttpsRefused extends https.Agent {
  override createConnection(
    options: { host?: string | null | undefined },
    callback: (error: Error | null, socket: Duplex) => void
  ): undefined {
    callback(
      new Error(`https://${options.host ?? ""} is not supported over the tailnet; use http:// (WireGuard encrypts it)`),
      undefined as never
    )
    return undefined
  }
}

/**
 * The agents the client uses: the tailnet for `http:`, a refusal for `https:`.
 *
 * @category layers
 */
export const agentLayer: Layer.Layer<NodeHttpClient.HttpAgent, never, Tailscale> = Layer.effect(
  NodeHttpClient.HttpAgent,
  Effect.gen(function*() {
    const http = yield* makeAgent
    const refused = new HttpsRefused()
    yield* Effect.addFinalizer(() => Effect.sync(() => refused.destroy()))
    return { http, https: refused }
  })
)

/**
 * `HttpClient` whose requests go over the `Tailscale` device in context.
 *
 * @category layers
 */
export const layer: Layer.Layer<HttpClient.HttpClient, never, Tailscale> = NodeHttpClient.layerNodeHttpNoAgent.pipe(
  Layer.provide(agentLayer)
)
