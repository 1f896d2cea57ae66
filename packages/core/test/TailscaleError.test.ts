import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { backendError } from "../src/Backend.ts"
import * as Tailscale from "../src/Tailscale.ts"
import { isTailscaleError } from "../src/TailscaleError.ts"
import { reasonOf } from "./helpers.ts"
import { memoryBackend, rawNode } from "./memoryBackend.ts"

describe("errors from the backend", () => {
  it.effect.each(
    [
      ["KEY_FILE", "KeyFile", false],
      ["INVALID_ARGUMENT", "InvalidArgument", false],
      ["CONTROL_UNREACHABLE", "ControlUnreachable", true],
      ["NOT_AUTHORIZED", "NotAuthorized", false],
      ["TIMEOUT", "Timeout", true],
      ["CONNECTION_REFUSED", "ConnectionRefused", true],
      ["CONNECTION_RESET", "ConnectionReset", true],
      ["ADDRESS_IN_USE", "AddressInUse", false],
      ["MESSAGE_TOO_LARGE", "MessageTooLarge", false],
      ["DEVICE_CLOSED", "DeviceClosed", false],
      ["INTERNAL", "Internal", false]
    ] as const
  )("%s becomes the %s reason", ([code, tag, retryable]) =>
    Effect.gen(function*() {
      const { backend } = memoryBackend({
        peerByName: async () => {
          throw backendError(code, "peerByName", "something happened")
        }
      })
      const service = yield* Tailscale.make(backend)
      const exit = yield* Effect.exit(service.peerByName("echo-peer"))
      const reason = reasonOf(exit)
      assert.strictEqual(reason._tag, tag)
      assert.strictEqual(reason.message, "peerByName: something happened")
      assert.strictEqual(reason.isRetryable, retryable)
    }))

  it.effect("the field and the operation are the error's subject, not read from its message", () =>
    Effect.gen(function*() {
      const failing = (code: string, subject: string) =>
        memoryBackend({
          peerByName: async () => {
            throw Object.assign(new Error("INVALID_ARGUMENT: name: a message that says otherwise"), { code, subject })
          }
        }).backend
      const invalid = reasonOf(
        yield* Effect.exit((yield* Tailscale.make(failing("INVALID_ARGUMENT", "port"))).peerByName("echo-peer"))
      )
      assert.strictEqual(invalid._tag, "InvalidArgument")
      assert.strictEqual(invalid._tag === "InvalidArgument" ? invalid.field : undefined, "port")
      assert.strictEqual(invalid.message, "name: a message that says otherwise")
      const timeout = reasonOf(
        yield* Effect.exit((yield* Tailscale.make(failing("TIMEOUT", "connect"))).peerByName("echo-peer"))
      )
      assert.strictEqual(timeout._tag === "Timeout" ? timeout.operation : undefined, "connect")
    }))

  it.effect.each(
    [
      ["a message in the grammar without code and subject", new Error("INVALID_ARGUMENT: port: must be 1..65535")],
      ["an unknown code", Object.assign(new Error("ENOENT: no such file"), { code: "ENOENT", subject: "open" })],
      ["a code without a subject", Object.assign(new Error("TIMEOUT: connect: timed out"), { code: "TIMEOUT" })],
      ["a plain object with code and subject", { code: "TIMEOUT", subject: "connect", message: "timed out" }]
    ] as const
  )("%s is Internal", ([_, error]) =>
    Effect.gen(function*() {
      const { backend } = memoryBackend({
        peerByName: async () => {
          throw error
        }
      })
      const service = yield* Tailscale.make(backend)
      const reason = reasonOf(yield* Effect.exit(service.peerByName("echo-peer")))
      assert.strictEqual(reason._tag, "Internal")
      assert.strictEqual(reason._tag === "Internal" ? reason.cause : undefined, error)
    }))

  it.effect("an unrecognised rejection is Internal, keeping the original as its cause", () =>
    Effect.gen(function*() {
      const original = new TypeError("weird")
      const { backend } = memoryBackend({
        ipv4: async () => {
          throw original
        }
      })
      const service = yield* Tailscale.make(backend)
      const reason = reasonOf(yield* Effect.exit(service.ipv4))
      assert.strictEqual(reason._tag, "Internal")
      assert.strictEqual(reason._tag === "Internal" ? reason.cause : undefined, original)
    }))

  it.effect("is handled by reason with Effect.catchReason", () =>
    Effect.gen(function*() {
      const { backend } = memoryBackend({
        tcpConnect: async () => {
          throw backendError("CONNECTION_REFUSED", "TCP connect", "refused")
        }
      })
      const service = yield* Tailscale.make(backend)
      const result = yield* service.dial("100.64.0.1:7001").pipe(
        Effect.as("connected"),
        Effect.catchReason("TailscaleError", "ConnectionRefused", (reason) => Effect.succeed(reason.message))
      )
      assert.strictEqual(result, "TCP connect: refused")
    }))

  it.effect("a node that does not decode is Internal and names the field", () =>
    Effect.gen(function*() {
      const { backend } = memoryBackend({ selfNode: async () => rawNode({ tailnetIpv4: "100.64.0.300/32" }) })
      const service = yield* Tailscale.make(backend)
      const reason = reasonOf(yield* Effect.exit(service.self))
      assert.strictEqual(reason._tag, "Internal")
      assert.include(reason.message, "tailnetIpv4")
    }))
})

describe("isTailscaleError", () => {
  it.effect("tells the service's failures from other values", () =>
    Effect.gen(function*() {
      const { backend } = memoryBackend({
        peerByName: async () => {
          throw backendError("TIMEOUT", "peerByName", "too slow")
        }
      })
      const service = yield* Tailscale.make(backend)
      const failure = yield* Effect.flip(service.peerByName("echo-peer"))
      assert.isTrue(isTailscaleError(failure))
      assert.isFalse(isTailscaleError(new Error("TIMEOUT: not ours")))
      assert.isFalse(isTailscaleError({ _tag: "TailscaleError" }))
      assert.isFalse(isTailscaleError(undefined))
    }))
})
