/**
 * A `net.Socket`-like `Duplex` over a tailnet TCP stream, for code that speaks Node streams
 * (`http`, `tls`, database drivers). Usable without Effect.
 *
 * `end()` flushes and then closes both directions: tailscale-rs has no half-close.
 *
 * @since 0.1.0
 */
import type { RawTcpStream } from "@effect-tailscale/core/Backend"
import type { TcpStream } from "@effect-tailscale/core/TcpStream"
import * as Effect from "effect/Effect"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import { Duplex } from "node:stream"

/** A connected `net.Socket`-like `Duplex` over a tailnet TCP stream. */
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

/** A `TailnetSocket` over a backend stream (for backends; services hand out `TcpStream`s). */
export const toDuplex = (stream: RawTcpStream): TailnetSocket => new TailnetSocket(stream)

/**
 * A `TailnetSocket` over a stream from `dial` or `accept`. It reads and writes through the
 * stream's own calls, so nothing is lost to a read that was interrupted earlier; `onClose` runs
 * once, after the socket closed the stream (e.g. to close the scope that owns it).
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
