/**
 * Starts and stops the loopback tailnet harness (`harness/`, a Go program: Tailscale's test
 * control server, a DERP relay, STUN and a `tsnet` peer called `echo-peer`), on loopback or, in
 * the `lan` topology, in a network namespace of its own on a LAN with this process, or, in the
 * `nat` topology, outside two masquerading routers, one in front of this process and one in
 * front of a second harness with a Go peer alone (`nat-peer`). Plain promises, and no
 * dependency on `@effect-tailscale/node`, so any package's tests can start a tailnet, node's
 * own included; `@effect-tailscale/testing`'s `LocalTailnet` wraps it as a scoped layer (and
 * re-exports this module as `@effect-tailscale/testing/HarnessProcess`).
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { request } from "node:http"
import { createRequire } from "node:module"
import { networkInterfaces, tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { lanInterfacePrefix, type LanSegment, makeLan, setUdpBlocked } from "./internal/lan.ts"
import { makeNat, type NatNetwork } from "./internal/nat.ts"

export type { LanSegment } from "./internal/lan.ts"
export type { NatNetwork, Router } from "./internal/nat.ts"

/**
 * Where the harness runs. `loopback`: in this network namespace, on 127.0.0.1, where the crate
 * finds no address to advertise and relays everything through DERP. `lan`: in a namespace of
 * its own, joined to this one by a veth pair (10.77.<n>.1 and .2), so the devices of this
 * process and the Go peer are on one LAN and can go direct. `nat`: this namespace behind a
 * masquerading router (10.78.<n>.2 behind 10.80.<n>.2), a Go peer behind another (10.79.<n>.2
 * behind 10.80.<n>.3), control, DERP and STUN outside (10.80.<n>.1); a direct path needs STUN
 * and hole punching through both NATs. `lan` needs `ip` (iproute2) and root; `nat` also `nft`
 * (nftables).
 *
 * @category models
 */
export type Topology = "loopback" | "lan" | "nat"

/**
 * What the harness prints when it is ready (one JSON line on stdout).
 *
 * @category models
 */
export const HarnessInfo = Schema.Struct({
  /** Control over https; its certificate, like the DERP relay's, is from a CA made for this run. */
  controlUrl: Schema.String,
  /** That CA's certificate (PEM): pass it as `caFile` (or `SSL_CERT_FILE`). */
  caFile: Schema.String,
  /** The same control server over plain http, for the Go nodes and the crate baseline. */
  plainControlUrl: Schema.String,
  authKey: Schema.String,
  derpPort: Schema.Number,
  /** With `-derp-pin`: the relay's `CertName` in the DERP map (`sha256-raw:<hex>`). */
  derpCertName: Schema.optional(Schema.String),
  stunPort: Schema.Number,
  adminUrl: Schema.String,
  /**
   * The admin API of the harness that runs `peer`, when it is not `adminUrl`'s (the `nat`
   * topology: `unix:<path>`, a socket of the NATed peer's harness).
   */
  peerAdminUrl: Schema.optional(Schema.String),
  /** The Go peer the peer calls act as (`echo-peer`; the NATed `nat-peer` on the `nat` topology). */
  peer: Schema.Struct({
    hostname: Schema.String,
    fqdn: Schema.String,
    ipv4: Schema.String,
    ipv6: Schema.String,
    tcpEchoPort: Schema.Number,
    udpEchoPort: Schema.Number,
    httpPort: Schema.Number
  }),
  /**
   * On the `lan` topology: a TCP echo and an HTTP server (`GET /` answers
   * `hello from outside the tailnet`) at an address only the harness's namespace has, reached
   * only through the Go peer as exit node (`offerExitNode`).
   */
  outside: Schema.optional(Schema.Struct({
    ip: Schema.String,
    tcpEchoPort: Schema.Number,
    httpPort: Schema.Number
  }))
})

/**
 * The harness's ready line, decoded.
 *
 * @category models
 */
export type HarnessInfo = typeof HarnessInfo.Type

/** The ready line of a `-peer-only` harness: its admin API and its Go peer. */
const PeerOnlyReady = Schema.Struct({ adminUrl: Schema.String, peer: HarnessInfo.fields.peer })

/** A ready line as `schema` has it, or an error quoting it. */
const decodeReady = <S extends Schema.Decoder<unknown>>(schema: S, ready: unknown): S["Type"] => {
  try {
    return Schema.decodeUnknownSync(schema)(ready)
  } catch (error) {
    throw new Error(
      `the tailnet harness's ready line does not decode (${error instanceof Error ? error.message : String(error)}): ${
        JSON.stringify(ready)
      }`,
      { cause: error }
    )
  }
}

/**
 * A started harness: its ready line, its stderr, and how to stop it.
 *
 * @category models
 */
export interface RunningHarness {
  /** The ready line, decoded. */
  readonly ready: HarnessInfo
  /** The last lines the harness wrote to stderr, for failure messages. */
  readonly stderrTail: () => string
  /** Closes the harness's stdin and waits for it to exit (killing it after `graceMs`). */
  readonly stop: (graceMs?: number) => Promise<void>
  readonly pid: number
  /** The LAN segment of the `lan` topology; undefined on the others. */
  readonly lan: LanSegment | undefined
  /** The network of the `nat` topology; undefined on the others. */
  readonly nat: NatNetwork | undefined
  /**
   * Drops every UDP datagram in or out of this namespace by its link to the harness (`lan`) or
   * to its router (`nat`), with nftables: direct paths die, DERP over TCP goes on. Or lets them
   * through again. Rejects on the `loopback` topology, which has no such link.
   */
  readonly blockUdp: (blocked: boolean) => Promise<void>
}

/**
 * How to start the harness.
 *
 * @category options
 */
export interface StartOptions {
  readonly args?: ReadonlyArray<string> | undefined
  readonly readyTimeoutMs?: number | undefined
  /** Log Tailscale's own chatter to stderr (`-v`). */
  readonly verbose?: boolean | undefined
  /** Where the harness binary is (in a checkout: built there when missing). Default: `harnessBinary()`. */
  readonly binary?: string | undefined
  /** Default `loopback`. */
  readonly topology?: Topology | undefined
}

const here = dirname(fileURLToPath(import.meta.url))
const repositoryRoot = resolve(here, "../../..")
/** The Go sources: only in a checkout of the repository, never in the published package. */
const harnessSource = resolve(here, "../harness")

/**
 * The package with the prebuilt harness for this machine, e.g. `…-linux-x64`.
 *
 * @category utils
 */
export const harnessPackage = `@effect-tailscale/tailnet-harness-${process.platform}-${process.arch}`

/**
 * `TAILNET_HARNESS_BIN`; in a checkout, the binary `npm test` builds into `.cache/bin`; once
 * installed from npm, the prebuilt binary of this platform's optional package.
 *
 * @category utils
 */
export const harnessBinary = (): string => {
  if (process.env.TAILNET_HARNESS_BIN) return process.env.TAILNET_HARNESS_BIN
  if (existsSync(harnessSource)) return join(repositoryRoot, ".cache", "bin", "tailnet-harness")
  try {
    return createRequire(import.meta.url).resolve(`${harnessPackage}/tailnet-harness`)
  } catch {
    throw new Error(
      `the loopback tailnet harness is not installed for ${process.platform}-${process.arch}: ` +
        `${harnessPackage} is missing (it is an optional dependency of @effect-tailscale/tailnet-harness, ` +
        `published for linux-x64 and linux-arm64; the harness needs a Linux network namespace). ` +
        `Set TAILNET_HARNESS_BIN to a harness you built from the repository's packages/tailnet-harness/harness.`
    )
  }
}

/**
 * Tailscale clients advertise and probe every address of the machine. The harness only runs
 * where loopback is the sole interface (the fresh network namespace `npm test` creates), so no
 * packet can leave this machine. The `lan` and `nat` topologies' veth pairs (`tslab<n>`) are let
 * through: they lead only into namespaces a run made on this machine.
 *
 * @category guards
 */
export const assertLoopbackOnly = (): void => {
  const external = Object.entries(networkInterfaces()).flatMap(([name, addresses]) =>
    name.startsWith(lanInterfacePrefix)
      ? []
      : (addresses ?? []).filter((address) => !address.internal).map((address) => `${name} ${address.address}`)
  )
  if (external.length > 0) {
    throw new Error(
      `refusing to start the loopback tailnet: this network namespace has non-loopback interfaces ` +
        `(${external.join(", ")}). Run the tests with \`npm test\`, or wrap the command in ` +
        `scripts/isolated.sh, which gives it a namespace with only loopback.`
    )
  }
}

/**
 * Builds the harness into `binary` when it is missing, with the Go toolchain on PATH and only
 * the modules `go.sum` pins (`GOTOOLCHAIN=local`, `-mod=readonly`). `scripts/setup.sh` does the
 * same before the tests, outside the network namespace, where the modules can be downloaded.
 *
 * @category utils
 */
export const ensureHarnessBuilt = async (binary: string = harnessBinary()): Promise<void> => {
  if (existsSync(binary)) return
  if (!existsSync(harnessSource)) {
    throw new Error(`the tailnet harness ${binary} is missing, and its Go sources are not here to build it`)
  }
  try {
    await promisify(execFile)("go", ["build", "-o", binary, "."], {
      cwd: harnessSource,
      env: { ...process.env, GOTOOLCHAIN: "local", GOFLAGS: "-mod=readonly" },
      timeout: 600_000
    })
  } catch (error) {
    const detail = error instanceof Error ? ((error as { stderr?: string }).stderr || error.message) : String(error)
    throw new Error(
      `the tailnet harness is not built (${binary} is missing) and building it failed; it needs Go 1.26.6 or ` +
        `newer and the modules in harness/go.sum (scripts/setup.sh fetches them):\n${detail}`
    )
  }
}

const STDERR_LINES = 80

/**
 * Starts the tailnet harness (inside a network namespace with only loopback) and waits for its
 * ready line. With `topology: "lan"` it first makes the harness's namespace and the LAN to it;
 * with `topology: "nat"`, the NATed network, the harness in its outside namespace and a second
 * harness (`-peer-only`) with the Go peer behind its router. `stop` stops them (the NATed peer
 * first: it logs out of control) and removes the network after they have exited (also when one
 * never got ready).
 *
 * @category constructors
 */
export const startHarness = async (options: StartOptions = {}): Promise<RunningHarness> => {
  assertLoopbackOnly()
  const binary = options.binary ?? harnessBinary()
  await ensureHarnessBuilt(binary)
  const args = [...(options.args ?? []), ...(options.verbose ? ["-v"] : [])]
  const timeoutMs = options.readyTimeoutMs ?? 90_000
  if (options.topology === "nat") return startNat(binary, args, timeoutMs, options.verbose === true)
  const lan = options.topology === "lan" ? await makeLan() : undefined
  try {
    // `ip netns exec` executes the harness in its place, so the child is the harness itself.
    const harness = lan === undefined
      ? await spawnReady(binary, args, timeoutMs)
      : await spawnReady(
        "ip",
        [
          "netns",
          "exec",
          lan.segment.namespace,
          binary,
          "-listen-ip",
          lan.segment.harnessAddress,
          "-outside-ip",
          lan.segment.outsideAddress,
          ...args
        ],
        timeoutMs
      )
    const stop = async (graceMs = 5_000) => {
      await harness.stop(graceMs)
      await lan?.remove()
    }
    try {
      return {
        ...harness,
        ready: decodeReady(HarnessInfo, harness.ready),
        stop,
        lan: lan?.segment,
        nat: undefined,
        blockUdp: (blocked) =>
          lan === undefined
            ? Promise.reject(new Error("blocking UDP needs the lan or nat topology"))
            : setUdpBlocked(lan.segment, blocked)
      }
    } catch (error) {
      await harness.stop(1_000)
      throw error
    }
  } catch (error) {
    await lan?.remove()
    throw error
  }
}

/**
 * The NATed Go peer's tailnet hostname.
 *
 * @category constants
 */
export const natPeerHostname = "nat-peer"

const startNat = async (binary: string, args: ReadonlyArray<string>, timeoutMs: number, verbose: boolean) => {
  const nat = await makeNat()
  const { namespaces } = nat.network
  const stopped: Array<(graceMs: number) => Promise<void>> = []
  // The admin socket of the NATed peer: the file system is shared by every namespace.
  const adminDir = mkdtempSync(join(tmpdir(), "ts-nat-"))
  const removeAdminDir = () => rmSync(adminDir, { recursive: true, force: true })
  process.once("exit", removeAdminDir)
  const stop = async (graceMs = 5_000) => {
    for (const stopOne of stopped.reverse()) await stopOne(graceMs)
    stopped.length = 0
    process.removeListener("exit", removeAdminDir)
    removeAdminDir()
    await nat.remove()
  }
  try {
    const outside = await spawnReady(
      "ip",
      ["netns", "exec", namespaces.outside, binary, "-listen-ip", nat.network.harnessAddress, ...args],
      timeoutMs
    )
    stopped.push(outside.stop)
    const ready = decodeReady(HarnessInfo, outside.ready)
    // The Go nodes join over plain http (our devices over https, with the CA).
    const peer = await spawnReady(
      "ip",
      [
        "netns",
        "exec",
        namespaces.peer,
        binary,
        "-peer-only",
        "-control-url",
        ready.plainControlUrl,
        "-authkey",
        ready.authKey,
        "-hostname",
        natPeerHostname,
        "-admin-socket",
        join(adminDir, "admin.sock"),
        ...(verbose ? ["-v"] : [])
      ],
      timeoutMs
    ).catch((error: unknown) => {
      throw new Error(
        `${
          error instanceof Error ? error.message : String(error)
        }\n--- outside harness stderr ---\n${outside.stderrTail()}`,
        { cause: error }
      )
    })
    stopped.push(peer.stop)
    const peerReady = decodeReady(PeerOnlyReady, peer.ready)
    return {
      ready: { ...ready, peer: peerReady.peer, peerAdminUrl: peerReady.adminUrl },
      stderrTail: () =>
        `--- outside harness ---\n${outside.stderrTail()}\n--- NATed peer's harness ---\n${peer.stderrTail()}`,
      stop,
      pid: outside.pid,
      lan: undefined,
      nat: nat.network,
      blockUdp: (blocked) => setUdpBlocked(nat.network, blocked)
    } satisfies RunningHarness
  } catch (error) {
    await stop(1_000)
    throw error
  }
}

/** A child that printed its ready line. */
interface ReadyChild {
  readonly ready: unknown
  readonly stderrTail: () => string
  readonly stop: (graceMs?: number) => Promise<void>
  readonly pid: number
}

/** Spawns `command` and waits for its JSON ready line on stdout; kills it when that fails. */
const spawnReady = (command: string, args: ReadonlyArray<string>, timeoutMs: number): Promise<ReadyChild> => {
  const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] })
  const stderr: Array<string> = []
  createInterface({ input: child.stderr! }).on("line", (line) => {
    stderr.push(line)
    if (stderr.length > STDERR_LINES) stderr.shift()
  })
  const stderrTail = () => stderr.join("\n")
  const stop = (graceMs = 5_000) => stopChild(child, graceMs)
  const killOnExit = () => child.kill("SIGKILL")
  process.once("exit", killOnExit)
  child.once("exit", () => process.removeListener("exit", killOnExit))

  return new Promise<ReadyChild>((resolvePromise, rejectPromise) => {
    const fail = (why: string) => {
      clearTimeout(timer)
      void stop(1_000).finally(() => rejectPromise(new Error(`${why}\n--- harness stderr ---\n${stderrTail()}`)))
    }
    const timer = setTimeout(() => fail(`the tailnet harness was not ready after ${timeoutMs} ms`), timeoutMs)
    child.once("error", (error) => fail(`could not start the tailnet harness (${command}): ${error.message}`))
    child.once("exit", (code, signal) => fail(`the tailnet harness exited before it was ready (${signal ?? code})`))
    const lines = createInterface({ input: child.stdout! })
    lines.once("line", (line) => {
      clearTimeout(timer)
      child.removeAllListeners("exit")
      child.once("exit", () => process.removeListener("exit", killOnExit))
      let ready: unknown
      try {
        ready = JSON.parse(line)
      } catch {
        return fail(`the tailnet harness printed something other than its JSON ready line: ${line}`)
      }
      resolvePromise({ ready, stderrTail, stop, pid: child.pid! })
    })
  })
}

const stopChild = (child: ChildProcess, graceMs: number): Promise<void> => {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise<void>((resolvePromise) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), graceMs)
    child.once("exit", () => {
      clearTimeout(kill)
      resolvePromise()
    })
    child.stdin?.end()
  })
}

/**
 * Calls one of the harness's admin endpoints and returns the body, failing on non-2xx.
 *
 * @category utils
 */
export const adminRequest = async (
  adminUrl: string,
  path: string,
  init: { readonly method?: "GET" | "POST"; readonly body?: Uint8Array | string } = {}
): Promise<string> => new TextDecoder().decode(await adminRequestBytes(adminUrl, path, init))

/**
 * Like `adminRequest`, with the body as bytes. `adminUrl` is `http://…`, or `unix:<path>` for an
 * admin API on a unix socket (the `nat` topology's NATed peer).
 *
 * @category utils
 */
export const adminRequestBytes = async (
  adminUrl: string,
  path: string,
  init: { readonly method?: "GET" | "POST"; readonly body?: Uint8Array | string } = {}
): Promise<Uint8Array> => {
  const { body, status } = adminUrl.startsWith("unix:")
    ? await unixRequest(adminUrl.slice("unix:".length), path, init)
    : await fetch(new URL(path, adminUrl), {
      method: init.method ?? "GET",
      ...(init.body === undefined ? {} : { body: toBody(init.body) })
    }).then(async (response) => ({ status: response.status, body: new Uint8Array(await response.arrayBuffer()) }))
  if (status < 200 || status > 299) {
    throw new Error(`harness ${path} answered ${status}: ${new TextDecoder().decode(body)}`)
  }
  return body
}

const unixRequest = (
  socketPath: string,
  path: string,
  init: { readonly method?: "GET" | "POST"; readonly body?: Uint8Array | string }
): Promise<{ readonly status: number; readonly body: Uint8Array }> =>
  new Promise((resolvePromise, rejectPromise) => {
    const outgoing = request({ socketPath, path, method: init.method ?? "GET", host: "localhost" }, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.once("error", rejectPromise)
      response.once("end", () =>
        resolvePromise({ status: response.statusCode ?? 0, body: new Uint8Array(Buffer.concat(chunks)) }))
    })
    outgoing.once("error", rejectPromise)
    outgoing.end(init.body === undefined ? undefined : Buffer.from(init.body))
  })

/**
 * fetch wants an ArrayBuffer-backed view; a Buffer may share a larger pool.
 *
 * @category utils
 */
export const toBody = (data: Uint8Array | string): string | Uint8Array<ArrayBuffer> =>
  typeof data === "string" ? data : new Uint8Array(data)
