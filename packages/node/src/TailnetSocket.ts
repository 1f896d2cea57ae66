/**
 * Node sockets on the tailnet: `TailnetSocket`, a `net.Socket`-like `Duplex` over a tailnet TCP
 * stream, for code that speaks Node streams (`http`, `tls`, database drivers); a factory of
 * connected sockets for libraries that take one; and `serve`, which hands the connections a
 * tailnet listener accepts to an existing `net.Server` or `http.Server`. Made in Effect, then
 * usable by plain Node code.
 *
 * `end()` flushes and then closes both directions: tailscale-rs has no half-close.
 *
 * @since 0.1.0
 */
import { hostAndPort } from "@effect-tailscale/core/Address"
import type { RawTcpStream } from "@effect-tailscale/core/Backend"
import { Tailscale } from "@effect-tailscale/core/Tailscale"
import type { TailscaleError } from "@effect-tailscale/core/TailscaleError"
import type { TcpListener } from "@effect-tailscale/core/TcpListener"
import type { TcpStream } from "@effect-tailscale/core/TcpStream"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import type * as http from "node:http"
import type * as net from "node:net"
import { Duplex } from "node:stream"

/**
 * A connected `net.Socket`-like `Duplex` over a tailnet TCP stream.
 *
 * @category models
 */
export class TailnetSocket extends Duplex {
  readonly remoteAddress: string
  readonly remotePort: number
  readonly localAddress: string
  readonly localPort: number
  readonly remoteFamily: "IPv4" | "IPv6"
  readonly encrypted = false
  connecting = false
  private reading = false
  /** Idle timeout in ms (0: none), as `net.Socket#timeout`. */
  timeout: number | undefined = undefined
  private idleTimer: NodeJS.Timeout | undefined

  readonly stream: RawTcpStream

  constructor(stream: RawTcpStream) {
    super({ allowHalfOpen: false })
    this.stream = stream
    this.remoteAddress = stream.remoteAddress.ip
    this.remotePort = stream.remoteAddress.port
    this.localAddress = stream.localAddress.ip
    this.localPort = stream.localAddress.port
    this.remoteFamily = this.remoteAddress.includes(":") ? "IPv6" : "IPv4"
  }

  override _read(): void {
    if (this.reading) return
    this.reading = true
    const pull = (): void => {
      this.stream.read().then(
        (chunk) => {
          if (chunk === null) {
            this.reading = false
            this.push(null)
            return
          }
          this.active()
          if (this.push(chunk)) {
            pull()
          } else {
            this.reading = false
          }
        },
        (error: unknown) => {
          this.reading = false
          if (!this.destroyed) this.destroy(error instanceof Error ? error : new Error(String(error)))
        }
      )
    }
    pull()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.active()
    this.stream.write(chunk).then(() => {
      this.active()
      callback()
    }, (error: unknown) => callback(error as Error))
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.stream.close()
    callback()
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.idleTimer)
    this.stream.close()
    callback(error)
  }

  address(): { address: string; family: string; port: number } {
    return { address: this.localAddress, family: this.remoteFamily, port: this.localPort }
  }

  // net.Socket methods that mean nothing on the tailnet's user-space stack.
  setNoDelay(_noDelay?: boolean): this {
    return this
  }
  setKeepAlive(_enable?: boolean, _delay?: number): this {
    return this
  }
  /**
   * As `net.Socket#setTimeout`: after `timeout` ms without data in either direction, emits
   * `timeout` (once per idle period; the socket stays open, closing it is the listener's call).
   * 0 turns it off. Like Node's, the timer never keeps the process alive.
   */
  setTimeout(timeout: number, callback?: () => void): this {
    this.timeout = timeout > 0 ? timeout : undefined
    if (callback) {
      if (timeout > 0) this.once("timeout", callback)
      else this.removeListener("timeout", callback)
    }
    this.active()
    return this
  }

  /** Restarts the idle timer (on data read or written). */
  private active(): void {
    clearTimeout(this.idleTimer)
    this.idleTimer = undefined
    if (this.timeout === undefined || this.destroyed) return
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined
      this.emit("timeout")
    }, this.timeout)
    this.idleTimer.unref()
  }
  ref(): this {
    return this
  }
  unref(): this {
    return this
  }
}

/**
 * A `TailnetSocket` over a backend stream (for backends; services hand out `TcpStream`s).
 *
 * @category constructors
 */
export const toDuplex = (stream: RawTcpStream): TailnetSocket => new TailnetSocket(stream)

/**
 * A `TailnetSocket` over a stream from `dial` or `accept`. It reads and writes through the
 * stream's own calls, so nothing is lost to a read that was interrupted earlier; `onClose` runs
 * once, after the socket closed the stream (e.g. to close the scope that owns it).
 *
 * @category constructors
 */
export const fromTcpStream = (stream: TcpStream, onClose: () => void = () => {}): Effect.Effect<TailnetSocket> =>
  Effect.map(Effect.context<never>(), (context) => {
    const run = Effect.runPromiseWith(context)
    let closed = false
    return new TailnetSocket({
      read: () => run(Effect.map(stream.read(), Option.getOrNull)),
      write: (data) => run(stream.write(data)),
      localAddress: { ip: NetAddress.formatIp(stream.localAddress.address), port: stream.localAddress.port },
      remoteAddress: { ip: NetAddress.formatIp(stream.remoteAddress.address), port: stream.remoteAddress.port },
      close: () => {
        if (closed) return
        closed = true
        void run(stream.close).finally(onClose)
      }
    })
  })

/** The listener, or the device under it, has closed or was lost: serving ends, nothing failed. */
const listenerGone = (error: TailscaleError) =>
  error.reason._tag === "DeviceClosed" || error.reason._tag === "DeviceLost"

/**
 * A socket over the stream `open` makes in a scope of its own, a child of `scope`: closing the
 * socket closes that scope (and the stream), and so does a failed open.
 */
const ownSocket = <E>(scope: Scope.Scope, open: Effect.Effect<TcpStream, E, Scope.Scope>) =>
  Effect.gen(function*() {
    const connection = yield* Scope.fork(scope)
    const stream = yield* open.pipe(
      Scope.provide(connection),
      Effect.onError(() => Scope.close(connection, Exit.void))
    )
    return yield* fromTcpStream(stream, () => void Effect.runFork(Scope.close(connection, Exit.void)))
  })

/**
 * Hands every connection accepted on `listener` to `server` (as its "connection" event) until the
 * scope closes or the listener closes. The listener and the server stay yours to close. A closed
 * listener (or device) ends serving quietly; any other accept failure is the server's `error`
 * event when it has a listener for it, else a process warning, never an unhandled `error` that
 * would end the process. Each connection lives until its socket closes, or the scope does.
 *
 * @category utils
 */
export const serve = (
  listener: TcpListener,
  server: net.Server | http.Server
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const acceptOne = Effect.map(ownSocket(scope, listener.accept()), (socket) => {
      server.emit("connection", socket)
    })
    const report = (error: TailscaleError) =>
      Effect.sync(() => {
        if (listenerGone(error)) return
        if (server.listenerCount("error") > 0) server.emit("error", error)
        else process.emitWarning(error, "TailnetServeWarning")
      })
    yield* Effect.forkScoped(Effect.forever(acceptOne).pipe(Effect.catch(report)))
  })

/**
 * Opens a socket to a host (a tailnet IP or a peer's name) and port over the tailnet.
 *
 * @category models
 */
export type TailnetConnect = (host: string, port: number) => Promise<TailnetSocket>

/**
 * A `net.Socket`-compatible connection factory over the tailnet, for libraries that take one:
 * `ws`'s `createConnection`, a database driver's `stream` option, or anything that wants a
 * `Duplex` to `host:port` (a peer name, MagicDNS name or tailnet IP). The socket is connected
 * when the promise resolves, and lives until it is closed or the scope closes.
 *
 * @category constructors
 */
export const makeSocketFactory: Effect.Effect<TailnetConnect, never, Tailscale | Scope.Scope> = Effect.gen(function*() {
  const tailscale = yield* Tailscale
  const scope = yield* Effect.scope
  const runPromise = Effect.runPromiseWith(yield* Effect.context<never>())
  return (host, port) => runPromise(ownSocket(scope, tailscale.dial(hostAndPort(host, port))))
})
