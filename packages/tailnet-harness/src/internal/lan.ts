/**
 * The `lan` topology's network: a network namespace for the harness, joined to the current one
 * (where this process, and so every device it runs, lives) by a veth pair with private
 * addresses. Made with `ip` from iproute2, as root.
 */
import { execFile, execFileSync } from "node:child_process"
import { existsSync, readdirSync } from "node:fs"
import { networkInterfaces } from "node:os"
import { promisify } from "node:util"

/** One LAN segment: the harness's namespace and the two ends of the veth pair between it and this one. */
export interface LanSegment {
  /** The harness's network namespace (`ip netns` name). */
  readonly namespace: string
  /** This namespace's end of the veth pair. */
  readonly interfaceName: string
  /** The harness's address on the segment: control, DERP, STUN, the admin API and the Go peer. */
  readonly harnessAddress: string
  /** This namespace's address on the segment, the one devices in this process advertise. */
  readonly deviceAddress: string
  /**
   * An address outside the tailnet that only the harness's namespace has (on its loopback;
   * this namespace has no route to it): the harness's servers there are reached only through
   * the Go peer as exit node.
   */
  readonly outsideAddress: string
}

/** TEST-NET-1 (RFC 5737): documentation only, never routed anywhere. */
const outsideAddress = "192.0.2.1"

/** Names of the veth ends in this namespace; `assertLoopbackOnly` lets them through. */
export const lanInterfacePrefix = "tslab"
/** Every namespace a topology makes is named `ts-lab-<pid>-<n>` (a suffix after it names its role). */
export const namespacePrefix = "ts-lab-"
/** The harness's end, alone in its namespace, so one name serves every segment. */
const harnessInterface = "lan0"

export const run = promisify(execFile)

export const stderrOf = (error: unknown): string => {
  const stderr = (error as { readonly stderr?: unknown }).stderr
  if (typeof stderr === "string" && stderr.trim() !== "") return stderr.trim()
  return error instanceof Error ? error.message : String(error)
}

export const ip = async (...args: ReadonlyArray<string>): Promise<void> => {
  try {
    await run("ip", args, { timeout: 10_000 })
  } catch (error) {
    throw new Error(`ip ${args.join(" ")}: ${stderrOf(error)}`, { cause: error })
  }
}

export const ipQuietly = (...args: ReadonlyArray<string>): Promise<void> => ip(...args).catch(() => undefined)

export const requireIp = async (topology: string): Promise<void> => {
  try {
    await run("ip", ["-V"], { timeout: 10_000 })
  } catch (error) {
    throw new Error(
      `the ${topology} topology needs \`ip\` from iproute2 on PATH (to make network namespaces and veth pairs): ${
        stderrOf(error)
      }`,
      { cause: error }
    )
  }
}

/**
 * Namespaces whose run ended without removing them (a killed process): `ts-lab-<pid>-<n>`, or
 * `ts-lab-<pid>-<n>-<role>`, where no process `<pid>` is left. Their veth pairs go with them.
 */
export const removeAbandonedNamespaces = async (): Promise<void> => {
  if (!existsSync("/run/netns")) return
  const abandoned = readdirSync("/run/netns").filter((name) => {
    const pid = /^ts-lab-(\d+)-\d+(?:-[a-z-]+)?$/.exec(name)?.[1]
    return pid !== undefined && !existsSync(`/proc/${pid}`)
  })
  await Promise.all(abandoned.map((name) => ipQuietly("netns", "delete", name)))
}

/** Subnets 10.<second>.<n>.0/24 with an address in this namespace already. */
const subnetsInUse = (second: number): ReadonlySet<number> =>
  new Set(
    Object.values(networkInterfaces()).flatMap((addresses) =>
      (addresses ?? []).flatMap((address) => {
        const match = new RegExp(`^10\\.${second}\\.(\\d+)\\.\\d+$`).exec(address.address)
        return match ? [Number(match[1])] : []
      })
    )
  )

let namespacesMade = 0

/** A name for a topology's namespaces, `ts-lab-<pid>-<n>`, new in this process. */
export const newNamespaceName = (): string => `${namespacePrefix}${process.pid}-${namespacesMade++}`

/** Makes the network namespace `namespace`, failing with what the topology needs when it cannot. */
export const addNamespace = async (topology: string, namespace: string): Promise<void> => {
  try {
    await ip("netns", "add", namespace)
  } catch (error) {
    throw new Error(
      `the ${topology} topology could not create the network namespace ${namespace} ` +
        `(it needs root, or CAP_SYS_ADMIN and CAP_NET_ADMIN): ${
          error instanceof Error ? error.message : String(error)
        }`,
      { cause: error }
    )
  }
}

/**
 * Claims a subnet number n (10.<second>.<n>.0/24 free in this namespace) with a veth pair from
 * `tslab<n>` here to `peerName` in `namespace`: creating `tslab<n>` fails when another topology
 * in this namespace (another test file, another run) holds that name, which the kernel decides
 * atomically. The search starts at a number from the process id, so parallel workers rarely
 * collide at all.
 */
export const claimSubnet = async (namespace: string, peerName: string, second: number): Promise<number> => {
  const inUse = subnetsInUse(second)
  const start = process.pid % 254
  for (let attempt = 0; attempt < 254; attempt++) {
    const n = ((start + attempt) % 254) + 1
    if (inUse.has(n)) continue
    try {
      await run("ip", [
        "link",
        "add",
        `${lanInterfacePrefix}${n}`,
        "type",
        "veth",
        "peer",
        "name",
        peerName,
        "netns",
        namespace
      ], { timeout: 10_000 })
      return n
    } catch (error) {
      if (!/File exists/i.test(stderrOf(error))) {
        throw new Error(`could not create a veth pair into ${namespace}: ${stderrOf(error)}`, { cause: error })
      }
    }
  }
  throw new Error(`no free subnet 10.${second}.<n>.0/24 for a topology in this network namespace`)
}

/**
 * Drops (or lets through again) every UDP datagram crossing this namespace's end of `segment`,
 * both ways, with nftables (`nft`): direct paths die, DERP over TCP goes on, as when a firewall
 * starts blocking UDP.
 */
export const setUdpBlocked = async (
  segment: { readonly interfaceName: string },
  blocked: boolean
): Promise<void> => {
  const table = `${segment.interfaceName}_udp`
  await run("nft", ["delete", "table", "inet", table]).catch(() => undefined)
  if (!blocked) return
  const dev = segment.interfaceName
  const rules = [
    `add table inet ${table}`,
    `add chain inet ${table} in { type filter hook input priority 0; }`,
    `add chain inet ${table} out { type filter hook output priority 0; }`,
    `add rule inet ${table} in iifname "${dev}" meta l4proto udp drop`,
    `add rule inet ${table} out oifname "${dev}" meta l4proto udp drop`
  ]
  for (const rule of rules) await run("nft", rule.split(" "))
}

/**
 * Waits until `interfaceName` in this namespace has its carrier (a moment after both ends of its
 * veth pair are up): until then the interface is not running, and a device started meanwhile
 * would not see `address`.
 */
export const carrierOn = async (interfaceName: string, address: string): Promise<void> => {
  const deadline = Date.now() + 5_000
  while (!(networkInterfaces()[interfaceName] ?? []).some((a) => a.address === address)) {
    if (Date.now() > deadline) throw new Error(`${interfaceName} has no carrier 5 s after both ends came up`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** What `makeLan` gives: the segment, and how to remove it (safe to call more than once). */
export interface Lan {
  readonly segment: LanSegment
  readonly remove: () => Promise<void>
}

/**
 * Makes a namespace for the harness and a veth pair into it, with 10.77.<n>.1/24 on the
 * harness's side and 10.77.<n>.2/24 on this side, both up, IPv4 only (no link-local IPv6, so
 * every address on the segment is a private 10.x one), and 192.0.2.1/32 on the harness's
 * loopback, outside the tailnet. Removed on `remove`, and when this
 * process exits without it.
 */
export const makeLan = async (): Promise<Lan> => {
  await requireIp("lan")
  await removeAbandonedNamespaces()
  const namespace = newNamespaceName()
  await addNamespace("lan", namespace)
  const removeNamespace = () => {
    try {
      execFileSync("ip", ["netns", "delete", namespace], { stdio: "ignore", timeout: 10_000 })
    } catch {
      // Already gone.
    }
  }
  process.once("exit", removeNamespace)
  let interfaceName: string | undefined
  let removed: Promise<void> | undefined
  const remove = () => {
    removed ??= (async () => {
      process.removeListener("exit", removeNamespace)
      // The namespace's deletion would take the pair too, but only once the kernel frees it,
      // later; deleting our end now takes both ends at once.
      if (interfaceName !== undefined) {
        await ipQuietly("link", "delete", interfaceName)
        // A block outlives its interface (the rule matches by name): the next LAN gets the name.
        await setUdpBlocked({ interfaceName }, false)
      }
      await ipQuietly("netns", "delete", namespace)
    })()
    return removed
  }
  try {
    const n = await claimSubnet(namespace, harnessInterface, 77)
    interfaceName = `${lanInterfacePrefix}${n}`
    const segment: LanSegment = {
      namespace,
      interfaceName,
      harnessAddress: `10.77.${n}.1`,
      deviceAddress: `10.77.${n}.2`,
      outsideAddress
    }
    const inside = ["-n", namespace]
    await ip("link", "set", segment.interfaceName, "addrgenmode", "none")
    await ip(...inside, "link", "set", harnessInterface, "addrgenmode", "none")
    await ip("address", "add", `${segment.deviceAddress}/24`, "dev", segment.interfaceName)
    await ip(...inside, "address", "add", `${segment.harnessAddress}/24`, "dev", harnessInterface)
    await ip(...inside, "address", "add", `${outsideAddress}/32`, "dev", "lo")
    await ip(...inside, "link", "set", "lo", "up")
    await ip(...inside, "link", "set", harnessInterface, "up")
    await ip("link", "set", segment.interfaceName, "up")
    await carrierOn(segment.interfaceName, segment.deviceAddress)
    return { segment, remove }
  } catch (error) {
    await remove()
    throw error
  }
}
