/** Forwards a backend's log records to Effect's logger for the lifetime of the current scope. */
import * as Effect from "effect/Effect"
import type * as LogLevel from "effect/LogLevel"
import type { Backend, RawLogLevel, RawLogRecord } from "../Backend.ts"

const levels: Record<RawLogLevel, LogLevel.Severity> = {
  ERROR: "Error",
  WARN: "Warn",
  INFO: "Info",
  DEBUG: "Debug",
  TRACE: "Trace"
}

export const forward = (backend: Backend, filter: string) =>
  Effect.gen(function*() {
    if (backend.subscribeLogs === undefined || filter === "off") return
    const context = yield* Effect.context<never>()
    const runFork = Effect.runForkWith(context)
    const log = (record: RawLogRecord) =>
      Effect.logWithLevel(levels[record.level] ?? "Info")(record.message).pipe(
        Effect.annotateLogs({ ...record.fields, target: record.target })
      )
    yield* Effect.acquireRelease(
      Effect.sync(() => backend.subscribeLogs!(filter, (record) => void runFork(log(record)))),
      (unsubscribe) => Effect.sync(unsubscribe)
    )
  })
