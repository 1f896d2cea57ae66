/**
 * Node's `http` on the tailnet: serve an existing `http.Server` / `net.Server` on a tailnet
 * listener, and an `http.Agent` whose connections go over the tailnet (so `http.request`,
 * libraries built on it, and `TailnetHttpClient` reach tailnet peers), and a socket factory for
 * libraries that take one. Each is made in Effect, then usable by plain Node code.
 *
 * @since 0.1.0
 */
import { hostAndPort } from "@effect-tailscale/core/Address"
import { Tailscale } from "@effect-tailscale/core/Tailscale"
import type { TailscaleError } from "@effect-tailscale/core/TailscaleError"
import type { TcpListener } from "@effect-tailscale/core/TcpListener"
import type { TcpStream } from "@effect-tailscale/core/TcpStream"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as http from "node:http"
import type * as net from "node:net"
import type { Duplex } from "node:stream"
import { fromTcpStream, type TailnetSocket } from "./NodeStream.ts"

/** The listener, or the device under it, has closed or was lost: serving ends, nothing failed. */
const listenerGone = (error: TailscaleError) =>
  error.reason._tag === "DeviceClosed" || error.reason._tag === "DeviceLost"

/**
 * A socket over the stream `open` makes in a scope of its own, a child of `scope`: closing the
 * socket closes that scope (and the stream), and so does a failed open.
 */
const ownSocket = <E>(scope: Scope.Scope, open: Effect.Effect<TcpStream, E, Scope.Scope>) =>
  Effect.gen(function*() {
    const connection = yield* Scope.fork(scope)
    const stream = yield* open.pipe(
      Scope.provide(connection),
      Effect.onError(() => Scope.close(connection, Exit.void))
    )
    return yield* fromTcpStream(stream, () => void Effect.runFork(Scope.close(connection, Exit.void)))
  })

/**
 * Hands every connection accepted on `listener` to `server` (as its "connection" event) until the
 * scope closes or the listener closes. The listener and the server stay yours to close. A closed
 * listener (or device) ends serving quietly; any other accept failure is the server's `error`
 * event when it has a listener for it, else a process warning, never an unhandled `error` that
 * would end the process. Each connection lives until its socket closes, or the scope does.
 */
export const serve = (
  listener: TcpListener,
  server: net.Server | http.Server
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const acceptOne = Effect.map(ownSocket(scope, listener.accept()), (socket) => {
      server.emit("connection", socket)
    })
    const report = (error: TailscaleError) =>
      Effect.sync(() => {
        if (listenerGone(error)) return
        if (server.listenerCount("error") > 0) server.emit("error", error)
        else process.emitWarning(error, "TailnetServeWarning")
      })
    yield* Effect.forkScoped(Effect.forever(acceptOne).pipe(Effect.catch(report)))
  })

/** How the agent reaches a host: a tailnet IP or peer name and a port. */
export type TailnetConnect = (host: string, port: number) => Promise<TailnetSocket>

/** An `http.Agent` that dials over the tailnet. */
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
 * A `net.Socket`-compatible connection factory over the tailnet, for libraries that take one:
 * `ws`'s `createConnection`, a database driver's `stream` option, or anything that wants a
 * `Duplex` to `host:port` (a peer name, MagicDNS name or tailnet IP). The socket is connected
 * when the promise resolves, and lives until it is closed or the scope closes.
 */
export const makeSocketFactory: Effect.Effect<TailnetConnect, never, Tailscale | Scope.Scope> = Effect.gen(function*() {
  const tailscale = yield* Tailscale
  const scope = yield* Effect.scope
  const runPromise = Effect.runPromiseWith(yield* Effect.context<never>())
  return (host, port) => runPromise(ownSocket(scope, tailscale.dial(hostAndPort(host, port))))
})

/**
 * A `TailnetAgent` that dials through the `Tailscale` service (names or IPs), destroyed with the
 * scope. `TailnetHttpClient.layer` uses it; so can `http.request` and any library that takes an
 * `http.Agent`.
 */
export const makeAgent: Effect.Effect<TailnetAgent, never, Tailscale | Scope.Scope> = Effect.gen(function*() {
  const agent = new TailnetAgent(yield* makeSocketFactory)
  yield* Effect.addFinalizer(() => Effect.sync(() => agent.destroy()))
  return agent
})

