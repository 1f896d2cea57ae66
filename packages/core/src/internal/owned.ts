/** Backend handles (streams, listeners, sockets) and who closes them. */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { RawDevice } from "../Backend.ts"
import type { TailscaleError } from "../TailscaleError.ts"

/**
 * A backend call that opens a handle. If the caller stops waiting (interruption, a timeout),
 * the handle is closed when it arrives instead of being left for the garbage collector.
 */
export const open = <H extends { close(): void }>(
  run: () => Promise<H>,
  onError: (error: unknown) => TailscaleError
): Effect.Effect<H, TailscaleError> =>
  Effect.callback<H, TailscaleError>((resume, signal) => {
    run().then(
      (handle) => {
        if (signal.aborted) handle.close()
        else resume(Effect.succeed(handle))
      },
      (error: unknown) => {
        if (!signal.aborted) resume(Effect.fail(onError(error)))
      }
    )
  })

/** `open` for a whole device: one that arrives after the caller gave up is shut down at once. */
export const openDevice = (
  run: () => Promise<RawDevice>,
  onError: (error: unknown) => TailscaleError
): Effect.Effect<RawDevice, TailscaleError> =>
  open(() => run().then((device) => ({ device, close: () => void device.shutdown(0) })), onError).pipe(
    Effect.map(({ device }) => device)
  )

/** A backend handle owned by the current scope: closed once, when the scope closes or on request. */
export interface Owned {
  readonly close: Effect.Effect<void>
  readonly isClosed: () => boolean
}

export const own = (handle: { close(): void }): Effect.Effect<Owned, never, Scope.Scope> =>
  Effect.gen(function*() {
    let closed = false
    const close = Effect.sync(() => {
      if (closed) return
      closed = true
      handle.close()
    })
    yield* Effect.addFinalizer(() => close)
    return { close, isClosed: () => closed }
  })
