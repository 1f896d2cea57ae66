/** A small in-test backend: scripted answers, and counters for every call. */
import type {
  Backend,
  RawConnectOptions,
  RawDatagram,
  RawDevice,
  RawLogRecord,
  RawNodeInfo,
  RawTcpListener,
  RawTcpStream,
  RawUdpSocket
} from "../src/Backend.ts"

/** A stream whose reads are answered by the test, in order. */
export const scriptedStream = () => {
  const reads: Array<PromiseWithResolvers<Uint8Array | null>> = []
  const written: Array<Uint8Array> = []
  let readCalls = 0
  let closeCalls = 0
  const nextRead = () => {
    const index = readCalls++
    reads[index] ??= Promise.withResolvers()
    return reads[index]!.promise
  }
  const stream: RawTcpStream = {
    read: nextRead,
    write: async (data) => {
      written.push(new Uint8Array(data))
    },
    localAddress: { ip: "100.64.0.2", port: 50000 },
    remoteAddress: { ip: "100.64.0.1", port: 7001 },
    close: () => {
      closeCalls++
    }
  }
  return {
    stream,
    written,
    /** Answers the n-th read (0-based), creating it if nobody asked yet. */
    answer: (index: number, value: Uint8Array | null) => {
      reads[index] ??= Promise.withResolvers()
      reads[index]!.resolve(value)
    },
    get readCalls() {
      return readCalls
    },
    get closeCalls() {
      return closeCalls
    }
  }
}

/** A UDP socket whose one datagram the test delivers. */
export const scriptedUdp = () => {
  const incoming = Promise.withResolvers<RawDatagram>()
  let recvCalls = 0
  let closeCalls = 0
  const socket: RawUdpSocket = {
    recv: () => {
      recvCalls++
      return incoming.promise
    },
    send: async () => {},
    localAddress: { ip: "fd7a:115c:a1e0::2", port: 5300 },
    close: () => {
      closeCalls++
    }
  }
  return {
    socket,
    incoming,
    get recvCalls() {
      return recvCalls
    },
    get closeCalls() {
      return closeCalls
    }
  }
}

export const rawNode = (overrides: Partial<RawNodeInfo> = {}): RawNodeInfo => ({
  id: 1,
  stableId: "nSTABLE1",
  hostname: "echo-peer",
  fqdn: "echo-peer.tail-test.ts.net.",
  tailnet: "tail-test.ts.net",
  capabilityVersion: 130,
  status: { kind: "online" },
  nodeCapabilities: {},
  tags: [],
  tailnetIpv4: "100.64.0.1/32",
  tailnetIpv6: "fd7a:115c:a1e0::1/128",
  nodeKey: "nodekey:00",
  nodeKeyExpiry: "0001-01-01T00:00:00Z",
  acceptedRoutes: ["100.64.0.1/32", "fd7a:115c:a1e0::1/128"],
  underlayAddresses: [],
  derpRegion: 900,
  ...overrides
})

export interface Calls {
  connect: Array<RawConnectOptions>
  device: Array<string>
  shutdown: number
  unsubscribed: number
}

/** A backend whose device methods can be overridden per test; every call is counted. */
export const memoryBackend = (overrides: Partial<RawDevice> = {}, logs: Array<RawLogRecord> = []) => {
  const calls: Calls = { connect: [], device: [], shutdown: 0, unsubscribed: 0 }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- any function's own type, returned unchanged
  const track = <F extends (...args: Array<any>) => any>(name: string, f: F): F =>
    ((...args: Array<unknown>) => {
      calls.device.push(name)
      return f(...args)
    }) as F
  const device: RawDevice = {
    ipv4: track("ipv4", overrides.ipv4 ?? (async () => "100.64.0.2")),
    ipv6: track("ipv6", overrides.ipv6 ?? (async () => "fd7a:115c:a1e0::2")),
    selfNode: track("selfNode", overrides.selfNode ?? (async () => rawNode({ hostname: "me", id: 2 }))),
    authState: track("authState", overrides.authState ?? (async () => ({ authorized: true }))),
    peerByName: track(
      "peerByName",
      overrides.peerByName ?? (async (name) => (name.startsWith("echo-peer") ? rawNode() : null))
    ),
    peerByIp: track("peerByIp", overrides.peerByIp ?? (async (ip) => (ip === "100.64.0.1" ? rawNode() : null))),
    peersWithRoute: track("peersWithRoute", overrides.peersWithRoute ?? (async () => [rawNode()])),
    tcpListen: track(
      "tcpListen",
      overrides.tcpListen ?? (async (): Promise<RawTcpListener> => {
        throw new Error("INTERNAL: no listener scripted")
      })
    ),
    tcpConnect: track("tcpConnect", overrides.tcpConnect ?? (async () => scriptedStream().stream)),
    udpBind: track(
      "udpBind",
      overrides.udpBind ?? (async (): Promise<RawUdpSocket> => {
        throw new Error("INTERNAL: no UDP socket scripted")
      })
    ),
    shutdown: async () => {
      calls.shutdown++
      return true
    }
  }
  const backend: Backend = {
    connect: async (options) => {
      calls.connect.push(options)
      return device
    },
    subscribeLogs: (_filter, handler) => {
      for (const record of logs) handler(record)
      return {
        id: 1,
        unsubscribe: () => {
          calls.unsubscribed++
        }
      }
    }
  }
  return { backend, calls }
}
