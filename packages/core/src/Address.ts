/**
 * IP and socket-address inputs. Everywhere an IP is taken, any of these works: a string
 * (`"100.64.0.1"`, `"fd7a:115c:a1e0::1"`), a tuple (`[100, 64, 0, 1]`, or eight 16-bit segments for
 * IPv6), bytes, or an `effect/net` address value. When binding, `"ipv4"` / `"ipv6"` mean the
 * device's own tailnet address.
 *
 * @since 0.1.0
 */
import * as NetAddress from "effect/net/NetAddress"

/**
 * An IP address as text (`"100.64.0.1"`, `"fd7a:…"`) or as `effect/net` takes one.
 *
 * @category models
 */
export type IpInput = NetAddress.IpAddressInput

/**
 * Where to bind: the device's own IPv4 or IPv6 address, or an explicit one.
 *
 * @category models
 */
export type BindAddress = "ipv4" | "ipv6" | IpInput

/**
 * A peer by name (`"echo-peer"`, an FQDN) or by tailnet IP.
 *
 * @category models
 */
export type DialTarget =
  | `${string}:${number}`
  | { readonly peer: string; readonly port: number; readonly family?: "ipv4" | "ipv6" | undefined }
  | { readonly ip: IpInput; readonly port: number }

/**
 * The text form the backend takes: dotted quad, or IPv6 without brackets.
 *
 * @category utils
 */
export const formatIp = (ip: NetAddress.IpAddress): string => NetAddress.formatIp(ip)

/**
 * The `"host:port"` dial target for a host as Node's `net` and `http` give it (an IPv6 address
 * without brackets, a peer name, or an IPv4 address): `parseDialTarget` decides what it is.
 *
 * @category utils
 */
export const hostAndPort = (host: string, port: number): DialTarget =>
  host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`
