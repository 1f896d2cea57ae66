/**
 * The error and requirement channels the docs promise. `npm test` type-checks this file
 * (`tsc -p tsconfig.test.json`), so a drift fails the run; vitest only counts it.
 */
import type { AuthState } from "@effect-tailscale/core/AuthState"
import type {
  BackendErrorCode,
  RawAuthState,
  RawConnectOptions,
  RawLogLevel,
  RawNodeStatus
} from "@effect-tailscale/core/Backend"
import type { NodeInfo } from "@effect-tailscale/core/NodeInfo"
import type { Tailscale, TailscaleService } from "@effect-tailscale/core/Tailscale"
import type { TailscaleError } from "@effect-tailscale/core/TailscaleError"
import type { TcpListener } from "@effect-tailscale/core/TcpListener"
import type { TcpStream } from "@effect-tailscale/core/TcpStream"
import type { Datagram, UdpSocket } from "@effect-tailscale/core/UdpSocket"
import type * as Native from "@effect-tailscale/native"
import type * as Config from "effect/Config"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as NetAddress from "effect/net/NetAddress"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import { describe, expectTypeOf, it } from "vitest"
import type * as NodeTailscale from "../src/NodeTailscale.ts"

/** Every field present, without `undefined`, `readonly` or read-only arrays: the shape alone. */
type Shape<T> = {
  -readonly [K in keyof T]-?: Exclude<T[K], undefined> extends ReadonlyArray<infer E> ? Array<E>
    : Exclude<T[K], undefined>
}

describe("types", () => {
  it("queries fail only with TailscaleError and need nothing", () => {
    expectTypeOf<TailscaleService["ipv4"]>().toEqualTypeOf<Effect.Effect<NetAddress.Ipv4Address, TailscaleError>>()
    expectTypeOf<TailscaleService["ipv6"]>().toEqualTypeOf<Effect.Effect<NetAddress.Ipv6Address, TailscaleError>>()
    expectTypeOf<TailscaleService["self"]>().toEqualTypeOf<Effect.Effect<NodeInfo, TailscaleError>>()
    expectTypeOf<ReturnType<TailscaleService["peerByName"]>>().toEqualTypeOf<
      Effect.Effect<Option.Option<NodeInfo>, TailscaleError>
    >()
    expectTypeOf<ReturnType<TailscaleService["peerByIp"]>>().toEqualTypeOf<
      Effect.Effect<Option.Option<NodeInfo>, TailscaleError>
    >()
    expectTypeOf<ReturnType<TailscaleService["peersWithRoute"]>>().toEqualTypeOf<
      Effect.Effect<ReadonlyArray<NodeInfo>, TailscaleError>
    >()
    expectTypeOf<TailscaleService["authState"]>().toEqualTypeOf<Effect.Effect<AuthState, TailscaleError>>()
    expectTypeOf<TailscaleService["shutdown"]>().toEqualTypeOf<Effect.Effect<boolean>>()
  })

  it("socket operations fail only with TailscaleError and need nothing", () => {
    expectTypeOf<ReturnType<TcpStream["read"]>>().toEqualTypeOf<
      Effect.Effect<Option.Option<Uint8Array>, TailscaleError>
    >()
    expectTypeOf<ReturnType<TcpStream["write"]>>().toEqualTypeOf<Effect.Effect<void, TailscaleError>>()
    expectTypeOf<TcpStream["stream"]>().toEqualTypeOf<Stream.Stream<Uint8Array, TailscaleError>>()
    expectTypeOf<ReturnType<TcpListener["accept"]>>().toEqualTypeOf<
      Effect.Effect<TcpStream, TailscaleError, Scope.Scope>
    >()
    expectTypeOf<ReturnType<UdpSocket["receive"]>>().toEqualTypeOf<Effect.Effect<Datagram, TailscaleError>>()
    expectTypeOf<ReturnType<UdpSocket["send"]>>().toEqualTypeOf<Effect.Effect<void, TailscaleError>>()
  })

  it("sockets need a Scope", () => {
    expectTypeOf<ReturnType<TailscaleService["dial"]>>().toEqualTypeOf<
      Effect.Effect<TcpStream, TailscaleError, Scope.Scope>
    >()
    expectTypeOf<ReturnType<TailscaleService["listen"]>>().toEqualTypeOf<
      Effect.Effect<TcpListener, TailscaleError, Scope.Scope>
    >()
    expectTypeOf<ReturnType<TailscaleService["bindUdp"]>>().toEqualTypeOf<
      Effect.Effect<UdpSocket, TailscaleError, Scope.Scope>
    >()
  })

  it("layers provide Tailscale and fail with TailscaleError (and ConfigError when reading config)", () => {
    expectTypeOf<ReturnType<typeof NodeTailscale.layer>>().toEqualTypeOf<Layer.Layer<Tailscale, TailscaleError>>()
    expectTypeOf<ReturnType<typeof NodeTailscale.layerConfig>>().toEqualTypeOf<
      Layer.Layer<Tailscale, TailscaleError | Config.ConfigError>
    >()
    expectTypeOf<ReturnType<typeof NodeTailscale.make>>().toEqualTypeOf<
      Effect.Effect<TailscaleService, TailscaleError, Scope.Scope>
    >()
  })

  it("the backend contract names the same codes, levels and statuses as the addon's declarations", () => {
    // index.d.ts is generated from the Rust enums: adding a code there without core fails here.
    expectTypeOf<BackendErrorCode>().toEqualTypeOf<Native.ErrorCode>()
    expectTypeOf<RawLogLevel>().toEqualTypeOf<Native.LogLevel>()
    // A node's status and the auth state cross tagged as core's types are: what the addon
    // sends is what core takes, with the same tags on both sides.
    expectTypeOf<Native.NodeStatus>().toExtend<RawNodeStatus>()
    expectTypeOf<Native.NodeStatus["_tag"]>().toEqualTypeOf<RawNodeStatus["_tag"]>()
    expectTypeOf<Native.AuthState>().toExtend<RawAuthState>()
    expectTypeOf<Native.AuthState["_tag"]>().toEqualTypeOf<RawAuthState["_tag"]>()
  })

  it("core's connect options are the addon's, field by field", () => {
    expectTypeOf<Shape<RawConnectOptions>>().toEqualTypeOf<Shape<Native.ConnectOptions>>()
  })
})
