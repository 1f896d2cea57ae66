/**
 * A tailnet node as Effect values: addresses and routes from `effect/net`, times as `DateTime`,
 * absent values as `Option`. Decoded with Schema from the backend's plain object; keys are
 * public keys only.
 *
 * @since 0.1.0
 */
import * as IpNetwork from "effect/net/IpNetwork"
import * as Schema from "effect/Schema"

const Timestamp = Schema.DateTimeUtcFromString
/** Absent (or undefined) on the wire, `Option` in the decoded value. */
const Absent = <S extends Schema.Top>(schema: S) => Schema.OptionFromOptional(schema)

/**
 * Connection to the control plane (not reachability): `Online`, `Offline` or `Unknown`.
 *
 * @category models
 */
export const NodeStatus = Schema.Union([
  Schema.TaggedStruct("Unknown", {}),
  Schema.TaggedStruct("Online", {}),
  Schema.TaggedStruct("Offline", {
    /** As reported by control, rounded to about ten minutes; do not compare with `lastSeenEstimated`. */
    lastSeenControl: Absent(Timestamp),
    lastSeenEstimated: Timestamp
  })
])
/**
 * A node's connection to control: `Online`, `Offline` (with when it was last seen) or `Unknown`.
 *
 * @category models
 */
export type NodeStatus = typeof NodeStatus.Type

/**
 * A tailnet user, as control describes them (its `UserProfile`): who owns a node that is not
 * tagged.
 *
 * @category models
 * @since 0.1.0
 */
export class TailnetUser extends Schema.Class<TailnetUser>("@effect-tailscale/core/TailnetUser")({
  /** Control's numeric user id. */
  id: Schema.Number,
  /** An email address or "email-ish" name, e.g. `alice@example.com` or `alice@github`. */
  loginName: Schema.String,
  /** e.g. `Alice Smith`, when the identity provider gave one. */
  displayName: Absent(Schema.String),
  /** A picture of the user, when there is one. */
  profilePicUrl: Absent(Schema.String)
}) {}

/**
 * A node of the tailnet (this device or a peer): ids, names, addresses, keys, tags and routes, decoded from the backend.
 *
 * @category models
 */
export class NodeInfo extends Schema.Class<NodeInfo>("@effect-tailscale/core/NodeInfo")({
  /** Control's numeric node id. */
  id: Schema.Number,
  stableId: Schema.String,
  hostname: Schema.String,
  /** `<hostname>.<tailnet>.` with the trailing dot. */
  fqdn: Absent(Schema.String),
  tailnet: Absent(Schema.String),
  capabilityVersion: Schema.Number,
  status: NodeStatus,
  /** The node's capabilities (control's node attributes): each name with its values as JSON texts. */
  nodeCapabilities: Schema.Record(Schema.String, Schema.Array(Schema.String)),
  /** A tagged node's tags: its identity instead of a user. */
  tags: Schema.Array(Schema.String),
  /**
   * The user who owns the node. None for a tagged node (see `tags`), which no user owns, and
   * for a user control sent no profile of.
   */
  user: Absent(TailnetUser),
  /** The node's IPv4 tailnet network (a /32). */
  tailnetIpv4: Schema.IpNetworkFromString,
  /** The node's IPv6 tailnet network (a /128). */
  tailnetIpv6: Schema.IpNetworkFromString,
  /** `nodekey:<hex>` */
  nodeKey: Schema.String,
  /** None when the key never expires (control sends year 1 for that). */
  nodeKeyExpiry: Absent(Timestamp),
  /** `mkey:<hex>` */
  machineKey: Absent(Schema.String),
  /** `discokey:<hex>` */
  discoKey: Absent(Schema.String),
  /** Base64 of the Tailnet Lock signature. */
  tailnetLockKeySignature: Absent(Schema.String),
  /**
   * The node's own addresses plus any subnet routes it serves, and `0.0.0.0/0` and `::/0` when
   * it offers itself as an exit node (see `isExitNodeOption`).
   */
  acceptedRoutes: Schema.Array(Schema.IpNetworkFromString),
  /** Public or LAN endpoints, `ip:port` or `[ip]:port`. */
  underlayAddresses: Schema.Array(Schema.String),
  /** Home DERP region. */
  derpRegion: Absent(Schema.Number)
}) {
  /** The node's IPv4 tailnet address. */
  get ipv4() {
    return this.tailnetIpv4.address
  }

  /** The node's IPv6 tailnet address. */
  get ipv6() {
    return this.tailnetIpv6.address
  }

  get isOnline(): boolean {
    return this.status._tag === "Online"
  }

  /** Whether the node is owned by its tags rather than a user. */
  get isTagged(): boolean {
    return this.tags.length > 0
  }

  /**
   * Whether the node offers itself as an exit node (Go's `ExitNodeOption`): control approved
   * both of its default routes, `0.0.0.0/0` and `::/0`. `Tailscale.setExitNode` takes only such
   * a node.
   */
  get isExitNodeOption(): boolean {
    const defaults = this.acceptedRoutes.filter((route) => route.prefixLength === 0)
    return defaults.some((route) => IpNetwork.isIpv4Network(route)) &&
      defaults.some((route) => IpNetwork.isIpv6Network(route))
  }
}
