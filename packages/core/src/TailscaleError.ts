/**
 * One error type for everything the service can fail with. The `reason` says what happened;
 * handle one with `Effect.catchReason("TailscaleError", "Timeout", ...)`.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/** Every reason says what happened, and keeps what it was made from (the backend's rejection) as `cause`. */
const ReasonFields = { message: Schema.String, cause: Schema.optional(Schema.Defect()) }

/**
 * The key file cannot be read, created, parsed or written. An invalid file is never overwritten unless asked.
 *
 * @category errors
 */
export class KeyFile extends Schema.TaggedError<KeyFile>()("KeyFile", ReasonFields) {
  get isRetryable(): boolean {
    return false
  }
}

/**
 * Bad input, caught before anything was sent. `field` names the offending option or argument.
 *
 * @category errors
 */
export class InvalidArgument extends Schema.TaggedError<InvalidArgument>()("InvalidArgument", {
  ...ReasonFields,
  field: Schema.String
}) {
  get isRetryable(): boolean {
    return false
  }
}

/**
 * The control server cannot be reached, or did not finish the handshake in time.
 *
 * @category errors
 */
export class ControlUnreachable extends Schema.TaggedError<ControlUnreachable>()("ControlUnreachable", ReasonFields) {
  get isRetryable(): boolean {
    return true
  }
}

/**
 * Control turned the device away (invalid or expired auth key), or it needs an interactive login at `loginUrl`.
 *
 * @category errors
 */
export class NotAuthorized extends Schema.TaggedError<NotAuthorized>()("NotAuthorized", {
  ...ReasonFields,
  loginUrl: Schema.optional(Schema.String)
}) {
  get isRetryable(): boolean {
    return false
  }
}

/**
 * An operation did not finish within its timeout (`operation` names it). Safe to retry.
 *
 * @category errors
 */
export class Timeout extends Schema.TaggedError<Timeout>()("Timeout", {
  ...ReasonFields,
  operation: Schema.String
}) {
  get isRetryable(): boolean {
    return true
  }
}

/**
 * The peer refused the TCP connection (nothing listening on that port).
 *
 * @category errors
 */
export class ConnectionRefused extends Schema.TaggedError<ConnectionRefused>()("ConnectionRefused", ReasonFields) {
  get isRetryable(): boolean {
    return true
  }
}

/**
 * The peer reset an open TCP connection.
 *
 * @category errors
 */
export class ConnectionReset extends Schema.TaggedError<ConnectionReset>()("ConnectionReset", ReasonFields) {
  get isRetryable(): boolean {
    return true
  }
}

/**
 * The address and port are already bound on this device.
 *
 * @category errors
 */
export class AddressInUse extends Schema.TaggedError<AddressInUse>()("AddressInUse", ReasonFields) {
  get isRetryable(): boolean {
    return false
  }
}

/**
 * A UDP datagram larger than the 4096 bytes the network stack can hold.
 *
 * @category errors
 */
export class MessageTooLarge extends Schema.TaggedError<MessageTooLarge>()("MessageTooLarge", ReasonFields) {
  get isRetryable(): boolean {
    return false
  }
}

/**
 * The device or socket is closed (also when it closed while a call was waiting).
 *
 * @category errors
 */
export class DeviceClosed extends Schema.TaggedError<DeviceClosed>()("DeviceClosed", ReasonFields) {
  get isRetryable(): boolean {
    return false
  }
}

/**
 * The device was lost: the crate's runtime behind it stopped (for example after control was away
 * for longer than the crate retries). Its pending calls and open sockets end with this reason;
 * unless reconnection is turned off, the layer builds the device again and later calls wait for
 * it. Safe to retry.
 *
 * @category errors
 */
export class DeviceLost extends Schema.TaggedError<DeviceLost>()("DeviceLost", ReasonFields) {
  get isRetryable(): boolean {
    return true
  }
}

/**
 * The native addon cannot be loaded (not built, or built for another platform). The message says what to do.
 *
 * @category errors
 */
export class NativeUnavailable extends Schema.TaggedError<NativeUnavailable>()("NativeUnavailable", ReasonFields) {
  get isRetryable(): boolean {
    return false
  }
}

/**
 * Anything else: an error the crate reports without detail, or data that does not decode. Worth a bug report.
 *
 * @category errors
 */
export class Internal extends Schema.TaggedError<Internal>()("Internal", ReasonFields) {
  get isRetryable(): boolean {
    return false
  }
}

/**
 * A capability value granted to a caller does not decode with the schema it was read with
 * (`Caller.capability`): the policy and the program disagree on its shape. `name` is the
 * capability.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidCapability extends Schema.TaggedError<InvalidCapability>()("InvalidCapability", {
  ...ReasonFields,
  name: Schema.String
}) {
  get isRetryable(): boolean {
    return false
  }
}

/**
 * Every reason a `TailscaleError` can carry.
 *
 * @category models
 */
export const TailscaleErrorReason = Schema.Union([
  KeyFile,
  InvalidArgument,
  ControlUnreachable,
  NotAuthorized,
  Timeout,
  ConnectionRefused,
  ConnectionReset,
  AddressInUse,
  MessageTooLarge,
  DeviceClosed,
  DeviceLost,
  NativeUnavailable,
  InvalidCapability,
  Internal
])

/**
 * One of the reasons: match on `_tag`.
 *
 * @category models
 */
export type TailscaleErrorReason = typeof TailscaleErrorReason.Type

/**
 * What marks a `TailscaleError`, also across copies of this package (`isTailscaleError`).
 *
 * @category symbols
 * @since 0.1.0
 */
export const TypeId: TypeId = "~@effect-tailscale/core/TailscaleError"

/**
 * @category symbols
 * @since 0.1.0
 */
export type TypeId = "~@effect-tailscale/core/TailscaleError"

/**
 * Whether `u` is a `TailscaleError`.
 *
 * @category guards
 * @since 0.1.0
 */
export const isTailscaleError = (u: unknown): u is TailscaleError => Predicate.hasProperty(u, TypeId)

/**
 * The one error type of the service; `reason` says what happened (`Effect.catchReason` handles one).
 *
 * @category errors
 */
export class TailscaleError extends Schema.TaggedError<TailscaleError>("@effect-tailscale/core/TailscaleError")(
  "TailscaleError",
  { reason: TailscaleErrorReason }
) {
  readonly [TypeId]: TypeId = TypeId

  override get message(): string {
    return `${this.reason._tag}: ${this.reason.message}`
  }

  get isRetryable(): boolean {
    return this.reason.isRetryable
  }
}

/**
 * A `TailscaleError` for bad input in `field` (for backends and test doubles).
 *
 * @category constructors
 */
export const invalidArgument = (field: string, message: string): TailscaleError =>
  new TailscaleError({ reason: new InvalidArgument({ field, message: `${field}: ${message}` }) })

/**
 * A `TailscaleError` for `operation` not finishing within `after` (for backends and test doubles).
 *
 * @category constructors
 */
export const timeout = (operation: string, after: string): TailscaleError =>
  new TailscaleError({ reason: new Timeout({ operation, message: `${operation} did not finish within ${after}` }) })

/**
 * A `TailscaleError` for a call on a closed handle (for backends and test doubles).
 *
 * @category constructors
 */
export const deviceClosed = (what: string): TailscaleError =>
  new TailscaleError({ reason: new DeviceClosed({ message: `the ${what} is closed` }) })

/**
 * A `TailscaleError` for a call on a lost device (for backends and test doubles).
 *
 * @category constructors
 */
export const deviceLost = (what: string, cause: string): TailscaleError =>
  new TailscaleError({
    reason: new DeviceLost({
      message: `${what}: the device's runtime has stopped (${cause}); it must be connected again`
    })
  })

/**
 * A `TailscaleError` for anything unexpected, keeping `cause`.
 *
 * @category constructors
 */
export const internal = (message: string, cause?: unknown): TailscaleError =>
  new TailscaleError({ reason: new Internal({ message, ...(cause === undefined ? {} : { cause }) }) })
