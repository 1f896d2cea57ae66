/**
 * `npm run bench`: the binding measured side by side with what it wraps, in one run, on the
 * loopback tailnet (release build of the addon, inside a fresh network namespace).
 *
 *   1. TCP bulk throughput to the Go peer's echo and back (MB/s of payload), after a warm-up
 *   2. Round trips of 64-byte messages over TCP and UDP (p50, p99 in µs)
 *   3. peerByName calls per second
 *   4. Resident memory growth after 1,000 TCP connections and after 50 devices
 *   5. The fake tailnet's TCP throughput, for reference
 *   6. One call across the napi boundary (an empty write), which each round trip pays twice
 *   7. The process's CPU use while idle after 5 devices were connected and shut down
 *   8. The path each subject's traffic took (direct UDP or the DERP relay)
 *   9. CPU seconds per GiB of the bulk transfer, of the subject's process and of the echo peer's
 *
 * 1, 2, 8 and 9 are measured on three topologies: `loopback` (every subject finds a direct path
 * over 127.0.0.1), `lan` (the harness in a namespace of its own, on a LAN with this one: every
 * subject direct over UDP) and `relay` (that LAN with UDP dropped: our subjects relay through
 * DERP, beside Go's relay-only node), with the packets dropped on the relay path meanwhile.
 * `--topology loopback|lan|relay` measures only one, `--subjects effect,rust` only those;
 * `--profile` records a CPU profile (`perf record`) of each subject's process.
 *
 * for: the Effect service, the raw addon, a Rust program using the crate directly (the ceiling)
 * and a second Go tsnet node (what a user would pick instead), the latter twice: on the direct
 * UDP path it finds, and forced onto the DERP relay, the path tailscale-rs takes here. `--json`
 * prints one JSON object on the last line; `--runs N` (default 3) takes medians over N runs.
 *
 * Every subject runs in its own process, with the one harness process serving them all: this
 * file spawns itself with `--subject <name>` for the addon, the Effect service, the memory rounds,
 * the idle-CPU check and the fake tailnet, the Rust baseline is its own program, and the Go nodes
 * live in the harness. So no subject is measured in a process where another's devices were shut
 * down. The path each subject took is read from the namespace's own counters (/proc/net/snmp):
 * through the relay the tunnel is TCP segments, on a direct path UDP datagrams (a datagram may
 * carry a run of packets, segmented and coalesced by the kernel).
 *
 * One file on purpose: the parent and the subject processes it spawns are the same program.
 */
import type { RawDevice } from "@effect-tailscale/core/Backend"
import type { TailscaleService } from "@effect-tailscale/core/Tailscale"
import * as Tailscale from "@effect-tailscale/core/Tailscale"
import * as NativeBackend from "@effect-tailscale/node/NativeBackend"
import * as FakeTailnet from "@effect-tailscale/testing/FakeTailnet"
import { adminRequest, type HarnessInfo, startHarness } from "@effect-tailscale/testing/HarnessProcess"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import { execFileSync, spawn, spawnSync } from "node:child_process"
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

const args = process.argv.slice(2)
const json = args.includes("--json")
const runs = args.includes("--runs") ? Number(args[args.indexOf("--runs") + 1]) || 3 : 3
const BULK = 32 * 1024 * 1024
/**
 * Echoed before each subject's bulk transfer, not measured, so the figures are a warm process's:
 * a Node subject's first few thousand calls run before V8 has optimized them. (On the fake
 * tailnet the Effect service's first 8,192 reads and writes took 52 µs of CPU each, later ones
 * 11 to 14; on the lan, the Effect service's CPU per GiB over the raw addon's fell from 2.8 to
 * 1.4 s with this warm-up, 4 rounds each.) Every subject warms up alike, Go and the crate too.
 */
const WARMUP = 16 * 1024 * 1024
const ROUNDS = 300
const LOOKUPS = 2_000
const flag = (name: string, fallback: number) => {
  const at = args.indexOf(name)
  return at >= 0 ? Number(args[at + 1]) || fallback : fallback
}
const CONNECTIONS = flag("--connections", 1_000)
const DEVICES = flag("--devices", 50)
const SHUTDOWN_CYCLES = 5
const IDLE_MS = 3_000
const LOOKUP_WARMUP = 2_000
const self = fileURLToPath(import.meta.url)
const root = join(dirname(self), "..")
const progress = (line: string) => !json && console.error(line)
const subjectArg = args.includes("--subject") ? args[args.indexOf("--subject") + 1] : undefined
/**
 * `loopback`: one namespace (every subject finds a direct path over 127.0.0.1); `lan`: the harness
 * on a LAN, every subject direct over UDP; `relay`: the same LAN with UDP dropped on it by
 * nftables, so our subjects relay through DERP over TCP (Go's relay-only node is measured there).
 */
const topologyNames = ["loopback", "lan", "relay"] as const
type TopologyName = (typeof topologyNames)[number]
const topologyArg = args.includes("--topology") ? args[args.indexOf("--topology") + 1] : undefined
const topologies: ReadonlyArray<TopologyName> = topologyNames.find((t) => t === topologyArg) !== undefined
  ? [topologyArg as TopologyName]
  : topologyNames
/** `--subjects effect,rust`: measure only these (for quick comparisons; the default is all). */
const subjectsArg = args.includes("--subjects") ? args[args.indexOf("--subjects") + 1]!.split(",") : undefined
const profile = args.includes("--profile")
const profileDir = join(root, ".cache", "bench", "profiles")
const GiB = 1024 * 1024 * 1024

/** CPU seconds (user and system, every thread) of process `pid` so far, from /proc (10 ms ticks). */
const processCpuSeconds = (pid: number): number => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // Fields from the third on: utime is the 14th, stime the 15th (USER_HZ is 100 on Linux).
    return (Number(fields[14 - 3]) + Number(fields[15 - 3])) / 100
  } catch {
    return NaN
  }
}
/** What `--subject` processes are told: the harness's pid and the topology. */
const harnessPid = () => Number(process.env.BENCH_HARNESS_PID ?? NaN)
const onLan = () => process.env.BENCH_TOPOLOGY === "lan"

/** Packets in this network namespace: the tunnel is UDP on a direct path, TCP through DERP. */
interface Traffic {
  udpDatagrams: number
  tcpSegments: number
}

const netCounters = (): Traffic => {
  const lines = readFileSync("/proc/net/snmp", "utf8").split("\n")
  const row = (proto: string) => {
    const [names, values] = lines.filter((line) => line.startsWith(`${proto}:`)).map((line) =>
      line.split(/\s+/).slice(1)
    )
    return (name: string) => Number(values?.[names?.indexOf(name) ?? -1] ?? NaN)
  }
  const udp = row("Udp")
  const tcp = row("Tcp")
  return { udpDatagrams: udp("InDatagrams") + udp("OutDatagrams"), tcpSegments: tcp("InSegs") + tcp("OutSegs") }
}
const trafficSince = (before: Traffic): Traffic => {
  const now = netCounters()
  return { udpDatagrams: now.udpDatagrams - before.udpDatagrams, tcpSegments: now.tcpSegments - before.tcpSegments }
}
/** The 32 MiB echo alone is tens of thousands of packets either way; the rest is noise. */
const pathOf = (traffic: Traffic) => (traffic.udpDatagrams > traffic.tcpSegments ? "direct" : "derp")

interface Figures {
  tcpMBps: number
  rttTcp: Array<number>
  rttUdp: Array<number>
  lookupsPerSec: number
  /** p50 µs of an empty write: one promise across the napi boundary and back (the addon only). */
  callUs?: number
  /** The bulk echo's bytes as one write instead of 64 KiB writes (the addon only). */
  oneWriteMBps?: number
  /** Packets in the namespace while the subject measured. */
  traffic?: Traffic
  /** What the Go node's own status said about its path to the echo peer. */
  reportedPath?: string
  /** CPU seconds the subject's process used during the bulk transfer (for Go: the whole harness). */
  bulkCpuSeconds?: number
  /** CPU seconds the harness (the echo peer) used during the bulk transfer. */
  peerBulkCpuSeconds?: number
  /** Packets dropped on the relay path while the subject measured (see `derpDrops`). */
  derpDrops?: number
}

/**
 * Packets dropped on the relay path so far: by the harness's DERP server (a full per-client
 * queue) and by the Go nodes' own DERP clients (magicsock drops a write when 32 are queued).
 */
const derpDrops = async (harness: Harness): Promise<number> => {
  const stats = JSON.parse(await adminRequest(harness.info.adminUrl, "/derp-stats")) as {
    dropped: Record<string, number>
    goNodes: Record<string, number>
  }
  return Object.values(stats.dropped).reduce((sum, n) => sum + n, 0) + (stats.goNodes.magicsock_send_derp_dropped ?? 0)
}

const percentile = (samples: Array<number>, p: number) => {
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.round((sorted.length - 1) * p)] ?? NaN
}
const median = (values: Array<number>) => percentile(values, 0.5)
const microsSince = (started: bigint) => Number(process.hrtime.bigint() - started) / 1e3
const message = new Uint8Array(64).fill(7)

/** The measurements written once against a small interface both the addon and Effect fit. */
interface Subject {
  readonly roundTripTcp: () => Promise<number>
  /** Sends `bytes` over the stream and reads them back (the echo). */
  readonly echo: (bytes: Uint8Array) => Promise<void>
  readonly bulk: (bytes: number) => Promise<number>
  readonly roundTripUdp: () => Promise<number | undefined>
  readonly lookup: () => Promise<unknown>
  readonly emptyCall?: () => Promise<unknown>
  /** `bulk` as a single write of every byte. */
  readonly bulkOneWrite?: (bytes: number) => Promise<number>
  readonly close: () => Promise<void>
}

const measure = async (subject: Subject): Promise<Figures> => {
  const rttTcp: Array<number> = []
  for (let i = 0; i < ROUNDS; i++) rttTcp.push(await subject.roundTripTcp())
  await subject.bulk(WARMUP)
  const cpuBefore = process.cpuUsage()
  const peerCpuBefore = processCpuSeconds(harnessPid())
  profileBulk("enable")
  const tcpMBps = await subject.bulk(BULK)
  profileBulk("disable")
  const cpuUsed = process.cpuUsage(cpuBefore)
  const bulkCpuSeconds = (cpuUsed.user + cpuUsed.system) / 1e6
  const peerBulkCpuSeconds = processCpuSeconds(harnessPid()) - peerCpuBefore
  const rttUdp: Array<number> = []
  for (let i = 0; i < ROUNDS; i++) {
    const rtt = await subject.roundTripUdp()
    if (rtt !== undefined) rttUdp.push(rtt)
  }
  for (let i = 0; i < LOOKUP_WARMUP; i++) await subject.lookup()
  const started = process.hrtime.bigint()
  for (let i = 0; i < LOOKUPS; i++) await subject.lookup()
  const lookupsPerSec = LOOKUPS / (microsSince(started) / 1e6)
  if (subject.emptyCall === undefined) {
    return { tcpMBps, rttTcp, rttUdp, lookupsPerSec, bulkCpuSeconds, peerBulkCpuSeconds }
  }
  const calls: Array<number> = []
  for (let i = 0; i < ROUNDS; i++) {
    const started = process.hrtime.bigint()
    await subject.emptyCall()
    calls.push(microsSince(started))
  }
  const oneWriteMBps = await subject.bulkOneWrite?.(BULK)
  return {
    tcpMBps,
    rttTcp,
    rttUdp,
    lookupsPerSec,
    bulkCpuSeconds,
    peerBulkCpuSeconds,
    callUs: percentile(calls, 0.5),
    ...(oneWriteMBps === undefined ? {} : { oneWriteMBps })
  }
}

/**
 * On the `lan` topology: echoes 32 KiB probes every 100 ms until this namespace sends them over
 * UDP and not over TCP to the relay, for up to 20 s, so the figures are the direct path's.
 * (Through the relay a probe is at least 23 TCP segments; over UDP, a run of packets sent
 * together may be one datagram.) Returns how long that took (ms), or undefined if it never went
 * direct.
 */
const untilDirect = async (subject: Subject): Promise<number | undefined> => {
  const probe = new Uint8Array(32 * 1024).fill(9)
  const started = performance.now()
  const sent = () => {
    const lines = readFileSync("/proc/net/snmp", "utf8").split("\n")
    const counter = (proto: string, name: string) => {
      const [names, values] = lines.filter((line) => line.startsWith(`${proto}:`)).map((line) => line.split(/\s+/))
      return Number(values?.[names?.indexOf(name) ?? -1] ?? NaN)
    }
    return { udp: counter("Udp", "OutDatagrams"), tcp: counter("Tcp", "OutSegs") }
  }
  while (performance.now() - started < 20_000) {
    const before = sent()
    await subject.echo(probe)
    const after = sent()
    const udp = after.udp - before.udp
    if (udp > 0 && (after.tcp - before.tcp) * 4 < probe.length / 1280) {
      return Math.round(performance.now() - started)
    }
    await sleep(100)
  }
  return undefined
}

interface Target {
  readonly ip: string
  readonly tcp: number
  readonly udp: number
}

const rawSubject = async (device: RawDevice, ownIp: string, target: Target, udpPort: number): Promise<Subject> => {
  const stream = await device.tcpConnect(target.ip, target.tcp)
  const udp = await device.udpBind(ownIp, udpPort)
  const readExactly = async (bytes: number) => {
    let got = 0
    while (got < bytes) got += (await stream.read())!.length
  }
  return {
    roundTripTcp: async () => {
      const started = process.hrtime.bigint()
      await stream.write(message)
      await readExactly(message.length)
      return microsSince(started)
    },
    echo: async (bytes) => {
      await stream.write(bytes)
      await readExactly(bytes.length)
    },
    bulk: async (bytes) => {
      const chunk = new Uint8Array(64 * 1024).fill(42)
      const started = process.hrtime.bigint()
      const writing = (async () => {
        for (let sent = 0; sent < bytes; sent += chunk.length) {
          await stream.write(chunk.subarray(0, Math.min(chunk.length, bytes - sent)))
        }
      })()
      await readExactly(bytes)
      await writing
      return bytes / (microsSince(started) / 1e6) / 1e6
    },
    bulkOneWrite: async (bytes) => {
      const started = process.hrtime.bigint()
      const writing = stream.write(new Uint8Array(bytes).fill(42))
      await readExactly(bytes)
      await writing
      return bytes / (microsSince(started) / 1e6) / 1e6
    },
    roundTripUdp: async () => {
      const started = process.hrtime.bigint()
      await udp.send(target.ip, target.udp, message)
      const reply = await Promise.race([udp.recv(), new Promise<undefined>((r) => setTimeout(r, 2000))])
      return reply === undefined ? undefined : microsSince(started)
    },
    lookup: () => device.peerByName("echo-peer"),
    emptyCall: () => stream.write(new Uint8Array(0)),
    close: async () => {
      stream.close()
      udp.close()
    }
  }
}

const effectSubject = async (service: TailscaleService, target: Target, udpPort: number): Promise<Subject> => {
  const run = <A>(effect: Effect.Effect<A, unknown>) => Effect.runPromise(effect)
  const scope = await run(Scope.make())
  const stream = await run(service.dial({ ip: target.ip, port: target.tcp }).pipe(Scope.provide(scope)))
  const udp = await run(service.bindUdp(udpPort).pipe(Scope.provide(scope)))
  const readExactly = (bytes: number) =>
    Effect.gen(function*() {
      let got = 0
      while (got < bytes) got += Option.getOrThrow(yield* stream.read()).length
    })
  const to = { ip: target.ip, port: target.udp }
  return {
    roundTripTcp: () =>
      run(Effect.gen(function*() {
        const started = process.hrtime.bigint()
        yield* stream.write(message)
        yield* readExactly(message.length)
        return microsSince(started)
      })),
    echo: (bytes) =>
      run(Effect.gen(function*() {
        yield* stream.write(bytes)
        yield* readExactly(bytes.length)
      })),
    bulk: (bytes) =>
      run(Effect.gen(function*() {
        const chunk = new Uint8Array(64 * 1024).fill(42)
        const started = process.hrtime.bigint()
        const writer = yield* Effect.forkChild(Effect.gen(function*() {
          for (let sent = 0; sent < bytes; sent += chunk.length) {
            yield* stream.write(chunk.subarray(0, Math.min(chunk.length, bytes - sent)))
          }
        }))
        yield* readExactly(bytes)
        yield* Fiber.join(writer)
        return bytes / (microsSince(started) / 1e6) / 1e6
      })),
    roundTripUdp: () =>
      run(Effect.gen(function*() {
        const started = process.hrtime.bigint()
        yield* udp.send(to, message)
        const reply = yield* Effect.option(udp.receive({ timeout: "2 seconds" }))
        return Option.isSome(reply) ? microsSince(started) : undefined
      })),
    lookup: () => run(service.peerByName("echo-peer")),
    close: () => run(Scope.close(scope, Exit.void))
  }
}

/** Runs the Rust baseline: it joins, we wait until the peer sees it, then it measures. */
const rustBaseline = (harness: Harness, topology: TopologyName): Promise<Figures> =>
  new Promise((resolve, reject) => {
    const info = harness.info
    // scripts/bench.sh builds it for the host and says where.
    const binary = process.env.RUST_BASELINE ?? join(root, "target", "release", "tailscale-rust-baseline")
    const control = profile ? bulkControl(`rust-${topology}`) : undefined
    const child = spawn(binary, [
      info.plainControlUrl,
      info.authKey,
      info.peer.ipv4,
      String(info.peer.tcpEchoPort),
      String(info.peer.udpEchoPort),
      String(BULK),
      String(ROUNDS),
      String(LOOKUPS)
    ], {
      stdio: ["pipe", "pipe", "inherit"],
      env: {
        ...process.env,
        BENCH_HARNESS_PID: String(harness.pid),
        ...(topology === "lan" ? { BENCH_WAIT_DIRECT: "1" } : {}),
        BENCH_WARMUP_BYTES: String(WARMUP),
        ...(control === undefined ? {} : { BENCH_PROFILE_CONTROL: control })
      }
    })
    const recording = control === undefined ? undefined : recordProfile(child.pid!, `rust-${topology}`, control)
    let figures: Figures | undefined
    // Settled once the process has exited and its profile is written.
    child.once("exit", async (code) => {
      await recording?.stop()
      if (control !== undefined) rmSync(control, { force: true })
      if (code !== 0) reject(new Error(`the Rust baseline exited with ${code}`))
      else if (figures === undefined) reject(new Error("the Rust baseline exited without its figures"))
      else resolve(figures)
    })
    const lines = createInterface({ input: child.stdout! })
    let joined = false
    let before = netCounters()
    lines.on("line", (line) => {
      const parsed = JSON.parse(line)
      if (!joined) {
        joined = true
        adminRequest(info.adminUrl, `/wait-peer?ip=${parsed.ipv4}&timeout=30000`).then(() => {
          before = netCounters()
          child.stdin!.write("go\n")
        }, reject)
        return
      }
      figures = {
        tcpMBps: parsed.tcpMBps,
        rttTcp: [parsed.rttP50Us.tcp, parsed.rttP99Us.tcp],
        rttUdp: [parsed.rttP50Us.udp, parsed.rttP99Us.udp],
        lookupsPerSec: parsed.lookupsPerSec,
        traffic: trafficSince(before),
        bulkCpuSeconds: parsed.bulkCpuSeconds,
        peerBulkCpuSeconds: parsed.peerBulkCpuSeconds ?? NaN
      }
    })
    child.once("error", reject)
  })

/** The Go node in the harness; `derp` makes it one that never binds UDP, so it uses the relay only. */
const goBaseline = async (
  harness: Harness,
  derp: boolean,
  topology: TopologyName
): Promise<Omit<Figures, "lookupsPerSec">> => {
  const before = netCounters()
  const recording = profile ? recordProfile(harness.pid, `go${derp ? "-derp" : ""}-${topology}`) : undefined
  const answer = await adminRequest(
    harness.info.adminUrl,
    `/bench-go?bytes=${BULK}&warmup=${WARMUP}&rounds=${ROUNDS}${derp ? "&derp=1" : ""}`
  ).finally(() => recording?.stop())
  const parsed = JSON.parse(answer)
  return {
    tcpMBps: parsed.tcpMBps,
    rttTcp: [parsed.rttP50Us.tcp, parsed.rttP99Us.tcp],
    rttUdp: [parsed.rttP50Us.udp, parsed.rttP99Us.udp],
    traffic: trafficSince(before),
    reportedPath: parsed.path,
    // The harness's whole process: the Go bench node, and the echo peer it talks to.
    bulkCpuSeconds: parsed.bulkCpuSeconds
  }
}

/** A running harness: its ready line and its process id (the Go nodes' process). */
interface Harness {
  readonly info: HarnessInfo
  readonly pid: number
}

/**
 * `--profile`: `perf record` (call graphs, 499 Hz, or 1,999 with `control`) of process `pid` into
 * `.cache/bench/profiles/<name>.perf.data`, until `stop` or the process exits; then a flat
 * report of the hottest symbols beside it (`<name>.txt`). Node subjects run with
 * `--perf-basic-prof`, so JavaScript frames have names. With a `control` FIFO (`bulkControl`)
 * it records only while the process has it enabled: during its bulk transfer.
 */
const recordProfile = (pid: number, name: string, control?: string) => {
  mkdirSync(profileDir, { recursive: true })
  const data = join(profileDir, `${name}.perf.data`)
  // A bulk transfer alone lasts a second or two: sampled more often.
  const onlyWhenEnabled = control === undefined
    ? ["-F", "499"]
    : ["-F", "1999", "--delay=-1", "--control", `fifo:${control}`]
  const perf = spawn("perf", ["record", "-g", "-q", ...onlyWhenEnabled, "-o", data, "-p", String(pid)], {
    stdio: ["ignore", "ignore", "inherit"]
  })
  const finished = new Promise<void>((resolve) => perf.once("close", () => resolve()))
  perf.once("error", (error) => progress(`  perf record failed: ${error.message}`))
  return {
    stop: async () => {
      perf.kill("SIGINT")
      await finished
      const report = spawnSync("perf", [
        "report",
        "-i",
        data,
        "--stdio",
        "--no-children",
        "--sort",
        "dso,sym",
        "--percent-limit",
        "0.5",
        "-g",
        "none"
      ], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 })
      writeFileSync(join(profileDir, `${name}.txt`), report.stdout ?? "")
      progress(`  profile: ${data} (report: ${name}.txt)`)
    }
  }
}

/**
 * A FIFO for perf's `--control`, made before the subject's process starts so it can be told
 * where: the subject writes `enable` and `disable` into it around its bulk transfer, so its
 * profile holds that transfer alone rather than the process's start and other rounds. Whoever
 * makes it removes it once the process has exited.
 */
const bulkControl = (name: string): string => {
  mkdirSync(profileDir, { recursive: true })
  const control = join(profileDir, `${name}.control`)
  rmSync(control, { force: true })
  execFileSync("mkfifo", [control])
  return control
}

/**
 * In a subject's process: turns its profile on or off (`bulkControl`), when one is recorded.
 * A Node subject's recording starts when it says `profile-ready` (perf, started with its events
 * off, would miss the addon's mapping if it started before the addon was loaded); opening the
 * FIFO waits for perf to open it.
 */
const profileBulk = (command: "enable" | "disable") => {
  const control = process.env.BENCH_PROFILE_CONTROL
  if (control === undefined) return
  if (command === "enable") console.log(PROFILE_READY)
  writeFileSync(control, `${command}\n`)
}

const PROFILE_READY = "profile-ready"

const rssMiB = () => {
  globalThis.gc?.()
  return process.memoryUsage().rss / (1024 * 1024)
}

/** Resident growth (%) after `cycles` runs of `cycle`, measured after a warm-up round. */
const growth = async (cycles: number, cycle: (i: number) => Promise<void>) => {
  for (let i = 0; i < Math.min(10, cycles); i++) await cycle(-1 - i)
  await new Promise((r) => setTimeout(r, 500))
  const before = rssMiB()
  for (let i = 0; i < cycles; i++) await cycle(i)
  await new Promise((r) => setTimeout(r, 1000))
  const after = rssMiB()
  return { before, after, pct: ((after - before) / before) * 100 }
}

const fakeThroughput = () =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const tailnet = yield* FakeTailnet.make({ tcpBuffer: 64 * 1024 })
    const a = yield* tailnet.addDevice({ hostname: "a" })
    const b = yield* tailnet.addDevice({ hostname: "b" })
    const listener = yield* b.listen(80)
    const client = yield* a.dial("b:80")
    const server = yield* listener.accept()
    const chunk = new Uint8Array(64 * 1024)
    const started = process.hrtime.bigint()
    const writer = yield* Effect.forkChild(Effect.gen(function*() {
      for (let sent = 0; sent < BULK; sent += chunk.length) yield* client.write(chunk)
    }))
    let got = 0
    while (got < BULK) got += Option.getOrThrow(yield* server.read()).length
    yield* Fiber.join(writer)
    return BULK / (microsSince(started) / 1e6) / 1e6
  })))

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** One subject measured inside this process (`--subject <name>`); the result goes to stdout. */
const worker = async (name: string, info: HarnessInfo): Promise<unknown> => {
  if (name === "fake") return median([await fakeThroughput(), await fakeThroughput(), await fakeThroughput()])
  const backend = await Effect.runPromise(NativeBackend.make())
  const target: Target = { ip: info.peer.ipv4, tcp: info.peer.tcpEchoPort, udp: info.peer.udpEchoPort }
  const connect = (hostname: string) =>
    backend.connect({
      controlUrl: info.controlUrl,
      caFile: info.caFile,
      authKey: info.authKey,
      hostname,
      ephemeral: true,
      connectTimeoutMs: 30_000
    })
  const tag = `${process.pid}`
  switch (name) {
    case "addon": {
      const device = await connect(`bench-addon-${tag}`)
      const ip = await device.ipv4()
      await adminRequest(info.adminUrl, `/wait-peer?ip=${ip}&timeout=30000`)
      const raw = await rawSubject(device, ip, target, 5500)
      await raw.roundTripTcp() // first packets wait for the WireGuard handshake
      if (onLan()) progress(`  direct after ${await untilDirect(raw)} ms`)
      const before = netCounters()
      const figures = await measure(raw)
      figures.traffic = trafficSince(before)
      await raw.close()
      await device.shutdown(5000)
      return figures
    }
    case "effect": {
      const effectScope = await Effect.runPromise(Scope.make())
      const service = await Effect.runPromise(
        Tailscale.make(backend, {
          controlUrl: info.controlUrl,
          caFile: info.caFile,
          authKey: Redacted.make(info.authKey),
          hostname: `bench-effect-${tag}`,
          ephemeral: true,
          logFilter: "off"
        }).pipe(Scope.provide(effectScope))
      )
      const effectIp = NetAddress.formatIp(await Effect.runPromise(service.ipv4))
      await adminRequest(info.adminUrl, `/wait-peer?ip=${effectIp}&timeout=30000`)
      const viaEffect = await effectSubject(service, target, 5501)
      await viaEffect.roundTripTcp()
      if (onLan()) progress(`  direct after ${await untilDirect(viaEffect)} ms`)
      const before = netCounters()
      const figures = await measure(viaEffect)
      figures.traffic = trafficSince(before)
      await viaEffect.close()
      await Effect.runPromise(Scope.close(effectScope, Exit.void))
      return figures
    }
    case "memory-connections": {
      const memScope = await Effect.runPromise(Scope.make())
      const memService = await Effect.runPromise(
        Tailscale.make(backend, {
          controlUrl: info.controlUrl,
          caFile: info.caFile,
          authKey: Redacted.make(info.authKey),
          hostname: "bench-memory",
          ephemeral: true,
          logFilter: "off"
        }).pipe(Scope.provide(memScope))
      )
      await adminRequest(
        info.adminUrl,
        `/wait-peer?ip=${NetAddress.formatIp(await Effect.runPromise(memService.ipv4))}&timeout=30000`
      )
      const connections = await growth(CONNECTIONS, () =>
        Effect.runPromise(Effect.scoped(Effect.gen(function*() {
          const stream = yield* memService.dial({ ip: target.ip, port: target.tcp })
          yield* stream.write(message)
          yield* stream.read()
        }))))
      await Effect.runPromise(Scope.close(memScope, Exit.void))
      return connections
    }
    case "memory-devices":
      return growth(DEVICES, async (i) => {
        const device = await connect(`bench-device-${tag}-${i < 0 ? `warm${-i}` : i}`)
        await device.ipv4()
        await device.shutdown(5000)
      })
    case "idle-cpu": {
      // What a process that opened and closed devices burns afterwards, doing nothing.
      for (let i = 0; i < SHUTDOWN_CYCLES; i++) {
        const device = await connect(`bench-idle-${tag}-${i}`)
        await device.ipv4()
        await device.shutdown(5000)
      }
      await sleep(500)
      const started = process.hrtime.bigint()
      const cpu = process.cpuUsage()
      await sleep(IDLE_MS)
      const used = process.cpuUsage(cpu)
      return ((used.user + used.system) / microsSince(started)) * 100
    }
    default:
      throw new Error(`unknown subject ${name}`)
  }
}

/** Runs `--subject name` in a fresh Node process against the running harness; its last stdout line is the result. */
const inOwnProcess = <A>(name: string, harness: Harness, topology: TopologyName = "loopback"): Promise<A> =>
  new Promise((resolve, reject) => {
    const passed = ["--connections", "--devices"].flatMap((
      f
    ) => (args.includes(f) ? [f, args[args.indexOf(f) + 1]!] : []))
    const control = profile && (name === "addon" || name === "effect") ? bulkControl(`${name}-${topology}`) : undefined
    const child = spawn(process.execPath, [
      ...process.execArgv,
      ...(profile ? ["--perf-basic-prof"] : []),
      self,
      "--subject",
      name,
      ...passed,
      ...(json ? ["--json"] : [])
    ], {
      stdio: ["ignore", "pipe", "inherit"],
      env: {
        ...process.env,
        BENCH_HARNESS_INFO: JSON.stringify(harness.info),
        BENCH_HARNESS_PID: String(harness.pid),
        BENCH_TOPOLOGY: topology,
        ...(control === undefined ? {} : { BENCH_PROFILE_CONTROL: control })
      }
    })
    let recording: ReturnType<typeof recordProfile> | undefined
    let last = ""
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (control !== undefined && line === PROFILE_READY) {
        recording = recordProfile(child.pid!, `${name}-${topology}`, control)
      } else if (line.trim() !== "") last = line
    })
    child.once("error", reject)
    child.once("close", async (code) => {
      await recording?.stop()
      if (control !== undefined) rmSync(control, { force: true })
      // `--perf-basic-prof` leaves the JIT's symbol map where perf looks for it, in /tmp; the
      // report that needed it is written.
      if (profile) rmSync(`/tmp/perf-${child.pid}.map`, { force: true })
      if (code !== 0) return reject(new Error(`the ${name} subject exited with ${code}`))
      try {
        resolve(JSON.parse(last) as A)
      } catch (error) {
        reject(error)
      }
    })
  })

type GoFigures = Omit<Figures, "lookupsPerSec">

const keys = ["effect", "addon", "rust", "go", "goDerp"] as const
type Key = (typeof keys)[number]
/**
 * Who is measured where. On the LAN every subject goes direct, and Go's relay-only node would
 * repeat the loopback figure; on the relay topology Go's nodes share the harness's namespace,
 * where UDP is not dropped, so only its relay-only node relays.
 */
const keysOf = (topology: TopologyName): ReadonlyArray<Key> =>
  (topology === "lan"
    ? ["effect", "addon", "rust", "go"] as const
    : topology === "relay"
    ? ["effect", "addon", "rust", "goDerp"] as const
    : keys).filter((k) => subjectsArg === undefined || subjectsArg.includes(k))
type Samples = Record<Key, Array<GoFigures>>

/** Every subject measured `runs` times against one harness on `topology`, the order rotating. */
const measureTopology = async (topology: TopologyName, harness: Harness): Promise<Samples> => {
  const samples: Samples = { effect: [], addon: [], rust: [], go: [], goDerp: [] }
  const measure: Record<Key, readonly [string, () => Promise<GoFigures>]> = {
    addon: ["raw addon", () => inOwnProcess<Figures>("addon", harness, topology)],
    effect: ["Effect service", () => inOwnProcess<Figures>("effect", harness, topology)],
    rust: ["Rust crate directly", () => rustBaseline(harness, topology)],
    go: ["Go tsnet node (direct)", () => goBaseline(harness, false, topology)],
    goDerp: ["Go tsnet node (DERP only)", () => goBaseline(harness, true, topology)]
  }
  /** Each measurement, with the packets dropped on the relay path meanwhile. */
  const subjects = keysOf(topology).map((k) =>
    [measure[k][0], async () => {
      const dropsBefore = await derpDrops(harness)
      const figures = await measure[k][1]()
      samples[k].push({ ...figures, derpDrops: (await derpDrops(harness)) - dropsBefore })
    }] as const
  )
  for (let run = 1; run <= runs; run++) {
    // Each run starts with the next subject, so none always goes first or last.
    for (let i = 0; i < subjects.length; i++) {
      const [name, measureOne] = subjects[(i + run - 1) % subjects.length]!
      progress(`▸ ${topology}, run ${run}/${runs}: ${name}`)
      await measureOne()
    }
  }
  progress(
    `  ${topology} speed (medians): ${
      JSON.stringify(Object.fromEntries(keys.map((k) => [k, median(samples[k].map((f) => f.tcpMBps))])))
    }`
  )
  return samples
}

const withHarness = async <A>(topology: TopologyName, use: (harness: Harness) => Promise<A>): Promise<A> => {
  const running = await startHarness({ topology: topology === "relay" ? "lan" : topology })
  try {
    if (topology === "relay") await running.blockUdp(true)
    return await use({ info: running.ready, pid: running.pid })
  } finally {
    await running.stop()
  }
}

const p99 = (figures: Array<GoFigures>, key: "rttTcp" | "rttUdp") =>
  median(figures.map((f) => (f[key].length === 2 ? f[key][1]! : percentile(f[key], 0.99))))
const p50 = (figures: Array<GoFigures>, key: "rttTcp" | "rttUdp") =>
  median(figures.map((f) => (f[key].length === 2 ? f[key][0]! : percentile(f[key], 0.5))))

/** The JSON figures of one topology's samples, per subject measured there. */
const summarize = (samples: Samples, subjects: ReadonlyArray<Key>) => {
  const bySubject = (f: (figures: Array<GoFigures>) => number) =>
    Object.fromEntries(subjects.map((k) => [k, f(samples[k])])) as Record<Key, number>
  const path = Object.fromEntries(subjects.map((k) => {
    const traffic = samples[k].flatMap((f) => (f.traffic ? [f.traffic] : []))
    const reported = [...new Set(samples[k].flatMap((f) => (f.reportedPath ? [f.reportedPath] : [])))].join("/")
    // The Go nodes live with the echo peer: on the LAN their traffic never crosses this namespace.
    const via = traffic.every((t) => t.udpDatagrams + t.tcpSegments < 1000) && reported !== ""
      ? reported
      : [...new Set(traffic.map(pathOf))].join("/")
    return [k, {
      via,
      udpDatagrams: median(traffic.map((t) => t.udpDatagrams)),
      tcpSegments: median(traffic.map((t) => t.tcpSegments)),
      ...(reported === "" ? {} : { reported })
    }]
  })) as Record<Key, { via: string; udpDatagrams: number; tcpSegments: number; reported?: string }>
  const perGiB = (seconds: number | undefined) => (seconds ?? NaN) / (BULK / GiB)
  return {
    tcpMBps: bySubject((f) => median(f.map((x) => x.tcpMBps))),
    rttP50Us: { tcp: bySubject((f) => p50(f, "rttTcp")), udp: bySubject((f) => p50(f, "rttUdp")) },
    rttP99Us: { tcp: bySubject((f) => p99(f, "rttTcp")), udp: bySubject((f) => p99(f, "rttUdp")) },
    path,
    cpuSecondsPerGiB: bySubject((f) => median(f.map((x) => perGiB(x.bulkCpuSeconds)))),
    peerCpuSecondsPerGiB: bySubject((f) => median(f.map((x) => perGiB(x.peerBulkCpuSeconds)))),
    derpDrops: bySubject((f) => median(f.map((x) => x.derpDrops ?? NaN)))
  }
}

const main = async () => {
  const measured: Partial<Record<TopologyName, ReturnType<typeof summarize>>> = {}
  let rest:
    | {
      connections: { before: number; after: number; pct: number }
      devices: { before: number; after: number; pct: number }
      idleCpu: number
      fake: number
      lookupsPerSec: { effect: number; addon: number; rust: number }
      addonCallP50Us: number
      addonOneWriteMBps: number
    }
    | undefined
  for (const topology of topologies) {
    await withHarness(topology, async (harness) => {
      const samples = await measureTopology(topology, harness)
      measured[topology] = summarize(samples, keysOf(topology))
      if (topology !== "loopback" || subjectsArg !== undefined) return
      progress(
        `▸ memory: ${CONNECTIONS} TCP connections through the Effect service (each connect asks the crate's control actor, which the loopback tailnet's throttle holds up to 250 ms)`
      )
      const connections = await inOwnProcess<{ before: number; after: number; pct: number }>(
        "memory-connections",
        harness
      )
      progress(`▸ memory: ${DEVICES} devices created and shut down`)
      const devices = await inOwnProcess<{ before: number; after: number; pct: number }>("memory-devices", harness)
      progress(`▸ idle CPU over ${IDLE_MS / 1000} s after ${SHUTDOWN_CYCLES} devices were connected and shut down`)
      const idleCpu = await inOwnProcess<number>("idle-cpu", harness)
      progress("▸ fake tailnet TCP throughput")
      const fake = await inOwnProcess<number>("fake", harness)
      rest = {
        connections,
        devices,
        idleCpu,
        fake,
        lookupsPerSec: {
          effect: median(samples.effect.map((f) => (f as Figures).lookupsPerSec)),
          addon: median(samples.addon.map((f) => (f as Figures).lookupsPerSec)),
          rust: median(samples.rust.map((f) => (f as Figures).lookupsPerSec))
        },
        addonCallP50Us: median(samples.addon.map((f) => (f as Figures).callUs ?? NaN)),
        addonOneWriteMBps: median(samples.addon.map((f) => (f as Figures).oneWriteMBps ?? NaN))
      }
    })
  }

  const loop = measured.loopback
  /** A figure of every topology: loopback's at the top level (as it always was), the others by name. */
  const byTopology = <K extends keyof ReturnType<typeof summarize>>(key: K) => ({
    ...loop?.[key],
    ...Object.fromEntries(
      (["lan", "relay"] as const).flatMap((t) => (measured[t] ? [[t, measured[t]![key]]] : []))
    )
  })
  const cpuSecondsPerGiB = byTopology("cpuSecondsPerGiB")
  const result = {
    tcpMBps: { ...byTopology("tcpMBps"), ...(rest ? { fake: rest.fake } : {}) },
    rttP50Us: byTopology("rttP50Us"),
    rttP99Us: byTopology("rttP99Us"),
    ...(rest
      ? {
        lookupsPerSec: rest.lookupsPerSec,
        addonCallP50Us: rest.addonCallP50Us,
        addonOneWriteMBps: rest.addonOneWriteMBps,
        rssGrowthPct: { connections: rest.connections.pct, devices: rest.devices.pct },
        rssMiB: {
          connections: [rest.connections.before, rest.connections.after],
          devices: [rest.devices.before, rest.devices.after]
        },
        idleCpuPctAfterShutdowns: rest.idleCpu
      }
      : {}),
    path: byTopology("path"),
    /** CPU seconds of each subject's process per GiB of the bulk echo (Go: the harness, both nodes). */
    cpuSecondsPerGiB,
    /** CPU seconds of the harness (the echo peer's process) per GiB of each subject's bulk echo. */
    peerCpuSecondsPerGiB: byTopology("peerCpuSecondsPerGiB"),
    /** Packets dropped on the relay path (DERP server and Go's DERP clients) while each subject measured. */
    derpDrops: byTopology("derpDrops"),
    counts: { connections: CONNECTIONS, devices: DEVICES, shutdownsBeforeIdle: SHUTDOWN_CYCLES },
    topologies,
    runs
  }
  if (json) {
    console.log(JSON.stringify(result))
    return
  }
  const f = (n: number | undefined) =>
    n !== undefined && Number.isFinite(n) ? n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2) : "-"
  const ratio = (a: number | undefined, b: number | undefined) =>
    a !== undefined && b !== undefined && b > 0 ? `${(a / b).toFixed(2)}x` : "-"
  const row = (values: Partial<Record<string, number>> | undefined) =>
    keys.map((k) => f(values?.[k]).padStart(8)).join("  ")
  console.log(
    `\nmedians of ${runs} runs, each subject in its own process; ratios are against the Rust crate used directly (same run)`
  )
  for (const [topology, m] of Object.entries(measured)) {
    console.log(
      `\n${
        topology === "lan"
          ? "lan (direct UDP)"
          : topology === "relay"
          ? "relay (UDP dropped on the LAN: DERP over TCP)"
          : "loopback (direct over 127.0.0.1)"
      }`
    )
    console.log("                         Effect     addon      Rust  Go direct   Go DERP")
    console.log(
      `TCP MB/s (echo, 32 MiB)  ${row(m.tcpMBps)}   Effect/Rust ${ratio(m.tcpMBps.effect, m.tcpMBps.rust)}, Effect/Go ${
        ratio(m.tcpMBps.effect, m.tcpMBps.go)
      }, Effect/Go DERP ${ratio(m.tcpMBps.effect, m.tcpMBps.goDerp)}`
    )
    for (const proto of ["tcp", "udp"] as const) {
      console.log(
        `${proto.toUpperCase()} RTT p50 µs          ${row(m.rttP50Us[proto])}   Effect/Rust ${
          ratio(m.rttP50Us[proto].effect, m.rttP50Us[proto].rust)
        }`
      )
      console.log(`${proto.toUpperCase()} RTT p99 µs          ${row(m.rttP99Us[proto])}`)
    }
    console.log(`path                     ${keys.map((k) => String(m.path[k]?.via ?? "-").padStart(8)).join("  ")}`)
    console.log(`CPU s per GiB            ${row(m.cpuSecondsPerGiB)}   (Go: both Go nodes)`)
    console.log(`echo peer CPU s per GiB  ${row(m.peerCpuSecondsPerGiB)}`)
    console.log(`DERP drops               ${row(m.derpDrops)}`)
  }
  if (rest) {
    console.log("")
    console.log(
      `one addon call p50 µs    ${"".padStart(8)}  ${
        f(rest.addonCallP50Us).padStart(8)
      }   (an empty write: each round trip pays two)`
    )
    console.log(
      `one write, MB/s          ${"".padStart(8)}  ${
        f(rest.addonOneWriteMBps).padStart(8)
      }   the echo as one write; /64 KiB writes ${ratio(rest.addonOneWriteMBps, loop?.tcpMBps.addon)}`
    )
    console.log(
      `peerByName per second    ${row(rest.lookupsPerSec)}   Effect/addon ${
        ratio(rest.lookupsPerSec.effect, rest.lookupsPerSec.addon)
      }`
    )
    console.log(
      `RSS growth: ${f(rest.connections.pct)}% after ${CONNECTIONS} connections (${f(rest.connections.before)} → ${
        f(rest.connections.after)
      } MiB), ${f(rest.devices.pct)}% after ${DEVICES} devices (${f(rest.devices.before)} → ${
        f(rest.devices.after)
      } MiB)`
    )
    console.log(`idle CPU after ${SHUTDOWN_CYCLES} device shutdowns: ${f(rest.idleCpu)}% of a core`)
    console.log(`fake tailnet TCP: ${f(rest.fake)} MB/s`)
  }
}

const entry = subjectArg === undefined
  ? main()
  : worker(subjectArg, JSON.parse(process.env.BENCH_HARNESS_INFO ?? "null") as HarnessInfo).then((result) => {
    console.log(JSON.stringify(result))
  })

entry.then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  }
)
