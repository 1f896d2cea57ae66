/**
 * Checks what a caller hands the service, at the edge: plain JavaScript callers get the same
 * `InvalidArgument` naming the field as TypeScript callers, never a defect. Messages quote at
 * most a short prefix of a bad value.
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import { invalidArgument, type TailscaleError } from "../TailscaleError.ts"

/** A value as an error message shows it: strings quoted and cut to 64 characters, others by type. */
export const shown = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value)
  if (value === null || typeof value === "number" || typeof value === "boolean") return String(value)
  return Array.isArray(value) ? "an array" : typeof value === "object" ? "an object" : typeof value
}

/** A string of at most `max` characters that `check` accepts (it says what is wrong, if anything). */
export const boundedString = (max: number, check: (value: string) => string | undefined = () => undefined) =>
  Schema.String.check(Schema.makeFilter((value: string) =>
    value.length > max
      ? `must be at most ${max} characters (got ${value.length}: ${shown(value)})`
      : check(value) ?? true
  ))

/** Any value `accept` holds true of; `expected` says what it must be. */
export const satisfying = (expected: string, accept: (value: unknown) => boolean) =>
  Schema.Unknown.check(
    Schema.makeFilter((value: unknown) => accept(value) || `must be ${expected} (got ${shown(value)})`)
  )

// Inputs are not reported (a bad value may be a megabyte); the checks above quote a prefix.
const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

type PathKey = PropertyKey | { readonly key: PropertyKey }
const keyOf = (key: PathKey): PropertyKey => typeof key === "object" ? key.key : key
const fieldOf = (field: string, path: ReadonlyArray<PathKey>) =>
  path.map(keyOf).reduce<string>(
    (name, key) => typeof key === "number" ? `${name}[${key}]` : name === "" ? String(key) : `${name}.${String(key)}`,
    field
  )

/** Decodes `input` with `schema`, or fails with `InvalidArgument` naming the field (and the path in it). */
export const checked = <S extends Schema.Decoder<unknown>>(field: string, schema: S) => {
  const decode = Schema.decodeUnknownResult(schema)
  return (input: unknown): Effect.Effect<S["Type"], TailscaleError> => {
    const result = decode(input)
    if (Result.isSuccess(result)) return Effect.succeed(result.success)
    const [first] = formatter(result.failure.issue).issues
    const path = first?.path ?? []
    const name = fieldOf(field, path)
    const message = (first?.message ?? "is not valid").slice(0, 300)
    return Effect.fail(invalidArgument(name || "input", message))
  }
}

const encoder = new TextEncoder()

/** The bytes to send: a `Uint8Array` as it is, a string as UTF-8; `undefined` for anything else. */
export const toBytes = (data: unknown): Uint8Array | undefined =>
  data instanceof Uint8Array ? data : typeof data === "string" ? encoder.encode(data) : undefined

/** What sending something that is not bytes fails with. */
export const notBytes = (field: string, data: unknown): Effect.Effect<never, TailscaleError> =>
  Effect.fail(invalidArgument(field, `must be a Uint8Array or a string (got ${shown(data)})`))

/** What a `timeout` that is no duration fails with (a plain JavaScript caller can pass anything). */
export const badLimit = (limit: unknown) =>
  Effect.fail(invalidArgument("timeout", `must be a duration such as "5 seconds" (got ${shown(limit)})`))
