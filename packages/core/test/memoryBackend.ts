/** A small in-test backend: scripted answers, and counters for every call. */
import {
  type Backend,
  backendError,
  type RawConnectOptions,
  type RawDatagram,
  type RawDevice,
  type RawLogRecord,
  type RawNodeInfo,
  type RawTcpListener,
  type RawTcpStream,
  type RawUdpSocket
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
    /** Fails the n-th read (0-based) with `error`, creating it if nobody asked yet. */
    fail: (index: number, error: Error) => {
      reads[index] ??= Promise.withResolvers()
      reads[index]!.reject(error)
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
  status: { _tag: "Online" },
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
    authState: track("authState", overrides.authState ?? (async () => ({ _tag: "Authorized" }))),
    peerByName: track(
      "peerByName",
      overrides.peerByName ?? (async (name) => (name.startsWith("echo-peer") ? rawNode() : null))
    ),
    peerByIp: track("peerByIp", overrides.peerByIp ?? (async (ip) => (ip === "100.64.0.1" ? rawNode() : null))),
    peersWithRoute: track("peersWithRoute", overrides.peersWithRoute ?? (async () => [rawNode()])),
    tcpListen: track(
      "tcpListen",
      overrides.tcpListen ?? (async (): Promise<RawTcpListener> => {
        throw backendError("INTERNAL", "tcpListen", "no listener scripted")
      })
    ),
    tcpConnect: track("tcpConnect", overrides.tcpConnect ?? (async () => scriptedStream().stream)),
    udpBind: track(
      "udpBind",
      overrides.udpBind ?? (async (): Promise<RawUdpSocket> => {
        throw backendError("INTERNAL", "udpBind", "no UDP socket scripted")
      })
    ),
    shutdown: overrides.shutdown ?? (async () => {
      calls.shutdown++
      return true
    }),
    // The optional parts of a device, only when the test gives them.
    ...Object.fromEntries(
      (["waitLost", "watchControl", "respawn", "watchPeers", "watchPaths", "ping"] as const)
        .filter((name) => overrides[name] !== undefined)
        .map((name) => [name, track(name, overrides[name]!)])
    )
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
  return { backend, calls, device }
}

/** One device of a `losableBackend`: lose it as the crate's runtime stopping would, or take control away. */
export interface LosableDevice {
  readonly raw: RawDevice
  readonly lose: (cause: string) => void
  readonly setControl: (connected: boolean) => void
  readonly shutdowns: () => number
}

/**
 * A backend whose devices can be lost (`waitLost` resolves with the cause) and respawned, each
 * generation with its own address (`100.64.0.<n>`); the first `failedRespawns` respawns fail
 * with `CONTROL_UNREACHABLE`. `devices` lists every generation built, in order.
 */
export const losableBackend = (failedRespawns = 0) => {
  const devices: Array<LosableDevice> = []
  let failuresLeft = failedRespawns
  const build = (): RawDevice => {
    const ended = Promise.withResolvers<string | null>()
    const controlWatchers = new Set<() => void>()
    let control = true
    let shutdowns = 0
    let lostCause: string | undefined
    const n = devices.length + 1
    const live = async <A>(value: A): Promise<A> => {
      if (lostCause !== undefined) throw backendError("DEVICE_LOST", "call", `the runtime has stopped (${lostCause})`)
      return value
    }
    const { device: raw } = memoryBackend({
      ipv4: () => live(`100.64.0.${n}`),
      peerByName: (name) => live(name === "echo-peer" ? rawNode() : null),
      waitLost: () => ended.promise,
      watchControl: (known) =>
        new Promise((resolve) => {
          const check = () => {
            if (lostCause !== undefined || shutdowns > 0) resolve(null)
            else if (control !== known) resolve(control)
            else return
            controlWatchers.delete(check)
          }
          controlWatchers.add(check)
          check()
        }),
      respawn: async () => {
        if (failuresLeft > 0) {
          failuresLeft--
          throw backendError("CONTROL_UNREACHABLE", "connect", "control refused the connection")
        }
        return build()
      },
      shutdown: async () => {
        shutdowns++
        ended.resolve(null)
        controlWatchers.forEach((check) => check())
        return true
      }
    })
    const device: LosableDevice = {
      raw,
      lose: (cause) => {
        lostCause = cause
        ended.resolve(cause)
        controlWatchers.forEach((check) => check())
      },
      setControl: (connected) => {
        control = connected
        controlWatchers.forEach((check) => check())
      },
      shutdowns: () => shutdowns
    }
    devices.push(device)
    return raw
  }
  const backend: Backend = { connect: async () => build() }
  return { backend, devices }
}
