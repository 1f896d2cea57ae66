/**
 * `@effect-tailscale/tailnet-harness/HarnessProcess`, re-exported: starts and stops the loopback
 * tailnet harness (on the `loopback`, `lan` or `nat` topology), decodes its ready line
 * (`HarnessInfo`) and calls its admin API. It lives in a package of its own, with no dependency
 * on `@effect-tailscale/node`, so that node's tests can start a tailnet too; `LocalTailnet` wraps
 * it as a scoped layer.
 *
 * @since 0.1.0
 */
export * from "@effect-tailscale/tailnet-harness/HarnessProcess"
