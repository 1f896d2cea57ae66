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
import { adminRequest, startHarness } from "../src/HarnessProcess.ts"

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
      const ready = harness.ready
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
    const ready = harness.ready
    expect(ready.controlUrl).toMatch(new RegExp(`^https://${lan.harnessAddress.replaceAll(".", "\\.")}:\\d+$`))
    expect((await fetch(new URL("/peers", ready.adminUrl))).ok).toBe(true)
    await harness.stop()
    expect(isRunning(harness.pid)).toBe(false)
    expect(await namespaces()).not.toContain(lan.namespace)
    expect(networkInterfaces()[lan.interfaceName]).toBeUndefined()
  }, 120_000)

  it(
    "lan: stopped while UDP is blocked, it leaves no block for the next LAN, which takes its interface's name",
    async () => {
      const udpBlocks = () => execFileSync("nft", ["list", "tables"], { encoding: "utf8" })
      const first = await startHarness({ topology: "lan" })
      const name = first.lan!.interfaceName
      await first.blockUdp(true)
      expect(udpBlocks()).toContain(`${name}_udp`)
      await first.stop()
      expect(udpBlocks()).not.toContain(`${name}_udp`)
      const second = await startHarness({ topology: "lan" })
      try {
        expect(second.lan!.interfaceName).toBe(name)
        expect(udpBlocks()).not.toContain(`${name}_udp`)
      } finally {
        await second.stop()
      }
    },
    120_000
  )

  it("lan: a harness that exits before it is ready leaves no namespace behind", async () => {
    const before = await namespaces()
    await expect(startHarness({ topology: "lan", args: ["-no-such-flag"] })).rejects.toThrow(
      /exited before it was ready/
    )
    expect(await namespaces()).toEqual(before)
    expect(Object.keys(networkInterfaces()).filter((name) => name.startsWith("tslab"))).toEqual([])
  }, 120_000)

  it(
    "nat: the harness outside, the Go peer behind a router of its own, this namespace behind another; stop removes them all",
    async () => {
      // Every temporary file of the run (the harnesses' and the peer's admin socket) goes here.
      const temp = await mkdtemp(join(tmpdir(), "harness-temp-"))
      const savedTemp = process.env.TMPDIR
      process.env.TMPDIR = temp
      const harness = await startHarness({ topology: "nat" }).finally(() => {
        if (savedTemp === undefined) delete process.env.TMPDIR
        else process.env.TMPDIR = savedTemp
      })
      try {
        const nat = harness.nat!
        expect(harness.lan).toBeUndefined()
        const made = Object.values(nat.namespaces)
        for (const namespace of made) expect(namespace).toMatch(new RegExp(`^ts-lab-${process.pid}-\\d+-[a-z-]+$`))
        expect(await namespaces()).toEqual(expect.arrayContaining(made))
        const n = nat.harnessAddress.split(".")[2]
        expect(nat).toMatchObject({
          harnessAddress: `10.80.${n}.1`,
          deviceAddress: `10.78.${n}.2`,
          deviceRouter: { inside: `10.78.${n}.1`, outside: `10.80.${n}.2` },
          peerAddress: `10.79.${n}.2`,
          peerRouter: { inside: `10.79.${n}.1`, outside: `10.80.${n}.3` }
        })
        expect(networkInterfaces()[nat.interfaceName]?.map((address) => address.address)).toEqual([nat.deviceAddress])
        // Only the outside subnet is routed from here, through the router; no default route.
        expect(execFileSync("ip", ["route", "show", "dev", nat.interfaceName], { encoding: "utf8" })).toContain(
          `10.80.${n}.0/24 via ${nat.deviceRouter.inside}`
        )
        expect(execFileSync("ip", ["route", "show", "default"], { encoding: "utf8" })).toBe("")
        const ready = harness.ready
        expect(ready.controlUrl).toMatch(new RegExp(`^https://${nat.harnessAddress.replaceAll(".", "\\.")}:\\d+$`))
        expect(ready.peer.hostname).toBe("nat-peer")
        expect(ready.peerAdminUrl).toMatch(new RegExp(`^unix:${temp}/`))
        // The NATed peer sees the outside harness's echo peer; control's admin API answers too.
        const seen = JSON.parse(await adminRequest(ready.peerAdminUrl!, "/peers")) as Array<{ hostname: string }>
        expect(seen.map((peer) => peer.hostname)).toContain("echo-peer")
        expect(await adminRequest(ready.adminUrl, "/map-requests")).toMatch(/streaming/)
      } finally {
        await harness.stop()
      }
      expect(isRunning(harness.pid)).toBe(false)
      for (const namespace of Object.values(harness.nat!.namespaces)) {
        expect(await namespaces()).not.toContain(namespace)
      }
      expect(networkInterfaces()[harness.nat!.interfaceName]).toBeUndefined()
      expect(await readdir(temp)).toEqual([])
      await rm(temp, { recursive: true, force: true })
    },
    180_000
  )

  it("nat: a harness that exits before it is ready leaves no namespace behind", async () => {
    const before = await namespaces()
    await expect(startHarness({ topology: "nat", args: ["-no-such-flag"] })).rejects.toThrow(
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
