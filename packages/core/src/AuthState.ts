/**
 * Whether control lets this device join: `Authorized`, or `NeedsLogin` with the URL where a
 * person approves it.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"

/**
 * Whether control lets this device join: `Authorized`, or `NeedsLogin` with the approval URL.
 *
 * @category models
 */
export type AuthState = Data.TaggedEnum<{
  Authorized: {}
  NeedsLogin: { readonly url: string }
}>

/**
 * Constructors and matchers for `AuthState` (`AuthState.Authorized()`, `AuthState.$match`).
 *
 * @category constructors
 */
export const AuthState = Data.taggedEnum<AuthState>()
