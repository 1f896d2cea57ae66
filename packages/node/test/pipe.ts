/** Two in-memory TCP stream ends joined back to back, and a listener that hands out one end. */
import { backendError, type RawTcpListener, type RawTcpStream } from "@effect-tailscale/core/Backend"

class Queue<A> {
  private items: Array<A> = []
  private waiters: Array<(value: A) => void> = []
  push(value: A) {
    const waiter = this.waiters.shift()
    if (waiter) waiter(value)
    else this.items.push(value)
  }
  take(): Promise<A> {
    const item = this.items.shift()
    if (item !== undefined) return Promise.resolve(item)
    return new Promise((resolve) => this.waiters.push(resolve))
  }
}

export const streamPair = (): [RawTcpStream, RawTcpStream] => {
  const aToB = new Queue<Uint8Array | null>()
  const bToA = new Queue<Uint8Array | null>()
  const end = (inbox: Queue<Uint8Array | null>, outbox: Queue<Uint8Array | null>, local: number, remote: number) => {
    let closed = false
    const stream: RawTcpStream = {
      read: () => (closed ? Promise.reject(backendError("DEVICE_CLOSED", "TCP stream", "is closed")) : inbox.take()),
      write: async (data) => {
        if (closed) throw backendError("DEVICE_CLOSED", "TCP stream", "is closed")
        outbox.push(new Uint8Array(data))
      },
      localAddress: { ip: "100.64.0.2", port: local },
      remoteAddress: { ip: "100.64.0.1", port: remote },
      close: () => {
        if (closed) return
        closed = true
        outbox.push(null)
      }
    }
    return stream
  }
  return [end(bToA, aToB, 50000, 8080), end(aToB, bToA, 8080, 50000)]
}

export const memoryListener = () => {
  const pending = new Queue<RawTcpStream | Error>()
  let closed = false
  const listener: RawTcpListener = {
    accept: async () => {
      const next = await pending.take()
      if (next instanceof Error) throw next
      return next
    },
    localAddress: { ip: "100.64.0.2", port: 8080 },
    close: () => {
      if (closed) return
      closed = true
      pending.push(backendError("DEVICE_CLOSED", "TCP listener", "is closed"))
    }
  }
  /** A client end whose other end the listener accepts. */
  const connect = async (): Promise<RawTcpStream> => {
    const [client, server] = streamPair()
    pending.push(server)
    return client
  }
  return { listener, connect }
}
