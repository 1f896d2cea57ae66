/**
 * A TCP connection on the tailnet, owned by a `Scope`.
 *
 * There is no half-close: tailscale-rs cannot shut down one direction, so `close` (or closing the
 * scope) sends FIN after the data already written and ends both directions. Protocols that say
 * "done" by half-closing need a length prefix or similar instead.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import type { RawTcpStream } from "./Backend.ts"
import { fromBackend } from "./internal/backendErrors.ts"
import { inetFromRaw } from "./internal/inet.ts"
import { notBytes, toBytes } from "./internal/inputs.ts"
import { withinCallLimit } from "./internal/limits.ts"
import { type SocketMeter, unmetered } from "./internal/metering.ts"
import { own } from "./internal/owned.ts"
import * as Pending from "./internal/pending.ts"
import { deviceClosed, type TailscaleError } from "./TailscaleError.ts"

/**
 * A TCP connection over the tailnet, owned by a scope: `read`/`write`, or `stream`/`sink`.
 *
 * @category models
 */
export interface TcpStream {
  /** This end of the connection: the device's tailnet address and port. */
  readonly localAddress: NetAddress.InetAddress
  /** The peer's end: its tailnet address and port. */
  readonly remoteAddress: NetAddress.InetAddress
  /** The next chunk, or `None` once the peer has finished sending. Interrupting it loses nothing. */
  readonly read: (options?: { readonly timeout?: Duration.Input | undefined }) => Effect.Effect<
    Option.Option<Uint8Array>,
    TailscaleError
  >
  /**
   * Writes every byte, waiting while the network stack's buffer is full (backpressure).
   * Interrupting a write (a timeout, say) closes the stream: the bytes the network stack has
   * already taken are still delivered, then FIN; nothing more of that buffer is sent, and later
   * calls fail with `DeviceClosed`. A stream cannot go on after a write stopped midway, since
   * the peer could not tell where the cut was.
   */
  readonly write: (data: Uint8Array | string) => Effect.Effect<void, TailscaleError>
  /** Writes the chunks in order. */
  readonly writeAll: (chunks: Iterable<Uint8Array | string>) => Effect.Effect<void, TailscaleError>
  /** Chunks until the peer finishes sending. */
  readonly stream: Stream.Stream<Uint8Array, TailscaleError>
  /** Writes every chunk it receives. */
  readonly sink: Sink.Sink<void, Uint8Array | string, never, TailscaleError>
  /** Sends FIN after the queued data. Pending calls fail with `DeviceClosed`. Idempotent. */
  readonly close: Effect.Effect<void>
}

/**
 * Wraps a backend stream; the scope closes it. `meter` counts its bytes and its open time.
 *
 * @category constructors
 */
export const fromRaw = (raw: RawTcpStream, meter: SocketMeter = unmetered) =>
  Effect.gen(function*() {
    const pending = yield* Pending.make(() => raw.read(), (error) => fromBackend("read", error))
    const owned = yield* own(raw)
    const { isClosed } = owned
    yield* meter.opened
    let counted = true
    // Closed on request or with the scope, whichever is first: counted as open until then.
    const close = Effect.andThen(
      owned.close,
      Effect.suspend(() => {
        if (!counted) return Effect.void
        counted = false
        return meter.closed
      })
    )
    yield* Effect.addFinalizer(() => close)

    // Reads and writes are the hot path of every round trip: plain combinators, no generators.
    const read = (options?: { readonly timeout?: Duration.Input | undefined }) =>
      Effect.suspend(() =>
        isClosed()
          ? Effect.fail(deviceClosed("TCP stream"))
          : pending.take.pipe(
            withinCallLimit("read", "read", options?.timeout),
            Effect.flatMap((chunk) =>
              chunk ? Effect.as(meter.received(chunk.length), Option.some(chunk)) : Effect.succeedNone
            )
          )
      )

    const write = (data: Uint8Array | string) => {
      if (isClosed()) return Effect.fail(deviceClosed("TCP stream"))
      const bytes = toBytes(data)
      if (bytes === undefined) return notBytes("data", data)
      return Effect.tryPromise({ try: () => raw.write(bytes), catch: (error) => fromBackend("write", error) }).pipe(
        Effect.onInterrupt(() => close),
        Effect.andThen(meter.sent(bytes.length))
      )
    }

    const writeAll = (chunks: Iterable<Uint8Array | string>) => Effect.forEach(chunks, write, { discard: true })

    const stream: Stream.Stream<Uint8Array, TailscaleError> = Stream.fromPull(
      Effect.succeed(
        read().pipe(
          Effect.flatMap(Option.match({
            onNone: () => Cause.done(),
            onSome: (chunk) => Effect.succeed([chunk] as const)
          }))
        )
      )
    )

    const stream_: TcpStream = {
      localAddress: inetFromRaw(raw.localAddress),
      remoteAddress: inetFromRaw(raw.remoteAddress),
      read,
      write,
      writeAll,
      stream,
      sink: Sink.forEach(write),
      close
    }
    return stream_
  })
