import { Tailscale } from "@effect-tailscale/core/Tailscale"
import * as FakeTailnet from "@effect-tailscale/testing/FakeTailnet"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"

// The program under test: asks the "db" peer for its version.
const dbVersion = Effect.gen(function*() {
  const tailscale = yield* Tailscale
  const stream = yield* tailscale.dial("db:5432")
  yield* stream.write("VERSION\n")
  const reply = yield* stream.read()
  return Option.match(reply, { onNone: () => "no answer", onSome: (bytes) => new TextDecoder().decode(bytes) })
})

// A fake "db" peer on the same in-memory tailnet, answering one line per connection.
const FakeDb = Layer.effectDiscard(Effect.gen(function*() {
  const tailnet = yield* FakeTailnet.FakeTailnet
  const db = yield* tailnet.addDevice({ hostname: "db" })
  const listener = yield* db.listen(5432)
  yield* Effect.forkScoped(Effect.forever(Effect.scoped(Effect.gen(function*() {
    const connection = yield* listener.accept()
    yield* connection.read()
    yield* connection.write("fakedb 1.0")
  }))))
}))

const TestTailnet = Layer.mergeAll(FakeTailnet.device({ hostname: "app" }), FakeDb).pipe(
  Layer.provide(FakeTailnet.layer({ seed: 42 }))
)

layer(TestTailnet)("dbVersion", (it) => {
  it.effect("asks the db peer over the tailnet", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* Effect.scoped(dbVersion), "fakedb 1.0")
    }))
})
