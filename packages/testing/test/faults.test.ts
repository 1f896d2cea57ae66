/**
 * Our layers under faults on the loopback tailnet: what a device leaves behind once it is gone.
 * This file runs alone in its process, so the process's CPU figures are the devices' own.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Tailscale } from "@effect-tailscale/core/Tailscale"
import * as NodeHttpServer from "@effect-tailscale/node/NodeHttpServer"
import * as Effect from "effect/Effect"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import { connect, layer as localTailnet } from "../src/LocalTailnet.ts"
import { knows } from "../src/internal/workloads.ts"

/** Share of one core the whole process used (all threads, the addon's included) over `ms`. */
const cpuShareOver = (ms: number) =>
  Effect.gen(function*() {
    const before = process.cpuUsage()
    const started = process.hrtime.bigint()
    yield* Effect.sleep(ms)
    const used = process.cpuUsage(before)
    const wallUs = Number(process.hrtime.bigint() - started) / 1_000
    return (used.user + used.system) / wallUs
  })

describe("faults", () => {
  layer(localTailnet(), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect("idle CPU after device lifecycles stays near zero", () =>
      Effect.gen(function*() {
        for (let cycle = 0; cycle < 5; cycle++) {
          yield* Effect.scoped(Effect.flatMap(connect({ hostname: `faults-cpu-${cycle}` }), (device) => device.ipv4))
        }
        yield* Effect.sleep("1 second")
        const share = yield* cpuShareOver(3_000)
        // A device's DERP runner that outlived it spun a whole core (1.0 here per device).
        assert.isBelow(share, 0.1, `idle process CPU after 5 shut-down devices: ${(share * 100).toFixed(1)}% of a core`)
      }), { timeout: 120_000 })

    it.effect("shutting a device down under an HTTP server with a client connected ends serving quietly", () =>
      Effect.gen(function*() {
        const unhandled: Array<unknown> = []
        const record = (error: unknown) => void unhandled.push(error)
        process.on("unhandledRejection", record)
        process.on("uncaughtException", record)
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            process.off("unhandledRejection", record)
            process.off("uncaughtException", record)
          })
        )
        const server = yield* connect({ hostname: "faults-http" })
        const serverIp = NetAddress.formatIp(yield* server.ipv4)
        yield* Layer.build(
          HttpServer.serve(Effect.succeed(HttpServerResponse.text("hello"))).pipe(
            Layer.provide(NodeHttpServer.layer(8080)),
            Layer.provide(Layer.succeed(Tailscale, server))
          )
        )
        const client = yield* connect({ hostname: "faults-http-client" })
        yield* knows(server, NetAddress.formatIp(yield* client.ipv4))
        const stream = yield* client.dial({ ip: serverIp, port: 8080 }, { timeout: "30 seconds" })
        yield* stream.write("GET / HTTP/1.1\r\nHost: faults-http\r\n\r\n")
        const reply = yield* stream.read({ timeout: "20 seconds" })
        assert.include(new TextDecoder().decode(Option.getOrThrow(reply)), "hello")
        // The keep-alive connection stays open while the server's device goes away.
        assert.isTrue(yield* server.shutdown)
        yield* Effect.sleep("500 millis")
        assert.deepStrictEqual(unhandled.map(String), [])
      }), { timeout: 120_000 })
  })
})
