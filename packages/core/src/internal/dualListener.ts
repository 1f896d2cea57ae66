/**
 * One listener over two: the device's IPv4 and IPv6 listeners on the same port, as a
 * `net.Server` listening on both families. `accept` takes whichever connection arrives first.
 * Each side's pending accept is kept for the next call, so a connection is never dropped when
 * the other side wins or a caller stops waiting; calls are served one at a time.
 */
import type { RawTcpListener, RawTcpStream } from "../Backend.ts"

export const dualStack = (ipv4: RawTcpListener, ipv6: RawTcpListener): RawTcpListener => {
  const pending: Array<Promise<RawTcpStream> | undefined> = [undefined, undefined]
  const sides = [ipv4, ipv6] as const
  const next = async (): Promise<RawTcpStream> => {
    const waiting = sides.map((side, index) => {
      const accept = (pending[index] ??= side.accept())
      return accept.then((stream) => ({ index, stream }))
    })
    const { index, stream } = await Promise.race(waiting)
    pending[index] = undefined
    return stream
  }
  let turn: Promise<unknown> = Promise.resolve()
  return {
    accept: () => {
      const result = turn.then(next)
      turn = result.catch(() => {})
      return result
    },
    get localAddress() {
      return ipv4.localAddress
    },
    close: () => {
      ipv4.close()
      ipv6.close()
    }
  }
}
