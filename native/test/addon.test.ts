import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import type * as Native from "../index.js"

const native = createRequire(import.meta.url)("../index.js") as typeof Native

/** A failure as the addon reports it: an `Error` with `code` and `subject` as own properties. */
interface Failure {
  readonly code: Native.ErrorCode
  readonly subject: string
  readonly message: string
}

const failure = (error: unknown): Failure => {
  expect(error).toBeInstanceOf(Error)
  expect(Object.hasOwn(error as Error, "code") && Object.hasOwn(error as Error, "subject")).toBe(true)
  const { code, subject, message } = error as Error & Failure
  return { code, subject, message }
}

const rejection = async (promise: Promise<unknown>): Promise<Failure> => {
  try {
    await promise
  } catch (error) {
    return failure(error)
  }
  throw new Error("expected a rejection")
}

const thrown = (f: () => unknown): Failure => {
  try {
    f()
  } catch (error) {
    return failure(error)
  }
  throw new Error("expected an error")
}

const tempDirs: Array<string> = []
const tempDir = async () => {
  const dir = await mkdtemp(join(tmpdir(), "ts-native-test-"))
  tempDirs.push(dir)
  return dir
}
afterAll(() => Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true }))))

describe("addon without a tailnet", () => {
  it("says which build it is", () => {
    // Tests load the workspace's debug build; the npm packages ship the release build.
    expect(native.buildInfo()).toEqual({ tailscaleCrate: "0.6.1", version: "0.1.0", profile: "debug" })
  })

  it("refuses plain-http control, pointing at https and caFile", async () => {
    expect(await rejection(native.Device.connect({ controlUrl: "http://127.0.0.1:9", hostname: "plain" })))
      .toEqual({
        code: "INVALID_ARGUMENT",
        subject: "controlUrl",
        message: expect.stringMatching(
          /^INVALID_ARGUMENT: controlUrl: plain http is not supported: use https \(trust a private CA with caFile\)/
        )
      })
  })

  it("loads a key file written by the previous release with the same keys", async () => {
    const fixtures = join(import.meta.dirname, "fixtures")
    const keyFile = join(await tempDir(), "keys.json")
    await writeFile(keyFile, await readFile(join(fixtures, "key-file-0.5.json")), { mode: 0o600 })
    const expected = JSON.parse(await readFile(join(fixtures, "key-file-0.5.public.json"), "utf8"))
    expect(native.publicKeys(await native.loadKeyFile(keyFile))).toEqual(expected)
  })

  it.each([
    [{ controlUrl: "not a url" }, "controlUrl"],
    [{ controlUrl: "ftp://127.0.0.1/" }, "controlUrl"],
    [{ hostname: "bad host" }, "hostname"],
    [{ hostname: "-x" }, "hostname"],
    [{ tags: ["tag:ok", "server"] }, "tags[1]"],
    [{ authKey: "" }, "authKey"],
    [{ clientName: "" }, "clientName"],
    [{ keyState: "{}" }, "keyState"],
    [{ connectTimeoutMs: -5 }, "connectTimeoutMs"]
  ])("rejects %j naming %s", async (options, field) => {
    const { code, subject, message } = await rejection(native.Device.connect(options))
    expect({ code, subject }).toEqual({ code: "INVALID_ARGUMENT", subject: field })
    expect(message.startsWith(`INVALID_ARGUMENT: ${field}: `)).toBe(true)
  })

  it("never echoes an auth key", async () => {
    const { subject, message } = await rejection(native.Device.connect({ authKey: "tskey-auth-secret 1" }))
    expect(subject).toBe("authKey")
    expect(message).toMatch(/^INVALID_ARGUMENT: authKey: /)
    expect(message).not.toContain("secret")
  })

  it("reports a control URL nobody listens on as unreachable, quickly", async () => {
    const started = Date.now()
    const { code, subject, message } = await rejection(
      native.Device.connect({ controlUrl: "https://127.0.0.1:9", hostname: "nobody", connectTimeoutMs: 10_000 })
    )
    expect({ code, subject }).toEqual({ code: "CONTROL_UNREACHABLE", subject: "connect" })
    expect(message).toMatch(/^CONTROL_UNREACHABLE: connect: .*127\.0\.0\.1:9/)
    expect(Date.now() - started).toBeLessThan(10_000)
  })

  it("creates a missing key file with mode 0600 and reloads the same keys", async () => {
    const path = join(await tempDir(), "nested", "keys.json")
    const created = await native.loadKeyFile(path)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    const loaded = await native.loadKeyFile(path)
    expect(loaded).toBe(created)
    expect(JSON.parse(await readFile(path, "utf8"))).toEqual(JSON.parse(created))
  })

  it("leaves a corrupt key file untouched and says so", async () => {
    const path = join(await tempDir(), "keys.json")
    const corrupt = Buffer.from("{\"key_state\":{\"node_key\":\"privkey:0011\"")
    await writeFile(path, corrupt)
    await chmod(path, 0o640)
    const { code, subject, message } = await rejection(native.loadKeyFile(path))
    expect({ code, subject }).toEqual({ code: "KEY_FILE", subject: "key file" })
    expect(message).toMatch(/^KEY_FILE: key file: .* left untouched/)
    expect(message).not.toContain("privkey:0011")
    expect(await rejection(native.Device.connect({ keyFile: path, hostname: "demo" }))).toMatchObject({
      code: "KEY_FILE"
    })
    expect(await readFile(path)).toEqual(corrupt)
    expect((await stat(path)).mode & 0o777).toBe(0o640)
  })

  it("replaces a corrupt key file only when asked, keeping the old bytes", async () => {
    const dir = await tempDir()
    const path = join(dir, "keys.json")
    await writeFile(path, "garbage")
    const state = await native.loadKeyFile(path, true)
    expect(await readFile(join(dir, "keys.json.invalid"), "utf8")).toBe("garbage")
    expect((await stat(join(dir, "keys.json.invalid"))).mode & 0o777).toBe(0o600)
    expect(await readFile(path, "utf8")).toBe(state)
  })

  it("round-trips key state and shows only public keys", () => {
    const state = native.generateKeyState()
    const parsed = JSON.parse(state) as { key_state: Record<string, string> }
    expect(Object.keys(parsed.key_state).sort()).toEqual(["machine_key", "network_lock_key", "node_key"])
    const keys = native.publicKeys(state)
    expect(keys.nodeKey).toMatch(/^nodekey:[0-9a-f]{64}$/)
    expect(keys.machineKey).toMatch(/^mkey:[0-9a-f]{64}$/)
    expect(keys.networkLockKey).toMatch(/^nlpub:[0-9a-f]{64}$/)
    expect(native.publicKeys(state)).toEqual(keys)
    expect(JSON.stringify(keys)).not.toContain(parsed.key_state.node_key!.slice(8))
    expect(native.publicKeys(native.generateKeyState()).nodeKey).not.toBe(keys.nodeKey)
  })

  it("throws from a synchronous call as it rejects: code and subject as data", () => {
    expect(thrown(() => native.subscribeLogs("info,=[", () => {}))).toEqual({
      code: "INVALID_ARGUMENT",
      subject: "filter",
      message: expect.stringMatching(/^INVALID_ARGUMENT: filter: not a RUST_LOG-style filter/)
    })
    expect(thrown(() => native.publicKeys("{}"))).toMatchObject({ code: "INVALID_ARGUMENT", subject: "keyState" })
  })
})
