import * as TcpListener from "@effect-tailscale/core/TcpListener"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as http from "node:http"
import { TailnetAgent } from "../src/TailnetAgent.ts"
import { serve, toDuplex } from "../src/TailnetSocket.ts"
import { memoryListener, streamPair } from "./pipe.ts"

const get = (options: http.RequestOptions) =>
  Effect.callback<{ status: number; body: string; remote: string | undefined }, Error>((resume) => {
    const request = http.request(options, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("end", () =>
        resume(Effect.succeed({
          status: response.statusCode ?? 0,
          body: Buffer.concat(chunks).toString(),
          remote: response.headers["x-remote"] as string | undefined
        })))
    })
    request.on("error", (error) => resume(Effect.fail(error)))
    request.end()
  })

describe("Node adapters", () => {
  it.live("setTimeout emits timeout after the socket is idle, restarts on data, and stops at 0", () =>
    Effect.gen(function*() {
      const [ours, theirs] = streamPair()
      const socket = toDuplex(ours)
      let timeouts = 0
      socket.setTimeout(100, () => timeouts++)
      socket.on("data", () => {})
      yield* Effect.sleep("60 millis")
      yield* Effect.promise(() => theirs.write(new TextEncoder().encode("keep alive")))
      yield* Effect.sleep("60 millis")
      assert.strictEqual(timeouts, 0, "data within the timeout restarts the idle timer")
      yield* Effect.sleep("100 millis")
      assert.strictEqual(timeouts, 1)
      assert.strictEqual(socket.timeout, 100)
      socket.setTimeout(0)
      socket.on("timeout", () => timeouts++)
      yield* Effect.sleep("150 millis")
      assert.strictEqual(timeouts, 1, "0 turns the idle timeout off")
      socket.destroy()
    }))

  it.live("an http.Agent timeout ends a request to a peer that never answers", () =>
    Effect.gen(function*() {
      const { connect, listener } = memoryListener()
      const server = http.createServer(() => {
        // Never answers.
      })
      yield* serve(yield* TcpListener.fromRaw(listener), server)
      const agent = new TailnetAgent((_host, _port) => connect().then(toDuplex))
      const failure = yield* Effect.flip(
        Effect.callback<void, Error>((resume) => {
          const request = http.request({ host: "db", port: 80, agent, timeout: 150 })
          request.on("timeout", () => request.destroy(new Error("timed out")))
          request.on("error", (error) => resume(Effect.fail(error)))
          request.on("response", () => resume(Effect.void))
          request.end()
        })
      )
      assert.strictEqual(failure.message, "timed out")
      agent.destroy()
      server.close()
    }).pipe(Effect.scoped))

  it.live("an http.Server served on a tailnet listener answers http.request through the TailnetAgent", () =>
    Effect.gen(function*() {
      const { connect, listener } = memoryListener()
      const server = http.createServer((request, response) => {
        response.setHeader("x-remote", `${request.socket.remoteAddress}:${request.socket.remotePort}`)
        let body = ""
        request.on("data", (chunk: Buffer) => (body += chunk.toString()))
        request.on("end", () => response.end(`${request.method} ${request.url} ${body}`))
      })
      yield* serve(yield* TcpListener.fromRaw(listener), server)
      const dialed: Array<string> = []
      const agent = new TailnetAgent(async (host, port) => {
        dialed.push(`${host}:${port}`)
        return toDuplex(await connect())
      })
      try {
        for (const path of ["/one", "/two"]) {
          const response = yield* get({ host: "echo-peer", port: 8080, path, agent })
          assert.deepStrictEqual(response, { status: 200, body: `GET ${path} `, remote: "100.64.0.1:50000" })
        }
        assert.strictEqual(dialed[0], "echo-peer:8080")
        assert.isAtMost(dialed.length, 2)
      } finally {
        agent.destroy()
        listener.close()
        server.close()
      }
    }).pipe(Effect.scoped))

  it.live("a dial failure reaches http.request as an error", () =>
    Effect.gen(function*() {
      const agent = new TailnetAgent(() => Promise.reject(new Error("CONNECTION_REFUSED: TCP connect: refused")))
      const result = yield* Effect.result(get({ host: "100.64.0.1", port: 80, path: "/", agent }))
      assert.strictEqual(result._tag, "Failure")
      assert.include(result._tag === "Failure" ? result.failure.message : "", "CONNECTION_REFUSED")
      agent.destroy()
    }))

  it.live("the Duplex streams both ways, ends at end of stream, and closes the stream on end()", () =>
    Effect.gen(function*() {
      const [ours, theirs] = streamPair()
      const socket = toDuplex(ours)
      assert.strictEqual(socket.remoteAddress, "100.64.0.1")
      assert.strictEqual(socket.remotePort, 8080)
      assert.deepStrictEqual(socket.address(), { address: "100.64.0.2", family: "IPv4", port: 50000 })
      socket.setNoDelay(true).setKeepAlive(true).ref().unref()
      const received = yield* Effect.promise(async () => {
        await theirs.write(new TextEncoder().encode("from the peer"))
        theirs.close()
        const chunks: Array<Buffer> = []
        for await (const chunk of socket) chunks.push(chunk as Buffer)
        return Buffer.concat(chunks).toString()
      })
      assert.strictEqual(received, "from the peer")
      const [mine, peer] = streamPair()
      const duplex = toDuplex(mine)
      yield* Effect.promise(() => new Promise<void>((resolve) => duplex.end("bye", resolve)))
      assert.strictEqual(new TextDecoder().decode((yield* Effect.promise(() => peer.read()))!), "bye")
      assert.isNull(yield* Effect.promise(() => peer.read()), "end() closed our side")
    }))
})
