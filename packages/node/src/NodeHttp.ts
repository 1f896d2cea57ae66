/**
 * Node's `http` on the tailnet: serve an existing `http.Server` / `net.Server` on a tailnet
 * listener, and an `http.Agent` whose connections go over the tailnet (so `http.request`,
 * libraries built on it, and Effect's `NodeHttpClient.layerNodeHttpNoAgent` reach tailnet
 * peers). Usable without Effect.
 *
 * @since 0.1.0
 */
import type { RawTcpListener, RawTcpStream } from "@effect-tailscale/core/Backend"
import { Tailscale } from "@effect-tailscale/core/Tailscale"
import { TailscaleError } from "@effect-tailscale/core/TailscaleError"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as http from "node:http"
import type * as net from "node:net"
import type { Duplex } from "node:stream"
import { type TailnetSocket, toDuplex } from "./NodeStream.ts"

/** The listener, or the device under it, has closed or was lost: serving ends, nothing failed. */
const listenerGone = (error: unknown) =>
  error instanceof TailscaleError
    ? error.reason._tag === "DeviceClosed" || error.reason._tag === "DeviceLost"
    : error instanceof Error && /^(DEVICE_CLOSED|DEVICE_LOST): /.test(error.message)

/**
 * Hands every connection accepted on `listener` to `server` (as its "connection" event) until
 * the returned function is called or the listener closes. The listener stays yours to close,
 * and so does the server: a closed listener (or device) ends serving quietly. Any other accept
 * failure is the server's `error` event when it has a listener for it, else a process warning,
 * never an unhandled `error` that would end the process.
 */
export const serve = (listener: RawTcpListener, server: net.Server | http.Server): () => void => {
  let stopped = false
  const loop = async () => {
    while (!stopped) {
      let stream: RawTcpStream
      try {
        stream = await listener.accept()
      } catch (error) {
        if (stopped || listenerGone(error)) return
        if (server.listenerCount("error") > 0) server.emit("error", error)
        else process.emitWarning(error instanceof Error ? error : String(error), "TailnetServeWarning")
        return
      }
      if (stopped) {
        stream.close()
        return
      }
      server.emit("connection", toDuplex(stream))
    }
  }
  void loop()
  return () => {
    stopped = true
  }
}

/** How the agent reaches a host: a tailnet IP or peer name and a port. */
export type TailnetConnect = (host: string, port: number) => Promise<RawTcpStream>

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
      (stream) => callback(null, toDuplex(stream)),
      (error: unknown) => callback(error instanceof Error ? error : new Error(String(error)), undefined as never)
    )
    return undefined
  }
}

/**
 * A function that opens a TCP connection over the tailnet (a peer name, MagicDNS name or tailnet
 * IP, and a port) as a backend stream; each connection lives until it is closed, or until the
 * scope closes.
 */
export const makeConnect: Effect.Effect<TailnetConnect, never, Tailscale | Scope.Scope> = Effect.gen(function*() {
  const tailscale = yield* Tailscale
  const scope = yield* Effect.scope
  const runPromise = Effect.runPromiseWith(yield* Effect.context<never>())
  return (host, port) =>
    runPromise(
      Effect.gen(function*() {
        // Each connection gets its own scope, closed when its user closes it.
        const connection = yield* Scope.fork(scope)
        const stream = yield* tailscale.dial({ ...hostTarget(host), port }).pipe(
          Scope.provide(connection),
          Effect.onError(() => Scope.close(connection, Exit.void))
        )
        return { stream: stream.raw, release: () => runPromise(Scope.close(connection, Exit.void)) }
      })
    ).then(({ release, stream }): RawTcpStream => ({
      read: () => stream.read(),
      write: (data) => stream.write(data),
      localAddress: stream.localAddress,
      remoteAddress: stream.remoteAddress,
      close: () => {
        stream.close()
        void release()
      }
    }))
})

/**
 * A `net.Socket`-compatible connection factory over the tailnet, for libraries that take one:
 * `ws`'s `createConnection`, a database driver's `stream` option, or anything that wants a
 * `Duplex` to `host:port`. The socket is connected when the promise resolves.
 */
export const makeSocketFactory: Effect.Effect<
  (host: string, port: number) => Promise<TailnetSocket>,
  never,
  Tailscale | Scope.Scope
> = Effect.map(makeConnect, (connect) => (host, port) => connect(host, port).then(toDuplex))

/**
 * A `TailnetAgent` that dials through the `Tailscale` service (names or IPs), destroyed with the
 * scope. `TailnetHttpClient.layer` uses it; so can `http.request` and any library that takes an
 * `http.Agent`.
 */
export const makeAgent: Effect.Effect<TailnetAgent, never, Tailscale | Scope.Scope> = Effect.gen(function*() {
  const agent = new TailnetAgent(yield* makeConnect)
  yield* Effect.addFinalizer(() => Effect.sync(() => agent.destroy()))
  return agent
})

const hostTarget = (host: string) => (/^[\d.]+$|:/.test(host) ? { ip: host } : { peer: host })
