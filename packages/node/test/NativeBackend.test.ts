/** The addon as core's backend: what core declares of it matches what the addon exports. */
import type { RawConnectOptions } from "@effect-tailscale/core/Backend"
import { defaults } from "@effect-tailscale/core/Timeouts"
import { maxDatagramBytes } from "@effect-tailscale/core/UdpSocket"
import type * as Native from "@effect-tailscale/native"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { describe, expect, expectTypeOf, it } from "vitest"
import * as NativeBackend from "../src/NativeBackend.ts"

/** Every field present, without `undefined`, `readonly` or read-only arrays: the shape alone. */
type Shape<T> = {
  -readonly [K in keyof T]-?: Exclude<T[K], undefined> extends ReadonlyArray<infer E> ? Array<E>
    : Exclude<T[K], undefined>
}

describe("NativeBackend", () => {
  it("core's connect options are the addon's, field by field (checked by the typecheck)", () => {
    expectTypeOf<Shape<RawConnectOptions>>().toEqualTypeOf<Shape<Native.ConnectOptions>>()
  })

  it("core's datagram limit is the addon's (one number on each side of the boundary, checked here)", async () => {
    const native = await Effect.runPromise(NativeBackend.load())
    expect(native.MAX_DATAGRAM_BYTES).toBe(maxDatagramBytes)
  })

  it("core's shutdown default is the addon's (for a device shut down without a limit)", async () => {
    const native = await Effect.runPromise(NativeBackend.load())
    expect(native.DEFAULT_SHUTDOWN_MS).toBe(Duration.toMillis(Duration.fromInputUnsafe(defaults.shutdown)))
  })
})
