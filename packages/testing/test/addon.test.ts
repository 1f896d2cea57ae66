/**
 * The raw addon (`@effect-tailscale/native`, no Effect) on the loopback tailnet: argument checks
 * against a joined device, key state, binds, reads, closing, a stream kept open while a call on it
 * waits, and a process that exits by itself. The addon's tests that need no tailnet live beside it
 * (`native/test`).
 */
import type * as Native from "@effect-tailscale/native"
import { execFile } from "node:child_process"
import { createRequire } from "node:module"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { adminRequest, type HarnessInfo, type RunningHarness, startHarness } from "../src/HarnessProcess.ts"

const addonPath = createRequire(import.meta.url).resolve("@effect-tailscale/native")
const native = createRequire(import.meta.url)(addonPath) as typeof Native

/** What a call rejected with: the `code` and `subject` the addon's errors carry as data. */
const rejection = async (
  promise: Promise<unknown>
): Promise<{ readonly code: Native.ErrorCode; readonly subject: string; readonly message: string }> => {
  try {
    await promise
  } catch (error) {
    expect(error).toBeInstanceOf(Error)
    const { code, subject, message } = error as Error & { code: Native.ErrorCode; subject: string }
    return { code, subject, message }
  }
  throw new Error("expected a rejection")
}

const invalid = (field: string) => ({
  code: "INVALID_ARGUMENT",
  subject: field,
  message: expect.stringMatching(`^INVALID_ARGUMENT: ${field}: `)
})

describe("addon on the loopback tailnet", () => {
  let harness: RunningHarness
  let info: HarnessInfo

  beforeAll(async () => {
    harness = await startHarness()
    info = harness.ready
  }, 120_000)

  afterAll(async () => {
    await harness?.stop()
  })

  const connect = (hostname: string) =>
    native.Device.connect({
      controlUrl: info.controlUrl,
      caFile: info.caFile,
      authKey: info.authKey,
      hostname,
      ephemeral: true,
      connectTimeoutMs: 30_000
    })

  it("joins, and validates addresses and ports naming the field", async () => {
    const device = await connect("addon-args")
    try {
      const ipv4 = await device.ipv4()
      expect(ipv4).toMatch(/^100\./)
      expect(await rejection(device.peerByIp("100.64.0.300"))).toEqual(invalid("ip"))
      expect(await rejection(device.tcpConnect(info.peer.ipv4, 70_000))).toEqual(invalid("port"))
      expect(await rejection(device.tcpConnect(info.peer.ipv4, 1.5))).toEqual(invalid("port"))
      expect(await rejection(device.udpBind(ipv4, 0))).toEqual(invalid("port"))
      expect(await rejection(device.tcpListen("not-an-ip", 80))).toEqual(invalid("ip"))
      expect(await rejection(device.peerByName(""))).toEqual(invalid("name"))
      expect(await rejection(device.ping(info.peer.ipv4, 0))).toEqual(invalid("timeoutMs"))
    } finally {
      await device.shutdown(5_000)
    }
  }, 60_000)

  it("joins with in-memory key state as that identity", async () => {
    const keyState = native.generateKeyState()
    const device = await native.Device.connect({
      controlUrl: info.controlUrl,
      caFile: info.caFile,
      authKey: info.authKey,
      hostname: "addon-keystate",
      ephemeral: true,
      keyState,
      connectTimeoutMs: 30_000
    })
    try {
      const self = await device.selfNode()
      expect(self.nodeKey).toBe(native.publicKeys(keyState).nodeKey)
      expect(self.machineKey).toBe(native.publicKeys(keyState).machineKey)
    } finally {
      await device.shutdown(5_000)
    }
  }, 60_000)

  it("refuses a second bind of the same endpoint until the first is closed", async () => {
    const device = await connect("addon-ports")
    try {
      const ipv4 = await device.ipv4()
      const listener = await device.tcpListen(ipv4, 9100)
      expect(await rejection(device.tcpListen(ipv4, 9100))).toMatchObject({
        code: "ADDRESS_IN_USE",
        subject: "TCP listen"
      })
      listener.close()
      const again = await device.tcpListen(ipv4, 9100)
      again.close()
      const udp = await device.udpBind(ipv4, 9100)
      expect(await rejection(device.udpBind(ipv4, 9100))).toMatchObject({ code: "ADDRESS_IN_USE", subject: "UDP bind" })
      udp.close()
    } finally {
      await device.shutdown(5_000)
    }
  }, 60_000)

  it("closes twice harmlessly and fails every later call with DEVICE_CLOSED", async () => {
    const device = await connect("addon-close")
    const ipv4 = await device.ipv4()
    const listener = await device.tcpListen(ipv4, 9200)
    const udp = await device.udpBind(ipv4, 9200)
    // The Go peer resets a connection from a node it does not know yet.
    await adminRequest(info.adminUrl, `/wait-peer?ip=${ipv4}&timeout=30000`)
    const stream = await device.tcpConnect(info.peer.ipv4, 7001)
    const pendingAccept = rejection(listener.accept())
    const pendingRecv = rejection(udp.recv())
    const pendingRead = rejection(stream.read())
    const first = await device.shutdown(5_000)
    expect(typeof first).toBe("boolean")
    expect(await device.shutdown(5_000)).toBe(first)
    expect(device.closed).toBe(true)
    expect(await pendingAccept).toMatchObject({ code: "DEVICE_CLOSED", subject: "TCP listener" })
    expect(await pendingRecv).toMatchObject({ code: "DEVICE_CLOSED", subject: "UDP socket" })
    expect(await pendingRead).toMatchObject({ code: "DEVICE_CLOSED", subject: "TCP stream" })
    // One call at a time: a rejection nobody awaits yet would count as unhandled.
    for (
      const call of [
        () => device.ipv4(),
        () => device.ipv6(),
        () => device.selfNode(),
        () => device.peerByIp(info.peer.ipv4),
        () => device.peersWithRoute(info.peer.ipv4),
        () => device.authState(),
        () => device.peerByName("echo-peer"),
        () => device.tcpConnect(info.peer.ipv4, 7001),
        () => device.tcpListen(ipv4, 9300),
        () => device.udpBind(ipv4, 9300),
        () => udp.send(info.peer.ipv4, 7002, Buffer.from("x")),
        () => stream.read(),
        () => stream.write(Buffer.from("x"))
      ]
    ) {
      expect(await rejection(call())).toMatchObject({ code: "DEVICE_CLOSED" })
    }
    listener.close()
    listener.close()
    udp.close()
    stream.close()
  }, 60_000)

  it("settles reads in the order they were made, and one waiting when its stream closes rejects", async () => {
    const device = await connect("addon-reads")
    try {
      await adminRequest(info.adminUrl, `/wait-peer?ip=${await device.ipv4()}&timeout=30000`)
      const stream = await device.tcpConnect(info.peer.ipv4, info.peer.tcpEchoPort)
      const first = stream.read()
      const second = stream.read()
      await stream.write(Buffer.from("one"))
      expect(Buffer.from((await first)!).toString()).toBe("one")
      await stream.write(Buffer.from("two"))
      expect(Buffer.from((await second)!).toString()).toBe("two")
      const waiting = rejection(stream.read())
      stream.close()
      expect(await waiting).toMatchObject({ code: "DEVICE_CLOSED", subject: "TCP stream" })
    } finally {
      await device.shutdown(5_000)
    }
  }, 60_000)

  it("keeps a stream that JavaScript no longer references open while a read on it waits", async () => {
    const options = (hostname: string) =>
      JSON.stringify({
        controlUrl: info.controlUrl,
        caFile: info.caFile,
        authKey: info.authKey,
        hostname,
        ephemeral: true
      })
    const script = `
      const native = require(${JSON.stringify(addonPath)});
      const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
      (async () => {
        const [a, b] = await Promise.all([
          native.Device.connect(${options("addon-held-a")}),
          native.Device.connect(${options("addon-held-b")})
        ]);
        const target = await b.ipv4();
        const listener = await b.tcpListen(target, 9410);
        const accepting = listener.accept();
        let dialed;
        for (let attempt = 0; dialed === undefined; attempt++) {
          try {
            dialed = await a.tcpConnect(target, 9410);
          } catch (error) {
            if (attempt === 40) throw error;
            await sleep(250);
          }
        }
        const accepted = await accepting;
        // Only the pending read refers to the stream now: collecting it would close it.
        const reading = dialed.read();
        dialed = undefined;
        for (let i = 0; i < 5; i++) {
          globalThis.gc();
          await sleep(20);
        }
        await accepted.write(Buffer.from("still open"));
        const chunk = await reading;
        console.log(JSON.stringify({ read: chunk.toString() }));
        await Promise.all([a.shutdown(5000), b.shutdown(5000)]);
      })();`
    const { stdout } = await promisify(execFile)(process.execPath, ["--expose-gc", "-e", script], {
      timeout: 45_000
    })
    expect(JSON.parse(stdout.trim())).toEqual({ read: "still open" })
  }, 60_000)

  it("lets a script that connects and shuts down exit by itself", async () => {
    const script = `
      const native = require(${JSON.stringify(addonPath)});
      (async () => {
        const device = await native.Device.connect(${
      JSON.stringify({
        controlUrl: info.controlUrl,
        caFile: info.caFile,
        authKey: info.authKey,
        hostname: "addon-exit",
        ephemeral: true
      })
    });
        const ip = await device.ipv4();
        const listener = await device.tcpListen(ip, 9400);
        listener.accept().catch(() => {});
        // A stream that has read, and a read still waiting when the device shuts down.
        // The Go peer resets a connection from a node it does not know yet.
        let stream;
        for (let attempt = 0; stream === undefined; attempt++) {
          try {
            stream = await device.tcpConnect(${JSON.stringify(info.peer.ipv4)}, ${info.peer.tcpEchoPort});
          } catch (error) {
            if (attempt === 40) throw error;
            await new Promise((resolve) => setTimeout(resolve, 250));
          }
        }
        await stream.write(Buffer.from("hello"));
        await stream.read();
        stream.read().catch(() => {});
        console.log(JSON.stringify({ graceful: await device.shutdown(5000) }));
      })();`
    const { stdout } = await promisify(execFile)(process.execPath, ["-e", script], {
      timeout: 30_000
    })
    expect(JSON.parse(stdout.trim())).toEqual({ graceful: true })
  }, 60_000)
})
