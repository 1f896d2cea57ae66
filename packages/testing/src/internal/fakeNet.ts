/**
 * The in-memory network behind `FakeTailnet`: TCP stream pairs with backpressure and end of
 * stream, and UDP queues with the crate's size limit. Backend-shaped (promises), no Effect.
 */
import { backendError, type RawSocketAddress, type RawTcpStream } from "@effect-tailscale/core/Backend"
import { maxDatagramBytes } from "@effect-tailscale/core/UdpSocket"

/** A rejection as the addon's are: code and subject as data, the same words in the message. */
export const fail = backendError

/** The largest UDP datagram, as in tailscale-rs's network stack (core's one copy of it). */
export const MAX_DATAGRAM_BYTES = maxDatagramBytes
/** Datagrams a UDP socket queues before it drops more. */
export const UDP_QUEUE = 32

/** A FIFO whose `take` waits; `close` wakes every waiter with `DEVICE_CLOSED`. */
export class Channel<A> {
  private items: Array<A> = []
  private takers: Array<{ resolve: (a: A) => void; reject: (e: Error) => void }> = []
  private closedWith: Error | undefined

  get size() {
    return this.items.length
  }

  push(item: A): void {
    if (this.closedWith) return
    const taker = this.takers.shift()
    if (taker) taker.resolve(item)
    else this.items.push(item)
  }

  take(): Promise<A> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift()!)
    if (this.closedWith) return Promise.reject(this.closedWith)
    return new Promise((resolve, reject) => this.takers.push({ resolve, reject }))
  }

  close(error: Error): void {
    if (this.closedWith) return
    this.closedWith = error
    for (const taker of this.takers.splice(0)) taker.reject(error)
  }
}

/** Bytes in flight in one direction, with a capacity: writers wait while it is full. */
class Pipe {
  private chunks: Array<Uint8Array> = []
  private buffered = 0
  private ended = false
  private reset: Error | undefined
  /** Set when the reading end closed: pending reads fail with it, later writes are dropped. */
  private discarding: Error | undefined
  private readers: Array<() => void> = []
  private writers: Array<() => void> = []

  private readonly capacity: number

  constructor(capacity: number) {
    this.capacity = capacity
  }

  async write(data: Uint8Array, delay: () => Promise<void>): Promise<void> {
    let offset = 0
    while (offset < data.length) {
      if (this.reset) throw this.reset
      if (this.ended) throw fail("CONNECTION_RESET", "TCP write", "the connection is closed")
      if (this.discarding) return
      const room = this.capacity - this.buffered
      if (room <= 0) {
        await new Promise<void>((wake) => this.writers.push(wake))
        continue
      }
      const piece = data.slice(offset, offset + room)
      offset += piece.length
      await delay()
      this.chunks.push(piece)
      this.buffered += piece.length
      this.wake(this.readers)
    }
  }

  async read(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.discarding) throw this.discarding
      if (this.reset) throw this.reset
      const chunk = this.chunks.shift()
      if (chunk) {
        this.buffered -= chunk.length
        this.wake(this.writers)
        return chunk
      }
      if (this.ended) return null
      await new Promise<void>((wake) => this.readers.push(wake))
    }
  }

  end(): void {
    this.ended = true
    this.wake(this.readers)
    this.wake(this.writers)
  }

  discard(error: Error): void {
    this.discarding = error
    this.chunks = []
    this.buffered = 0
    this.wake(this.readers)
    this.wake(this.writers)
  }

  abort(error: Error): void {
    this.reset = error
    this.wake(this.readers)
    this.wake(this.writers)
  }

  private wake(waiters: Array<() => void>) {
    for (const wake of waiters.splice(0)) wake()
  }
}

/** One end of a connection. `close` ends our direction and stops reads with `DEVICE_CLOSED`. */
export interface FakeStream extends RawTcpStream {
  /** Resets both directions (as a peer's RST would). */
  readonly resetConnection: () => void
}

export const streamPair = (
  client: RawSocketAddress,
  server: RawSocketAddress,
  options: { readonly capacity: number; readonly delay: () => Promise<void> }
): [FakeStream, FakeStream] => {
  const toServer = new Pipe(options.capacity)
  const toClient = new Pipe(options.capacity)
  const reset = () => {
    const error = fail("CONNECTION_RESET", "TCP read", "the connection was reset by the peer")
    toServer.abort(error)
    toClient.abort(error)
  }
  const end = (inbox: Pipe, outbox: Pipe, local: RawSocketAddress, remote: RawSocketAddress): FakeStream => {
    let closed = false
    const closedError = () => fail("DEVICE_CLOSED", "TCP stream", "is closed")
    return {
      read: () => (closed ? Promise.reject(closedError()) : inbox.read()),
      write: (data) => (closed ? Promise.reject(closedError()) : outbox.write(data, options.delay)),
      localAddress: local,
      remoteAddress: remote,
      close: () => {
        if (closed) return
        closed = true
        outbox.end()
        inbox.discard(closedError())
      },
      resetConnection: reset
    }
  }
  return [end(toClient, toServer, client, server), end(toServer, toClient, server, client)]
}
