/** What the tests share to look at a failure: its reason, its text, and the field an argument failed on. */
import * as Exit from "effect/Exit"

/** The `reason` tag of a failed exit's `TailscaleError` ("success" when it succeeded). */
export const reasonTag = <A, E>(exit: Exit.Exit<A, E>): string => {
  if (Exit.isSuccess(exit)) return "success"
  const failure = exit.cause.reasons.find((reason) => reason._tag === "Fail")
  const error = failure?._tag === "Fail" ? (failure.error as { reason?: { _tag: string } }) : undefined
  return error?.reason?._tag ?? exit.cause.toString()
}

/** A failed exit's cause as text, to find a message in ("" when it succeeded). */
export const failureText = <A, E>(exit: Exit.Exit<A, E>): string => (Exit.isFailure(exit) ? exit.cause.toString() : "")

/** `InvalidArgument <field>` for a failed exit whose reason is `InvalidArgument`; else its reason tag. */
export const invalidField = <A, E>(exit: Exit.Exit<A, E>): string => {
  if (Exit.isSuccess(exit)) return "success"
  const failure = exit.cause.reasons.find((reason) => reason._tag === "Fail")
  const error = failure?._tag === "Fail" ? (failure.error as { reason?: { _tag: string; field?: string } }) : undefined
  return error?.reason?._tag === "InvalidArgument" ? `InvalidArgument ${error.reason.field}` : reasonTag(exit)
}
