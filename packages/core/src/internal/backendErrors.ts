/** Backend rejections (`BackendError`s, see `Backend.ts`) as `TailscaleError`s. */
import * as Schema from "effect/Schema"
import { type BackendError, type BackendErrorCode, BackendErrorCodes } from "../Backend.ts"
import {
  AddressInUse,
  ConnectionRefused,
  ConnectionReset,
  ControlUnreachable,
  DeviceClosed,
  DeviceLost,
  Internal,
  internal,
  InvalidArgument,
  KeyFile,
  MessageTooLarge,
  NotAuthorized,
  TailscaleError,
  type TailscaleErrorReason,
  Timeout
} from "../TailscaleError.ts"

/** What a backend rejection carries as data: its code and subject are read here, never parsed. */
const BackendFailure = Schema.Struct({
  code: Schema.Literals(BackendErrorCodes),
  subject: Schema.String,
  message: Schema.String
})
const isBackendFailure = Schema.is(BackendFailure)

/** `error` as a `BackendError`, if it is one. */
export const asBackendError = (error: unknown): BackendError | undefined =>
  error instanceof Error && isBackendFailure(error) ? error : undefined

/** The reason for each backend code. */
const reasonFor: {
  readonly [C in BackendErrorCode]: (
    fields: { readonly message: string; readonly cause: unknown },
    subject: string
  ) => TailscaleErrorReason
} = {
  KEY_FILE: (fields) => new KeyFile(fields),
  INVALID_ARGUMENT: (fields, subject) => new InvalidArgument({ ...fields, field: subject }),
  CONTROL_UNREACHABLE: (fields) => new ControlUnreachable(fields),
  NOT_AUTHORIZED: (fields) => new NotAuthorized(fields),
  TIMEOUT: (fields, subject) => new Timeout({ ...fields, operation: subject }),
  CONNECTION_REFUSED: (fields) => new ConnectionRefused(fields),
  CONNECTION_RESET: (fields) => new ConnectionReset(fields),
  ADDRESS_IN_USE: (fields) => new AddressInUse(fields),
  MESSAGE_TOO_LARGE: (fields) => new MessageTooLarge(fields),
  DEVICE_CLOSED: (fields) => new DeviceClosed(fields),
  DEVICE_LOST: (fields) => new DeviceLost(fields),
  INTERNAL: (fields) => new Internal(fields)
}

/**
 * Maps a backend rejection (a `BackendError`, see `Backend.ts`) to a `TailscaleError`; the
 * reason's message is the error's without its `"<CODE>: "` prefix, which the reason's tag says.
 * Anything else becomes `Internal` carrying the original value as its cause.
 */
export const fromBackend = (operation: string, error: unknown): TailscaleError => {
  if (error instanceof TailscaleError) return error
  const failure = asBackendError(error)
  if (failure !== undefined) {
    const prefix = `${failure.code}: `
    const message = failure.message.startsWith(prefix) ? failure.message.slice(prefix.length) : failure.message
    return new TailscaleError({ reason: reasonFor[failure.code]({ message, cause: error }, failure.subject) })
  }
  const text = error instanceof Error ? error.message : typeof error === "string" ? error : undefined
  return internal(`${operation}: ${text ?? "unexpected failure"}`, error)
}
