/** The harness process on its own: built when missing, started, stopped without leaving a process or a file behind. */
import { existsSync } from "node:fs"
import { mkdtemp, readdir, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { startHarness } from "../src/HarnessProcess.ts"

const isRunning = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("HarnessProcess", () => {
  it("builds the harness when its binary is missing, starts it, and stops it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "harness-build-"))
    try {
      const binary = join(dir, "tailnet-harness")
      // The harness's own temporary files go here, so the test can see that none are left.
      const temp = await mkdtemp(join(tmpdir(), "harness-temp-"))
      const savedTemp = process.env.TMPDIR
      process.env.TMPDIR = temp
      const harness = await startHarness({ binary }).finally(() => {
        if (savedTemp === undefined) delete process.env.TMPDIR
        else process.env.TMPDIR = savedTemp
      })
      expect(existsSync(binary)).toBe(true)
      const ready = harness.ready as {
        controlUrl: string
        plainControlUrl: string
        caFile: string
        adminUrl: string
        peer: { hostname: string }
      }
      expect(ready.controlUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
      expect(ready.plainControlUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
      expect(ready.caFile.startsWith(temp)).toBe(true)
      expect(ready.peer.hostname).toBe("echo-peer")
      const peers = await fetch(new URL("/peers", ready.adminUrl))
      expect(peers.ok).toBe(true)
      const pid = harness.pid
      expect(await readdir(temp)).toHaveLength(1)
      await harness.stop()
      expect(isRunning(pid)).toBe(false)
      expect(await readdir(temp)).toEqual([])
      await rm(temp, { recursive: true, force: true })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }, 300_000)
})
