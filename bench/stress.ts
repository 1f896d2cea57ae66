/**
 * `npm run stress`: a device on the loopback tailnet under full-size field conditions, never
 * part of `npm test` (which runs the same workloads smaller, in survival.test.ts):
 *
 *   1. 1,000 concurrent dials, each with an echo round trip, to the Go peer
 *   2. 10,000 concurrent peer lookups
 *   3. 20 short-lived clients, one after another, dialing a long-lived device and leaving
 *   4. control restarted 5 times (300 ms away each time) under a device with an open stream
 *   5. control away for 60 s under a device with 10 open echo streams, 20 dials meanwhile, and a
 *      new peer dialed once control is back
 *
 * Around the lookups it reports the process's resident memory (`rssMiB`: before, peak, and after
 * the device closed).
 * Each call must succeed or fail with a typed, retryable reason, and the device must work
 * afterwards. `--json` ends with one JSON line; sizes: `--dials N --lookups N --clients N
 * --restarts N --outage SECONDS`.
 */
import { connect, layer as localTailnet, LocalTailnet } from "@effect-tailscale/testing/LocalTailnet"
import * as Workloads from "@effect-tailscale/testing/Workloads"
import * as Effect from "effect/Effect"
import * as NetAddress from "effect/net/NetAddress"

const args = process.argv.slice(2)
const json = args.includes("--json")
const size = (name: string, fallback: number) => {
  const at = args.indexOf(name)
  return at >= 0 ? Number(args[at + 1]) || fallback : fallback
}
const progress = (line: string) => !json && console.error(line)

const summary = (tally: Workloads.Tally) => ({
  attempted: tally.attempted,
  succeeded: tally.succeeded,
  typedFailures: tally.typedFailures,
  healthyAfter: tally.healthyAfter,
  ...(tally.otherFailures > 0 ? { otherFailures: tally.otherFailures } : {}),
  ...(Object.keys(tally.reasons).length > 0 ? { reasons: tally.reasons } : {})
})

const timed = <A, E, R>(label: string, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const started = Date.now()
    const result = yield* effect
    progress(`${label}: ${JSON.stringify(result)} (${((Date.now() - started) / 1000).toFixed(1)} s)`)
    return result
  })

const program = Effect.gen(function*() {
  const tailnet = yield* LocalTailnet
  const { peer } = tailnet.info
  const echoPeer = { hostname: peer.hostname, port: peer.tcpEchoPort }
  const join = (hostname: string) =>
    Effect.gen(function*() {
      const device = yield* connect({ hostname })
      yield* tailnet.waitForPeer(NetAddress.formatIp(yield* device.ipv4))
      return device
    })

  const dials = yield* Effect.scoped(
    Effect.flatMap(
      join("stress-dials"),
      (device) =>
        timed("dials", Effect.map(Workloads.concurrentDials(device, echoPeer, size("--dials", 1_000)), summary))
    )
  )
  const mib = () => Math.round(process.memoryUsage().rss / 1024 / 1024)
  // Before and after the lookups alike: after a full collection, so garbage waiting for V8 does
  // not count, and a short wait.
  const gc = (globalThis as { gc?: () => void }).gc
  const settled = Effect.sync(() => gc?.()).pipe(Effect.andThen(Effect.sleep("2 seconds")), Effect.map(mib))
  const rssBefore = yield* settled
  let rssPeak = rssBefore
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, mib())), 100)
  const lookups = yield* Effect.scoped(
    Effect.flatMap(
      join("stress-lookups"),
      (device) =>
        timed("lookups", Effect.map(Workloads.concurrentLookups(device, echoPeer, size("--lookups", 10_000)), summary))
    )
  )
  clearInterval(sampler)
  // What stays once the device is closed: its shutdown hands glibc's free pages back and asks V8
  // to give back the heap pages the burst grew into.
  const rssMiB = { before: rssBefore, peak: rssPeak, afterClose: yield* settled }
  progress(`resident memory around the lookups: ${JSON.stringify(rssMiB)} MiB`)
  const churn = yield* Effect.scoped(Effect.gen(function*() {
    const server = yield* join("stress-server")
    const serverKey = (yield* server.self).nodeKey
    yield* Workloads.serveEcho(server, 7100)
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        // How often the long-lived device asked control for a lite update meanwhile.
        progress(`server's map requests to control: ${JSON.stringify(yield* tailnet.mapRequestsOf(serverKey))}`)
      }).pipe(Effect.ignore)
    )
    return yield* timed(
      "churn",
      Effect.map(
        Workloads.churn(
          (index) => connect({ hostname: `stress-client-${index}` }).pipe(Effect.provideService(LocalTailnet, tailnet)),
          { hostname: "stress-server", port: 7100 },
          server,
          echoPeer,
          size("--clients", 20),
          progress
        ),
        summary
      )
    )
  }))
  const controlRestarts = yield* Effect.scoped(Effect.flatMap(join("stress-restarts"), (device) =>
    timed(
      "control restarts",
      Workloads.controlRestarts(device, echoPeer, tailnet.restartControl(300), size("--restarts", 5))
    )))
  const controlOutage = yield* Effect.scoped(Effect.flatMap(join("stress-outage"), (device) =>
    timed(
      "control outage",
      Workloads.controlOutage(
        device,
        echoPeer,
        { stop: tailnet.stopControl, start: tailnet.startControl },
        connect({ hostname: "stress-newcomer" }).pipe(Effect.provideService(LocalTailnet, tailnet)),
        { seconds: size("--outage", 60) }
      )
    )))
  return { dials, lookups, rssMiB, churn, controlRestarts, controlOutage }
})

const result = await Effect.runPromise(program.pipe(Effect.provide(localTailnet())))
const outage = result.controlOutage
const survived = [result.dials, result.lookups, result.churn].every((t) => t.healthyAfter && !("otherFailures" in t)) &&
  result.controlRestarts.recovered === result.controlRestarts.attempted &&
  outage.openStreamsSurvived === 10 && outage.bytesLost === 0 &&
  outage.dialsDuringOutage.succeeded === outage.dialsDuringOutage.attempted && outage.newPeerReachableAfterMs >= 0
if (json) console.log(JSON.stringify(result))
process.exitCode = survived ? 0 : 1
