/**
 * One listener over two: the device's IPv4 and IPv6 listeners on the same port, as a
 * `net.Server` listening on both families. Each side accepts in a loop of its own into one
 * queue (a backlog), and `accept` takes from it, so nothing is dropped when a caller stops
 * waiting and an idle side costs nothing. Closing closes both sides and whatever is queued.
 */
import type { RawTcpListener, RawTcpStream } from "../Backend.ts"

export const dualStack = (ipv4: RawTcpListener, ipv6: RawTcpListener): RawTcpListener => {
  const backlog: Array<RawTcpStream> = []
  const waiting: Array<{ resolve: (stream: RawTcpStream) => void; reject: (error: unknown) => void }> = []
  let failure: { readonly error: unknown } | undefined
  let closed = false

  const acceptFrom = (side: RawTcpListener): void => {
    side.accept().then(
      (stream) => {
        if (closed) return stream.close()
        const waiter = waiting.shift()
        if (waiter) waiter.resolve(stream)
        else backlog.push(stream)
        acceptFrom(side)
      },
      (error: unknown) => {
        // The first side to fail (closed, or its device lost) ends accepting for both.
        failure ??= { error }
        for (const waiter of waiting.splice(0)) waiter.reject(error)
      }
    )
  }
  acceptFrom(ipv4)
  acceptFrom(ipv6)

  return {
    accept: () => {
      const queued = backlog.shift()
      if (queued) return Promise.resolve(queued)
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
