/**
 * Tailnet connections as `effect/socket` values, so code written against `Socket` and
 * `SocketServer` (RPC, channels, NDJSON, custom protocols) runs on the tailnet unchanged.
 *
 * The connection belongs to the `TcpStream`'s scope, not to the socket's reader: close that scope
 * to end it. There is no half-close; a `CloseEvent` written to the socket closes the connection.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"
import * as SocketServer from "effect/socket/SocketServer"
import type { TailscaleError } from "./TailscaleError.ts"
import type { TcpListener } from "./TcpListener.ts"
import type { TcpStream } from "./TcpStream.ts"

const readError = (cause: TailscaleError) => new Socket.SocketError({ reason: new Socket.SocketReadError({ cause }) })
const writeError = (cause: TailscaleError) =>
  new Socket.SocketError({ reason: new Socket.SocketWriteError({ cause }) })
/** End of stream is a clean close (1000), as `Socket` reports it. */
const endOfStream = new Socket.SocketError({ reason: new Socket.SocketCloseError({ code: 1000 }) })

export const toSocket = (stream: TcpStream): Socket.Socket =>
  Socket.make({
    reader: Effect.succeed({
      pull: stream.read().pipe(
        Effect.mapError(readError),
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(endOfStream),
          onSome: (chunk) => Effect.succeed([chunk] as const)
        }))
      ),
      upgrade: Socket.SocketUpgradeError.unsupported
    }),
    writer: Effect.succeed({
      write: (chunk) => Socket.isCloseEvent(chunk) ? stream.close : Effect.mapError(stream.write(chunk), writeError),
      writeAll: (chunks) => Effect.mapError(stream.writeAll(chunks), writeError)
    })
  })

/**
 * Serves connections from `listener`: `run(handler)` gives each one to the handler in its own
 * fiber and closes it when the handler ends. A failing handler is logged, not fatal.
 */
export const toSocketServer = (listener: TcpListener): SocketServer.SocketServer["Service"] => ({
  address: NetAddress.inetAddressFromIpStringUnsafe(listener.localAddress.ip, listener.localAddress.port),
  run: <R, E, _>(handler: (socket: Socket.Socket) => Effect.Effect<_, E, R>) =>
    Effect.scoped(Effect.gen(function*() {
      const scope = yield* Effect.scope
      return yield* Effect.forever(Effect.gen(function*() {
        const connectionScope = yield* Scope.fork(scope)
        const stream = yield* listener.accept().pipe(Scope.provide(connectionScope))
        yield* handler(toSocket(stream)).pipe(
          Effect.catchCause((cause) => Effect.logWarning("tailnet socket handler failed", cause)),
          Effect.ensuring(Scope.close(connectionScope, Exit.void)),
          Effect.forkIn(scope)
        )
      }))
    })).pipe(
      Effect.mapError((cause) =>
        new SocketServer.SocketServerError({ reason: new SocketServer.SocketServerUnknownError({ cause }) })
      )
    )
})
