/** Decoding the nodes a backend sends into `NodeInfo`, with a cache for the lookups' hot path. */
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { NodeInfo } from "../NodeInfo.ts"
import { internal, type TailscaleError } from "../TailscaleError.ts"

const decodeRaw = Schema.decodeUnknownEffect(NodeInfo)

const isNever = (expiry: DateTime.Utc) => DateTime.getPartUtc(expiry, "year") <= 1

/** Decodes a backend node; a field that does not decode is an `Internal` error naming it. */
export const decodeNodeInfo = (raw: unknown): Effect.Effect<NodeInfo, TailscaleError> =>
  decodeRaw(raw).pipe(
    Effect.map((node) =>
      Option.exists(node.nodeKeyExpiry, isNever) ? new NodeInfo({ ...node, nodeKeyExpiry: Option.none() }) : node
    ),
    Effect.mapError((error) => internal(`the backend sent a node that does not decode: ${error.message}`, error))
  )

/**
 * `decodeNodeInfo` with a small cache keyed by the node's JSON: lookups return the same peers
 * again and again, and decoding (addresses, routes, times) costs far more than serializing.
 * Decoded nodes are immutable, so equal input can share one value.
 */
export const cachedDecoder = (capacity = 256) => {
  const cache = new Map<string, NodeInfo>()
  return (raw: unknown): Effect.Effect<NodeInfo, TailscaleError> => {
    const key = JSON.stringify(raw)
    const hit = cache.get(key)
    if (hit !== undefined) return Effect.succeed(hit)
    return Effect.tap(decodeNodeInfo(raw), (node) =>
      Effect.sync(() => {
        if (cache.size >= capacity) cache.delete(cache.keys().next().value!)
        cache.set(key, node)
      }))
  }
}
