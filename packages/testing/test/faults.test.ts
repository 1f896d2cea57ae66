/**
 * Our layers under faults on the loopback tailnet: what a device leaves behind once it is gone.
 * This file runs alone in its process, so the process's CPU figures are the devices' own.
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { connect, layer as localTailnet } from "../src/LocalTailnet.ts"

/** Share of one core the whole process used (all threads, the addon's included) over `ms`. */
const cpuShareOver = (ms: number) =>
  Effect.gen(function*() {
    const before = process.cpuUsage()
    const started = process.hrtime.bigint()
    yield* Effect.sleep(ms)
    const used = process.cpuUsage(before)
    const wallUs = Number(process.hrtime.bigint() - started) / 1_000
    return (used.user + used.system) / wallUs
  })

describe("faults", () => {
  layer(localTailnet(), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect("idle CPU after device lifecycles stays near zero", () =>
      Effect.gen(function*() {
        for (let cycle = 0; cycle < 5; cycle++) {
          yield* Effect.scoped(Effect.flatMap(connect({ hostname: `faults-cpu-${cycle}` }), (device) => device.ipv4))
        }
        yield* Effect.sleep("1 second")
        const share = yield* cpuShareOver(3_000)
        // A device's DERP runner that outlived it spun a whole core (1.0 here per device).
        assert.isBelow(share, 0.1, `idle process CPU after 5 shut-down devices: ${(share * 100).toFixed(1)}% of a core`)
      }), { timeout: 120_000 })
  })
})
