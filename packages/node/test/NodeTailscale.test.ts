import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as NativeBackend from "../src/NativeBackend.ts"
import * as NodeTailscale from "../src/NodeTailscale.ts"

describe("NodeTailscale", () => {
  it.effect("reads TS_AUTH_KEY (redacted), TS_CONTROL_URL, TS_HOSTNAME, TS_KEY_FILE, TS_EPHEMERAL, RUST_LOG and SSL_CERT_FILE", () =>
    Effect.gen(function*() {
      const options = yield* NodeTailscale.fromEnv.pipe(
        Effect.provideService(
          ConfigProvider.ConfigProvider,
          ConfigProvider.fromEnv({
            env: {
              TS_AUTH_KEY: "tskey-auth-123",
              TS_CONTROL_URL: "https://control.example/",
              TS_HOSTNAME: "worker-1",
              TS_KEY_FILE: "/var/lib/app/keys.json",
              TS_EPHEMERAL: "true",
              RUST_LOG: "info,ts_runtime=debug",
              SSL_CERT_FILE: "/etc/ssl/private-ca.pem"
            }
          })
        )
      )
      assert.isTrue(Redacted.isRedacted(options.authKey))
      assert.strictEqual(Redacted.value(options.authKey!), "tskey-auth-123")
      assert.strictEqual(String(options.authKey), "<redacted>")
      assert.strictEqual(options.controlUrl, "https://control.example/")
      assert.strictEqual(options.hostname, "worker-1")
      assert.strictEqual(options.keyFile, "/var/lib/app/keys.json")
      assert.strictEqual(options.ephemeral, true)
      assert.strictEqual(options.logFilter, "info,ts_runtime=debug")
      assert.strictEqual(options.caFile, "/etc/ssl/private-ca.pem")
    }))

  it.effect("generateKeyState: a redacted, fresh identity each time, with every key a key file holds", () =>
    Effect.gen(function*() {
      const first = yield* NodeTailscale.generateKeyState
      const second = yield* NodeTailscale.generateKeyState
      assert.strictEqual(String(first), "<redacted>")
      assert.notStrictEqual(Redacted.value(first), Redacted.value(second))
      const keys = JSON.parse(Redacted.value(first)) as Record<string, unknown>
      // The same fields as a key file the addon writes.
      const native = yield* NativeBackend.load()
      const dir = mkdtempSync(join(tmpdir(), "keys-"))
      const fromFile = JSON.parse(
        yield* Effect.promise(() => native.loadKeyFile(join(dir, "keys.json"))).pipe(
          Effect.ensuring(Effect.sync(() => rmSync(dir, { recursive: true })))
        )
      ) as Record<string, unknown>
      assert.deepStrictEqual(Object.keys(keys).sort(), Object.keys(fromFile).sort())
    }))

  it.effect("leaves every option unset when the environment has none", () =>
    Effect.gen(function*() {
      const options = yield* NodeTailscale.fromEnv.pipe(
        Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env: {} }))
      )
      assert.deepStrictEqual(Object.values(options).filter((value) => value !== undefined), [])
    }))

  it.effect("says which addon build is loaded (the workspace's debug build here; npm ships release)", () =>
    Effect.gen(function*() {
      const build = yield* NativeBackend.buildInfo()
      assert.deepStrictEqual(build, { tailscaleCrate: "0.6.1", version: "0.1.0", profile: "debug" })
    }))

  it.effect("a missing addon is NativeUnavailable, saying what to do", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(NativeBackend.load("@effect-tailscale/native-does-not-exist"))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? Option.getOrThrow(Exit.findErrorOption(exit)) : undefined
      assert.strictEqual(error?.reason._tag, "NativeUnavailable")
      assert.include(error?.reason.message ?? "", "build it from source")
    }))
})
