/**
 * @since 0.1.0
 */
export * as HarnessProcess from "./HarnessProcess.ts"
