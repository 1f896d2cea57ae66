/** The addon as core's backend: what core declares of it matches what the addon exports. */
import { defaults } from "@effect-tailscale/core/Timeouts"
import { maxDatagramBytes } from "@effect-tailscale/core/UdpSocket"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { describe, expect, it } from "vitest"
import * as NativeBackend from "../src/NativeBackend.ts"

describe("NativeBackend", () => {
  it("core's datagram limit is the addon's (one number on each side of the boundary, checked here)", async () => {
    const native = await Effect.runPromise(NativeBackend.load())
    expect(native.MAX_DATAGRAM_BYTES).toBe(maxDatagramBytes)
  })

  it("core's shutdown default is the addon's (for a device shut down without a limit)", async () => {
    const native = await Effect.runPromise(NativeBackend.load())
    expect(native.DEFAULT_SHUTDOWN_MS).toBe(Duration.toMillis(Duration.fromInputUnsafe(defaults.shutdown)))
  })
})
