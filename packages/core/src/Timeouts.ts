/**
 * Limits for every wait the crate leaves unbounded. A device takes them when it is built:
 * provide `TailscaleTimeouts` to the layer (e.g.
 * `Layer.provide(Layer.succeed(TailscaleTimeouts, { ...defaults, dial: "5 seconds" }))`), or pass
 * the `timeout` option to one call. Socket waits (`accept`, `read`) take the limit in force where
 * the call is made. `"Infinity"` waits forever: the default for `accept` and `read`, where an idle
 * listener or connection is normal and a limit would cut long-lived servers and streams.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { badLimit } from "./internal/inputs.ts"
import { type TailscaleError, timeout as timeoutError } from "./TailscaleError.ts"

/**
 * The limits a device applies to each kind of wait.
 *
 * @category options
 */
export interface Timeouts {
  /** Reaching control when the device starts. */
  readonly connect: Duration.Input
  /** The first network map: `ipv4`, `ipv6`, `self`, `authState` and the peer lookups wait for it. */
  readonly netmap: Duration.Input
  /** Resolving a peer and completing the TCP handshake. */
  readonly dial: Duration.Input
  /** Waiting for an incoming connection. */
  readonly accept: Duration.Input
  /** Waiting for the next chunk or datagram. */
  readonly read: Duration.Input
  /** A graceful shutdown, after which the device is stopped forcibly. */
  readonly shutdown: Duration.Input
}

/**
 * 30 s for control, the first netmap and dials; none for accept and read; 5 s for shutdown.
 *
 * @category constants
 */
export const defaults: Timeouts = {
  connect: "30 seconds",
  netmap: "30 seconds",
  dial: "30 seconds",
  accept: "Infinity",
  read: "Infinity",
  shutdown: "5 seconds"
}

/**
 * The `Timeouts` in force: provide it to the layer that builds a device.
 *
 * @category services
 */
export const TailscaleTimeouts = Context.Reference<Timeouts>("@effect-tailscale/core/TailscaleTimeouts", {
  defaultValue: () => defaults
})

/**
 * Fails with a `Timeout` reason naming `operation` when `self` takes longer than `limit`.
 *
 * @category utils
 */
export const within =
  (operation: string, limit: Duration.Input) =>
  <A, R>(self: Effect.Effect<A, TailscaleError, R>): Effect.Effect<A, TailscaleError, R> =>
    Option.match(Duration.fromInput(limit), {
      onNone: () => badLimit(limit),
      onSome: (duration) =>
        Duration.isFinite(duration)
          ? self.pipe(
            Effect.timeoutOrElse({
              duration,
              orElse: () => Effect.fail(timeoutError(operation, Duration.format(duration)))
            })
          )
          : self
    })

/**
 * Milliseconds for a backend that takes a number, or undefined for "forever".
 *
 * @category utils
 */
export const toMillis = (limit: Duration.Input): number | undefined => {
  const duration = Duration.fromInputUnsafe(limit)
  return Duration.isFinite(duration) ? Duration.toMillis(duration) : undefined
}
