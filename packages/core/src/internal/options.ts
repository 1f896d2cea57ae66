/**
 * Checks a device's options before anything is sent, each failure naming its field: one Schema
 * for every backend (the addon and the fake tailnet see only what passed it), so a test on the
 * fake refuses what production refuses.
 */
import * as Effect from "effect/Effect"
import * as NetAddress from "effect/net/NetAddress"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type { RawConnectOptions } from "../Backend.ts"
import type { TailscaleOptions } from "../Tailscale.ts"
import { invalidArgument, type TailscaleError } from "../TailscaleError.ts"
import { boundedString, checked, satisfying, shown } from "./inputs.ts"

const HOSTNAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/
const TAG = /^tag:[A-Za-z][A-Za-z0-9-]{0,62}$/
/** One directive of a `RUST_LOG`-style filter: `target[span{field}]=level`, each part optional. */
const DIRECTIVE = /^(?:[A-Za-z_][\w:.-]*)?(?:\[[^[\]]*\])?(?:=(?:trace|debug|info|warn|error|off))?$/i

/** Tailscale's auth keys are under 100 characters; anything this long is a mistake, not a key. */
export const MAX_AUTH_KEY = 512
/** Control puts the client name in every registration; a long one made it refuse the device. */
export const MAX_CLIENT_NAME = 128
const MAX_URL = 2048
const MAX_PATH = 4096
const MAX_LOG_FILTER = 1024
const MAX_KEY_STATE = 64 * 1024
const MAX_TAGS = 64

const path = boundedString(MAX_PATH, (value) => value === "" ? "must not be empty" : undefined)

/** A hostname, an FQDN (a trailing dot is allowed) or an IP address. */
const PEER = /^(?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}\.?$/
const exitNode = boundedString(253, (value) =>
  PEER.test(value) || Result.isSuccess(NetAddress.ipFromString(value))
    ? undefined
    : `must be a peer's hostname, FQDN or tailnet address (got ${shown(value)})`)

const redactedString = (max: number, what: string) =>
  satisfying(
    `a Redacted string (Redacted.make(${what}))`,
    (value) => Redacted.isRedacted(value) && typeof Redacted.value(value) === "string"
  ).check(
    Schema.makeFilter((value: unknown) => {
      const text = Redacted.value(value as Redacted.Redacted<string>)
      return text.length > max ? `longer than ${max} characters; not a ${what}` : true
    })
  )

const controlUrlProblem = (text: string): string | undefined => {
  const url = URL.canParse(text) ? new URL(text) : undefined
  // Never echo a URL that carries credentials, nor what looks like them before an `@`.
  if (url !== undefined && (url.username !== "" || url.password !== "")) return "must not carry a user name or password"
  if (url === undefined || url.protocol !== "https:") {
    return `must be an https URL: devices verify control's certificate (got ${
      shown(text.replace(/\/\/[^/@]*@/, "//…@"))
    })`
  }
  return undefined
}

/** What each option must be; every string has a bound. */
const OptionsInput = Schema.Struct({
  keyFile: Schema.optionalKey(Schema.UndefinedOr(path)),
  overwriteBadKeyFile: Schema.optionalKey(Schema.UndefinedOr(Schema.Boolean)),
  keyState: Schema.optionalKey(Schema.UndefinedOr(redactedString(MAX_KEY_STATE, "key state"))),
  authKey: Schema.optionalKey(Schema.UndefinedOr(redactedString(MAX_AUTH_KEY, "auth key"))),
  controlUrl: Schema.optionalKey(Schema.UndefinedOr(
    satisfying("a string or a URL", (value) => typeof value === "string" || value instanceof URL).check(
      Schema.makeFilter((value: unknown) => {
        const text = String(value)
        if (text.length > MAX_URL) return `must be at most ${MAX_URL} characters (got ${text.length}: ${shown(text)})`
        return controlUrlProblem(text) ?? true
      })
    )
  )),
  hostname: Schema.optionalKey(Schema.UndefinedOr(boundedString(63, (value) =>
    HOSTNAME.test(value)
      ? undefined
      : `must be a single DNS label of at most 63 letters, digits and hyphens (got ${shown(value)})`))),
  tags: Schema.optionalKey(Schema.UndefinedOr(
    Schema.Array(boundedString(67, (tag) => TAG.test(tag) ? undefined : `must look like tag:name (got ${shown(tag)})`))
      .check(
        Schema.makeFilter((tags: ReadonlyArray<string>) =>
          tags.length <= MAX_TAGS || `at most ${MAX_TAGS} tags (got ${tags.length})`
        )
      )
  )),
  ephemeral: Schema.optionalKey(Schema.UndefinedOr(Schema.Boolean)),
  clientName: Schema.optionalKey(
    Schema.UndefinedOr(
      boundedString(
        MAX_CLIENT_NAME,
        (value) => /^[\x20-\x7e]*$/.test(value) ? undefined : `must be printable ASCII (got ${shown(value)})`
      )
    )
  ),
  caFile: Schema.optionalKey(Schema.UndefinedOr(path)),
  exitNode: Schema.optionalKey(Schema.UndefinedOr(exitNode)),
  logFilter: Schema.optionalKey(
    Schema.UndefinedOr(
      boundedString(MAX_LOG_FILTER, (value) =>
        value.split(",").every((directive) => DIRECTIVE.test(directive.trim()))
          ? undefined
          : `must be a RUST_LOG-style filter such as "warn,ts_runtime=debug" (got ${shown(value)})`)
    )
  ),
  reconnect: Schema.optionalKey(Schema.UndefinedOr(Schema.Boolean))
})

const checkOptions = checked("", OptionsInput)

export const validateOptions = (options: TailscaleOptions): Effect.Effect<RawConnectOptions, TailscaleError> =>
  Effect.gen(function*() {
    if (typeof options !== "object" || options === null) {
      return yield* Effect.fail(invalidArgument("options", `must be an object (got ${shown(options)})`))
    }
    yield* checkOptions(options)
    if (options.keyFile !== undefined && options.keyState !== undefined) {
      return yield* Effect.fail(invalidArgument("keyState", "give either keyFile or keyState, not both"))
    }
    return {
      keyFile: options.keyFile,
      overwriteBadKeyFile: options.overwriteBadKeyFile,
      keyState: options.keyState === undefined ? undefined : Redacted.value(options.keyState),
      authKey: options.authKey === undefined ? undefined : Redacted.value(options.authKey),
      controlUrl: options.controlUrl === undefined ? undefined : String(options.controlUrl),
      hostname: options.hostname,
      tags: options.tags,
      ephemeral: options.ephemeral,
      clientName: options.clientName,
      caFile: options.caFile,
      exitNode: options.exitNode
    }
  })
