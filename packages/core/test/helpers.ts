/** What the core tests share: the reason of a typed failure, and bytes from text and back. */
import * as Exit from "effect/Exit"
import type { TailscaleError } from "../src/TailscaleError.ts"

export const reasonOf = <A>(exit: Exit.Exit<A, TailscaleError>) => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")
  if (error === undefined || error._tag !== "Fail") throw new Error(`expected a typed failure: ${exit.cause}`)
  return error.error.reason
}

export const bytes = (text: string) => new TextEncoder().encode(text)
export const text = (data: Uint8Array) => new TextDecoder().decode(data)
