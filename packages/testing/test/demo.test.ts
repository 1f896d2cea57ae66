/** The demo `npm start` runs: on its own loopback tailnet, and on a tailnet given by TS_AUTH_KEY. */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { execFile } from "node:child_process"
import { join } from "node:path"
import { promisify } from "node:util"
import { layer as localTailnet, LocalTailnet } from "../src/LocalTailnet.ts"

const examples = join(import.meta.dirname, "..", "..", "..", "examples")

/** Runs the demo with `--json` and returns the object on its last line of output. */
const runDemo = async (env: NodeJS.ProcessEnv, args: ReadonlyArray<string> = []): Promise<Record<string, unknown>> => {
  const { stdout } = await promisify(execFile)(process.execPath, [join(examples, "demo.ts"), "--json", ...args], {
    cwd: examples,
    timeout: 90_000,
    env: { ...process.env, RUST_LOG: "off", ...env }
  })
  const lines = stdout.trim().split("\n")
  return JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>
}

const withoutTailnetEnv = {
  TS_AUTH_KEY: undefined,
  TS_CONTROL_URL: undefined,
  TS_HOSTNAME: undefined,
  SSL_CERT_FILE: undefined
}

describe("demo", () => {
  it("starts a loopback tailnet, talks TCP, UDP and HTTP with the Go peer, and reports it as JSON", async () => {
    const result = await runDemo(withoutTailnetEnv)
    assert.deepStrictEqual(Object.keys(result), [
      "ok",
      "ipv4",
      "ipv6",
      "peer",
      "topology",
      "path",
      "tcpEcho",
      "udpEcho",
      "httpFromPeer",
      "shutdownGraceful"
    ])
    assert.match(String(result.ipv4), /^100\.\d+\.\d+\.\d+$/)
    assert.match(String(result.ipv6), /^fd7a:115c:a1e0:/)
    assert.deepStrictEqual(result.peer, { name: "echo-peer", ipv4: "100.64.0.1" })
    assert.deepInclude(result, { ok: true, tcpEcho: true, udpEcho: true, httpFromPeer: true, shutdownGraceful: true })
    assert.strictEqual(result.topology, "loopback")
    assert.oneOf(result.path, ["Direct", "Relay"])
  }, 120_000)

  it("--topology nat: the device and the Go peer each behind a NAT, and traffic goes direct", async () => {
    const result = await runDemo(withoutTailnetEnv, ["--topology", "nat"])
    assert.deepInclude(result, { ok: true, topology: "nat", path: "Direct", tcpEcho: true, httpFromPeer: true })
  }, 120_000)

  layer(localTailnet(), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect(
      "joins the tailnet TS_AUTH_KEY and TS_CONTROL_URL name, and looks up its peer there",
      () =>
        Effect.gen(function*() {
          const tailnet = yield* LocalTailnet
          const result = yield* Effect.promise(() =>
            runDemo({
              TS_AUTH_KEY: tailnet.info.authKey,
              TS_CONTROL_URL: tailnet.info.controlUrl,
              SSL_CERT_FILE: tailnet.info.caFile,
              TS_HOSTNAME: "demo-env",
              TS_EPHEMERAL: "true"
            })
          )
          assert.deepStrictEqual(result.peer, { name: tailnet.info.peer.hostname, ipv4: tailnet.info.peer.ipv4 })
          assert.match(String(result.ipv4), /^100\./)
          assert.deepInclude(result, { ok: true, shutdownGraceful: true })
        }),
      120_000
    )
  })
})
