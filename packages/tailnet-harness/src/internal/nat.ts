/**
 * The `nat` topology's network: this namespace (where this process, and so every device it
 * runs, lives) behind a masquerading router of its own, a Go peer's namespace behind another,
 * and an "outside" namespace between the two routers where control, DERP and STUN run. Made
 * with `ip` (iproute2) and `nft` (nftables), as root; private 10.x addresses only.
 *
 * ```
 * this namespace          device router              outside                 peer router             peer
 * tslab<n> 10.78.n.2 ── inside 10.78.n.1                                    inside 10.79.n.1 ── eth0 10.79.n.2
 *                       outside 10.80.n.2 ── br0 10.80.n.1 (bridge) ── outside 10.80.n.3
 * ```
 *
 * Each router masquerades what leaves by its outside interface and drops new connections
 * arriving there (`ct state new drop`): only answers to what the host behind it sent get in, as
 * behind a home router. Without that drop a peer's first hole-punching datagram, arriving before
 * the host behind the router has sent anything, leaves a conntrack entry that clashes with the
 * host's own flow, and masquerade then maps the host's flow to another port.
 */
import { execFileSync } from "node:child_process"
import {
  addNamespace,
  carrierOn,
  claimSubnet,
  ip,
  ipQuietly,
  lanInterfacePrefix,
  newNamespaceName,
  removeAbandonedNamespaces,
  requireIp,
  run,
  setUdpBlocked,
  stderrOf
} from "./lan.ts"

/** The two addresses of a router. */
export interface Router {
  /** On the subnet of the host behind it. */
  readonly inside: string
  /** On the outside bridge: the address its host's flows are masqueraded to. */
  readonly outside: string
}

/** The `nat` topology's addresses and namespaces. */
export interface NatNetwork {
  /** This namespace's end of the veth pair to its router (`tslab<n>`). */
  readonly interfaceName: string
  /** This namespace's address, behind `deviceRouter`: the devices of this process have it. */
  readonly deviceAddress: string
  readonly deviceRouter: Router
  /** The NATed Go peer's address, behind `peerRouter`. */
  readonly peerAddress: string
  readonly peerRouter: Router
  /** The outside namespace's address on the bridge: control, DERP, STUN and the harness's admin API. */
  readonly harnessAddress: string
  /** `ip netns` names of the namespaces the topology made. */
  readonly namespaces: {
    readonly outside: string
    readonly deviceRouter: string
    readonly peerRouter: string
    readonly peer: string
  }
}

/** What `makeNat` gives: the network, and how to remove it (safe to call more than once). */
export interface Nat {
  readonly network: NatNetwork
  readonly remove: () => Promise<void>
}

const requireNft = async (): Promise<void> => {
  try {
    await run("nft", ["--version"], { timeout: 10_000 })
  } catch (error) {
    throw new Error(
      `the nat topology needs \`nft\` (nftables) on PATH (to masquerade on its routers): ${stderrOf(error)}`,
      { cause: error }
    )
  }
}

/** Runs `command` inside `namespace` (`ip netns exec`). */
const inNamespace = async (namespace: string, ...command: ReadonlyArray<string>): Promise<void> => {
  try {
    await run("ip", ["netns", "exec", namespace, ...command], { timeout: 10_000 })
  } catch (error) {
    throw new Error(`in ${namespace}: ${command.join(" ")}: ${stderrOf(error)}`, { cause: error })
  }
}

/** A router's rules: masquerade out of `outside`, and no new connection in by it. */
const routerRules = [
  "add table ip nat",
  "add chain ip nat postrouting { type nat hook postrouting priority srcnat; }",
  "add rule ip nat postrouting oifname \"outside\" masquerade",
  "add table ip filter",
  "add chain ip filter input { type filter hook input priority 0; }",
  "add chain ip filter forward { type filter hook forward priority 0; }",
  "add rule ip filter input iifname \"outside\" ct state new drop",
  "add rule ip filter forward iifname \"outside\" ct state new drop"
].join("; ")

/**
 * Makes the four namespaces (`ts-lab-<pid>-<n>-outside`, `-device-router`, `-peer-router`,
 * `-peer`), their veth pairs and the bridge, the routers' rules, and a route from this namespace
 * to the outside subnet through its router (only that subnet: this namespace gets no default
 * route). IPv4 only, no link-local IPv6. Removed on `remove`, and when this process exits
 * without it.
 */
export const makeNat = async (): Promise<Nat> => {
  await requireIp("nat")
  await requireNft()
  await removeAbandonedNamespaces()
  const base = newNamespaceName()
  const namespaces = {
    outside: `${base}-outside`,
    deviceRouter: `${base}-device-router`,
    peerRouter: `${base}-peer-router`,
    peer: `${base}-peer`
  }
  const all = Object.values(namespaces)
  const removeNamespaces = () => {
    for (const namespace of all) {
      try {
        execFileSync("ip", ["netns", "delete", namespace], { stdio: "ignore", timeout: 10_000 })
      } catch {
        // Already gone, or never made.
      }
    }
  }
  process.once("exit", removeNamespaces)
  let interfaceName: string | undefined
  let removed: Promise<void> | undefined
  const remove = () => {
    removed ??= (async () => {
      process.removeListener("exit", removeNamespaces)
      // Deleting our end takes the pair (and the route through it) at once.
      if (interfaceName !== undefined) {
        await ipQuietly("link", "delete", interfaceName)
        // A block outlives its interface (the rule matches by name): the next network gets the name.
        await setUdpBlocked({ interfaceName }, false)
      }
      await Promise.all(all.map((namespace) => ipQuietly("netns", "delete", namespace)))
    })()
    return removed
  }
  try {
    for (const namespace of all) await addNamespace("nat", namespace)
    const n = await claimSubnet(namespaces.deviceRouter, "inside", 78)
    interfaceName = `${lanInterfacePrefix}${n}`
    const network: NatNetwork = {
      interfaceName,
      deviceAddress: `10.78.${n}.2`,
      deviceRouter: { inside: `10.78.${n}.1`, outside: `10.80.${n}.2` },
      peerAddress: `10.79.${n}.2`,
      peerRouter: { inside: `10.79.${n}.1`, outside: `10.80.${n}.3` },
      harnessAddress: `10.80.${n}.1`,
      namespaces
    }
    const { deviceRouter, outside, peer, peerRouter } = namespaces
    // The other pairs live between namespaces this run made, so their names cannot clash.
    const veth = (from: string, name: string, peerName: string, into: string) =>
      ip("-n", from, "link", "add", name, "type", "veth", "peer", "name", peerName, "netns", into)
    await veth(deviceRouter, "outside", "dev-router", outside)
    await veth(peerRouter, "outside", "peer-router", outside)
    await veth(peerRouter, "inside", "eth0", peer)
    await ip("-n", outside, "link", "add", "br0", "type", "bridge")
    const links: ReadonlyArray<readonly [namespace: string | undefined, link: string, address?: string]> = [
      [undefined, interfaceName, network.deviceAddress],
      [deviceRouter, "inside", network.deviceRouter.inside],
      [deviceRouter, "outside", network.deviceRouter.outside],
      [outside, "br0", network.harnessAddress],
      [outside, "dev-router"],
      [outside, "peer-router"],
      [peerRouter, "outside", network.peerRouter.outside],
      [peerRouter, "inside", network.peerRouter.inside],
      [peer, "eth0", network.peerAddress]
    ]
    for (const [namespace, link, address] of links) {
      const where = namespace === undefined ? [] : ["-n", namespace]
      await ip(...where, "link", "set", link, "addrgenmode", "none")
      if (address !== undefined) await ip(...where, "address", "add", `${address}/24`, "dev", link)
    }
    await ip("-n", outside, "link", "set", "dev-router", "master", "br0")
    await ip("-n", outside, "link", "set", "peer-router", "master", "br0")
    for (const namespace of all) await ip("-n", namespace, "link", "set", "lo", "up")
    for (const [namespace, link] of links) {
      await ip(...(namespace === undefined ? [] : ["-n", namespace]), "link", "set", link, "up")
    }
    for (const router of [deviceRouter, peerRouter]) {
      await inNamespace(router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
      await inNamespace(router, "nft", routerRules)
    }
    await ip("-n", peer, "route", "add", "default", "via", network.peerRouter.inside)
    await carrierOn(interfaceName, network.deviceAddress)
    await ip("route", "add", `10.80.${n}.0/24`, "via", network.deviceRouter.inside, "dev", interfaceName)
    return { network, remove }
  } catch (error) {
    await remove()
    throw error
  }
}
