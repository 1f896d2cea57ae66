/**
 * Which path a peer's traffic takes and disco pings, from the backend's watch of the runtime's
 * direct paths (no polling), plus the gauge of peers on a direct path.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { RawDirectPaths, RawPong } from "../Backend.ts"
import type { NodeInfo } from "../NodeInfo.ts"
import { PeerPath, type Pong } from "../PeerPath.ts"
import { deviceClosed, type TailscaleError } from "../TailscaleError.ts"
import { type Generation, type Supervised, watchOnce } from "./supervisor.ts"

/**
 * The device's direct paths once their version differs from `known` (without it: now), or
 * `null` once the device has ended and the supervisor knows why. A backend without the watch
 * has no direct paths.
 */
const watchPaths = (generation: Generation, operation: string, known?: number) =>
  generation.raw.watchPaths === undefined
    ? Effect.succeed<RawDirectPaths | null>({ version: 0, paths: [] })
    : watchOnce(generation, operation, (raw) => raw.watchPaths!(known))

/** The path to `peer` in `paths`: direct when it has one, else its DERP home region. */
const pathIn = (paths: RawDirectPaths, peer: NodeInfo): PeerPath => {
  const direct = paths.paths.find((path) => path.nodeKey === peer.nodeKey)
  return direct === undefined
    ? PeerPath.Relay({ region: peer.derpRegion })
    : PeerPath.Direct({ endpoint: direct.endpoint })
}

/** The path the device's traffic to `peer` takes now. */
export const pathTo = (supervised: Supervised, peer: NodeInfo): Effect.Effect<PeerPath, TailscaleError> =>
  Effect.gen(function*() {
    // A device that ends meanwhile is followed by its successor, or the gate's failure.
    while (true) {
      const generation = yield* supervised.current
      const paths = yield* watchPaths(generation, "pathTo")
      if (paths !== null) return pathIn(paths, peer)
      if (supervised.now() === generation) return yield* Effect.fail(deviceClosed("device"))
    }
  })

/** A backend's pong as the service reports it. */
export const pongFrom = (peer: NodeInfo, raw: RawPong): Pong => ({
  latency: Duration.millis(raw.latencyMs),
  path: raw.endpoint === undefined || raw.endpoint === null
    ? PeerPath.Relay({ region: peer.derpRegion })
    : PeerPath.Direct({ endpoint: raw.endpoint })
})

/**
 * Calls `report` with the number of peers on a direct path at each change, across rebuilt
 * devices, until the supervisor stops (a metric: failures end it quietly).
 */
export const watchDirectCount = (
  supervised: Supervised,
  report: (count: number) => Effect.Effect<void>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    let generation: Generation | undefined
    let version: number | undefined
    while (true) {
      const current = yield* supervised.current
      if (current !== generation) [generation, version] = [current, undefined]
      if (current.raw.watchPaths === undefined) return
      const paths = yield* watchPaths(current, "watchPaths", version)
      if (paths === null) {
        if (supervised.now() === current) return
        continue
      }
      version = paths.version
      yield* report(paths.paths.length)
    }
  }).pipe(Effect.ignore)
