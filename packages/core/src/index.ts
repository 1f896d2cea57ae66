/**
 * @since 0.1.0
 */
export * as Address from "./Address.ts"
export * as AuthState from "./AuthState.ts"
export * as Backend from "./Backend.ts"
export * as Caller from "./Caller.ts"
export * as DeviceState from "./DeviceState.ts"
export * as EffectSocket from "./EffectSocket.ts"
export * as NodeInfo from "./NodeInfo.ts"
export * as PeerChange from "./PeerChange.ts"
export * as TailnetCaller from "./TailnetCaller.ts"
export * as Tailscale from "./Tailscale.ts"
export * as TailscaleError from "./TailscaleError.ts"
export * as TailscaleMetrics from "./TailscaleMetrics.ts"
export * as TcpListener from "./TcpListener.ts"
export * as TcpStream from "./TcpStream.ts"
export * as Timeouts from "./Timeouts.ts"
export * as UdpSocket from "./UdpSocket.ts"
