/**
 * @since 0.1.0
 */
export * as NativeBackend from "./NativeBackend.ts"
export * as NodeHttp from "./NodeHttp.ts"
export * as NodeHttpServer from "./NodeHttpServer.ts"
export * as NodeStream from "./NodeStream.ts"
export * as NodeTailscale from "./NodeTailscale.ts"
