/** The README's example is the file examples/readme.ts, and running it prints what the README says. */
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { execFile } from "node:child_process"
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { promisify } from "node:util"
import { LocalTailnet, layer as localTailnet } from "../src/LocalTailnet.ts"

const root = join(import.meta.dirname, "..", "..", "..")

const block = (readme: string, marker: string) => {
  const match = new RegExp(`<!-- ${marker}: examples/readme.ts -->\\n\`\`\`[a-z]*\\n([\\s\\S]*?)\`\`\``).exec(readme)
  if (match === null) throw new Error(`README has no ${marker} block for examples/readme.ts`)
  return match[1]!
}

describe("README", () => {
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
