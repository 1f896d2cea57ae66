/** Checks a device's options before anything is sent, each failure naming its field. */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { shown } from "../Address.ts"
import type { RawConnectOptions } from "../Backend.ts"
import type { TailscaleOptions } from "../Tailscale.ts"
import { invalidArgument, type TailscaleError } from "../TailscaleError.ts"

const HOSTNAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/
const TAG = /^tag:[A-Za-z][A-Za-z0-9-]{0,62}$/
/** Tailscale's auth keys are under 100 characters; anything this long is a mistake, not a key. */
const MAX_AUTH_KEY = 512

export const validateOptions = (options: TailscaleOptions): Effect.Effect<RawConnectOptions, TailscaleError> =>
  Effect.gen(function*() {
    if (options.hostname !== undefined && !HOSTNAME.test(options.hostname)) {
      return yield* Effect.fail(invalidArgument(
        "hostname",
        `must be a single DNS label of at most 63 letters, digits and hyphens (got ${shown(options.hostname)})`
      ))
    }
    for (const [index, tag] of (options.tags ?? []).entries()) {
      if (!TAG.test(tag)) {
        return yield* Effect.fail(invalidArgument(`tags[${index}]`, `must look like tag:name (got ${shown(tag)})`))
      }
    }
    let controlUrl: string | undefined
    if (options.controlUrl !== undefined) {
      const text = String(options.controlUrl)
      const url = URL.canParse(text) ? new URL(text) : undefined
      if (url !== undefined && (url.username !== "" || url.password !== "")) {
        // Never echo it: the URL carries credentials.
        return yield* Effect.fail(invalidArgument("controlUrl", "must not carry a user name or password"))
      }
      if (url === undefined || !/^https?:$/.test(url.protocol)) {
        // What looks like credentials before an `@` is never echoed either.
        const safe = text.replace(/\/\/[^/@]*@/, "//…@")
        return yield* Effect.fail(invalidArgument("controlUrl", `must be an http(s) URL (got ${shown(safe)})`))
      }
      controlUrl = text
    }
    if (options.authKey !== undefined && Redacted.value(options.authKey).length > MAX_AUTH_KEY) {
      return yield* Effect.fail(invalidArgument("authKey", `longer than ${MAX_AUTH_KEY} characters; not an auth key`))
    }
    if (options.keyFile !== undefined && options.keyState !== undefined) {
      return yield* Effect.fail(invalidArgument("keyState", "give either keyFile or keyState, not both"))
    }
    return {
      keyFile: options.keyFile,
      overwriteBadKeyFile: options.overwriteBadKeyFile,
      keyState: options.keyState === undefined ? undefined : Redacted.value(options.keyState),
      authKey: options.authKey === undefined ? undefined : Redacted.value(options.authKey),
      controlUrl,
      hostname: options.hostname,
      tags: options.tags,
      ephemeral: options.ephemeral,
      clientName: options.clientName,
      caFile: options.caFile
    }
  })
