import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as Tailscale from "../src/Tailscale.ts"
import { bytes, reasonOf, text } from "./helpers.ts"
import { memoryBackend, scriptedStream } from "./memoryBackend.ts"

describe("TCP streams", () => {
  it.effect("read, write and end of stream", () =>
    Effect.gen(function*() {
      const script = scriptedStream()
      const { backend } = memoryBackend({ tcpConnect: async () => script.stream })
      const service = yield* Tailscale.make(backend)
      const stream = yield* service.dial({ peer: "echo-peer", port: 7001 })
      yield* stream.write("hi")
      yield* stream.writeAll([bytes("a"), "b"])
      assert.deepStrictEqual(script.written.map(text), ["hi", "a", "b"])
      script.answer(0, bytes("one"))
      script.answer(1, null)
      assert.strictEqual(text(Option.getOrThrow(yield* stream.read())), "one")
      assert.isTrue(Option.isNone(yield* stream.read()))
    }))

  it.effect("an interrupted read loses nothing: the next read gets the data", () =>
    Effect.gen(function*() {
      const script = scriptedStream()
      const { backend } = memoryBackend({ tcpConnect: async () => script.stream })
      const service = yield* Tailscale.make(backend)
      const stream = yield* service.dial("100.64.0.1:7001")
      const first = yield* Effect.forkChild(stream.read())
      yield* Effect.yieldNow
      yield* Fiber.interrupt(first)
      script.answer(0, bytes("kept"))
      assert.strictEqual(text(Option.getOrThrow(yield* stream.read())), "kept")
      assert.strictEqual(script.readCalls, 1, "the interrupted call was reused, not repeated")
    }))

  it.effect("a read times out without losing the chunk that arrives later", () =>
    Effect.gen(function*() {
      const script = scriptedStream()
      const { backend } = memoryBackend({ tcpConnect: async () => script.stream })
      const service = yield* Tailscale.make(backend)
      const stream = yield* service.dial("100.64.0.1:7001")
      const fiber = yield* Effect.forkChild(Effect.exit(stream.read({ timeout: "1 second" })))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(reasonOf(yield* Fiber.join(fiber))._tag, "Timeout")
      script.answer(0, bytes("late"))
      assert.strictEqual(text(Option.getOrThrow(yield* stream.read())), "late")
    }))

  it.effect("is a Stream of chunks that ends at end of stream", () =>
    Effect.gen(function*() {
      const script = scriptedStream()
      const { backend } = memoryBackend({ tcpConnect: async () => script.stream })
      const service = yield* Tailscale.make(backend)
      const stream = yield* service.dial("100.64.0.1:7001")
      script.answer(0, bytes("a"))
      script.answer(1, bytes("b"))
      script.answer(2, null)
      const chunks = yield* Stream.runCollect(stream.stream)
      assert.deepStrictEqual(chunks.map(text), ["a", "b"])
    }))

  it.effect("closes once when its scope closes, and fails later calls with DeviceClosed", () =>
    Effect.gen(function*() {
      const script = scriptedStream()
      const { backend } = memoryBackend({ tcpConnect: async () => script.stream })
      const service = yield* Tailscale.make(backend)
      const scope = yield* Scope.make()
      const stream = yield* service.dial("100.64.0.1:7001").pipe(Scope.provide(scope))
      yield* stream.close
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(script.closeCalls, 1)
      assert.strictEqual(reasonOf(yield* Effect.exit(stream.read()))._tag, "DeviceClosed")
      assert.strictEqual(reasonOf(yield* Effect.exit(stream.write("x")))._tag, "DeviceClosed")
    }))

  it.effect.each(
    [
      ["300.1.1.1:80", "not an IPv4 address"],
      ["fd7a:115c:a1e0::1:80", "needs brackets"],
      ["[fe80::1%lo]:7001", "scoped"],
      ["[not-ip]:80", "not an IPv6 address"],
      ["bad_name!:80", "neither an IP address nor a peer's DNS name"]
    ] as const
  )("dial(%j) is InvalidArgument saying what is wrong, before any lookup", ([target, why]) =>
    Effect.gen(function*() {
      const { backend, calls } = memoryBackend()
      const service = yield* Tailscale.make(backend)
      const reason = reasonOf(yield* Effect.exit(Effect.scoped(service.dial(target as `${string}:${number}`))))
      assert.strictEqual(reason._tag, "InvalidArgument")
      assert.include(reason.message, why)
      assert.notInclude(calls.device, "peerByName")
    }))

  it.effect("dialing an unknown peer name is InvalidArgument naming the peer", () =>
    Effect.gen(function*() {
      const { backend, calls } = memoryBackend()
      const service = yield* Tailscale.make(backend)
      const reason = reasonOf(yield* Effect.exit(Effect.scoped(service.dial("ghost:80"))))
      assert.strictEqual(reason._tag, "InvalidArgument")
      assert.include(reason.message, "ghost")
      assert.notInclude(calls.device, "tcpConnect")
    }))
})
