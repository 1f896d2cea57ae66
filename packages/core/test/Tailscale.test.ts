import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import { TestClock } from "effect/testing"
import * as Tracer from "effect/Tracer"
import type { RawTcpListener } from "../src/Backend.ts"
import * as Tailscale from "../src/Tailscale.ts"
import { defaults, TailscaleTimeouts } from "../src/Timeouts.ts"
import { reasonOf } from "./helpers.ts"
import { memoryBackend, scriptedStream } from "./memoryBackend.ts"

describe("Tailscale.make", () => {
  it.effect("connects with the options, unwrapping secrets only for the backend", () =>
    Effect.gen(function*() {
      const { backend, calls } = memoryBackend()
      yield* Tailscale.make(backend, {
        authKey: Redacted.make("tskey-secret"),
        hostname: "worker-1",
        tags: ["tag:ci"],
        ephemeral: true,
        controlUrl: new URL("https://control.example/")
      })
      assert.strictEqual(calls.connect.length, 1)
      const options = calls.connect[0]!
      assert.strictEqual(options.authKey, "tskey-secret")
      assert.strictEqual(options.hostname, "worker-1")
      assert.deepStrictEqual(options.tags, ["tag:ci"])
      assert.strictEqual(options.ephemeral, true)
      assert.strictEqual(options.controlUrl, "https://control.example/")
      assert.strictEqual(options.connectTimeoutMs, 30_000)
    }))

  it.effect("shuts the device down exactly once when the scope closes, also after an explicit shutdown", () =>
    Effect.gen(function*() {
      const { backend, calls } = memoryBackend()
      const scope = yield* Scope.make()
      const service = yield* Tailscale.make(backend).pipe(Scope.provide(scope))
      assert.isTrue(yield* service.shutdown)
      assert.isTrue(yield* service.shutdown)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(calls.shutdown, 1)
    }))

  it.effect("shuts down when the scope closes with a failure", () =>
    Effect.gen(function*() {
      const { backend, calls } = memoryBackend()
      const exit = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
        yield* Tailscale.make(backend)
        return yield* Effect.fail("boom")
      })))
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual(calls.shutdown, 1)
      assert.strictEqual(calls.unsubscribed, 1)
    }))

  it.effect.each(
    [
      [{ hostname: "bad host" }, "hostname"],
      [{ tags: ["tag:ok", "nope"] }, "tags[1]"],
      [{ controlUrl: "ftp://x" }, "controlUrl"],
      // What the addon refuses, core refuses first, so the fake tailnet refuses it too.
      [{ controlUrl: "http://control.example" }, "controlUrl"],
      [{ controlUrl: `https://${"a".repeat(1 << 20)}` }, "controlUrl"],
      [{ caFile: "" }, "caFile"],
      [{ keyFile: "" }, "keyFile"],
      [{ clientName: "c".repeat(129) }, "clientName"],
      [{ keyFile: "/k", keyState: Redacted.make("{}") }, "keyState"]
    ] as const
  )("rejects %j before connecting", ([options, field]) =>
    Effect.gen(function*() {
      const { backend, calls } = memoryBackend()
      const reason = reasonOf(yield* Effect.exit(Tailscale.make(backend, options)))
      assert.strictEqual(reason._tag, "InvalidArgument")
      assert.strictEqual(reason._tag === "InvalidArgument" ? reason.field : "", field)
      assert.strictEqual(calls.connect.length, 0)
    }))

  it.effect("bounds what it echoes and never echoes credentials", () =>
    Effect.gen(function*() {
      const { backend, calls } = memoryBackend()
      for (const field of ["hostname", "clientName", "controlUrl", "logFilter"]) {
        const huge = reasonOf(yield* Effect.exit(Tailscale.make(backend, { [field]: "h".repeat(1 << 20) })))
        assert.strictEqual(huge._tag === "InvalidArgument" ? huge.field : huge._tag, field)
        assert.isBelow(huge.message.length, 200)
      }
      const withPassword = reasonOf(
        yield* Effect.exit(Tailscale.make(backend, { controlUrl: "https://admin:hunter2@control.example/" }))
      )
      assert.strictEqual(withPassword._tag, "InvalidArgument")
      assert.notInclude(withPassword.message, "hunter2")
      const bigKey = reasonOf(
        yield* Effect.exit(Tailscale.make(backend, { authKey: Redacted.make("k".repeat(1_000_000)) }))
      )
      assert.strictEqual(bigKey._tag === "InvalidArgument" ? bigKey.field : bigKey._tag, "authKey")
      assert.isBelow(bigKey.message.length, 200)
      assert.strictEqual(calls.connect.length, 0)
    }))
})

describe("queries", () => {
  it.effect("decode addresses, nodes and auth state", () =>
    Effect.gen(function*() {
      const { backend } = memoryBackend({
        authState: async () => ({ _tag: "NeedsLogin", url: "https://login.example/a" })
      })
      const service = yield* Tailscale.make(backend)
      assert.strictEqual(NetAddress.formatIp(yield* service.ipv4), "100.64.0.2")
      assert.strictEqual(NetAddress.formatIp(yield* service.ipv6), "fd7a:115c:a1e0::2")
      const peer = Option.getOrThrow(yield* service.peerByName("echo-peer"))
      assert.strictEqual(NetAddress.formatIp(peer.ipv4), "100.64.0.1")
      assert.isTrue(Option.isNone(peer.nodeKeyExpiry), "year 1 means no expiry")
      assert.deepStrictEqual(Option.getOrNull(peer.derpRegion), 900)
      assert.isTrue(peer.isOnline)
      assert.isTrue(Option.isNone(yield* service.peerByName("nobody")))
      assert.strictEqual(
        (yield* service.peerByIp([100, 64, 0, 1])).pipe(Option.map((n) => n.hostname), Option.getOrNull),
        "echo-peer"
      )
      assert.lengthOf(yield* service.peersWithRoute("100.64.0.1"), 1)
      assert.deepStrictEqual(yield* service.authState, { _tag: "NeedsLogin", url: "https://login.example/a" })
    }))

  it.effect("decode the device's own node, and an authorized state", () =>
    Effect.gen(function*() {
      const { backend } = memoryBackend()
      const service = yield* Tailscale.make(backend)
      const self = yield* service.self
      assert.strictEqual(self.hostname, "me")
      assert.strictEqual(NetAddress.formatIp(self.ipv4), "100.64.0.1")
      assert.strictEqual((yield* service.authState)._tag, "Authorized")
    }))

  it.effect("accept tuples and effect/net values for IPs, and reject bad ones before the backend", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const { backend, calls } = memoryBackend({
        peerByIp: async (ip) => {
          seen.push(ip)
          return null
        }
      })
      const service = yield* Tailscale.make(backend)
      yield* service.peerByIp([0xfd7a, 0x115c, 0xa1e0, 0, 0, 0, 0, 1])
      yield* service.peerByIp(NetAddress.ipFromStringUnsafe("100.64.0.9"))
      assert.deepStrictEqual(seen, ["fd7a:115c:a1e0::1", "100.64.0.9"])
      const before = calls.device.length
      for (
        const bad of [
          service.peerByIp("100.64.0.300"),
          service.peerByIp([1, 2, 3] as unknown as [number, number, number, number]),
          service.peerByName("")
        ]
      ) {
        assert.strictEqual(reasonOf(yield* Effect.exit(bad))._tag, "InvalidArgument")
      }
      assert.strictEqual(reasonOf(yield* Effect.exit(Effect.scoped(service.listen(70000))))._tag, "InvalidArgument")
      assert.strictEqual(reasonOf(yield* Effect.exit(Effect.scoped(service.bindUdp(0))))._tag, "InvalidArgument")
      assert.strictEqual(
        reasonOf(yield* Effect.exit(Effect.scoped(service.dial("no-port" as `${string}:${number}`))))._tag,
        "InvalidArgument"
      )
      assert.strictEqual(calls.device.length, before)
    }))

  it.effect("time out waits the backend leaves unbounded, by the configured limit", () =>
    Effect.gen(function*() {
      const { backend } = memoryBackend({ ipv4: () => new Promise(() => {}) })
      const service = yield* Tailscale.make(backend)
      const fiber = yield* Effect.forkChild(Effect.exit(service.ipv4))
      yield* TestClock.adjust("29 seconds")
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust("1 second")
      const reason = reasonOf(yield* Fiber.join(fiber))
      assert.strictEqual(reason._tag, "Timeout")
      assert.strictEqual(reason._tag === "Timeout" ? reason.operation : "", "ipv4")
    }))

  it.effect("take per-call timeouts, and per-layer ones from TailscaleTimeouts when built", () =>
    Effect.gen(function*() {
      const { backend } = memoryBackend({ peerByName: () => new Promise(() => {}) })
      const service = yield* Tailscale.make(backend)
      const fiber = yield* Effect.forkChild(Effect.exit(service.peerByName("x", { timeout: "2 seconds" })))
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(reasonOf(yield* Fiber.join(fiber))._tag, "Timeout")
      const configured = yield* Tailscale.make(backend).pipe(
        Effect.provideService(TailscaleTimeouts, { ...defaults, netmap: "5 seconds" })
      )
      const other = yield* Effect.forkChild(Effect.exit(configured.peerByName("x")))
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(reasonOf(yield* Fiber.join(other))._tag, "Timeout")
    }))
})

describe("giving up on a wait", () => {
  it.effect("connecting: the backend owns the limit; one that ignores it is ended 2 s after it", () =>
    Effect.gen(function*() {
      const { backend } = memoryBackend()
      const hanging = { ...backend, connect: () => new Promise<never>(() => {}) }
      const fiber = yield* Effect.forkChild(Effect.exit(Effect.scoped(Tailscale.make(hanging))))
      yield* TestClock.adjust("31 seconds")
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust("1 second")
      const reason = reasonOf(yield* Fiber.join(fiber))
      assert.strictEqual(reason._tag === "Timeout" ? reason.operation : reason._tag, "connect")
    }))

  it.effect("a dial that times out closes the connection that arrives afterwards", () =>
    Effect.gen(function*() {
      const late = Promise.withResolvers<ReturnType<typeof scriptedStream>["stream"]>()
      const { backend } = memoryBackend({ tcpConnect: () => late.promise })
      const service = yield* Tailscale.make(backend)
      const fiber = yield* Effect.forkChild(Effect.exit(Effect.scoped(service.dial("100.64.0.1:7001"))))
      yield* TestClock.adjust("30 seconds")
      const reason = reasonOf(yield* Fiber.join(fiber))
      assert.strictEqual(reason._tag === "Timeout" ? reason.operation : reason._tag, "dial")
      const connection = scriptedStream()
      late.resolve(connection.stream)
      yield* Effect.promise(() => late.promise)
      assert.strictEqual(connection.closeCalls, 1)
    }))

  it.effect("an interrupted dial closes the connection that arrives afterwards", () =>
    Effect.gen(function*() {
      const late = Promise.withResolvers<ReturnType<typeof scriptedStream>["stream"]>()
      const dialing = Promise.withResolvers<void>()
      const { backend } = memoryBackend({
        tcpConnect: () => {
          dialing.resolve()
          return late.promise
        }
      })
      const service = yield* Tailscale.make(backend)
      const fiber = yield* Effect.forkChild(Effect.scoped(service.dial({ ip: "100.64.0.1", port: 7001 })))
      yield* Effect.promise(() => dialing.promise)
      yield* Fiber.interrupt(fiber)
      const connection = scriptedStream()
      late.resolve(connection.stream)
      yield* Effect.promise(() => late.promise)
      assert.strictEqual(connection.closeCalls, 1)
    }))

  it.effect("an accept takes its per-call limit", () =>
    Effect.gen(function*() {
      const listener: RawTcpListener = {
        accept: () => new Promise(() => {}),
        localAddress: { ip: "100.64.0.2", port: 9000 },
        close: () => {}
      }
      const { backend } = memoryBackend({ tcpListen: async () => listener })
      const service = yield* Tailscale.make(backend)
      const bound = yield* service.listen(9000).pipe(Scope.provide(yield* Scope.make()))
      const fiber = yield* Effect.forkChild(Effect.exit(Effect.scoped(bound.accept({ timeout: "3 seconds" }))))
      yield* TestClock.adjust("3 seconds")
      const reason = reasonOf(yield* Fiber.join(fiber))
      assert.strictEqual(reason._tag === "Timeout" ? reason.operation : reason._tag, "accept")
    }))

  it.effect("the device shuts down when the program using it is interrupted", () =>
    Effect.gen(function*() {
      const { backend, calls } = memoryBackend({ ipv4: () => new Promise(() => {}) })
      const fiber = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
        const service = yield* Tailscale.make(backend)
        return yield* service.ipv4
      })))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(fiber)
      // Interrupted while connecting, the device is shut down when it arrives.
      for (let turn = 0; turn < 10 && calls.shutdown === 0; turn++) {
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      }
      assert.strictEqual(calls.shutdown, 1)
      assert.strictEqual(calls.unsubscribed, 1)
    }))
})

describe("logs", () => {
  it.effect("arrive as Effect log records with their fields", () =>
    Effect.gen(function*() {
      const { backend } = memoryBackend({}, [
        { level: "WARN", target: "ts_runtime::x", message: "careful", fields: { peer: "a" } }
      ])
      const messages: Array<unknown> = []
      const { Logger, References } = yield* Effect.promise(() => import("effect"))
      const capture = Logger.make((options) => {
        const annotations = options.fiber.getRef(References.CurrentLogAnnotations)
        messages.push({ message: options.message, level: options.logLevel, annotations })
      })
      yield* Effect.scoped(Tailscale.make(backend, { logFilter: "warn" })).pipe(
        Effect.provide(Logger.layer([capture]))
      )
      assert.deepStrictEqual(messages, [
        { message: ["careful"], level: "Warn", annotations: { peer: "a", target: "ts_runtime::x" } }
      ])
    }))
})

describe("tracing", () => {
  it.effect("public operations run in spans named Tailscale.<operation>", () =>
    Effect.gen(function*() {
      const names: Array<string> = []
      const tracer = Tracer.make({
        span(options) {
          names.push(options.name)
          return new Tracer.NativeSpan(options)
        }
      })
      const { backend } = memoryBackend()
      yield* Effect.scoped(Effect.gen(function*() {
        const service = yield* Tailscale.make(backend)
        yield* service.ipv4
        yield* service.ipv6
        yield* service.self
        yield* service.authState
        yield* service.peerByName("echo-peer")
        yield* service.peerByIp("100.64.0.1")
        yield* service.peersWithRoute("100.64.0.1")
        yield* service.dial("100.64.0.1:7001")
        yield* service.shutdown
      })).pipe(Effect.provideService(Tracer.Tracer, tracer))
      assert.deepStrictEqual(names, [
        "Tailscale.connect",
        "Tailscale.ipv4",
        "Tailscale.ipv6",
        "Tailscale.self",
        "Tailscale.authState",
        "Tailscale.peerByName",
        "Tailscale.peerByIp",
        "Tailscale.peersWithRoute",
        "Tailscale.dial",
        "Tailscale.shutdown"
      ])
    }))
})
