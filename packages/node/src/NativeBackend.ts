/**
 * The native addon as a core `Backend`. Loading happens on first use, inside an Effect, so a
 * missing or foreign binary is a typed `NativeUnavailable` failure instead of an import crash.
 *
 * @since 0.1.0
 */
import type { Backend } from "@effect-tailscale/core/Backend"
import { NativeUnavailable, TailscaleError } from "@effect-tailscale/core/TailscaleError"
import type * as Native from "@effect-tailscale/native"
import * as Effect from "effect/Effect"
import { createRequire } from "node:module"

/**
 * The addon's module, as `@effect-tailscale/native` declares it.
 *
 * @category models
 */
export type NativeModule = typeof Native

const require_ = createRequire(import.meta.url)

/**
 * The addon module, loaded once. `specifier` is for tests that point at a broken build.
 *
 * @category utils
 */
export const load = (specifier = "@effect-tailscale/native"): Effect.Effect<NativeModule, TailscaleError> =>
  Effect.try({
    try: () => require_(specifier) as NativeModule,
    catch: (error) =>
      new TailscaleError({
        reason: new NativeUnavailable({
          message:
            `the native addon could not be loaded for ${process.platform}-${process.arch} (${
              error instanceof Error ? error.message.split("\n")[0] : String(error)
            }). Install @effect-tailscale/native with its platform package, or build it from source ` +
            "with `pnpm --filter @effect-tailscale/native build` (needs Rust)."
        })
      })
  })

/**
 * Adapts the addon to the backend contract core expects.
 *
 * @category constructors
 */
export const fromNative = (native: NativeModule): Backend => ({
  connect: (options) => {
    // The addon's declarations say `field?: T`: leave absent what is undefined.
    const defined = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined))
    return native.Device.connect({ ...defined, ...(options.tags ? { tags: [...options.tags] } : {}) })
  },
  subscribeLogs: (filter, handler) => {
    const id = native.subscribeLogs(filter, handler)
    return { id, unsubscribe: () => native.unsubscribeLogs(id) }
  },
  subscribeProcessLogs: (filter, handler) => {
    const id = native.subscribeProcessLogs(filter, handler)
    return { id, unsubscribe: () => native.unsubscribeLogs(id) }
  }
})

/**
 * Which addon binary is loaded: its version, the `tailscale` crate inside, and `release` or `debug`.
 *
 * @category models
 */
export type BuildInfo = ReturnType<NativeModule["buildInfo"]>

/**
 * The build of the addon that `make` uses (loading it if needed).
 *
 * @category utils
 */
export const buildInfo = (specifier?: string): Effect.Effect<BuildInfo, TailscaleError> =>
  Effect.map(load(specifier), (native) => native.buildInfo())

/**
 * Tasks alive in the addon's async runtime (every device's actors, sockets and pending calls;
 * this call counts as one). Once every device has shut down it is back where it was before
 * them, so a test can check that device lifecycles leave nothing running.
 *
 * @category utils
 */
export const runtimeTasks = (specifier?: string): Effect.Effect<number, TailscaleError> =>
  Effect.flatMap(load(specifier), (native) => Effect.promise(() => native.runtimeTasks()))

/**
 * The addon as a `Backend`; logs (at debug level) which build was loaded.
 *
 * @category constructors
 */
export const make = (specifier?: string): Effect.Effect<Backend, TailscaleError> =>
  Effect.tap(load(specifier), (native) => {
    const build = native.buildInfo()
    return Effect.logDebug(
      `effect-tailscale native addon ${build.version} (${build.profile} build, tailscale ${build.tailscaleCrate})`
    )
  }).pipe(Effect.map(fromNative))
