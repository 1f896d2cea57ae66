/**
 * Who is calling, as Go's `WhoIs` tells it: the peer's node (with the user who owns it, or its
 * tags), its node capabilities, and the app capabilities the tailnet's policy grants it toward
 * this device (grants with an `app` part, which reach devices as `CapGrant`s in the packet
 * filter). Capability values are JSON; `capability` decodes them with a Schema on request.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { decodeNodeInfo } from "./internal/nodeDecoding.ts"
import { NodeInfo } from "./NodeInfo.ts"
import { internal, InvalidCapability, TailscaleError } from "./TailscaleError.ts"

const decodeJson = Schema.decodeUnknownResult(Schema.fromJsonString(Schema.Json))

/**
 * A peer as it calls this device: its `NodeInfo` and the app capabilities granted to it.
 *
 * ```ts
 * const caller = yield* TailnetCaller
 * if (!caller.hasCapability("example.com/cap/files")) return forbidden
 * const grants = yield* caller.capability("example.com/cap/files", Schema.Struct({ shares: Schema.Array(Schema.String) }))
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export class Caller extends NodeInfo.extend<Caller>("@effect-tailscale/core/Caller")({
  /** App capability name to its values (JSON), as the policy grants them to this caller toward this device. */
  appCapabilities: Schema.Record(Schema.String, Schema.Array(Schema.Json))
}) {
  /** Whether the caller has `name`, as an app capability or a capability of its node. */
  hasCapability(name: string): boolean {
    return Object.hasOwn(this.appCapabilities, name) || Object.hasOwn(this.nodeCapabilities, name)
  }

  /**
   * Every value granted under `name` (app capabilities first, then the node's own), decoded with
   * `schema`; none when the caller does not have it. A value that does not decode fails with
   * `InvalidCapability`.
   */
  capability<S extends Schema.Top>(
    name: string,
    schema: S
  ): Effect.Effect<ReadonlyArray<S["Type"]>, TailscaleError, S["DecodingServices"]> {
    const invalid = (message: string, cause?: unknown) =>
      new TailscaleError({
        reason: new InvalidCapability({
          name,
          message: `capability ${name}: ${message}`,
          ...(cause === undefined ? {} : { cause })
        })
      })
    const nodeValues: Array<unknown> = []
    for (const text of this.nodeCapabilities[name] ?? []) {
      const parsed = decodeJson(text)
      if (parsed._tag === "Failure") return Effect.fail(invalid(`a value is not JSON: ${parsed.failure.message}`))
      nodeValues.push(parsed.success)
    }
    const values = [...(this.appCapabilities[name] ?? []), ...nodeValues]
    const decode = Schema.decodeUnknownEffect(schema)
    return Effect.forEach(
      values,
      (value) => Effect.mapError(decode(value), (error) => invalid(`a value does not decode: ${error.message}`, error))
    )
  }
}

/** The backend's form of a `Caller`: its node, and app capability values as JSON texts. */
const RawCaller = Schema.Struct({
  node: Schema.Unknown,
  appCapabilities: Schema.Record(Schema.String, Schema.Array(Schema.fromJsonString(Schema.Json)))
})
const decodeRawCaller = Schema.decodeUnknownEffect(RawCaller)

/**
 * Decodes a backend's `RawWhoIs`; anything that does not decode (a value that is not JSON
 * included) is an `Internal` error.
 *
 * @category decoding
 * @since 0.1.0
 */
export const decodeWhoIs = (raw: unknown): Effect.Effect<Caller, TailscaleError> =>
  decodeRawCaller(raw).pipe(
    Effect.mapError((error) => internal(`the backend sent a caller that does not decode: ${error.message}`, error)),
    Effect.flatMap(({ appCapabilities, node }) =>
      Effect.map(decodeNodeInfo(node), (decoded) => new Caller({ ...decoded, appCapabilities }))
    )
  )
