/** A backend handle owned by the current scope: closed once, when the scope closes or on request. */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

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
