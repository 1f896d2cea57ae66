/**
 * `npm run bench`: the binding measured side by side with what it wraps, in one run, on the
 * loopback tailnet (release build of the addon, inside a fresh network namespace).
 *
 *   1. TCP bulk throughput to the Go peer's echo and back (MB/s of payload)
 *   2. Round trips of 64-byte messages over TCP and UDP (p50, p99 in µs)
 *   3. peerByName calls per second
 *   4. Resident memory growth after 1,000 TCP connections and after 50 devices
 *   5. The fake tailnet's TCP throughput, for reference
 *   6. One call across the napi boundary (an empty write), which each round trip pays twice
 *   7. The process's CPU use while idle after 5 devices were connected and shut down
 *   8. The path each subject's traffic took (direct UDP or the DERP relay)
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
 * through the relay the tunnel is TCP segments, on a direct path UDP datagrams.
 *
 * One file on purpose: the parent and the subject processes it spawns are the same program.
 */
import type { RawDevice } from "@effect-tailscale/core/Backend"
import type { TailscaleService } from "@effect-tailscale/core/Tailscale"
import * as Tailscale from "@effect-tailscale/core/Tailscale"
import * as NativeBackend from "@effect-tailscale/node/NativeBackend"
import * as FakeTailnet from "@effect-tailscale/testing/FakeTailnet"
import { adminRequest, startHarness } from "@effect-tailscale/testing/HarnessProcess"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

const args = process.argv.slice(2)
const json = args.includes("--json")
const runs = args.includes("--runs") ? Number(args[args.indexOf("--runs") + 1]) || 3 : 3
const BULK = 32 * 1024 * 1024
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
  const tcpMBps = await subject.bulk(BULK)
  const rttUdp: Array<number> = []
  for (let i = 0; i < ROUNDS; i++) {
    const rtt = await subject.roundTripUdp()
    if (rtt !== undefined) rttUdp.push(rtt)
  }
  for (let i = 0; i < LOOKUP_WARMUP; i++) await subject.lookup()
  const started = process.hrtime.bigint()
  for (let i = 0; i < LOOKUPS; i++) await subject.lookup()
  const lookupsPerSec = LOOKUPS / (microsSince(started) / 1e6)
  if (subject.emptyCall === undefined) return { tcpMBps, rttTcp, rttUdp, lookupsPerSec }
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
    callUs: percentile(calls, 0.5),
    ...(oneWriteMBps === undefined ? {} : { oneWriteMBps })
  }
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
const rustBaseline = (info: HarnessInfo): Promise<Figures> =>
  new Promise((resolve, reject) => {
    // scripts/bench.sh builds it for the host and says where.
    const binary = process.env.RUST_BASELINE ?? join(root, "target", "release", "tailscale-rust-baseline")
    const child = spawn(binary, [
      info.plainControlUrl,
      info.authKey,
      info.peer.ipv4,
      String(info.peer.tcpEchoPort),
      String(info.peer.udpEchoPort),
      String(BULK),
      String(ROUNDS),
      String(LOOKUPS)
    ], { stdio: ["pipe", "pipe", "inherit"] })
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
      resolve({
        tcpMBps: parsed.tcpMBps,
        rttTcp: [parsed.rttP50Us.tcp, parsed.rttP99Us.tcp],
        rttUdp: [parsed.rttP50Us.udp, parsed.rttP99Us.udp],
        lookupsPerSec: parsed.lookupsPerSec,
        traffic: trafficSince(before)
      })
    })
    child.once("error", reject)
    child.once("exit", (code) => code !== 0 && reject(new Error(`the Rust baseline exited with ${code}`)))
  })

/** The Go node in the harness; `derp` makes it one that never binds UDP, so it uses the relay only. */
const goBaseline = async (info: HarnessInfo, derp: boolean): Promise<Omit<Figures, "lookupsPerSec">> => {
  const before = netCounters()
  const parsed = JSON.parse(
    await adminRequest(info.adminUrl, `/bench-go?bytes=${BULK}&rounds=${ROUNDS}${derp ? "&derp=1" : ""}`)
  )
  return {
    tcpMBps: parsed.tcpMBps,
    rttTcp: [parsed.rttP50Us.tcp, parsed.rttP99Us.tcp],
    rttUdp: [parsed.rttP50Us.udp, parsed.rttP99Us.udp],
    traffic: trafficSince(before),
    reportedPath: parsed.path
  }
}

interface HarnessInfo {
  /** https, with a certificate from the run's CA in `caFile`: what our devices use. */
  controlUrl: string
  caFile: string
  /** The same control over plain http, for the Rust baseline (which cannot take a CA). */
  plainControlUrl: string
  authKey: string
  adminUrl: string
  peer: { ipv4: string; tcpEchoPort: number; udpEchoPort: number }
}

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
const inOwnProcess = <A>(name: string, info: HarnessInfo): Promise<A> =>
  new Promise((resolve, reject) => {
    const passed = ["--connections", "--devices"].flatMap((
      f
    ) => (args.includes(f) ? [f, args[args.indexOf(f) + 1]!] : []))
    const child = spawn(process.execPath, [
      ...process.execArgv,
      self,
      "--subject",
      name,
      ...passed,
      ...(json ? ["--json"] : [])
    ], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, BENCH_HARNESS_INFO: JSON.stringify(info) }
    })
    let last = ""
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line.trim() !== "") last = line
    })
    child.once("error", reject)
    child.once("close", (code) => {
      if (code !== 0) return reject(new Error(`the ${name} subject exited with ${code}`))
      try {
        resolve(JSON.parse(last) as A)
      } catch (error) {
        reject(error)
      }
    })
  })

type GoFigures = Omit<Figures, "lookupsPerSec">

const main = async () => {
  const harness = await startHarness()
  const info = harness.ready as HarnessInfo
  try {
    const samples = {
      effect: [] as Array<Figures>,
      addon: [] as Array<Figures>,
      rust: [] as Array<Figures>,
      go: [] as Array<GoFigures>,
      goDerp: [] as Array<GoFigures>
    }
    const subjects: Array<readonly [string, () => Promise<void>]> = [
      ["raw addon", async () => {
        samples.addon.push(await inOwnProcess<Figures>("addon", info))
      }],
      ["Effect service", async () => {
        samples.effect.push(await inOwnProcess<Figures>("effect", info))
      }],
      ["Rust crate directly", async () => {
        samples.rust.push(await rustBaseline(info))
      }],
      ["Go tsnet node (direct)", async () => {
        samples.go.push(await goBaseline(info, false))
      }],
      ["Go tsnet node (DERP only)", async () => {
        samples.goDerp.push(await goBaseline(info, true))
      }]
    ]
    for (let run = 1; run <= runs; run++) {
      // Each run starts with the next subject, so none always goes first or last.
      for (let i = 0; i < subjects.length; i++) {
        const [name, measureOne] = subjects[(i + run - 1) % subjects.length]!
        progress(`▸ run ${run}/${runs}: ${name}`)
        await measureOne()
      }
    }

    const keys = ["effect", "addon", "rust", "go", "goDerp"] as const
    progress(
      `  speed (medians): ${JSON.stringify({ tcpMBps: keys.map((k) => median(samples[k].map((f) => f.tcpMBps))) })}`
    )
    progress(
      `▸ memory: ${CONNECTIONS} TCP connections through the Effect service (each connect asks the crate's control actor, which the loopback tailnet's throttle holds up to 250 ms)`
    )
    const connections = await inOwnProcess<{ before: number; after: number; pct: number }>("memory-connections", info)
    progress(`▸ memory: ${DEVICES} devices created and shut down`)
    const devices = await inOwnProcess<{ before: number; after: number; pct: number }>("memory-devices", info)
    progress(`▸ idle CPU over ${IDLE_MS / 1000} s after ${SHUTDOWN_CYCLES} devices were connected and shut down`)
    const idleCpu = await inOwnProcess<number>("idle-cpu", info)
    progress("▸ fake tailnet TCP throughput")
    const fake = await inOwnProcess<number>("fake", info)

    const p99 = (figures: Array<GoFigures>, key: "rttTcp" | "rttUdp") =>
      median(figures.map((f) => (f[key].length === 2 ? f[key][1]! : percentile(f[key], 0.99))))
    const p50 = (figures: Array<GoFigures>, key: "rttTcp" | "rttUdp") =>
      median(figures.map((f) => (f[key].length === 2 ? f[key][0]! : percentile(f[key], 0.5))))
    const bySubject = (f: (figures: Array<GoFigures>) => number) =>
      Object.fromEntries(keys.map((k) => [k, f(samples[k])])) as Record<(typeof keys)[number], number>
    const path = Object.fromEntries(keys.map((k) => {
      const traffic = samples[k].flatMap((f) => (f.traffic ? [f.traffic] : []))
      const via = [...new Set(traffic.map(pathOf))].join("/")
      const reported = [...new Set(samples[k].flatMap((f) => (f.reportedPath ? [f.reportedPath] : [])))].join("/")
      return [k, {
        via,
        udpDatagrams: median(traffic.map((t) => t.udpDatagrams)),
        tcpSegments: median(traffic.map((t) => t.tcpSegments)),
        ...(reported === "" ? {} : { reported })
      }]
    }))
    const result = {
      tcpMBps: { ...bySubject((f) => median(f.map((x) => x.tcpMBps))), fake },
      rttP50Us: { tcp: bySubject((f) => p50(f, "rttTcp")), udp: bySubject((f) => p50(f, "rttUdp")) },
      rttP99Us: { tcp: bySubject((f) => p99(f, "rttTcp")), udp: bySubject((f) => p99(f, "rttUdp")) },
      lookupsPerSec: {
        effect: median(samples.effect.map((f) => f.lookupsPerSec)),
        addon: median(samples.addon.map((f) => f.lookupsPerSec)),
        rust: median(samples.rust.map((f) => f.lookupsPerSec))
      },
      addonCallP50Us: median(samples.addon.map((f) => f.callUs ?? NaN)),
      addonOneWriteMBps: median(samples.addon.map((f) => f.oneWriteMBps ?? NaN)),
      rssGrowthPct: { connections: connections.pct, devices: devices.pct },
      rssMiB: { connections: [connections.before, connections.after], devices: [devices.before, devices.after] },
      idleCpuPctAfterShutdowns: idleCpu,
      path,
      counts: { connections: CONNECTIONS, devices: DEVICES, shutdownsBeforeIdle: SHUTDOWN_CYCLES },
      runs
    }
    if (json) {
      console.log(JSON.stringify(result))
    } else {
      const f = (n: number) => (Number.isFinite(n) ? n.toFixed(n >= 100 ? 0 : 1) : "-")
      const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : "-")
      const row = (values: Record<string, number>) => keys.map((k) => f(values[k] ?? NaN).padStart(8)).join("  ")
      console.log(
        `\nmedians of ${runs} runs, each subject in its own process; ratios are against the Rust crate used directly (same run)\n`
      )
      console.log("                         Effect     addon      Rust  Go direct   Go DERP")
      console.log(
        `TCP MB/s (echo, 32 MiB)  ${row(result.tcpMBps)}   Effect/Rust ${
          ratio(result.tcpMBps.effect, result.tcpMBps.rust)
        }, Effect/Go DERP ${ratio(result.tcpMBps.effect, result.tcpMBps.goDerp)}`
      )
      for (const proto of ["tcp", "udp"] as const) {
        console.log(
          `${proto.toUpperCase()} RTT p50 µs          ${row(result.rttP50Us[proto])}   Effect/Rust ${
            ratio(result.rttP50Us[proto].effect, result.rttP50Us[proto].rust)
          }`
        )
        console.log(`${proto.toUpperCase()} RTT p99 µs          ${row(result.rttP99Us[proto])}`)
      }
      console.log(`path                     ${keys.map((k) => String(path[k]!.via).padStart(8)).join("  ")}`)
      console.log(
        `one addon call p50 µs    ${"".padStart(8)}  ${
          f(result.addonCallP50Us).padStart(8)
        }   (an empty write: each round trip pays two)`
      )
      console.log(
        `one write, MB/s          ${"".padStart(8)}  ${
          f(result.addonOneWriteMBps).padStart(8)
        }   the echo as one write; /64 KiB writes ${ratio(result.addonOneWriteMBps, result.tcpMBps.addon)}`
      )
      console.log(
        `peerByName per second    ${row(result.lookupsPerSec)}   Effect/addon ${
          ratio(result.lookupsPerSec.effect, result.lookupsPerSec.addon)
        }`
      )
      console.log(
        `RSS growth: ${f(connections.pct)}% after ${CONNECTIONS} connections (${f(connections.before)} → ${
          f(connections.after)
        } MiB), ${f(devices.pct)}% after ${DEVICES} devices (${f(devices.before)} → ${f(devices.after)} MiB)`
      )
      console.log(`idle CPU after ${SHUTDOWN_CYCLES} device shutdowns: ${f(idleCpu)}% of a core`)
      console.log(`fake tailnet TCP: ${f(fake)} MB/s`)
    }
  } finally {
    await harness.stop()
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
