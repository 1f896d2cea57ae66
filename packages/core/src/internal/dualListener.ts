/**
 * One listener over two: the device's IPv4 and IPv6 listeners on the same port, as a
 * `net.Server` listening on both families. Each side accepts into one bounded backlog, and
 * `accept` takes from it, so nothing is dropped when a caller stops waiting and an idle side
 * costs nothing. Closing closes both sides and whatever is queued.
 */
import type { RawTcpListener, RawTcpStream } from "../Backend.ts"

/** Connections accepted ahead of the caller, as a kernel's listen backlog. */
const BACKLOG = 16

export const dualStack = (ipv4: RawTcpListener, ipv6: RawTcpListener): RawTcpListener => {
  const backlog: Array<RawTcpStream> = []
  const waiting: Array<{ resolve: (stream: RawTcpStream) => void; reject: (error: unknown) => void }> = []
  const paused = new Set<RawTcpListener>()
  let failure: { readonly error: unknown } | undefined
  let closed = false

  const fail = (error: unknown) => {
    // The first side to fail (closed, or its device lost) ends accepting for both.
    failure ??= { error }
    for (const waiter of waiting.splice(0)) waiter.reject(error)
  }
  const acceptFrom = (side: RawTcpListener): void => {
    if (failure || closed) return
    if (backlog.length >= BACKLOG) {
      paused.add(side)
      return
    }
    let next: Promise<RawTcpStream>
    try {
      next = side.accept()
    } catch (error) {
      return fail(error)
    }
    next.then(
      (stream) => {
        if (closed) return stream.close()
        const waiter = waiting.shift()
        if (waiter) waiter.resolve(stream)
        else backlog.push(stream)
        acceptFrom(side)
      },
      fail
    )
  }
  acceptFrom(ipv4)
  acceptFrom(ipv6)

  return {
    accept: () => {
      const queued = backlog.shift()
      if (queued) {
        for (const side of paused) {
          paused.delete(side)
          acceptFrom(side)
        }
        return Promise.resolve(queued)
      }
      if (failure) return Promise.reject(failure.error)
      return new Promise((resolve, reject) => waiting.push({ resolve, reject }))
    },
    get localAddress() {
      return ipv4.localAddress
    },
    close: () => {
      closed = true
      ipv4.close()
      ipv6.close()
      for (const stream of backlog.splice(0)) stream.close()
    }
  }
}
