/**
 * Parsing what callers give as addresses (`Address`'s input types): IPs, ports and dial targets,
 * each failing with `InvalidArgument` naming the field.
 */
import * as Effect from "effect/Effect"
import * as NetAddress from "effect/net/NetAddress"
import * as Result from "effect/Result"
import type { DialTarget, IpInput } from "../Address.ts"
import { invalidArgument, type TailscaleError } from "../TailscaleError.ts"
import { shown } from "./inputs.ts"

/** Parses `input` as an IP address, or fails with `InvalidArgument` naming `field`. */
export const parseIp = (field: string, input: IpInput): Effect.Effect<NetAddress.IpAddress, TailscaleError> => {
  const parsed = NetAddress.ipFromInput(input)
  return Result.isSuccess(parsed)
    ? Effect.succeed(parsed.success)
    : Effect.fail(invalidArgument(field, `not an IPv4 or IPv6 address (${describe(input)})`))
}

/** Checks a port (1..65535, or 0 when `allowZero`), or fails with `InvalidArgument` naming `field`. */
export const parsePort = (field: string, port: number, allowZero = false): Effect.Effect<number, TailscaleError> =>
  Number.isInteger(port) && port >= (allowZero ? 0 : 1) && port <= 65535
    ? Effect.succeed(port)
    : Effect.fail(invalidArgument(field, `must be an integer in ${allowZero ? 0 : 1}..65535 (got ${shown(port)})`))

const describe = (input: unknown): string => {
  if (typeof input === "string") return shown(input)
  if (Array.isArray(input)) return `[${input.join(", ")}]`
  if (input instanceof Uint8Array) return `${input.length} bytes`
  return String(input)
}

const DNS_NAME =
  /^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/

/** Shows at most 64 characters of what the caller gave, so a huge input makes a short message. */

/**
 * What a host in `"host:port"` is: an IP literal, or a peer's name. Dotted numbers that are not
 * an IPv4 address, an IPv6 address without brackets and scoped (link-local) IPv6 addresses are
 * refused with what is wrong, instead of being looked up as names nobody has.
 */
const parseHost = (
  text: string,
  bracketed: boolean
): Effect.Effect<
  { readonly _tag: "Ip"; readonly ip: NetAddress.IpAddress } | { readonly _tag: "Name" },
  TailscaleError
> => {
  if (text.includes("%")) {
    return Effect.fail(
      invalidArgument("target", `${shown(text)} is a scoped (link-local) IPv6 address; tailnet addresses have no scope`)
    )
  }
  const ip = NetAddress.ipFromString(text)
  if (Result.isSuccess(ip)) return Effect.succeed({ _tag: "Ip", ip: ip.success })
  if (bracketed || text.includes(":")) {
    return Effect.fail(invalidArgument("target", `${shown(text)} is not an IPv6 address`))
  }
  if (/^[\d.]+$/.test(text)) return Effect.fail(invalidArgument("target", `${shown(text)} is not an IPv4 address`))
  if (!DNS_NAME.test(text)) {
    return Effect.fail(invalidArgument("target", `${shown(text)} is neither an IP address nor a peer's DNS name`))
  }
  return Effect.succeed({ _tag: "Name" })
}

/** Splits `"host:port"` (the port after the last colon; IPv6 needs brackets: `"[fd7a::1]:80"`). */
export const parseDialTarget = (
  target: DialTarget
): Effect.Effect<
  | { readonly _tag: "Peer"; readonly name: string; readonly port: number; readonly family: "ipv4" | "ipv6" }
  | { readonly _tag: "Ip"; readonly ip: NetAddress.IpAddress; readonly port: number },
  TailscaleError
> =>
  Effect.gen(function*() {
    if (typeof target === "string") {
      const at = target.lastIndexOf(":")
      const hostText = at > 0 ? target.slice(0, at) : ""
      const portText = at > 0 ? target.slice(at + 1) : ""
      if (hostText === "" || !/^\d+$/.test(portText)) {
        return yield* Effect.fail(invalidArgument("target", `expected "host:port" (got ${shown(target)})`))
      }
      const bracketed = /^\[.*\]$/.test(hostText)
      const host = bracketed ? hostText.slice(1, -1) : hostText
      if (!bracketed && host.includes(":")) {
        return yield* Effect.fail(
          invalidArgument(
            "target",
            `an IPv6 address needs brackets, as in "[fd7a:115c:a1e0::1]:80" (got ${shown(target)})`
          )
        )
      }
      const port = yield* parsePort("port", Number(portText))
      const parsed = yield* parseHost(host, bracketed)
      return parsed._tag === "Ip"
        ? { _tag: "Ip" as const, ip: parsed.ip, port }
        : { _tag: "Peer" as const, name: host, port, family: "ipv4" as const }
    }
    if (typeof target !== "object" || target === null) {
      return yield* Effect.fail(
        invalidArgument("target", `must be "host:port", { peer, port } or { ip, port } (got ${shown(target)})`)
      )
    }
    const port = yield* parsePort("port", target.port)
    if ("peer" in target) {
      if (typeof target.peer !== "string") {
        return yield* Effect.fail(invalidArgument("peer", `must be a string (got ${shown(target.peer)})`))
      }
      if (target.family !== undefined && target.family !== "ipv4" && target.family !== "ipv6") {
        return yield* Effect.fail(invalidArgument("family", `must be "ipv4" or "ipv6" (got ${shown(target.family)})`))
      }
      if (target.peer.replace(/\.$/, "") === "") return yield* Effect.fail(invalidArgument("peer", "must not be empty"))
      if (!DNS_NAME.test(target.peer)) {
        return yield* Effect.fail(invalidArgument("peer", `${shown(target.peer)} is not a DNS name`))
      }
      return { _tag: "Peer" as const, name: target.peer, port, family: target.family ?? "ipv4" }
    }
    return { _tag: "Ip" as const, ip: yield* parseIp("ip", target.ip), port }
  })
