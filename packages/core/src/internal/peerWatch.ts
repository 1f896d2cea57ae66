/**
 * The peer table and its changes, from the backend's watch of each network map (no polling),
 * across rebuilt devices: a new device's table is diffed against the last one seen.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { RawNodeInfo } from "../Backend.ts"
import type { NodeInfo } from "../NodeInfo.ts"
import { PeerChange } from "../PeerChange.ts"
import { internal, type TailscaleError } from "../TailscaleError.ts"
import { type Generation, type Supervised, watchOnce } from "./supervisor.ts"

interface Known {
  readonly node: NodeInfo
  /** The raw node as JSON: what a change is told by. */
  readonly text: string
}

interface WatchState {
  readonly generation: Generation | undefined
  readonly version: number
  readonly known: ReadonlyMap<string, Known>
}

/**
 * The device's peer table once its version differs from `version`; `null` once the device has
 * ended and the supervisor knows why, so the gate then gives its successor (or fails).
 */
export const watchTable = (generation: Generation, version: number, operation: string) =>
  generation.raw.watchPeers === undefined
    ? Effect.fail(internal(`${operation}: this backend cannot list its peers`))
    : watchOnce(generation, operation, (raw) => raw.watchPeers!(version))

/** The changes from `known` to `table`, and what is known after them. */
const diff = (
  known: ReadonlyMap<string, Known>,
  peers: ReadonlyArray<RawNodeInfo>,
  decode: (raw: RawNodeInfo) => Effect.Effect<NodeInfo, TailscaleError>
) =>
  Effect.gen(function*() {
    const next = new Map<string, Known>()
    const changes: Array<PeerChange> = []
    for (const raw of peers) {
      const text = JSON.stringify(raw)
      const before = known.get(raw.stableId)
      if (before !== undefined && before.text === text) {
        next.set(raw.stableId, before)
        continue
      }
      const node = yield* decode(raw)
      next.set(raw.stableId, { node, text })
      changes.push(
        before === undefined
          ? PeerChange.Added({ peer: node })
          : PeerChange.Changed({ peer: node, previous: before.node })
      )
    }
    for (const [stableId, gone] of known) {
      if (!next.has(stableId)) changes.push(PeerChange.Removed({ peer: gone.node }))
    }
    return { changes, next }
  })

/**
 * Every peer as `Added` first, then each change, until the service's scope closes. A lost
 * device's successor is diffed against what was known, so a rebuild reports only real changes.
 */
export const peerChanges = (
  supervised: Supervised,
  decode: (raw: RawNodeInfo) => Effect.Effect<NodeInfo, TailscaleError>
): Stream.Stream<PeerChange, TailscaleError> =>
  Stream.paginate<WatchState, PeerChange, TailscaleError>(
    { generation: undefined, version: 0, known: new Map() },
    (state) =>
      Effect.gen(function*() {
        const current = yield* Effect.result(supervised.current)
        // The gate fails once the service has shut down (or gave up on a lost device).
        if (current._tag === "Failure") {
          return current.failure.reason._tag === "DeviceClosed"
            ? [[], Option.none()] as const
            : yield* Effect.fail(current.failure)
        }
        const generation = current.success
        const version = generation === state.generation ? state.version : 0
        const table = yield* watchTable(generation, version, "peerChanges")
        // This device ended: the next page takes its successor (or ends, when the service shut down).
        if (table === null) return [[], Option.some({ ...state, generation: undefined })] as const
        const { changes, next } = yield* diff(state.known, table.peers, decode)
        return [changes, Option.some({ generation, version: table.version, known: next })] as const
      })
  )
