/**
 * Tailnet connections as `effect/socket` values, so code written against `Socket`,
 * `SocketServer` and `DatagramSocket` (RPC, channels, NDJSON, custom protocols) runs on the
 * tailnet unchanged.
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
import * as DatagramSocket from "effect/socket/DatagramSocket"
import * as Socket from "effect/socket/Socket"
import * as SocketServer from "effect/socket/SocketServer"
import type { TailscaleError } from "./TailscaleError.ts"
import type { TcpListener } from "./TcpListener.ts"
import type { TcpStream } from "./TcpStream.ts"
import type { UdpSocket } from "./UdpSocket.ts"

const readError = (cause: TailscaleError) => new Socket.SocketError({ reason: new Socket.SocketReadError({ cause }) })
const writeError = (cause: TailscaleError) => new Socket.SocketError({ reason: new Socket.SocketWriteError({ cause }) })
/** End of stream is a clean close (1000), as `Socket` reports it. */
const endOfStream = new Socket.SocketError({ reason: new Socket.SocketCloseError({ code: 1000 }) })

/**
 * The stream as an `effect/socket` `Socket`, for code written against Effect's socket interface.
 *
 * @category constructors
 */
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
 *
 * @category constructors
 */
export const toSocketServer = (listener: TcpListener): SocketServer.SocketServer["Service"] => ({
  address: listener.localAddress,
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

const datagramKind = (error: TailscaleError) =>
  error.reason._tag === "MessageTooLarge" ? "MessageTooLarge" as const : "Unknown" as const

/** `DeviceClosed` becomes the closed reason; anything else the read or write reason `other` makes. */
const datagramError = (
  error: TailscaleError,
  other: (kind: "MessageTooLarge" | "Unknown") =>
    | DatagramSocket.DatagramSocketReadError
    | DatagramSocket.DatagramSocketWriteError
) =>
  new DatagramSocket.DatagramSocketError({
    reason: error.reason._tag === "DeviceClosed"
      ? new DatagramSocket.DatagramSocketClosedError({})
      : other(datagramKind(error))
  })

/**
 * A UDP socket as a `DatagramSocket`. The socket is not connected: every written datagram needs
 * an address. Multicast does not exist on a tailnet and fails as unsupported.
 *
 * @category constructors
 */
export const toDatagramSocket = (socket: UdpSocket): DatagramSocket.DatagramSocket => {
  const write = (datagram: DatagramSocket.OutgoingDatagram) => {
    const target = datagram.address === undefined
      ? undefined
      : "payload" in datagram.address
      ? datagram.address.address
      : datagram.address
    if (target === undefined) {
      return Effect.fail(
        new DatagramSocket.DatagramSocketError({
          reason: new DatagramSocket.DatagramSocketWriteError({
            kind: "Unknown",
            cause: new Error("a tailnet UDP socket is not connected: give every datagram an address")
          })
        })
      )
    }
    return socket.send({ ip: target.address, port: target.port }, datagram.payload).pipe(
      Effect.mapError((error) =>
        datagramError(
          error,
          (kind) => new DatagramSocket.DatagramSocketWriteError({ kind, address: target, cause: error })
        )
      )
    )
  }
  return DatagramSocket.make({
    reader: Effect.succeed({
      pull: socket.receive().pipe(
        Effect.mapError((error) =>
          datagramError(error, (kind) => new DatagramSocket.DatagramSocketReadError({ kind, cause: error }))
        ),
        Effect.map((datagram) =>
          [{
            payload: datagram.data,
            address: NetAddress.inetAddressUnsafe(datagram.from.ip, datagram.from.port)
          }] as const
        )
      ),
      address: socket.localAddress,
      dropped: () => 0,
      joinMulticast: () =>
        Effect.fail(
          new DatagramSocket.DatagramSocketError({
            reason: new DatagramSocket.DatagramSocketUnsupportedError({ capability: "multicast", runtime: "tailnet" })
          })
        )
    }),
    writer: Effect.succeed({
      write,
      writeAll: (datagrams) => Effect.forEach(datagrams, write, { discard: true })
    })
  })
}
