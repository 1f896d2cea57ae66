/** One device's view of `TailscaleMetrics`: every update carries its `device` attribute. */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as TailscaleMetrics from "../TailscaleMetrics.ts"

/** What a socket reports as bytes move and as it opens and closes. */
export interface SocketMeter {
  readonly sent: (bytes: number) => Effect.Effect<void>
  readonly received: (bytes: number) => Effect.Effect<void>
  readonly opened: Effect.Effect<void>
  readonly closed: Effect.Effect<void>
}

export interface DeviceMeter extends SocketMeter {
  readonly dial: (outcome: string) => Effect.Effect<void>
  readonly lookup: (kind: "peerByName" | "peerByIp" | "peersWithRoute" | "whoIs") => Effect.Effect<void>
  readonly state: (tag: string) => Effect.Effect<void>
  readonly directPeers: (count: number) => Effect.Effect<void>
}

/**
 * `counter` with `attributes` of its own: the same series as `Metric.withAttributes(counter,
 * attributes)` (a series is its name, description and attributes), updated without that
 * wrapper's copy of the fiber's context on every update, which the byte counters pay per read
 * and per write.
 */
const counterFor = (counter: Metric.Counter<number>, attributes: Record<string, string>): Metric.Counter<number> =>
  Metric.counter(counter.id, { description: counter.description, attributes })

export const forDevice = (device: string): DeviceMeter => {
  const attributes = { device }
  const sent = counterFor(TailscaleMetrics.bytesSent, attributes)
  const received = counterFor(TailscaleMetrics.bytesReceived, attributes)
  const open = Metric.withAttributes(TailscaleMetrics.connectionsOpen, attributes)
  const states = Metric.withAttributes(TailscaleMetrics.deviceStates, attributes)
  const directPeers = Metric.withAttributes(TailscaleMetrics.directPeers, attributes)
  // Made once per kind and outcome rather than on every call: lookups are a hot path.
  const lookups = {
    peerByName: Metric.update(Metric.withAttributes(TailscaleMetrics.lookups, { device, kind: "peerByName" }), 1),
    peerByIp: Metric.update(Metric.withAttributes(TailscaleMetrics.lookups, { device, kind: "peerByIp" }), 1),
    whoIs: Metric.update(Metric.withAttributes(TailscaleMetrics.lookups, { device, kind: "whoIs" }), 1),
    peersWithRoute: Metric.update(
      Metric.withAttributes(TailscaleMetrics.lookups, { device, kind: "peersWithRoute" }),
      1
    )
  }
  const dials = new Map<string, Effect.Effect<void>>()
  const dial = (outcome: string) => {
    let update = dials.get(outcome)
    if (update === undefined) {
      update = Metric.update(Metric.withAttributes(TailscaleMetrics.dials, { device, outcome }), 1)
      dials.set(outcome, update)
    }
    return update
  }
  return {
    sent: (bytes) => Metric.update(sent, bytes),
    received: (bytes) => Metric.update(received, bytes),
    opened: Metric.update(open, 1),
    closed: Metric.update(open, -1),
    dial,
    lookup: (kind) => lookups[kind],
    state: (tag) => Metric.update(states, tag),
    directPeers: (count) => Metric.update(directPeers, count)
  }
}

/** For sockets made outside a device (tests of the socket wrappers alone). */
export const unmetered: SocketMeter = {
  sent: () => Effect.void,
  received: () => Effect.void,
  opened: Effect.void,
  closed: Effect.void
}
