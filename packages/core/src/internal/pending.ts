/**
 * Turns a backend call that must not be abandoned (read, accept, receive) into an Effect that is
 * safe to interrupt: an interrupted caller leaves the call running, and the next caller takes
 * over the same promise, so its result (bytes, a connection, a datagram) is never lost.
 */
import * as Effect from "effect/Effect"
import * as Semaphore from "effect/Semaphore"
import type { TailscaleError } from "../TailscaleError.ts"

export interface Pending<A> {
  readonly take: Effect.Effect<A, TailscaleError>
}

export const make = <A>(
  start: () => Promise<A>,
  onError: (error: unknown) => TailscaleError
): Effect.Effect<Pending<A>> =>
  Effect.gen(function*() {
    // One caller at a time, or two would be handed the same chunk.
    const lock = yield* Semaphore.make(1)
    let inflight: Promise<A> | undefined
    // An interruption marks the wait abandoned: a flag, not an `AbortController`, which would be
    // allocated on every read of every stream.
    const await_ = Effect.callback<A, TailscaleError>((resume) => {
      let abandoned = false
      const promise = inflight ?? (inflight = start())
      promise.then(
        (value) => {
          if (abandoned) return // leave it for the next caller
          if (inflight === promise) inflight = undefined
          resume(Effect.succeed(value))
        },
        (error: unknown) => {
          if (abandoned) return
          if (inflight === promise) inflight = undefined
          resume(Effect.fail(onError(error)))
        }
      )
      return Effect.sync(() => {
        abandoned = true
      })
    })
    return { take: lock.withPermits(1)(await_) }
  })
