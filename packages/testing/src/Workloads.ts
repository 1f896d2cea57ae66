/**
 * Field conditions for a device on the loopback tailnet: many concurrent dials and lookups,
 * short-lived clients that dial a long-lived device and leave, control restarts. The survival
 * tests in `npm test` run them at sizes that killed the device before; `npm run stress` at full
 * size. Each returns what happened as plain figures.
 *
 * @since 0.1.0
 */
import type { DialTarget } from "@effect-tailscale/core/Address"
import type { ControlLink } from "@effect-tailscale/core/DeviceState"
import type { TailscaleService } from "@effect-tailscale/core/Tailscale"
import { TailscaleError, timeout } from "@effect-tailscale/core/TailscaleError"
import type { TcpStream } from "@effect-tailscale/core/TcpStream"
import * as Arr from "effect/Array"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

/**
 * What a workload did: attempts, successes, failures by kind, and whether the device still works.
 *
 * @category models
 */
export interface Tally {
  readonly attempted: number
  readonly succeeded: number
  /** Failed with a `TailscaleError` whose reason is retryable. */
  readonly typedFailures: number
  /** Anything else: a non-retryable reason, a wrong answer, a defect. Must stay 0. */
  readonly otherFailures: number
  /** The reasons of every failure, counted. */
  readonly reasons: Readonly<Record<string, number>>
  /** A lookup and a dial with echo work once the load is over. */
  readonly healthyAfter: boolean
}

/**
 * A peer and port the workloads dial (an echo server).
 *
 * @category models
 */
export interface Target {
  readonly hostname: string
  readonly port: number
}

const describeFailure = (exit: Exit.Exit<unknown, unknown>): { readonly typed: boolean; readonly reason: string } => {
  if (Exit.isSuccess(exit)) return { typed: false, reason: "success" }
  const failure = exit.cause.reasons.find((reason) => reason._tag === "Fail")
  const error = failure?._tag === "Fail" ? failure.error : undefined
  if (error instanceof TailscaleError) return { typed: error.isRetryable, reason: error.reason._tag }
  return { typed: false, reason: error instanceof Error ? error.message : exit.cause.toString().slice(0, 120) }
}

/** 0, 1, ... `count - 1`: the indices of a workload's calls or rounds. */
const indices = (count: number) => Array.from({ length: count }, (_, index) => index)

/** Runs `count` calls, all at once unless `concurrency` says otherwise, and counts how each ended. */
const tally = (
  count: number,
  call: (index: number) => Effect.Effect<void, unknown>,
  healthy: Effect.Effect<boolean>,
  concurrency: number | "unbounded" = "unbounded"
): Effect.Effect<Tally> =>
  Effect.gen(function*() {
    const exits = yield* Effect.forEach(indices(count), (index) => Effect.exit(call(index)), { concurrency })
    const reasons: Record<string, number> = {}
    let succeeded = 0
    let typedFailures = 0
    for (const exit of exits) {
      if (Exit.isSuccess(exit)) {
        succeeded++
        continue
      }
      const { reason, typed } = describeFailure(exit)
      reasons[reason] = (reasons[reason] ?? 0) + 1
      if (typed) typedFailures++
    }
    return {
      attempted: count,
      succeeded,
      typedFailures,
      otherFailures: count - succeeded - typedFailures,
      reasons,
      healthyAfter: yield* healthy
    }
  })

/**
 * Waits until `device` is `Running` with control `link`, within `limit` (none by default).
 *
 * @category utils
 */
export const untilControl = (device: TailscaleService, link: ControlLink, limit?: Duration.Input) => {
  const running = device.states.pipe(
    Stream.filter((state) => state._tag === "Running" && state.control === link),
    Stream.runHead
  )
  return limit === undefined ? running : Effect.timeout(running, limit)
}

/**
 * One dial of `target` by name with a round trip, each step within `limit`; a wrong echo is a failure.
 *
 * @category utils
 */
export const echoOnce = (
  device: TailscaleService,
  target: Target,
  payload: string,
  limit: Duration.Input = "60 seconds"
) => echoAt(device, { peer: target.hostname, port: target.port }, payload, limit)

/**
 * One dial with a round trip, each step within `limit`; a wrong echo is a failure.
 *
 * @category utils
 */
export const echoAt = (
  device: TailscaleService,
  to: DialTarget,
  payload: string,
  limit: Duration.Input = "60 seconds"
) =>
  Effect.scoped(Effect.gen(function*() {
    const stream = yield* device.dial(to, { timeout: limit })
    yield* stream.write(payload)
    const reply = yield* stream.read({ timeout: limit })
    const text = Option.match(reply, { onNone: () => "", onSome: (bytes) => new TextDecoder().decode(bytes) })
    if (text !== payload) return yield* Effect.fail(new Error(`echo: sent ${payload}, got ${JSON.stringify(text)}`))
  }))

/**
 * A lookup and an echo within 30 s each.
 *
 * @category guards
 */
export const isHealthy = (device: TailscaleService, target: Target): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const peer = yield* device.peerByName(target.hostname, { timeout: "30 seconds" })
    if (Option.isNone(peer)) return false
    yield* echoOnce(device, target, "still alive").pipe(Effect.timeout("30 seconds"))
    return true
  }).pipe(Effect.orElseSucceed(() => false))

/**
 * `count` dials at once, each with a round trip, each step within `limit`.
 *
 * @category utils
 */
export const concurrentDials = (
  device: TailscaleService,
  target: Target,
  count: number,
  limit: Duration.Input = "60 seconds"
) => tally(count, (index) => echoOnce(device, target, `dial ${index}`, limit), isHealthy(device, target))

/**
 * `count` dials one after another, each with a round trip, each step within `limit`: every
 * dial closes its stream before the next begins, so the netstack still holds the endpoints of
 * the connections just closed.
 *
 * @category utils
 */
export const sequentialDials = (
  device: TailscaleService,
  target: Target,
  count: number,
  limit: Duration.Input = "60 seconds"
) => tally(count, (index) => echoOnce(device, target, `dial ${index}`, limit), isHealthy(device, target), 1)

/**
 * `count` lookups of the target by name at once; each must find it.
 *
 * @category utils
 */
export const concurrentLookups = (device: TailscaleService, target: Target, count: number) =>
  tally(
    count,
    (index) =>
      Effect.flatMap(device.peerByName(target.hostname, { timeout: "60 seconds" }), (peer) =>
        Option.isSome(peer) ? Effect.void : Effect.fail(new Error(`lookup ${index}: ${target.hostname} not found`))),
    isHealthy(device, target)
  )

/**
 * `count` short-lived clients, one after another: each joins, dials the long-lived device
 * (`server`, which echoes on `server.port`), and leaves. Then the long-lived device must still
 * reach `peer`.
 *
 * @category utils
 */
export const churn = (
  join: (index: number) => Effect.Effect<TailscaleService, unknown, Scope.Scope>,
  server: Target,
  serverDevice: TailscaleService,
  peer: Target,
  count: number,
  progress: (line: string) => void = () => {}
) =>
  Effect.gen(function*() {
    const serverIp = NetAddress.formatIp(yield* serverDevice.ipv4)
    // One client after another (Effect.forEach is sequential by default).
    const exits = yield* Effect.forEach(indices(count), (index) =>
      Effect.gen(function*() {
        const started = Date.now()
        const marks: Array<string> = []
        const mark = (what: string) => Effect.sync(() => marks.push(`${what} ${Date.now() - started} ms`))
        const exit = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
          const client = yield* join(index)
          yield* mark("joined")
          // At once, by IP, as a program would: the dial waits for the client's first peer map,
          // and its SYNs are retransmitted (1 s, 2 s, ...) until control has told the server
          // about the client.
          yield* echoAt(client, { ip: serverIp, port: server.port }, `client ${index}`)
          yield* mark("echoed")
        })))
        progress(
          `client ${index}: ${marks.join(", ")}, left ${Date.now() - started} ms${
            Exit.isFailure(exit) ? " (failed)" : ""
          }`
        )
        return exit
      }))
    return yield* tally(count, (index) => exits[index]!, isHealthy(serverDevice, peer))
  })

/**
 * Waits (up to 30 s) until `device` has `ip` among its peers.
 *
 * @category utils
 */
export const knows = (device: TailscaleService, ip: string) =>
  device.peerByIp(ip).pipe(
    Effect.filterOrFail(Option.isSome, () => new Error(`${ip} is not a peer yet`)),
    Effect.retry(Schedule.spaced("100 millis")),
    Effect.timeoutOrElse({
      duration: "30 seconds",
      orElse: () => Effect.fail(timeout("waiting for a new peer", "30 seconds"))
    })
  )

/**
 * Echoes every connection on `port` until the scope closes; each connection closes at its end.
 *
 * @category utils
 */
export const serveEcho = (device: TailscaleService, port: number) =>
  Effect.gen(function*() {
    const listener = yield* device.listen(port)
    yield* Effect.forkScoped(
      Effect.forever(Effect.gen(function*() {
        const connection = yield* Scope.make()
        const stream = yield* listener.accept().pipe(Scope.provide(connection))
        // Every chunk read goes back, until the peer finishes sending.
        const echo = Stream.run(stream.stream, stream.sink)
        yield* Effect.forkScoped(echo.pipe(Effect.ignore, Effect.ensuring(Scope.close(connection, Exit.void))))
      })).pipe(Effect.ignore)
    )
  })

/**
 * How the device came through control restarts: how many, how many it recovered from, the slowest.
 *
 * @category models
 */
export interface Restarts {
  readonly attempted: number
  readonly recovered: number
  readonly maxRecoveryMs: number
}

/**
 * Restarts control `count` times; after each, waits (up to `limitMs`) until the device is
 * connected to control again and an echo works. Recovery is the time from the restart to that
 * echo.
 *
 * @category utils
 */
export const controlRestarts = (
  device: TailscaleService,
  target: Target,
  restart: Effect.Effect<void, unknown>,
  count: number,
  limitMs = 60_000
) =>
  Effect.gen(function*() {
    // One restart after another; each round's recovery time, or None when it did not recover.
    const recoveries = yield* Effect.forEach(indices(count), (round) =>
      Effect.gen(function*() {
        const started = Date.now()
        yield* restart
        const back = yield* Effect.gen(function*() {
          // Past the moment control was seen away (when it was), so the session from before the
          // restart does not count; then control connected again.
          yield* device.states.pipe(
            Stream.filter((state) => state._tag !== "Running" || state.control === "Unreachable"),
            Stream.runHead,
            Effect.timeout("3 seconds"),
            Effect.ignore
          )
          yield* untilControl(device, "Connected")
          yield* Effect.retry(echoOnce(device, target, `restart ${round}`), { times: 5 })
        }).pipe(Effect.timeout(limitMs), Effect.exit)
        return Exit.isSuccess(back) ? Option.some(Date.now() - started) : Option.none<number>()
      }))
    const recovered = Arr.getSomes(recoveries)
    return { attempted: count, recovered: recovered.length, maxRecoveryMs: Math.max(0, ...recovered) }
  })

/**
 * What `controlOutage` measured.
 *
 * @category models
 */
export interface OutageReport {
  readonly seconds: number
  readonly openStreamsSurvived: number
  /** Bytes an open stream sent during the outage that never came back. */
  readonly bytesLost: number
  readonly dialsDuringOutage: { readonly attempted: number; readonly succeeded: number }
  /** From control's return until a device that joined then was reached; -1 when it never was. */
  readonly newPeerReachableAfterMs: number
}

/**
 * Control away for `seconds` under `device`, with `streams` echo streams to `target` open and
 * moving bytes all along, and `dials` new dials spread over the outage. Once control is back, a
 * new device joins (`joinNewcomer`) and `device` dials it by IP until it answers.
 *
 * @category utils
 */
export const controlOutage = (
  device: TailscaleService,
  target: Target,
  control: { readonly stop: Effect.Effect<void, unknown>; readonly start: Effect.Effect<void, unknown> },
  joinNewcomer: Effect.Effect<TailscaleService, unknown, Scope.Scope>,
  { dials = 20, seconds, streams = 10 }: {
    readonly seconds: number
    readonly streams?: number
    readonly dials?: number
  }
) =>
  Effect.gen(function*() {
    const chunk = new Uint8Array(16 * 1024).map((_, i) => i % 251)
    let running = true
    let sent = 0
    let echoed = 0
    // Each stream writes a chunk and reads it back, until the outage ends; true if it never failed.
    const keepEchoing = (stream: TcpStream) =>
      Effect.gen(function*() {
        while (running) {
          yield* stream.write(chunk)
          sent += chunk.length
          let back = 0
          while (back < chunk.length) {
            const bytes = Option.getOrElse(yield* stream.read({ timeout: "30 seconds" }), () => new Uint8Array(0))
            if (bytes.length === 0) return yield* Effect.fail(new Error("the echo stream ended"))
            back += bytes.length
          }
          echoed += back
        }
      })
    const open = yield* Effect.forEach(
      indices(streams),
      () => device.dial({ peer: target.hostname, port: target.port }, { timeout: "30 seconds" })
    )
    const loops = yield* Effect.forEach(open, (stream) => Effect.forkScoped(Effect.exit(keepEchoing(stream))))

    yield* control.stop
    const started = Date.now()
    const dialExits = yield* Effect.forEach(indices(dials), (index) =>
      Effect.exit(echoOnce(device, target, `dial during the outage ${index}`, "10 seconds")).pipe(
        Effect.tap(() =>
          Effect.sleep(Math.max(0, (seconds * 1000) / dials - 100))
        )
      ))
    yield* Effect.sleep(Math.max(0, started + seconds * 1000 - Date.now()))
    running = false
    const streamExits = yield* Effect.forEach(loops, Fiber.join)

    yield* control.start
    const back = Date.now()
    const newcomer = yield* joinNewcomer
    yield* serveEcho(newcomer, 7200)
    const newcomerIp = NetAddress.formatIp(yield* newcomer.ipv4)
    const reached = yield* echoAt(device, { ip: newcomerIp, port: 7200 }, "newcomer", "10 seconds").pipe(
      Effect.retry(Schedule.spaced("500 millis")),
      Effect.timeout("90 seconds"),
      Effect.exit
    )
    const report: OutageReport = {
      seconds,
      openStreamsSurvived: streamExits.filter(Exit.isSuccess).length,
      bytesLost: sent - echoed,
      dialsDuringOutage: { attempted: dials, succeeded: dialExits.filter(Exit.isSuccess).length },
      newPeerReachableAfterMs: Exit.isSuccess(reached) ? Date.now() - back : -1
    }
    return report
  })
