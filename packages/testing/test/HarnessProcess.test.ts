/**
 * The harness process on its own: built when missing, started, stopped without leaving a
 * process, a file, a network namespace or an interface behind.
 */
import { execFileSync } from "node:child_process"
import { existsSync } from "node:fs"
import { chmod, mkdtemp, readdir, rm } from "node:fs/promises"
import { networkInterfaces, tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { startHarness } from "../src/HarnessProcess.ts"

const namespaces = () => existsSync("/run/netns") ? readdir("/run/netns") : Promise.resolve([])

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
      await chmod(temp, 0o1777) // as /tmp is
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
      // A device run as another user (here: nobody) can read the CA file.
      const asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups", "cat", ready.caFile]
      expect(execFileSync("setpriv", asNobody, { encoding: "utf8" })).toMatch(/^-----BEGIN CERTIFICATE-----/)
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

  it("lan: the harness runs in a namespace of its own on a veth pair, and stop removes both", async () => {
    const harness = await startHarness({ topology: "lan" })
    const lan = harness.lan!
    expect(lan.namespace).toMatch(new RegExp(`^ts-lab-${process.pid}-\\d+$`))
    expect(lan.harnessAddress).toMatch(/^10\.77\.\d+\.1$/)
    expect(lan.deviceAddress).toBe(lan.harnessAddress.replace(/\.1$/, ".2"))
    expect(await namespaces()).toContain(lan.namespace)
    // Our end of the pair carries the device address, IPv4 only.
    expect(networkInterfaces()[lan.interfaceName]?.map((address) => address.address)).toEqual([lan.deviceAddress])
    const ready = harness.ready as { controlUrl: string; adminUrl: string }
    expect(ready.controlUrl).toMatch(new RegExp(`^https://${lan.harnessAddress.replaceAll(".", "\\.")}:\\d+$`))
    expect((await fetch(new URL("/peers", ready.adminUrl))).ok).toBe(true)
    await harness.stop()
    expect(isRunning(harness.pid)).toBe(false)
    expect(await namespaces()).not.toContain(lan.namespace)
    expect(networkInterfaces()[lan.interfaceName]).toBeUndefined()
  }, 120_000)

  it("lan: a harness that exits before it is ready leaves no namespace behind", async () => {
    const before = await namespaces()
    await expect(startHarness({ topology: "lan", args: ["-no-such-flag"] })).rejects.toThrow(
      /exited before it was ready/
    )
    expect(await namespaces()).toEqual(before)
    expect(Object.keys(networkInterfaces()).filter((name) => name.startsWith("tslab"))).toEqual([])
  }, 120_000)

  it("lan: without `ip` on PATH it fails, naming iproute2", async () => {
    const empty = await mkdtemp(join(tmpdir(), "no-ip-"))
    const savedPath = process.env.PATH
    process.env.PATH = empty
    try {
      await expect(startHarness({ topology: "lan" })).rejects.toThrow(/needs `ip` from iproute2/)
    } finally {
      process.env.PATH = savedPath
      await rm(empty, { recursive: true, force: true })
    }
  })
})
