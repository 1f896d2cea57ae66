/** Backend rejections (`"<CODE>: <detail>"`, see `Backend.ts`) as `TailscaleError`s. */
import * as Schema from "effect/Schema"
import { type BackendErrorCode, BackendErrorCodes } from "../Backend.ts"
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

const BackendErrorCode = Schema.Literals(BackendErrorCodes)
const isBackendErrorCode = Schema.is(BackendErrorCode)
const backendMessage = /^([A-Z_]+): ([\s\S]*)$/

/**
 * The subject of a backend message (`"<CODE>: <subject>: <detail>"`, the grammar in
 * `native/src/error.rs`): the field for `INVALID_ARGUMENT`, the operation otherwise.
 */
const subjectOf = (message: string) => /^([\w[\]. ]+): /.exec(message)?.[1] ?? "unknown"

/** The reason for each backend code. */
const reasonFor: {
  readonly [C in BackendErrorCode]: (
    fields: { readonly message: string; readonly cause: unknown }
  ) => TailscaleErrorReason
} = {
  KEY_FILE: (fields) => new KeyFile(fields),
  INVALID_ARGUMENT: (fields) => new InvalidArgument({ ...fields, field: subjectOf(fields.message) }),
  CONTROL_UNREACHABLE: (fields) => new ControlUnreachable(fields),
  NOT_AUTHORIZED: (fields) => new NotAuthorized(fields),
  TIMEOUT: (fields) => new Timeout({ ...fields, operation: subjectOf(fields.message) }),
  CONNECTION_REFUSED: (fields) => new ConnectionRefused(fields),
  CONNECTION_RESET: (fields) => new ConnectionReset(fields),
  ADDRESS_IN_USE: (fields) => new AddressInUse(fields),
  MESSAGE_TOO_LARGE: (fields) => new MessageTooLarge(fields),
  DEVICE_CLOSED: (fields) => new DeviceClosed(fields),
  DEVICE_LOST: (fields) => new DeviceLost(fields),
  INTERNAL: (fields) => new Internal(fields)
}

/**
 * Maps a backend rejection (`"<CODE>: <detail>"`, see `Backend.ts`) to a `TailscaleError`.
 * Anything else becomes `Internal` carrying the original value as its cause.
 */
export const fromBackend = (operation: string, error: unknown): TailscaleError => {
  if (error instanceof TailscaleError) return error
  const text = error instanceof Error ? error.message : typeof error === "string" ? error : undefined
  const match = text === undefined ? null : backendMessage.exec(text)
  if (match && isBackendErrorCode(match[1])) {
    return new TailscaleError({ reason: reasonFor[match[1]]({ message: match[2]!, cause: error }) })
  }
  return internal(`${operation}: ${text ?? "unexpected failure"}`, error)
}
