/**
 * Keeps the service's device alive. It watches the backend device for loss (its runtime gone),
 * ends what the lost device had open with `DeviceLost`, and builds the device again from the
 * same identity with a retry schedule, while calls made meanwhile wait for the new one. It also
 * tracks the device's `DeviceState`.
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { RawDevice, RawTcpListener, RawTcpStream, RawUdpSocket } from "../Backend.ts"
import { DeviceState } from "../DeviceState.ts"
import { deviceClosed, deviceLost, type TailscaleError } from "../TailscaleError.ts"
import { asBackendError, fromBackend } from "./backendErrors.ts"
import { openDevice } from "./owned.ts"

/** One backend device in the service's life; a lost one is followed by a new generation. */
export interface Generation {
  readonly raw: RawDevice
  /** Settles with the loss cause, or `null` once shut down; absent when the backend cannot tell. */
  readonly ended: Promise<string | null> | undefined
  /** The generation's sockets, with `DEVICE_CLOSED` of a lost device reported as `DEVICE_LOST`. */
  readonly stream: (raw: RawTcpStream) => RawTcpStream
  readonly listener: (raw: RawTcpListener) => RawTcpListener
  readonly udp: (raw: RawUdpSocket) => RawUdpSocket
  /** Shuts this backend device down once; later calls return the first result. */
  readonly stop: () => Promise<boolean>
  /**
   * Which of the crate's netmap waits this device is past: its own node (addresses, `self`) and
   * its peers. Each is set by the first call of that kind that succeeds; from then on such calls
   * answer from memory.
   */
  readonly netmap: { self: boolean; peers: boolean }
}

export interface SuperviseOptions {
  /** Build the device again when it is lost (default); otherwise later calls fail with `DeviceLost`. */
  readonly reconnect: boolean
  /** Delays between attempts to build the device again. */
  readonly schedule: Schedule.Schedule<unknown, TailscaleError>
  readonly shutdownMs: number
  /** Connects with the original options, for a backend device without `respawn`. */
  readonly connectAgain: () => Promise<RawDevice>
}

export interface Supervised {
  /** The device to call now; waits while a lost one is being built again. */
  readonly current: Effect.Effect<Generation, TailscaleError>
  /** The device, when calls can reach it without waiting (`current` would not wait). */
  readonly now: () => Generation | undefined
  readonly state: SubscriptionRef.SubscriptionRef<DeviceState>
  /** Stops supervising and shuts the device down; `true` when it stopped gracefully. Idempotent. */
  readonly shutdown: Effect.Effect<boolean>
}

/** Exponential from 250 ms, doubling up to 30 s, with jitter: a fleet does not retry in step. */
export const defaultReconnectSchedule: Schedule.Schedule<unknown, TailscaleError> = Schedule.exponential(
  "250 millis",
  2
).pipe(
  Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(30)))),
  Schedule.jittered
)

/** How long a socket waits to learn whether its device was lost or shut down. */
const CAUSE_WAIT_MS = 5_000

const isClosedError = (error: unknown) => asBackendError(error)?.code === "DEVICE_CLOSED"

const makeGeneration = (raw: RawDevice, shutdownMs: number): Generation => {
  const ended: Promise<string | null> | undefined = raw.waitLost?.().catch(() => null)
  let stopped: Promise<boolean> | undefined

  // A socket of a lost device fails with DEVICE_CLOSED: say that it was lost, unless the socket
  // itself was closed.
  const explain = async (error: unknown, what: string, closedHere: () => boolean): Promise<never> => {
    if (ended !== undefined && isClosedError(error) && !closedHere()) {
      let timer: ReturnType<typeof setTimeout> | undefined
      const gaveUp = new Promise<null>((resolve) => {
        timer = setTimeout(() => resolve(null), CAUSE_WAIT_MS)
        timer.unref?.()
      })
      const cause = await Promise.race([ended, gaveUp]).finally(() => clearTimeout(timer))
      if (cause !== null) throw deviceLost(what, cause)
    }
    throw error
  }
  const guarded = <A>(what: string, closedHere: () => boolean, run: () => Promise<A>): Promise<A> => {
    try {
      return run().catch((error: unknown) => explain(error, what, closedHere))
    } catch (error) {
      return explain(error, what, closedHere)
    }
  }

  // Whether the caller closed the handle: then its DEVICE_CLOSED is not the loss's doing.
  const closing = (socket: { close(): void }) => {
    let closed = false
    const close = () => {
      closed = true
      socket.close()
    }
    return { close, isClosed: () => closed }
  }
  const stream = (socket: RawTcpStream): RawTcpStream => {
    const { close, isClosed } = closing(socket)
    return {
      read: () => guarded("TCP read", isClosed, () => socket.read()),
      write: (data) => guarded("TCP write", isClosed, () => socket.write(data)),
      get localAddress() {
        return socket.localAddress
      },
      get remoteAddress() {
        return socket.remoteAddress
      },
      close
    }
  }
  const listener = (socket: RawTcpListener): RawTcpListener => {
    const { close, isClosed } = closing(socket)
    return {
      accept: () => guarded("TCP accept", isClosed, () => socket.accept()).then(stream),
      get localAddress() {
        return socket.localAddress
      },
      close
    }
  }
  const udp = (socket: RawUdpSocket): RawUdpSocket => {
    const { close, isClosed } = closing(socket)
    return {
      recv: () => guarded("UDP receive", isClosed, () => socket.recv()),
      send: (ip, port, data) => guarded("UDP send", isClosed, () => socket.send(ip, port, data)),
      get localAddress() {
        return socket.localAddress
      },
      close
    }
  }
  const stop = () => (stopped ??= raw.shutdown(shutdownMs).catch(() => false))
  return { raw, ended, stream, listener, udp, stop, netmap: { self: false, peers: false } }
}

/**
 * One answer of a long-poll watch of the device (`watchPeers`, `watchPaths`): the value, or
 * `null` once the device has ended and the supervisor knows why (its `ended` has settled), so
 * the caller's next `current` gives the successor or the gate's failure instead of this device.
 */
export const watchOnce = <A>(
  generation: Generation,
  operation: string,
  watch: (raw: RawDevice) => Promise<A | null>
): Effect.Effect<A | null, TailscaleError> =>
  Effect.tryPromise({
    try: async () => {
      const value = await watch(generation.raw)
      if (value === null) await (generation.ended ?? Promise.resolve(null))
      return value
    },
    catch: (error) => fromBackend(operation, error)
  })

/** Supervises `first` for the current scope; the scope's end shuts down whichever device is current. */
export const supervise = (
  first: RawDevice,
  options: SuperviseOptions
): Effect.Effect<Supervised, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const state = yield* SubscriptionRef.make<DeviceState>(DeviceState.Connecting())
    let generation: Generation
    let gate = Deferred.makeUnsafe<Generation, TailscaleError>()
    // What the open gate holds (and the same as an effect), so the calls made while it is open
    // (nearly all of them) skip the wait on the deferred; undefined while the gate is closed.
    let open: { readonly generation: Generation; readonly effect: Effect.Effect<Generation> } | undefined
    let stopping = false
    // The gate closes the moment a loss is known, before any socket of the lost device reports
    // it, so a call made after a `DeviceLost` already waits for the next device.
    const adopt = (raw: RawDevice) => {
      const next = makeGeneration(raw, options.shutdownMs)
      generation = next
      const ready = Effect.succeed(next)
      if (Deferred.doneUnsafe(gate, ready)) open = { generation: next, effect: ready }
      void next.ended?.then((cause) => {
        if (cause !== null && !stopping && generation === next) {
          open = undefined
          gate = Deferred.makeUnsafe()
        }
      })
      return next
    }
    adopt(first)
    const setState = (next: DeviceState) => stopping ? Effect.void : SubscriptionRef.set(state, next)

    // Connecting (or NeedsLogin with its URL) until control gives the device its address.
    const reportStartup = (current: Generation) =>
      Effect.gen(function*() {
        const auth = yield* Effect.tryPromise(() => current.raw.authState())
        if (auth._tag === "NeedsLogin") {
          yield* setState(DeviceState.NeedsLogin({ url: auth.url }))
        }
        yield* Effect.tryPromise(() => current.raw.ipv4())
        current.netmap.self = true
        if (current !== generation) return
        yield* setState(DeviceState.Running({ control: "Connected" }))
        yield* Effect.forkIn(followControl(current), scope)
      }).pipe(Effect.ignore)

    // Running, with control Connected or Unreachable, as the backend reports it, until this
    // device is shut down or lost.
    const followControl = (current: Generation) =>
      Effect.gen(function*() {
        let known = true
        while (current.raw.watchControl !== undefined) {
          const next = yield* Effect.tryPromise(() => current.raw.watchControl!(known))
          if (next === null || current !== generation || stopping) return
          known = next
          yield* setState(DeviceState.Running({ control: next ? "Connected" : "Unreachable" }))
        }
      }).pipe(Effect.ignore)

    // Each attempt reports itself as it starts, with why the one before ended (the loss, at
    // first), so the last state before `Stopped` names the last attempt made.
    const rebuild = (lost: Generation, cause: string) => {
      let attempt = 0
      let lastCause = cause
      // A device that arrives after the rebuild was given up (the scope closed) is shut down.
      const build = () => lost.raw.respawn ? lost.raw.respawn() : options.connectAgain()
      return Effect.suspend(() => setState(DeviceState.Reconnecting({ attempt: ++attempt, cause: lastCause }))).pipe(
        Effect.andThen(openDevice(build, (error) => fromBackend("reconnect", error))),
        Effect.tapError((error) => Effect.sync(() => void (lastCause = error.reason.message))),
        Effect.retry(options.schedule)
      )
    }

    const watch: Effect.Effect<void> = Effect.gen(function*() {
      while (true) {
        const ended = generation.ended
        if (ended === undefined) return
        const cause = yield* Effect.promise(() => ended)
        if (cause === null || stopping) return
        const lost = generation
        yield* Effect.logWarning(
          options.reconnect ? "tailscale device lost; building it again" : "tailscale device lost; reconnection is off"
        ).pipe(Effect.annotateLogs({ cause }))
        void lost.stop()
        if (!options.reconnect) {
          yield* Deferred.fail(gate, deviceLost("device", cause))
          yield* setState(DeviceState.Stopped())
          return
        }
        const rebuilt = yield* Effect.result(rebuild(lost, cause))
        if (Result.isFailure(rebuilt)) {
          // The schedule gave up.
          yield* Deferred.fail(gate, rebuilt.failure)
          yield* setState(DeviceState.Stopped())
          return
        }
        yield* reportStartup(adopt(rebuilt.success))
      }
    })

    yield* Effect.forkScoped(reportStartup(generation!))
    const watcher = yield* Effect.forkScoped(watch)

    const shutdown = yield* Effect.cached(Effect.gen(function*() {
      stopping = true
      yield* Fiber.interrupt(watcher)
      yield* Deferred.fail(gate, deviceClosed("device"))
      yield* SubscriptionRef.set(state, DeviceState.Stopped())
      const current = generation
      return yield* Effect.promise(() => current.stop())
    }))
    yield* Effect.addFinalizer(() => shutdown)

    // A gate is completed once: while `open` is set, it is what `Deferred.await(gate)` gives.
    return {
      current: Effect.suspend(() => open?.effect ?? Deferred.await(gate)),
      now: () => open?.generation,
      state,
      shutdown
    }
  })
