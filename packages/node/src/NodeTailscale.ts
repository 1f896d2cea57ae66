/**
 * The `Tailscale` service on Node.js, over the native addon. The layer owns the device: it
 * connects when built and shuts the device down (within the shutdown timeout) when released,
 * whatever the exit.
 *
 * ```ts
 * const TailscaleLive = NodeTailscale.layerConfig({ hostname: Config.succeed("worker") })
 * ```
 *
 * @since 0.1.0
 */
import { Tailscale, type TailscaleOptions, type TailscaleService } from "@effect-tailscale/core/Tailscale"
import * as Tailscale_ from "@effect-tailscale/core/Tailscale"
import type { TailscaleError } from "@effect-tailscale/core/TailscaleError"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as NativeBackend from "./NativeBackend.ts"

/**
 * The options `make` and the layers take (core's `TailscaleOptions`).
 *
 * @category options
 */
export type NodeTailscaleOptions = TailscaleOptions

/**
 * Connects a device for the current scope.
 *
 * @category constructors
 */
export const make = (
  options: NodeTailscaleOptions = {}
): Effect.Effect<TailscaleService, TailscaleError, Scope.Scope> =>
  Effect.gen(function*() {
    const backend = yield* NativeBackend.make()
    return yield* Tailscale_.make(backend, options)
  })

/**
 * A fresh identity (random node, machine and disco keys) as the JSON a key file holds, for the
 * `keyState` option: a device built from it joins as the same node every time, with no key file.
 * It holds private keys, so it comes redacted: store it as you would a password.
 *
 * @category constructors
 */
export const generateKeyState: Effect.Effect<Redacted.Redacted<string>, TailscaleError> = Effect.map(
  NativeBackend.load(),
  (native) => Redacted.make(native.generateKeyState())
)

/**
 * Forwards the addon's log records that belong to no device (a key file loaded outside a device,
 * for example) to the current logger while the scope lasts, at `filter` (default `"warn"`).
 * Each device's own records go to the logger it was built under, never here.
 *
 * @category utils
 */
export const processLogs = (filter?: string): Effect.Effect<void, TailscaleError, Scope.Scope> =>
  Effect.flatMap(NativeBackend.make(), (backend) => Tailscale_.processLogs(backend, filter))

/**
 * The `Tailscale` service over the native addon, connected with `options` for the layer's lifetime.
 *
 * @category layers
 */
export const layer = (options: NodeTailscaleOptions = {}): Layer.Layer<Tailscale, TailscaleError> =>
  Layer.effect(Tailscale, make(options))

/**
 * A second (third, …) device in one program, under `tag` (from `Tailscale.named`).
 *
 * @category layers
 */
export const layerNamed = <Name extends string>(
  tag: Tailscale_.NamedTag<Name>,
  options: NodeTailscaleOptions = {}
): Layer.Layer<Tailscale_.Named<Name>, TailscaleError> => Layer.effect(tag, make(options))

const optional = <A>(config: Config.Config<A>): Config.Config<A | undefined> =>
  Config.map(Config.option(config), Option.getOrUndefined)

/**
 * Options read from the environment like the crate's `Config::default_from_env`:
 * `TS_AUTH_KEY` (redacted), `TS_CONTROL_URL`, `TS_HOSTNAME`, `TS_KEY_FILE`, `TS_EPHEMERAL`,
 * `RUST_LOG` as the filter for the crate's log records, and `SSL_CERT_FILE` as `caFile` (CA
 * certificates trusted beside the public web roots, as for OpenSSL-based tools).
 *
 * @category constructors
 */
export const fromEnv: Config.Config<NodeTailscaleOptions> = Config.all({
  authKey: optional(Config.Redacted("TS_AUTH_KEY")),
  controlUrl: optional(Config.String("TS_CONTROL_URL")),
  hostname: optional(Config.String("TS_HOSTNAME")),
  keyFile: optional(Config.String("TS_KEY_FILE")),
  ephemeral: optional(Config.Boolean("TS_EPHEMERAL")),
  logFilter: optional(Config.String("RUST_LOG")),
  caFile: optional(Config.String("SSL_CERT_FILE"))
})

/**
 * `fromEnv`, with any option given here as a `Config` (e.g. `Config.succeed(true)`) taking precedence.
 *
 * @category layers
 */
export const layerConfig = (
  overrides: Config.Wrap<NodeTailscaleOptions> = {}
): Layer.Layer<Tailscale, TailscaleError | Config.ConfigError> =>
  Layer.effect(
    Tailscale,
    Effect.gen(function*() {
      const base = yield* fromEnv
      const given = yield* Config.unwrap(overrides)
      const defined = Object.fromEntries(Object.entries(given).filter(([, value]) => value !== undefined))
      return yield* make({ ...base, ...defined })
    })
  )
