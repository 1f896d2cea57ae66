/**
 * A local proxy into the tailnet, for libraries and child processes that can use a proxy but
 * not a custom socket: a SOCKS5 server (`CONNECT`) and an HTTP `CONNECT` proxy, both on
 * 127.0.0.1, living as long as the layer. Targets are peer names, MagicDNS names or tailnet IPs,
 * resolved by the device (use `socks5h://`, so names are not resolved locally).
 *
 * ```ts
 * const proxy = yield* TailnetProxy.TailnetProxy
 * // e.g. curl --socks5-hostname 127.0.0.1:<proxy.socksPort> http://db-admin:8080/
 * childProcess.spawn("curl", ["-x", proxy.socksUrl, "http://db-admin:8080/"])
 * ```
 *
 * Only loopback clients can reach the proxy; anyone on this machine can, as with any local
 * proxy. UDP `ASSOCIATE` is not offered.
 *
 * @since 0.1.0
 */
import { type DialTarget, hostAndPort } from "@effect-tailscale/core/Address"
import { Tailscale, type TailscaleService } from "@effect-tailscale/core/Tailscale"
import { AddressInUse, TailscaleError } from "@effect-tailscale/core/TailscaleError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as http from "node:http"
import * as net from "node:net"
import { fromTcpStream } from "./TailnetSocket.ts"

/**
 * Where the proxies listen.
 *
 * @category services
 */
export interface TailnetProxyService {
  /** The SOCKS5 server's port on 127.0.0.1. */
  readonly socksPort: number
  /** `socks5h://127.0.0.1:<socksPort>`: names are resolved on the tailnet. */
  readonly socksUrl: string
  /** The HTTP `CONNECT` proxy's port on 127.0.0.1. */
  readonly httpPort: number
  /** `http://127.0.0.1:<httpPort>`. */
  readonly httpUrl: string
}

/**
 * The running proxies in context.
 *
 * @category services
 */
export class TailnetProxy extends Context.Service<TailnetProxy, TailnetProxyService>()(
  "@effect-tailscale/node/TailnetProxy"
) {}

/**
 * Ports for the proxies (default: any free port).
 *
 * @category options
 */
export interface TailnetProxyOptions {
  /** Default 0: any free port. */
  readonly socksPort?: number | undefined
  /** Default 0: any free port. */
  readonly httpPort?: number | undefined
}

/** Dials `target` over the device and splices it with `client` until either side closes. */
type Splice = (target: DialTarget, client: net.Socket, head: Buffer, answer: Answer) => void

/** How the proxy tells its client that the tailnet side is (or is not) connected. */
interface Answer {
  readonly connected: () => void
  readonly failed: (reason: string) => void
}

const makeSplice = (tailscale: TailscaleService, scope: Scope.Scope): Splice => (target, client, head, answer) => {
  const connection = Effect.gen(function*() {
    const stream = yield* tailscale.dial(target)
    const tailnet = yield* fromTcpStream(stream)
    answer.connected()
    if (head.length > 0) tailnet.write(head)
    client.pipe(tailnet)
    tailnet.pipe(client)
    client.resume()
    yield* Effect.callback<void>((resume) => {
      let open = 2
      const closed = () => {
        open -= 1
        client.destroy()
        tailnet.destroy()
        if (open === 0) resume(Effect.void)
      }
      client.once("close", closed)
      tailnet.once("close", closed)
      client.on("error", () => client.destroy())
      tailnet.on("error", () => tailnet.destroy())
    })
  }).pipe(
    Effect.scoped,
    Effect.catch((error: TailscaleError) => Effect.sync(() => answer.failed(error.reason._tag)))
  )
  // A refusal was sent with end(): let it flush; anything else still open is torn down.
  const release = Effect.sync(() => {
    if (!client.writableEnded) client.destroy()
  })
  Effect.runFork(Effect.ensuring(connection, release).pipe(Scope.provide(scope)))
}

/** SOCKS5 reply codes (RFC 1928) for the reasons a dial fails. */
const socksReply = (reason: string) =>
  reason === "ConnectionRefused" ? 0x05 : reason === "Timeout" ? 0x06 : reason === "InvalidArgument" ? 0x04 : 0x01

/** Reads exactly `n` bytes, or fails once the client has gone. */
const reader = (socket: net.Socket) => {
  let buffered = Buffer.alloc(0)
  let ended = false
  let wake: (() => void) | undefined
  const onData = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk])
    wake?.()
  }
  const onEnd = () => {
    ended = true
    wake?.()
  }
  socket.on("data", onData)
  socket.on("close", onEnd)
  return {
    read: async (n: number): Promise<Buffer> => {
      while (buffered.length < n) {
        if (ended) throw new Error("the client went away")
        await new Promise<void>((resolve) => (wake = resolve))
        wake = undefined
      }
      const out = buffered.subarray(0, n)
      buffered = buffered.subarray(n)
      return out
    },
    /** Stops reading; returns what arrived beyond the handshake. */
    release: (): Buffer => {
      socket.off("data", onData)
      socket.off("close", onEnd)
      socket.pause()
      return buffered
    }
  }
}

const socksHandshake = async (client: net.Socket, splice: Splice) => {
  const { read, release } = reader(client)
  const [version, methods] = await read(2)
  if (version !== 0x05) return client.destroy()
  const offered = await read(methods!)
  if (!offered.includes(0x00)) {
    client.end(Buffer.from([0x05, 0xff])) // only "no authentication" is offered
    return
  }
  client.write(Buffer.from([0x05, 0x00]))
  const [, command, , addressType] = await read(4)
  const reply = (code: number) => Buffer.from([0x05, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0])
  let host: string
  if (addressType === 0x01) host = [...(await read(4))].join(".")
  else if (addressType === 0x03) host = (await read((await read(1))[0]!)).toString("utf8")
  else if (addressType === 0x04) host = (await read(16)).toString("hex").match(/.{4}/g)!.join(":")
  else return client.end(reply(0x08))
  const port = (await read(2)).readUInt16BE(0)
  if (command !== 0x01) return client.end(reply(0x07)) // CONNECT only
  splice(hostAndPort(host, port), client, release(), {
    connected: () => client.write(reply(0x00)),
    failed: (reason) => client.end(reply(socksReply(reason)))
  })
}

const listen = (server: net.Server, port: number, what: string) =>
  Effect.callback<number, TailscaleError>((resume) => {
    server.once("error", (error) =>
      resume(Effect.fail(
        new TailscaleError({
          reason: new AddressInUse({ message: `${what} cannot listen on 127.0.0.1:${port}: ${error.message}` })
        })
      )))
    server.listen(port, "127.0.0.1", () => resume(Effect.succeed((server.address() as net.AddressInfo).port)))
  })

/**
 * The proxies for the `Tailscale` device in context, closed with the scope.
 *
 * @category constructors
 */
export const make = (options: TailnetProxyOptions = {}) =>
  Effect.gen(function*() {
    const tailscale = yield* Tailscale
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const splice = makeSplice(tailscale, scope)
    const clients = new Set<net.Socket>()
    const track = (socket: net.Socket) => {
      clients.add(socket)
      socket.once("close", () => clients.delete(socket))
      socket.on("error", () => socket.destroy())
    }

    const socks = net.createServer((client) => {
      track(client)
      socksHandshake(client, splice).catch(() => client.destroy())
    })
    const httpProxy = http.createServer((_request, response) => {
      response.writeHead(405, { "content-type": "text/plain", allow: "CONNECT" })
      response.end("this proxy only tunnels: send CONNECT host:port\n")
    })
    httpProxy.on("connect", (request: http.IncomingMessage, client: net.Socket, head: Buffer) => {
      track(client)
      client.pause()
      // What the client sent, unchecked: `dial` refuses anything but "host:port".
      splice((request.url ?? "") as DialTarget, client, head, {
        connected: () => client.write("HTTP/1.1 200 Connection Established\r\n\r\n"),
        failed: (reason) => client.end(`HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\n\r\n${reason}\n`)
      })
    })
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        socks.close()
        httpProxy.close()
        for (const client of clients) client.destroy()
      })
    )
    const socksPort = yield* listen(socks, options.socksPort ?? 0, "the SOCKS5 proxy")
    const httpPort = yield* listen(httpProxy, options.httpPort ?? 0, "the HTTP CONNECT proxy")
    return {
      socksPort,
      socksUrl: `socks5h://127.0.0.1:${socksPort}`,
      httpPort,
      httpUrl: `http://127.0.0.1:${httpPort}`
    } satisfies TailnetProxyService
  })

/**
 * The proxies for the `Tailscale` device in context, for the layer's lifetime.
 *
 * @category layers
 */
export const layer = (options?: TailnetProxyOptions): Layer.Layer<TailnetProxy, TailscaleError, Tailscale> =>
  Layer.effect(TailnetProxy, make(options))
