/**
 * @since 0.1.0
 */
export * as NativeBackend from "./NativeBackend.ts"
export * as NodeTailscale from "./NodeTailscale.ts"
export * as TailnetAgent from "./TailnetAgent.ts"
export * as TailnetHttpClient from "./TailnetHttpClient.ts"
export * as TailnetHttpServer from "./TailnetHttpServer.ts"
export * as TailnetProxy from "./TailnetProxy.ts"
export * as TailnetSocket from "./TailnetSocket.ts"
