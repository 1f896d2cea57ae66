/**
 * Where a device is in its life, as `Tailscale.state` and the `Tailscale.states` stream report it:
 *
 * - `Connecting`: reaching control for the first time.
 * - `NeedsLogin`: control wants a person to approve the device at `url`.
 * - `Running`: the device has its addresses; calls go through. `control` says whether it has a
 *   live session with control: while control is `Unreachable` the device keeps its addresses,
 *   peers and connections (dials, listeners and lookups work from the last network map); only
 *   what needs control (new peers, new keys) waits until it is `Connected` again.
 * - `Reconnecting`: the device was lost (`cause`), and the layer is building it again from the
 *   same key state; `attempt` counts the tries. Calls made meanwhile wait for it within their
 *   own timeouts.
 * - `Stopped`: shut down, or lost with reconnection turned off.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"

/**
 * Whether a running device has a live session with control.
 *
 * @category models
 */
export type ControlLink = "Connected" | "Unreachable"

/**
 * Where a device is: `Connecting`, `NeedsLogin`, `Running`, `Reconnecting` or `Stopped`.
 *
 * @category models
 */
export type DeviceState = Data.TaggedEnum<{
  Connecting: {}
  NeedsLogin: { readonly url: string }
  Running: { readonly control: ControlLink }
  Reconnecting: { readonly attempt: number; readonly cause: string }
  Stopped: {}
}>

/**
 * Constructors and matchers for `DeviceState`.
 *
 * @category constructors
 */
export const DeviceState = Data.taggedEnum<DeviceState>()
