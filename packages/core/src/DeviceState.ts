/**
 * Where a device is in its life, as `Tailscale.state` and the `Tailscale.states` stream report it:
 *
 * - `Connecting`: reaching control for the first time.
 * - `NeedsLogin`: control wants a person to approve the device at `url`.
 * - `Running`: the device has its addresses; calls go through.
 * - `Reconnecting`: the device was lost (`cause`), and the layer is building it again from the
 *   same key state; `attempt` counts the tries. Calls made meanwhile wait for it within their
 *   own timeouts.
 * - `Stopped`: shut down, or lost with reconnection turned off.
 *
 * @since 0.2.0
 */
import * as Data from "effect/Data"

/** Where a device is: `Connecting`, `NeedsLogin`, `Running`, `Reconnecting` or `Stopped`. */
export type DeviceState = Data.TaggedEnum<{
  Connecting: {}
  NeedsLogin: { readonly url: string }
  Running: {}
  Reconnecting: { readonly attempt: number; readonly cause: string }
  Stopped: {}
}>

/** Constructors and matchers for `DeviceState`. */
export const DeviceState = Data.taggedEnum<DeviceState>()
