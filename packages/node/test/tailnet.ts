/**
 * The loopback tailnet for this package's tests: the harness that
 * `@effect-tailscale/tailnet-harness` starts (control, DERP, STUN and the Go peer `echo-peer`),
 * and devices joined with this package's own `NodeTailscale.make`. `@effect-tailscale/testing`'s
 * `LocalTailnet` does more, but testing depends on this package, so its tests cannot use it.
 */
import type { ControlLink } from "@effect-tailscale/core/DeviceState"
import type { NodeInfo } from "@effect-tailscale/core/NodeInfo"
import type { TailscaleService } from "@effect-tailscale/core/Tailscale"
import {
  adminRequest,
  adminRequestBytes,
  type HarnessInfo,
  startHarness,
  type StartOptions
} from "@effect-tailscale/tailnet-harness/HarnessProcess"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as NodeTailscale from "../src/NodeTailscale.ts"

/** A byte count and its SHA-256, as the Go peer reports a transfer. */
export interface Transfer {
  readonly bytes: number
  readonly sha256: string
}

/** The running harness: its ready line, and the admin calls the tests make. */
export interface LoopbackTailnetService {
  readonly info: HarnessInfo
  /** Waits until the Go peer sees `ip` in its network map. */
  readonly waitForPeer: (ip: string) => Effect.Effect<{ readonly hostname: string }, Error>
  /** The Go peer dials `address` ("ip:port"), sends `data`, and returns what it read back. */
  readonly dialFromPeer: (address: string, data: Uint8Array | string) => Effect.Effect<Uint8Array, Error>
  /** The Go peer dials `address`, sends `bytes` of the pattern (byte i = i mod 251) and closes. */
  readonly sendFromPeer: (address: string, bytes: number) => Effect.Effect<Transfer, Error>
  /** The Go peer GETs `url` over the tailnet. */
  readonly fetchFromPeer: (url: string) => Effect.Effect<{ status: number; body: string }, Error>
  /** Stops control until `startControl`. */
  readonly stopControl: Effect.Effect<void, Error>
  readonly startControl: Effect.Effect<void, Error>
}

export class LoopbackTailnet extends Context.Service<LoopbackTailnet, LoopbackTailnetService>()(
  "@effect-tailscale/node/test/LoopbackTailnet"
) {}

/** The harness for the layer's lifetime (it refuses to start outside `scripts/isolated.sh`). */
export const layer = (options?: StartOptions): Layer.Layer<LoopbackTailnet, Error> =>
  Layer.effect(
    LoopbackTailnet,
    Effect.gen(function*() {
      const harness = yield* Effect.acquireRelease(
        Effect.tryPromise({ try: () => startHarness(options), catch: (cause) => new Error(String(cause)) }),
        (running) => Effect.promise(() => running.stop())
      )
      const { adminUrl } = harness.ready
      const fail = (path: string) => (cause: unknown) =>
        new Error(`harness ${path.split("?")[0]}: ${String(cause)}\n${harness.stderrTail()}`)
      const bytes = (path: string, init?: Parameters<typeof adminRequestBytes>[2]) =>
        Effect.tryPromise({ try: () => adminRequestBytes(adminUrl, path, init), catch: fail(path) })
      const text = (path: string, init?: Parameters<typeof adminRequest>[2]) =>
        Effect.tryPromise({ try: () => adminRequest(adminUrl, path, init), catch: fail(path) })
      const json = <A>(path: string) => Effect.map(text(path), (body) => JSON.parse(body) as A)
      const q = encodeURIComponent
      return {
        info: harness.ready,
        waitForPeer: (ip) => json(`/wait-peer?ip=${q(ip)}&timeout=30000`),
        dialFromPeer: (address, data) =>
          bytes(`/dial-tcp?addr=${q(address)}&timeout=30000`, { method: "POST", body: data }),
        sendFromPeer: (address, n) => json(`/send-tcp?addr=${q(address)}&n=${n}&timeout=60000`),
        fetchFromPeer: (url) => json(`/fetch?url=${q(url)}&timeout=30000`),
        stopControl: Effect.asVoid(text("/control-stop", { method: "POST" })),
        startControl: Effect.asVoid(text("/control-start", { method: "POST" }))
      } satisfies LoopbackTailnetService
    })
  )

/** A device joined to the loopback tailnet for the scope, ephemeral and trusting its CA. */
export const connect = (options: Omit<NodeTailscale.NodeTailscaleOptions, "controlUrl"> = {}) =>
  Effect.gen(function*() {
    const tailnet = yield* LoopbackTailnet
    return yield* NodeTailscale.make({
      ephemeral: true,
      // The crate's records are noise in test output; TS_TEST_LOG=debug (etc.) shows them.
      logFilter: process.env.TS_TEST_LOG ?? "off",
      authKey: Redacted.make(tailnet.info.authKey),
      ...options,
      controlUrl: tailnet.info.controlUrl,
      caFile: tailnet.info.caFile
    })
  })

/** Waits until `device`'s network map has `peer` (`peerChanges` starts with every peer it already has). */
export const untilPeer = (device: TailscaleService, peer: NodeInfo, limit: Duration.Input) =>
  Effect.timeout(
    device.peerChanges.pipe(
      Stream.filter((change) => change._tag === "Added" && change.peer.stableId === peer.stableId),
      Stream.runHead
    ),
    limit
  )

/** Waits until `device` runs with its control link in `link`. */
export const untilControl = (device: TailscaleService, link: ControlLink, limit: Duration.Input) =>
  Effect.timeout(
    device.states.pipe(Stream.filter((state) => state._tag === "Running" && state.control === link), Stream.runHead),
    limit
  )
