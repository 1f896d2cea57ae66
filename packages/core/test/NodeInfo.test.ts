import { assert, describe, it } from "@effect/vitest"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { reasonOf } from "./helpers.ts"
import { rawNode } from "./memoryBackend.ts"

describe("NodeInfo status", () => {
  it.effect("is a tagged union: Online, Unknown, or Offline with when it was last seen", () =>
    Effect.gen(function*() {
      const { decodeNodeInfo } = yield* Effect.promise(() => import("../src/internal/nodeDecoding.ts"))
      assert.deepStrictEqual((yield* decodeNodeInfo(rawNode({ status: { kind: "online" } }))).status, {
        _tag: "Online"
      })
      assert.deepStrictEqual((yield* decodeNodeInfo(rawNode({ status: { kind: "unknown" } }))).status, {
        _tag: "Unknown"
      })
      const offline = (yield* decodeNodeInfo(rawNode({
        status: { kind: "offline", lastSeenControl: "2026-01-01T00:00:00Z", lastSeenEstimated: "2026-01-01T00:04:00Z" }
      }))).status
      assert.strictEqual(offline._tag, "Offline")
      if (offline._tag !== "Offline") return
      assert.strictEqual(DateTime.formatIso(Option.getOrThrow(offline.lastSeenControl)), "2026-01-01T00:00:00.000Z")
      assert.strictEqual(DateTime.formatIso(offline.lastSeenEstimated), "2026-01-01T00:04:00.000Z")
      const neverSeenByControl = (yield* decodeNodeInfo(rawNode({
        status: { kind: "offline", lastSeenEstimated: "2026-01-01T00:04:00Z" }
      }))).status
      assert.isTrue(neverSeenByControl._tag === "Offline" && Option.isNone(neverSeenByControl.lastSeenControl))
      const bad = yield* Effect.exit(decodeNodeInfo(rawNode({ status: { kind: "asleep" } as never })))
      assert.strictEqual(reasonOf(bad)._tag, "Internal")
    }))
})

describe("NodeInfo decoding cache", () => {
  it.effect("equal nodes decode once to the same value; a changed node decodes anew", () =>
    Effect.gen(function*() {
      const { cachedDecoder } = yield* Effect.promise(() => import("../src/internal/nodeDecoding.ts"))
      const decode = cachedDecoder(2)
      const first = yield* decode(rawNode())
      assert.strictEqual(yield* decode(rawNode()), first)
      const changed = yield* decode(rawNode({ status: { kind: "offline", lastSeenEstimated: "2026-01-01T00:00:00Z" } }))
      assert.notStrictEqual(changed, first)
      assert.strictEqual(changed.status._tag, "Offline")
      yield* decode(rawNode({ hostname: "third" }))
      assert.notStrictEqual(yield* decode(rawNode()), first, "the oldest entry was evicted at capacity 2")
    }))
})
