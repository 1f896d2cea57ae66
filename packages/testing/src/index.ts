/**
 * @since 0.1.0
 */
export * as Conformance from "./Conformance.ts"
export * as FakeTailnet from "./FakeTailnet.ts"
export * as HarnessProcess from "./HarnessProcess.ts"
export * as LocalTailnet from "./LocalTailnet.ts"
export * as TailscaleMock from "./TailscaleMock.ts"
export * as Workloads from "./Workloads.ts"
