/**
 * The Effect `Metric`s every device updates. Each carries the attribute `device` (the device's
 * `hostname` option, or `"default"`), so several devices in one program are told apart; read
 * one with `Metric.value(Metric.withAttributes(TailscaleMetrics.bytesSent, { device: "api" }))`,
 * or export them all with any Effect metrics exporter.
 *
 * | name | kind | what it counts |
 * | --- | --- | --- |
 * | `tailscale_bytes_sent` | counter | bytes written to TCP streams and sent in UDP datagrams |
 * | `tailscale_bytes_received` | counter | bytes read from TCP streams and received in datagrams |
 * | `tailscale_connections_open` | counter (up and down) | TCP streams open now, dialed or accepted |
 * | `tailscale_dials` | counter, attribute `outcome` | dials, by `success` or the failure's reason (`ConnectionRefused`, `Timeout`, …) |
 * | `tailscale_lookups` | counter, attribute `kind` | `peerByName`, `peerByIp`, `peersWithRoute` and `whoIs` calls |
 * | `tailscale_device_states` | frequency | states the device entered (`Connecting`, `Running`, `Reconnecting`, …) |
 * | `tailscale_direct_peers` | gauge | peers reached over a direct UDP path now (the rest go through DERP) |
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"

/**
 * `tailscale_bytes_sent`: bytes written to TCP streams and sent in UDP datagrams.
 *
 * @category metrics
 */
export const bytesSent = Metric.counter("tailscale_bytes_sent", {
  description: "Bytes written to TCP streams and sent in UDP datagrams over the tailnet"
})

/**
 * `tailscale_bytes_received`: bytes read from TCP streams and received in UDP datagrams.
 *
 * @category metrics
 */
export const bytesReceived = Metric.counter("tailscale_bytes_received", {
  description: "Bytes read from TCP streams and received in UDP datagrams over the tailnet"
})

/**
 * `tailscale_connections_open`: TCP streams open now, dialed or accepted (up and down).
 *
 * @category metrics
 */
export const connectionsOpen = Metric.counter("tailscale_connections_open", {
  description: "TCP streams open now (dialed or accepted); goes up and down"
})

/**
 * `tailscale_dials`: dials, with `outcome` `success` or the failure's reason.
 *
 * @category metrics
 */
export const dials = Metric.counter("tailscale_dials", {
  description: "TCP dials, by outcome (success, or the failure's reason)",
  incremental: true
})

/**
 * `tailscale_lookups`: peer lookups, with `kind`.
 *
 * @category metrics
 */
export const lookups = Metric.counter("tailscale_lookups", {
  description: "Peer lookups, by kind (peerByName, peerByIp, peersWithRoute, whoIs)",
  incremental: true
})

/**
 * `tailscale_device_states`: how often the device entered each state.
 *
 * @category metrics
 */
export const deviceStates = Metric.frequency("tailscale_device_states", {
  description: "States the device entered"
})

/**
 * `tailscale_direct_peers`: peers this device reaches over a direct UDP path now.
 *
 * @category metrics
 */
export const directPeers = Metric.gauge("tailscale_direct_peers", {
  description: "Peers reached over a direct UDP path now (the others through a DERP relay)"
})
