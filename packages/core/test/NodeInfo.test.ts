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
      assert.deepStrictEqual((yield* decodeNodeInfo(rawNode({ status: { _tag: "Online" } }))).status, {
        _tag: "Online"
      })
      assert.deepStrictEqual((yield* decodeNodeInfo(rawNode({ status: { _tag: "Unknown" } }))).status, {
        _tag: "Unknown"
      })
      const offline = (yield* decodeNodeInfo(rawNode({
        status: { _tag: "Offline", lastSeenControl: "2026-01-01T00:00:00Z", lastSeenEstimated: "2026-01-01T00:04:00Z" }
      }))).status
      assert.strictEqual(offline._tag, "Offline")
      if (offline._tag !== "Offline") return
      assert.strictEqual(DateTime.formatIso(Option.getOrThrow(offline.lastSeenControl)), "2026-01-01T00:00:00.000Z")
      assert.strictEqual(DateTime.formatIso(offline.lastSeenEstimated), "2026-01-01T00:04:00.000Z")
      const neverSeenByControl = (yield* decodeNodeInfo(rawNode({
        status: { _tag: "Offline", lastSeenEstimated: "2026-01-01T00:04:00Z" }
      }))).status
      assert.isTrue(neverSeenByControl._tag === "Offline" && Option.isNone(neverSeenByControl.lastSeenControl))
      const bad = yield* Effect.exit(decodeNodeInfo(rawNode({ status: { _tag: "Asleep" } as never })))
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
      const changed = yield* decode(rawNode({ status: { _tag: "Offline", lastSeenEstimated: "2026-01-01T00:00:00Z" } }))
      assert.notStrictEqual(changed, first)
      assert.strictEqual(changed.status._tag, "Offline")
      yield* decode(rawNode({ hostname: "third" }))
      assert.notStrictEqual(yield* decode(rawNode()), first, "the oldest entry was evicted at capacity 2")
    }))
})

describe("user identity", () => {
  it.effect("a node owned by a user decodes its profile; a tagged node has none", () =>
    Effect.gen(function*() {
      const { decodeNodeInfo } = yield* Effect.promise(() => import("../src/internal/nodeDecoding.ts"))
      const owned = yield* decodeNodeInfo(rawNode({ user: { id: 7, loginName: "alice@example.com" } }))
      const user = Option.getOrThrow(owned.user)
      assert.strictEqual(user.id, 7)
      assert.strictEqual(user.loginName, "alice@example.com")
      assert.isTrue(Option.isNone(user.displayName))
      assert.isFalse(owned.isTagged)
      const tagged = yield* decodeNodeInfo(rawNode({ tags: ["tag:server"] }))
      assert.isTrue(Option.isNone(tagged.user))
      assert.isTrue(tagged.isTagged)
    }))
})

describe("capabilities", () => {
  it.effect("values decode with the caller's Schema; a value that does not is InvalidCapability", () =>
    Effect.gen(function*() {
      const { decodeWhoIs } = yield* Effect.promise(() => import("../src/Caller.ts"))
      const Schema = yield* Effect.promise(() => import("effect/Schema"))
      const caller = yield* decodeWhoIs({
        node: rawNode({ nodeCapabilities: { "example.com/cap/level": ["3"] } }),
        appCapabilities: { "example.com/cap/files": ["{\"shares\":[\"docs\"]}"], "example.com/cap/flag": [] }
      })
      assert.isTrue(caller.hasCapability("example.com/cap/flag"))
      assert.isTrue(caller.hasCapability("example.com/cap/level"))
      assert.isFalse(caller.hasCapability("example.com/cap/none"))
      const Files = Schema.Struct({ shares: Schema.Array(Schema.String) })
      assert.deepStrictEqual(yield* caller.capability("example.com/cap/files", Files), [{ shares: ["docs"] }])
      assert.deepStrictEqual(yield* caller.capability("example.com/cap/level", Schema.Number), [3])
      assert.deepStrictEqual(yield* caller.capability("example.com/cap/none", Files), [])
      const wrong = yield* Effect.exit(caller.capability("example.com/cap/files", Schema.Number))
      assert.strictEqual(reasonOf(wrong)._tag, "InvalidCapability")
      const notJson = yield* Effect.exit(decodeWhoIs({ node: rawNode(), appCapabilities: { "a": ["{not json"] } }))
      assert.strictEqual(reasonOf(notJson)._tag, "Internal")
    }))
})
