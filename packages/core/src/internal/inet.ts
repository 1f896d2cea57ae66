/** A backend's `{ ip, port }` as the `effect/net` address the public socket types carry. */
import * as NetAddress from "effect/net/NetAddress"
import type { RawSocketAddress } from "../Backend.ts"

export const inetFromRaw = (address: RawSocketAddress): NetAddress.InetAddress =>
  NetAddress.inetAddressFromIpStringUnsafe(address.ip, address.port)
