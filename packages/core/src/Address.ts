/**
 * IP and socket-address inputs. Everywhere an IP is taken, any of these works: a string
 * (`"100.64.0.1"`, `"fd7a:115c:a1e0::1"`), a tuple (`[100, 64, 0, 1]`, or eight 16-bit segments for
 * IPv6), bytes, or an `effect/net` address value. When binding, `"ipv4"` / `"ipv6"` mean the
 * device's own tailnet address.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as NetAddress from "effect/net/NetAddress"
import * as Result from "effect/Result"
import { invalidArgument, type TailscaleError } from "./TailscaleError.ts"

export type IpInput = NetAddress.IpAddressInput

/** Where to bind: the device's own IPv4 or IPv6 address, or an explicit one. */
export type BindAddress = "ipv4" | "ipv6" | IpInput

/** A peer by name (`"echo-peer"`, an FQDN) or by tailnet IP. */
export type DialTarget =
  | `${string}:${number}`
  | { readonly peer: string; readonly port: number; readonly family?: "ipv4" | "ipv6" | undefined }
  | { readonly ip: IpInput; readonly port: number }

export const parseIp = (field: string, input: IpInput): Effect.Effect<NetAddress.IpAddress, TailscaleError> => {
  const parsed = NetAddress.ipFromInput(input)
  return Result.isSuccess(parsed)
    ? Effect.succeed(parsed.success)
    : Effect.fail(invalidArgument(field, `not an IPv4 or IPv6 address (${describe(input)})`))
}

export const parsePort = (field: string, port: number, allowZero = false): Effect.Effect<number, TailscaleError> =>
  Number.isInteger(port) && port >= (allowZero ? 0 : 1) && port <= 65535
    ? Effect.succeed(port)
    : Effect.fail(invalidArgument(field, `must be an integer in ${allowZero ? 0 : 1}..65535 (got ${port})`))

/** The text form the backend takes: dotted quad, or IPv6 without brackets. */
export const formatIp = (ip: NetAddress.IpAddress): string => NetAddress.formatIp(ip)

const describe = (input: unknown): string => {
  if (typeof input === "string") return JSON.stringify(input)
  if (Array.isArray(input)) return `[${input.join(", ")}]`
  if (input instanceof Uint8Array) return `${input.length} bytes`
  return String(input)
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
      const host = at > 0 ? target.slice(0, at).replace(/^\[(.*)\]$/, "$1") : ""
      const portText = at > 0 ? target.slice(at + 1) : ""
      if (host === "" || !/^\d+$/.test(portText)) {
        return yield* Effect.fail(invalidArgument("target", `expected "host:port" (got ${JSON.stringify(target)})`))
      }
      const port = yield* parsePort("port", Number(portText))
      const ip = NetAddress.ipFromString(host)
      return Result.isSuccess(ip)
        ? { _tag: "Ip" as const, ip: ip.success, port }
        : { _tag: "Peer" as const, name: host, port, family: "ipv4" as const }
    }
    const port = yield* parsePort("port", target.port)
    if ("peer" in target) {
      if (target.peer.replace(/\.$/, "") === "") return yield* Effect.fail(invalidArgument("peer", "must not be empty"))
      return { _tag: "Peer" as const, name: target.peer, port, family: target.family ?? "ipv4" }
    }
    return { _tag: "Ip" as const, ip: yield* parseIp("ip", target.ip), port }
  })
