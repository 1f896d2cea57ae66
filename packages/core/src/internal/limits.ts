/** The limit a socket wait (read, receive, accept) runs under: its own, or the one in force. */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { TailscaleError } from "../TailscaleError.ts"
import { TailscaleTimeouts, type Timeouts, within } from "../Timeouts.ts"

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
