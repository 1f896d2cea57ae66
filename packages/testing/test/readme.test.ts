/** The README's example is the file examples/readme.ts, and running it prints what the README says. */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { execFile } from "node:child_process"
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { promisify } from "node:util"
import { layer as localTailnet, LocalTailnet } from "../src/LocalTailnet.ts"

const root = join(import.meta.dirname, "..", "..", "..")

const block = (readme: string, marker: string, file = "examples/readme.ts") => {
  const match = new RegExp(`<!-- ${marker}: ${file} -->\\n\`\`\`[a-z]*\\n([\\s\\S]*?)\`\`\``).exec(readme)
  if (match === null) throw new Error(`README has no ${marker} block for ${file}`)
  return match[1]!
}

describe("README", () => {
  // Each of these files runs as a test of its own; the README must show it as it is.
  for (
    const [what, file] of [
      ["the FakeTailnet example", "packages/testing/test/readme-fake.test.ts"],
      ["the HTTP client and caller identity example", "packages/testing/test/readme-tailnet-apps.test.ts"],
      ["the metrics example", "packages/testing/test/readme-metrics.test.ts"],
      ["the named devices example", "packages/testing/test/readme-named-devices.test.ts"],
      ["the paths and ping example", "packages/testing/test/readme-paths.test.ts"],
      ["the exit node example", "packages/testing/test/readme-exit-node.test.ts"]
    ] as const
  ) {
    it(`shows ${what} as it is`, async () => {
      const readme = await readFile(join(root, "README.md"), "utf8")
      assert.strictEqual(block(readme, "example", file), await readFile(join(root, file), "utf8"))
    })
  }

  layer(localTailnet(), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect("shows examples/readme.ts as it is, and its output", () =>
      Effect.gen(function*() {
        const tailnet = yield* LocalTailnet
        const readme = yield* Effect.promise(() => readFile(join(root, "README.md"), "utf8"))
        const source = yield* Effect.promise(() => readFile(join(root, "examples", "readme.ts"), "utf8"))
        assert.strictEqual(block(readme, "example"), source)
        const { stdout } = yield* Effect.promise(() =>
          promisify(execFile)(process.execPath, [join(root, "examples", "readme.ts")], {
            cwd: join(root, "examples"),
            timeout: 60_000,
            env: {
              ...process.env,
              TS_AUTH_KEY: tailnet.info.authKey,
              TS_CONTROL_URL: tailnet.info.controlUrl,
              SSL_CERT_FILE: tailnet.info.caFile,
              TS_HOSTNAME: "readme",
              TS_EPHEMERAL: "true",
              RUST_LOG: "off"
            }
          })
        )
        assert.strictEqual(stdout, block(readme, "output"))
      }))
  })
})
