/**
 * The supervisor on its own (`internal/supervisor.ts`), over a backend whose devices can be lost:
 * the states a loss goes through, calls that wait for the next device, sockets of a lost device,
 * rebuilds that fail, reconnection off, and control coming and going.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as NetAddress from "effect/net/NetAddress"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { backendError } from "../src/Backend.ts"
import type { DeviceState } from "../src/DeviceState.ts"
import * as Tailscale from "../src/Tailscale.ts"
import { reasonOf } from "./helpers.ts"
import { losableBackend, type LosableDevice, scriptedStream } from "./memoryBackend.ts"

/** No delay between rebuilds: the tests run on the TestClock. */
const immediately = (times: number) => Schedule.recurs(times)

/** The states the service reports until `done` says enough (collected in the background). */
const collectStates = (service: Tailscale.TailscaleService, done: (state: DeviceState) => boolean) =>
  service.states.pipe(Stream.takeUntil(done), Stream.runCollect, Effect.forkChild, Effect.tap(Effect.yieldNow))

/** Loses the device, and lets the supervisor hear of it (the backend's promise settles first). */
const lose = (device: LosableDevice, cause: string) =>
  Effect.andThen(Effect.sync(() => device.lose(cause)), Effect.yieldNow)

const untilRunning = (service: Tailscale.TailscaleService, address: string) =>
  Effect.gen(function*() {
    while (true) {
      const ipv4 = yield* service.ipv4
      const state = yield* service.state
      if (NetAddress.formatIp(ipv4) === address && state._tag === "Running") return
      yield* Effect.yieldNow
    }
  })

describe("supervisor", () => {
  it.effect("a lost device: Reconnecting with its cause, then Running on the next; the lost one is shut down", () =>
    Effect.gen(function*() {
      const { backend, devices } = losableBackend()
      const service = yield* Tailscale.make(backend, { reconnectSchedule: immediately(3) })
      yield* untilRunning(service, "100.64.0.1")
      const states = yield* collectStates(service, (state) => state._tag === "Running" && devices.length === 2)
      yield* lose(devices[0]!, "runtime panicked")
      yield* untilRunning(service, "100.64.0.2")
      const seen = [...(yield* Fiber.join(states))].map((state) => state._tag)
      assert.includeMembers(seen, ["Reconnecting", "Running"])
      assert.strictEqual(devices.length, 2)
      assert.strictEqual(devices[0]!.shutdowns(), 1, "the lost device is shut down")
      const reconnecting = [...(yield* service.states.pipe(Stream.take(1), Stream.runCollect))]
      assert.strictEqual(reconnecting[0]!._tag, "Running")
    }))

  it.effect("a call made while the device is being rebuilt waits for the new one", () =>
    Effect.gen(function*() {
      const { backend, devices } = losableBackend(2)
      const service = yield* Tailscale.make(backend, { reconnectSchedule: immediately(5) })
      yield* untilRunning(service, "100.64.0.1")
      yield* lose(devices[0]!, "runtime panicked")
      const found = yield* service.peerByName("echo-peer")
      assert.strictEqual(found._tag, "Some")
      assert.strictEqual(devices.length, 2, "two failed respawns, then the third attempt built one")
      const state = yield* service.state
      assert.strictEqual(state._tag, "Running")
    }))

  it.effect("rebuilds that keep failing count their attempts, and once the schedule gives up calls fail with the last error", () =>
    Effect.gen(function*() {
      const { backend, devices } = losableBackend(10)
      const service = yield* Tailscale.make(backend, { reconnectSchedule: immediately(2) })
      yield* untilRunning(service, "100.64.0.1")
      const states = yield* collectStates(service, (state) => state._tag === "Stopped")
      yield* lose(devices[0]!, "runtime panicked")
      const seen = [...(yield* Fiber.join(states))]
      const attempts = seen.flatMap((state) => state._tag === "Reconnecting" ? [state.attempt] : [])
      assert.deepStrictEqual(attempts, [1, 2, 3])
      assert.strictEqual(seen.at(-1)!._tag, "Stopped")
      assert.strictEqual(reasonOf(yield* Effect.exit(service.ipv4))._tag, "ControlUnreachable")
    }))

  it.effect("with reconnection off, a loss stops the device and every call fails DeviceLost with the cause", () =>
    Effect.gen(function*() {
      const { backend, devices } = losableBackend()
      const service = yield* Tailscale.make(backend, { reconnect: false })
      yield* untilRunning(service, "100.64.0.1")
      const states = yield* collectStates(service, (state) => state._tag === "Stopped")
      yield* lose(devices[0]!, "runtime panicked")
      yield* Fiber.join(states)
      const reason = reasonOf(yield* Effect.exit(service.peerByName("echo-peer")))
      assert.strictEqual(reason._tag, "DeviceLost")
      assert.include(reason.message, "runtime panicked")
      assert.strictEqual(devices.length, 1, "nothing rebuilt")
    }))

  it.effect("a read on a socket of a lost device fails DeviceLost, not DeviceClosed", () =>
    Effect.gen(function*() {
      const scripted = scriptedStream()
      const { backend, devices } = losableBackend()
      const service = yield* Tailscale.make(backend, { reconnect: false })
      yield* untilRunning(service, "100.64.0.1")
      devices[0]!.raw.tcpConnect = async () => scripted.stream
      const stream = yield* service.dial({ ip: "100.64.0.1", port: 7001 })
      const read = yield* Effect.forkChild(Effect.exit(stream.read()))
      yield* lose(devices[0]!, "runtime panicked")
      scripted.fail(0, backendError("DEVICE_CLOSED", "TCP stream", "is closed"))
      const reason = reasonOf(yield* Fiber.join(read))
      assert.strictEqual(reason._tag, "DeviceLost")
    }).pipe(Effect.scoped))

  it.effect("control away and back: Running { control: Unreachable }, then Connected", () =>
    Effect.gen(function*() {
      const { backend, devices } = losableBackend()
      const service = yield* Tailscale.make(backend)
      yield* untilRunning(service, "100.64.0.1")
      const control = (link: "Connected" | "Unreachable") =>
        Effect.gen(function*() {
          while (true) {
            const state = yield* service.state
            if (state._tag === "Running" && state.control === link) return
            yield* Effect.yieldNow
          }
        })
      devices[0]!.setControl(false)
      yield* control("Unreachable")
      devices[0]!.setControl(true)
      yield* control("Connected")
      assert.strictEqual(devices.length, 1, "control away is no loss: the same device goes on")
    }))
})
