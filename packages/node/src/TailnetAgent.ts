/**
 * An `http.Agent` whose connections go over the tailnet, so `http.request`, libraries built on
 * it, and `TailnetHttpClient` reach tailnet peers by name or IP.
 *
 * @since 0.1.0
 */
import type { Tailscale } from "@effect-tailscale/core/Tailscale"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as http from "node:http"
import type { Duplex } from "node:stream"
import { makeSocketFactory, type TailnetConnect } from "./TailnetSocket.ts"

/**
 * An `http.Agent` that dials over the tailnet.
 *
 * @category models
 */
export class TailnetAgent extends http.Agent {
  readonly #connect: TailnetConnect

  constructor(connect: TailnetConnect, options?: http.AgentOptions) {
    super({ keepAlive: true, ...options })
    this.#connect = connect
  }

  override createConnection(
    options: { host?: string | null | undefined; port?: number | string | null | undefined },
    callback: (error: Error | null, socket: Duplex) => void
  ): undefined {
    const host = (options.host ?? "").replace(/^\[(.*)\]$/, "$1")
    const port = Number(options.port ?? 80)
    this.#connect(host, port).then(
      (socket) => callback(null, socket),
      (error: unknown) => callback(error instanceof Error ? error : new Error(String(error)), undefined as never)
    )
    return undefined
  }
}

/**
 * A `TailnetAgent` that dials through the `Tailscale` service (names or IPs), destroyed with the
 * scope. `TailnetHttpClient.layer` uses it; so can `http.request` and any library that takes an
 * `http.Agent`.
 *
 * @category constructors
 */
export const makeAgent: Effect.Effect<TailnetAgent, never, Tailscale | Scope.Scope> = Effect.gen(function*() {
  const agent = new TailnetAgent(yield* makeSocketFactory)
  yield* Effect.addFinalizer(() => Effect.sync(() => agent.destroy()))
  return agent
})
