/**
 * What `Tailscale.peerChanges` reports of the tailnet, as network maps arrive: a peer that
 * appeared, one whose node changed (addresses, status, tags, keys, routes...), and one that left.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import type { NodeInfo } from "./NodeInfo.ts"

/**
 * `Added`, `Changed` (with the node as it was) or `Removed`.
 *
 * @category models
 * @since 0.1.0
 */
export type PeerChange = Data.TaggedEnum<{
  Added: { readonly peer: NodeInfo }
  Changed: { readonly peer: NodeInfo; readonly previous: NodeInfo }
  Removed: { readonly peer: NodeInfo }
}>

/**
 * Constructors and matchers for `PeerChange`.
 *
 * @category constructors
 * @since 0.1.0
 */
export const PeerChange = Data.taggedEnum<PeerChange>()
