/** What the tests share to check that bytes arrived exact: hashes, and reading a stream to a size. */
import type { TcpStream } from "@effect-tailscale/core/TcpStream"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { createHash } from "node:crypto"

export const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex")

/** Reads `size` bytes (or until the stream ends), each read within 30 s: how many, and their hash. */
export const readExactly = (stream: TcpStream, size: number) =>
  Effect.gen(function*() {
    const hash = createHash("sha256")
    let bytes = 0
    while (bytes < size) {
      const chunk = yield* stream.read({ timeout: "30 seconds" })
      if (Option.isNone(chunk)) break
      hash.update(chunk.value)
      bytes += chunk.value.length
    }
    return { bytes, sha256: hash.digest("hex") }
  })
