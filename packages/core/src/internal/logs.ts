/** Forwards a backend's log records to Effect's logger for the lifetime of the current scope. */
import * as Effect from "effect/Effect"
import type * as LogLevel from "effect/LogLevel"
import * as References from "effect/References"
import type { Backend, RawLogLevel, RawLogRecord } from "../Backend.ts"
import { invalidArgument } from "../TailscaleError.ts"

const levels: Record<RawLogLevel, LogLevel.Severity> = {
  ERROR: "Error",
  WARN: "Warn",
  INFO: "Info",
  DEBUG: "Debug",
  TRACE: "Trace"
}

/**
 * Subscribes for the current scope; returns the subscription's id for the device's `logSink`,
 * or undefined when there are no logs to forward. The filter alone decides which records
 * arrive: they pass whatever minimum log level the application runs with, so
 * `logFilter: "debug"` shows debug records without lowering it.
 */
export const forward = (backend: Backend, filter: string) => forwardFrom(backend.subscribeLogs, filter)

/**
 * Like `forward`, for the records that belong to no device (`Backend.subscribeProcessLogs`);
 * they are annotated `tailscaleProcess: true`.
 */
export const forwardProcess = (backend: Backend, filter: string) =>
  forwardFrom(backend.subscribeProcessLogs, filter, { tailscaleProcess: true })

const forwardFrom = (
  subscribe: Backend["subscribeLogs"],
  filter: string,
  annotations: Readonly<Record<string, unknown>> = {}
) =>
  Effect.gen(function*() {
    if (subscribe === undefined || filter === "off") return undefined
    const context = yield* Effect.context<never>()
    const runFork = Effect.runForkWith(context)
    const log = (record: RawLogRecord) =>
      Effect.logWithLevel(levels[record.level] ?? "Info")(record.message).pipe(
        Effect.annotateLogs({ ...record.fields, target: record.target, ...annotations }),
        Effect.provideService(References.MinimumLogLevel, "All")
      )
    const subscription = yield* Effect.acquireRelease(
      Effect.try({
        try: () => subscribe(filter, (record) => void runFork(log(record))),
        // The backend parses the filter too (core checks its shape first).
        catch: (error) => invalidArgument("logFilter", error instanceof Error ? error.message.slice(0, 300) : "refused")
      }),
      (subscription) => Effect.sync(subscription.unsubscribe)
    )
    return subscription.id
  })
