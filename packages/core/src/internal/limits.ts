/** The limits a call runs under: its own `timeout` checked, the one in force, or the backend's. */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { TailscaleError } from "../TailscaleError.ts"
import { TailscaleTimeouts, type Timeouts, within } from "../Timeouts.ts"
import { badLimit } from "./inputs.ts"

/** A call's own `timeout`, checked, or `fallback` when it has none. */
export const callLimit = (
  timeout: Duration.Input | undefined,
  fallback: Duration.Input
): Effect.Effect<Duration.Input, TailscaleError> =>
  timeout === undefined ? Effect.succeed(fallback) : Option.isSome(Duration.fromInput(timeout))
    ? Effect.succeed(timeout)
    : badLimit(timeout)

/**
 * `within`, for a wait the backend itself bounds by `limit` (connecting): the backend's own
 * timeout decides, and this one only ends a backend that ignores its limit, a little later.
 */
export const withinBackendLimit = (operation: string, limit: Duration.Input) => {
  const duration = Duration.fromInputUnsafe(limit)
  return within(operation, Duration.isFinite(duration) ? Duration.sum(duration, BACKSTOP_GRACE) : duration)
}

const BACKSTOP_GRACE = Duration.seconds(2)

/**
 * `within` the call's own `limit`, or else the `kind` limit of the `TailscaleTimeouts` in force
 * where the wait runs (not where the socket was made).
 */
export const withinCallLimit =
  (operation: string, kind: keyof Timeouts, limit: Duration.Input | undefined) =>
  <A, R>(self: Effect.Effect<A, TailscaleError, R>): Effect.Effect<A, TailscaleError, R> =>
    limit === undefined
      ? Effect.flatMap(TailscaleTimeouts, (timeouts) => within(operation, timeouts[kind])(self))
      : within(operation, limit)(self)
