/** The fake's own behaviour: determinism, control plane, faults. No real sleeps (TestClock). */
import { DeviceState } from "@effect-tailscale/core/DeviceState"
import { PeerPath } from "@effect-tailscale/core/PeerPath"
import { Tailscale } from "@effect-tailscale/core/Tailscale"
import * as TailscaleMetrics from "@effect-tailscale/core/TailscaleMetrics"
import { reasonTag } from "@effect-tailscale/test-support/reasons"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as FakeTailnet from "../src/FakeTailnet.ts"
import * as TailscaleMock from "../src/TailscaleMock.ts"

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

/**
 * The gauge's value once it reads `expected`, or after 100 turns of the event loop (its watch
 * resolves through a promise, so a moment after the change; TestClock stops real sleeps).
 */
const gaugeSettlesAt = (gauge: Metric.Metric<number, Metric.GaugeState<number>>, expected: number) =>
  Effect.gen(function*() {
    for (let turn = 0; turn < 100; turn++) {
      const value = (yield* Metric.value(gauge)).value
      if (value === expected) return value
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
    }
    return (yield* Metric.value(gauge)).value
  })

describe("FakeTailnet", () => {
  it.effect("is deterministic: same seed, same tailnet; addresses in join order", () =>
    Effect.gen(function*() {
      const tailnetOf = (seed: number) =>
        Effect.gen(function*() {
          const tailnet = yield* FakeTailnet.make({ seed })
          for (const hostname of ["a", "b", "c"]) yield* tailnet.addDevice({ hostname })
          return yield* tailnet.nodes
        })
      const first = yield* tailnetOf(7)
      const second = yield* tailnetOf(7)
      assert.deepStrictEqual(second, first)
      assert.deepStrictEqual(first.map((node) => node.tailnetIpv4), ["100.64.0.1/32", "100.64.0.2/32", "100.64.0.3/32"])
      assert.strictEqual(first[1]!.tailnetIpv6, "fd7a:115c:a1e0:ab12:4843:cd96:6240:2/128")
      assert.strictEqual(first[2]!.fqdn, "c.tail-test.ts.net.")
      assert.notStrictEqual((yield* tailnetOf(8))[0]!.nodeKey, first[0]!.nodeKey)
    }))

  it.effect("peers appear when they join and ephemeral ones disappear when their scope closes", () =>
    Effect.gen(function*() {
      const tailnet = yield* FakeTailnet.make()
      const a = yield* tailnet.addDevice({ hostname: "a" })
      assert.isTrue(Option.isNone(yield* a.peerByName("b")))
      const scope = yield* Scope.make()
      yield* tailnet.addDevice({ hostname: "b", ephemeral: true }).pipe(Scope.provide(scope))
      yield* tailnet.addDevice({ hostname: "c" }).pipe(Scope.provide(scope))
      assert.isTrue(Option.isSome(yield* a.peerByName("b")))
      yield* Scope.close(scope, Exit.void)
      assert.isTrue(Option.isNone(yield* a.peerByName("b")), "ephemeral b was removed")
      const c = Option.getOrThrow(yield* a.peerByName("c"))
      assert.strictEqual(c.status._tag, "Offline", "non-ephemeral c stays, offline")
    }))

  it.effect("control down: connecting is ControlUnreachable, a registration ends in its timeout, registered devices go on", () =>
    Effect.gen(function*() {
      const tailnet = yield* FakeTailnet.make()
      yield* tailnet.setControlDown(true)
      assert.strictEqual(reasonTag(yield* Effect.exit(tailnet.addDevice())), "ControlUnreachable")
      yield* tailnet.setControlDown(false)
      const a = yield* tailnet.addDevice({ hostname: "a" })
      yield* tailnet.addDevice({ hostname: "b" })
      yield* tailnet.requireLogin(true)
      const waiting = yield* tailnet.addDevice({ hostname: "c", withoutAuthKey: true })
      yield* tailnet.setControlDown(true)
      assert.isTrue(Option.isSome(yield* a.peerByName("b")), "a registered device answers from its network map")
      const lookup = yield* Effect.forkChild(Effect.exit(waiting.peerByName("a")))
      yield* TestClock.adjust("30 seconds")
      assert.strictEqual(reasonTag(yield* Fiber.join(lookup)), "Timeout")
    }))

  it.effect("a lookup made while a lost device is being built again ends in its timeout", () =>
    Effect.gen(function*() {
      const tailnet = yield* FakeTailnet.make()
      const a = yield* tailnet.addDevice({ hostname: "a" })
      yield* tailnet.addDevice({ hostname: "b" })
      assert.isTrue(Option.isSome(yield* a.peerByName("b")), "past the first network map")
      // The rebuild cannot reach control, so the device stays lost.
      yield* tailnet.setControlDown(true)
      yield* tailnet.loseDevice("a")
      yield* a.states.pipe(Stream.filter(DeviceState.$is("Reconnecting")), Stream.runHead)
      const lookup = yield* Effect.forkChild(Effect.exit(a.peerByName("b", { timeout: "5 seconds" })))
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(reasonTag(yield* Fiber.join(lookup)), "Timeout")
    }))

  it.effect("an offline peer shows as offline and a dial to it ends in the dial timeout", () =>
    Effect.gen(function*() {
      const tailnet = yield* FakeTailnet.make()
      const a = yield* tailnet.addDevice({ hostname: "a" })
      const b = yield* tailnet.addDevice({ hostname: "b" })
      yield* b.listen(80)
      yield* tailnet.setOffline("b", true)
      assert.strictEqual(Option.getOrThrow(yield* a.peerByName("b")).status._tag, "Offline")
      const dial = yield* Effect.forkChild(Effect.exit(Effect.scoped(a.dial("b:80", { timeout: "5 seconds" }))))
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(reasonTag(yield* Fiber.join(dial)), "Timeout")
    }))

  it.effect("paths: every peer starts on the relay; the path a test sets is what pathTo, ping and the gauge report", () =>
    Effect.gen(function*() {
      const tailnet = yield* FakeTailnet.make()
      const a = yield* tailnet.addDevice({ hostname: "a" })
      yield* tailnet.addDevice({ hostname: "b" })
      const b = Option.getOrThrow(yield* a.peerByName("b"))
      const relay = PeerPath.Relay({ region: b.derpRegion })
      assert.deepStrictEqual(yield* a.pathTo("b"), relay)
      assert.deepStrictEqual((yield* a.ping(b)).path, relay)

      yield* tailnet.setPath("a", "b", { direct: "192.168.1.20:41641" })
      const direct = PeerPath.Direct({ endpoint: "192.168.1.20:41641" })
      assert.deepStrictEqual(yield* a.pathTo(b.ipv4), direct)
      assert.deepStrictEqual((yield* a.ping("b")).path, direct)
      const gauge = Metric.withAttributes(TailscaleMetrics.directPeers, { device: "a" })
      assert.strictEqual(yield* gaugeSettlesAt(gauge, 1), 1)

      yield* tailnet.setPath("a", "b", "relay")
      assert.deepStrictEqual(yield* a.pathTo("b"), relay)
      assert.strictEqual(yield* gaugeSettlesAt(gauge, 0), 0)

      // An offline peer never answers: the ping ends in its timeout.
      yield* tailnet.setOffline("b", true)
      const ping = yield* Effect.forkChild(Effect.exit(a.ping("b", { timeout: "3 seconds" })))
      yield* TestClock.adjust("3 seconds")
      assert.strictEqual(reasonTag(yield* Fiber.join(ping)), "Timeout")
    }))

  it.effect("a reset mid-stream reaches the reader as ConnectionReset", () =>
    Effect.gen(function*() {
      const tailnet = yield* FakeTailnet.make()
      const a = yield* tailnet.addDevice({ hostname: "a" })
      const b = yield* tailnet.addDevice({ hostname: "b" })
      const listener = yield* b.listen(80)
      const client = yield* a.dial("b:80")
      const server = yield* listener.accept()
      yield* client.write("first")
      assert.strictEqual(text(Option.getOrThrow(yield* server.read())), "first")
      yield* tailnet.resetConnections("b")
      assert.strictEqual(reasonTag(yield* Effect.exit(client.read())), "ConnectionReset")
      assert.strictEqual(reasonTag(yield* Effect.exit(server.write("x"))), "ConnectionReset")
    }))

  it.effect("TCP has backpressure: a writer waits until the reader drains, and end of stream arrives", () =>
    Effect.gen(function*() {
      const tailnet = yield* FakeTailnet.make({ tcpBuffer: 1024 })
      const a = yield* tailnet.addDevice({ hostname: "a" })
      const b = yield* tailnet.addDevice({ hostname: "b" })
      const listener = yield* b.listen(80)
      const client = yield* a.dial("b:80")
      const server = yield* listener.accept()
      const write = yield* Effect.forkChild(client.write(new Uint8Array(4096)))
      yield* Effect.yieldNow
      assert.isUndefined(write.pollUnsafe(), "4 KiB does not fit a 1 KiB buffer")
      let received = 0
      while (received < 4096) received += Option.getOrThrow(yield* server.read()).length
      yield* Fiber.join(write)
      yield* client.close
      assert.isTrue(Option.isNone(yield* server.read()))
    }))

  it.effect("latency follows the Clock: nothing arrives until TestClock moves", () =>
    Effect.gen(function*() {
      const tailnet = yield* FakeTailnet.make()
      const a = yield* tailnet.addDevice({ hostname: "a" })
      const b = yield* tailnet.addDevice({ hostname: "b" })
      const listener = yield* b.listen(80)
      yield* tailnet.setLatency("100 millis")
      const dial = yield* Effect.forkChild(a.dial("b:80"))
      yield* Effect.yieldNow
      assert.isUndefined(dial.pollUnsafe())
      yield* TestClock.adjust("100 millis")
      const client = yield* Fiber.join(dial)
      const server = yield* listener.accept()
      const read = yield* Effect.forkChild(server.read())
      yield* client.write("late").pipe(Effect.forkChild)
      yield* TestClock.adjust("99 millis")
      assert.isUndefined(read.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(text(Option.getOrThrow(yield* Fiber.join(read))), "late")
    }))

  it.effect("UDP loss drops every nth datagram, and the size limit is the crate's", () =>
    Effect.gen(function*() {
      const tailnet = yield* FakeTailnet.make()
      const a = yield* tailnet.addDevice({ hostname: "a" })
      const b = yield* tailnet.addDevice({ hostname: "b" })
      const inbox = yield* b.bindUdp(53)
      const outbox = yield* a.bindUdp(5353)
      const to = { ip: NetAddress.formatIp(yield* b.ipv4), port: 53 }
      yield* tailnet.setUdpLoss(2)
      for (const payload of ["1", "2", "3", "4"]) yield* outbox.send(to, payload)
      const first = yield* inbox.receive()
      const second = yield* inbox.receive()
      assert.deepStrictEqual([text(first.data), text(second.data)], ["1", "3"])
      assert.strictEqual(first.from.port, 5353)
      assert.strictEqual(reasonTag(yield* Effect.exit(outbox.send(to, new Uint8Array(4097)))), "MessageTooLarge")
      yield* outbox.send(to, new Uint8Array(4096))
    }))
})

describe("TailscaleMock", () => {
  it.effect("implements only what a test gives it; anything else is a defect", () =>
    Effect.gen(function*() {
      const tailscale = yield* Tailscale
      assert.strictEqual(NetAddress.formatIp(yield* tailscale.ipv4), "100.64.0.9")
      assert.isTrue(Option.isNone(yield* tailscale.peerByName("db")))
      const exit = yield* Effect.exit(tailscale.self)
      assert.isTrue(Exit.isFailure(exit) && exit.cause.reasons.some((reason) => reason._tag === "Die"))
    }).pipe(Effect.provide(TailscaleMock.alone({ ipv4: "100.64.0.9" }))))
})
