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
 *
 * for: the Effect service, the raw addon, a Rust program using the crate directly (the ceiling)
 * and a second Go tsnet node (what a user would pick instead). `--json` prints one JSON object
 * on the last line; `--runs N` (default 3) takes medians over N runs.
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
const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const progress = (line: string) => !json && console.error(line)

interface Figures {
  tcpMBps: number
  rttTcp: Array<number>
  rttUdp: Array<number>
  lookupsPerSec: number
  /** p50 µs of an empty write: one promise across the napi boundary and back (the addon only). */
  callUs?: number
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
  return { tcpMBps, rttTcp, rttUdp, lookupsPerSec, callUs: percentile(calls, 0.5) }
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
        for (let sent = 0; sent < bytes; sent += chunk.length) await stream.write(chunk.subarray(0, Math.min(chunk.length, bytes - sent)))
      })()
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
      info.controlUrl, info.authKey, info.peer.ipv4, String(info.peer.tcpEchoPort), String(info.peer.udpEchoPort),
      String(BULK), String(ROUNDS), String(LOOKUPS)
    ], { stdio: ["pipe", "pipe", "inherit"] })
    const lines = createInterface({ input: child.stdout! })
    let joined = false
    lines.on("line", (line) => {
      const parsed = JSON.parse(line)
      if (!joined) {
        joined = true
        adminRequest(info.adminUrl, `/wait-peer?ip=${parsed.ipv4}&timeout=30000`).then(() => child.stdin!.write("go\n"), reject)
        return
      }
      resolve({
        tcpMBps: parsed.tcpMBps,
        rttTcp: [parsed.rttP50Us.tcp, parsed.rttP99Us.tcp],
        rttUdp: [parsed.rttP50Us.udp, parsed.rttP99Us.udp],
        lookupsPerSec: parsed.lookupsPerSec
      })
    })
    child.once("error", reject)
    child.once("exit", (code) => code !== 0 && reject(new Error(`the Rust baseline exited with ${code}`)))
  })

const goBaseline = async (info: HarnessInfo): Promise<Omit<Figures, "lookupsPerSec">> => {
  const parsed = JSON.parse(await adminRequest(info.adminUrl, `/bench-go?bytes=${BULK}&rounds=${ROUNDS}`))
  return {
    tcpMBps: parsed.tcpMBps,
    rttTcp: [parsed.rttP50Us.tcp, parsed.rttP99Us.tcp],
    rttUdp: [parsed.rttP50Us.udp, parsed.rttP99Us.udp]
  }
}

interface HarnessInfo {
  controlUrl: string
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

const main = async () => {
  const harness = await startHarness()
  const info = harness.ready as HarnessInfo
  const backend = await Effect.runPromise(NativeBackend.make())
  const target: Target = { ip: info.peer.ipv4, tcp: info.peer.tcpEchoPort, udp: info.peer.udpEchoPort }
  const connect = (hostname: string) =>
    backend.connect({ controlUrl: info.controlUrl, authKey: info.authKey, hostname, ephemeral: true, connectTimeoutMs: 30_000 })
  try {
    const samples = { effect: [] as Array<Figures>, addon: [] as Array<Figures>, rust: [] as Array<Figures>, go: [] as Array<Omit<Figures, "lookupsPerSec">> }
    const subjects: Array<readonly [string, (run: number) => Promise<void>]> = [
      ["raw addon", async (run) => {
        const device = await connect(`bench-addon-${run}`)
        const ip = await device.ipv4()
        await adminRequest(info.adminUrl, `/wait-peer?ip=${ip}&timeout=30000`)
        const raw = await rawSubject(device, ip, target, 5500)
        await raw.roundTripTcp() // first packets wait for the WireGuard handshake
        samples.addon.push(await measure(raw))
        await raw.close()
        await device.shutdown(5000)
      }],
      ["Effect service", async (run) => {
        const effectScope = await Effect.runPromise(Scope.make())
        const service = await Effect.runPromise(Tailscale.make(backend, {
          controlUrl: info.controlUrl,
          authKey: Redacted.make(info.authKey),
          hostname: `bench-effect-${run}`,
          ephemeral: true,
          logFilter: "off"
        }).pipe(Scope.provide(effectScope)))
        const effectIp = NetAddress.formatIp(await Effect.runPromise(service.ipv4))
        await adminRequest(info.adminUrl, `/wait-peer?ip=${effectIp}&timeout=30000`)
        const viaEffect = await effectSubject(service, target, 5501)
        await viaEffect.roundTripTcp()
        samples.effect.push(await measure(viaEffect))
        await viaEffect.close()
        await Effect.runPromise(Scope.close(effectScope, Exit.void))
      }],
      ["Rust crate directly", async () => {
        samples.rust.push(await rustBaseline(info))
      }],
      ["Go tsnet node", async () => {
        samples.go.push(await goBaseline(info))
      }]
    ]
    for (let run = 1; run <= runs; run++) {
      // Each run starts with the next subject, so none always goes first or last.
      for (let i = 0; i < subjects.length; i++) {
        const [name, measureOne] = subjects[(i + run - 1) % subjects.length]!
        progress(`▸ run ${run}/${runs}: ${name}`)
        await measureOne(run)
      }
    }

    progress(`  speed (medians): ${JSON.stringify({
      tcpMBps: ["effect", "addon", "rust", "go"].map((k) => median((samples as Record<string, Array<{ tcpMBps: number }>>)[k]!.map((f) => f.tcpMBps)))
    })}`)
    progress(`▸ memory: ${CONNECTIONS} TCP connections through the Effect service (each connect asks the crate's control actor, which the loopback tailnet's throttle holds up to 250 ms)`)
    const memScope = await Effect.runPromise(Scope.make())
    const memService = await Effect.runPromise(Tailscale.make(backend, {
      controlUrl: info.controlUrl, authKey: Redacted.make(info.authKey), hostname: "bench-memory", ephemeral: true, logFilter: "off"
    }).pipe(Scope.provide(memScope)))
    await adminRequest(info.adminUrl, `/wait-peer?ip=${NetAddress.formatIp(await Effect.runPromise(memService.ipv4))}&timeout=30000`)
    const connections = await growth(CONNECTIONS, () =>
      Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        const stream = yield* memService.dial({ ip: target.ip, port: target.tcp })
        yield* stream.write(message)
        yield* stream.read()
      }))))
    await Effect.runPromise(Scope.close(memScope, Exit.void))

    progress(`▸ memory: ${DEVICES} devices created and shut down`)
    const devices = await growth(DEVICES, async (i) => {
      const device = await connect(`bench-device-${i < 0 ? `warm${-i}` : i}`)
      await device.ipv4()
      await device.shutdown(5000)
    })

    progress("▸ fake tailnet TCP throughput")
    const fake = median([await fakeThroughput(), await fakeThroughput(), await fakeThroughput()])

    const pick = (figures: Array<{ tcpMBps: number; rttTcp: Array<number>; rttUdp: Array<number> }>, p: number, key: "rttTcp" | "rttUdp") =>
      median(figures.map((f) => (f[key].length === 2 && p !== 0.5 ? f[key][1]! : percentile(f[key], p))))
    const p50 = (figures: typeof samples.go, key: "rttTcp" | "rttUdp") =>
      median(figures.map((f) => (f[key].length === 2 ? f[key][0]! : percentile(f[key], 0.5))))
    const result = {
      tcpMBps: {
        effect: median(samples.effect.map((f) => f.tcpMBps)),
        addon: median(samples.addon.map((f) => f.tcpMBps)),
        rust: median(samples.rust.map((f) => f.tcpMBps)),
        go: median(samples.go.map((f) => f.tcpMBps)),
        fake
      },
      rttP50Us: {
        tcp: { effect: p50(samples.effect, "rttTcp"), addon: p50(samples.addon, "rttTcp"), rust: p50(samples.rust, "rttTcp"), go: p50(samples.go, "rttTcp") },
        udp: { effect: p50(samples.effect, "rttUdp"), addon: p50(samples.addon, "rttUdp"), rust: p50(samples.rust, "rttUdp"), go: p50(samples.go, "rttUdp") }
      },
      rttP99Us: {
        tcp: { effect: pick(samples.effect, 0.99, "rttTcp"), addon: pick(samples.addon, 0.99, "rttTcp"), rust: pick(samples.rust, 0.99, "rttTcp"), go: pick(samples.go, 0.99, "rttTcp") },
        udp: { effect: pick(samples.effect, 0.99, "rttUdp"), addon: pick(samples.addon, 0.99, "rttUdp"), rust: pick(samples.rust, 0.99, "rttUdp"), go: pick(samples.go, 0.99, "rttUdp") }
      },
      lookupsPerSec: {
        effect: median(samples.effect.map((f) => f.lookupsPerSec)),
        addon: median(samples.addon.map((f) => f.lookupsPerSec)),
        rust: median(samples.rust.map((f) => f.lookupsPerSec))
      },
      addonCallP50Us: median(samples.addon.map((f) => f.callUs ?? NaN)),
      rssGrowthPct: { connections: connections.pct, devices: devices.pct },
      rssMiB: { connections: [connections.before, connections.after], devices: [devices.before, devices.after] },
      counts: { connections: CONNECTIONS, devices: DEVICES },
      runs
    }
    if (json) {
      console.log(JSON.stringify(result))
    } else {
      const f = (n: number) => (Number.isFinite(n) ? n.toFixed(n >= 100 ? 0 : 1) : "-")
      const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : "-")
      console.log(`\nmedians of ${runs} runs; ratios are against the Rust crate used directly (same run)\n`)
      console.log("                         Effect    addon     Rust      Go")
      console.log(`TCP MB/s (echo, 32 MiB)  ${[result.tcpMBps.effect, result.tcpMBps.addon, result.tcpMBps.rust, result.tcpMBps.go].map((n) => f(n).padStart(8)).join("  ")}   Effect/Rust ${ratio(result.tcpMBps.effect, result.tcpMBps.rust)}`)
      for (const proto of ["tcp", "udp"] as const) {
        const a = result.rttP50Us[proto]
        const b = result.rttP99Us[proto]
        console.log(`${proto.toUpperCase()} RTT p50 µs          ${[a.effect, a.addon, a.rust, a.go].map((n) => f(n).padStart(8)).join("  ")}   Effect/Rust ${ratio(a.effect, a.rust)}`)
        console.log(`${proto.toUpperCase()} RTT p99 µs          ${[b.effect, b.addon, b.rust, b.go].map((n) => f(n).padStart(8)).join("  ")}`)
      }
      console.log(`one addon call p50 µs    ${"".padStart(8)}  ${f(result.addonCallP50Us).padStart(8)}   (an empty write: each round trip pays two)`)
      console.log(`peerByName per second    ${[result.lookupsPerSec.effect, result.lookupsPerSec.addon, result.lookupsPerSec.rust].map((n) => f(n).padStart(8)).join("  ")}`)
      console.log(`RSS growth: ${f(connections.pct)}% after ${CONNECTIONS} connections (${f(connections.before)} → ${f(connections.after)} MiB), ${f(devices.pct)}% after ${DEVICES} devices (${f(devices.before)} → ${f(devices.after)} MiB)`)
      console.log(`fake tailnet TCP: ${f(fake)} MB/s`)
    }
  } finally {
    await harness.stop()
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  }
)
