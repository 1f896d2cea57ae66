/**
 * A TCP listener on the tailnet, owned by a `Scope`. Accepted connections belong to the scope of
 * whoever accepts them.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as NetAddress from "effect/net/NetAddress"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { RawTcpListener } from "./Backend.ts"
import { fromBackend } from "./internal/backendErrors.ts"
import { inetFromRaw } from "./internal/inet.ts"
import { withinCallLimit } from "./internal/limits.ts"
import { type SocketMeter, unmetered } from "./internal/metering.ts"
import { own } from "./internal/owned.ts"
import * as Pending from "./internal/pending.ts"
import { deviceClosed, type TailscaleError } from "./TailscaleError.ts"
import * as TcpStream from "./TcpStream.ts"

/**
 * A TCP listener on the device, owned by a scope: `accept` or the `connections` stream.
 *
 * @category models
 */
export interface TcpListener {
  /** Where it listens or is bound: the device's tailnet address and port. */
  readonly localAddress: NetAddress.InetAddress
  /** The next incoming connection, owned by the caller's scope. Interrupting it loses nothing. */
  readonly accept: (options?: { readonly timeout?: Duration.Input | undefined }) => Effect.Effect<
    TcpStream.TcpStream,
    TailscaleError,
    Scope.Scope
  >
  /** Incoming connections, each owned by the stream's scope until the stream ends. */
  readonly connections: Stream.Stream<TcpStream.TcpStream, TailscaleError, Scope.Scope>
  /** Stops listening; accepted connections stay open. Idempotent. */
  readonly close: Effect.Effect<void>
}

/**
 * Wraps a backend listener for the current scope (for backends and test doubles).
 *
 * @category constructors
 */
export const fromRaw = (raw: RawTcpListener, meter: SocketMeter = unmetered) =>
  Effect.gen(function*() {
    const pending = yield* Pending.make(() => raw.accept(), (error) => fromBackend("accept", error))
    const { close, isClosed } = yield* own(raw)

    const accept = (options?: { readonly timeout?: Duration.Input | undefined }) =>
      Effect.gen(function*() {
        if (isClosed()) return yield* Effect.fail(deviceClosed("TCP listener"))
        // Take ownership without a gap: the connection is closed with the scope even if the
        // fiber is interrupted right after the accept.
        return yield* Effect.uninterruptibleMask((restore) =>
          restore(pending.take.pipe(withinCallLimit("accept", "accept", options?.timeout))).pipe(
            Effect.flatMap((stream) => TcpStream.fromRaw(stream, meter))
          )
        )
      })

    const listener: TcpListener = {
      localAddress: inetFromRaw(raw.localAddress),
      accept,
      connections: Stream.fromEffectRepeat(accept()),
      close
    }
    return listener
  })
