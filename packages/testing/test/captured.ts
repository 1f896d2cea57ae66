/** A logger for tests that keeps every record it is given, to look for what a device logged. */
import * as Logger from "effect/Logger"
import * as References from "effect/References"

export interface Captured {
  readonly message: string
  readonly level: string
  readonly annotations: Readonly<Record<string, unknown>>
}

/** A logger that keeps every record it is given. */
export const capture = () => {
  const records: Array<Captured> = []
  const logger = Logger.make((options) => {
    records.push({
      message: String(Array.isArray(options.message) ? options.message.join(" ") : options.message),
      level: options.logLevel,
      annotations: options.fiber.getRef(References.CurrentLogAnnotations)
    })
  })
  return { records, logger }
}
