// The WebSocket close codes of PROTOCOL.md section 2: 1000 after the server's own error or goaway frame, 1009 with no
// error frame for a message over inboundBytesMax, and any close code from the client ends the session.

import { afterEach, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { ErrorCode, encodePreamble, FrameCodec, FrameReader, testLimits } from "../protocol/index.ts";
import { loadConfig } from "./config.ts";
import { createLogger } from "./log.ts";
import { type RunningServer, startServer } from "./server.ts";
import { temporaryDirectory, waitFor } from "./test-kit.ts";

const closeWaitMs = 3000;
const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function serverWithWebSocket(): Promise<RunningServer> {
  const dataDir = temporaryDirectory();
  const wsPort = 20_000 + Math.floor(Math.random() * 2000);
  const server = await startServer(
    loadConfig({ base: { port: 0, adminPort: 0, dataDir, registration: "open", wsPort, limits: testLimits } }),
    { log: createLogger("warn", () => {}) },
  );
  cleanups.push(async () => {
    await server.stop({ timeoutMs: 500 });
    rmSync(dataDir, { recursive: true, force: true });
  });
  return server;
}

/** A WebSocket that records the kinds (and codes) of the frames it receives and how it was closed. */
async function open(server: RunningServer) {
  const socket = new WebSocket(`ws://127.0.0.1:${server.wsPort}/ws`);
  socket.binaryType = "arraybuffer";
  const reader = new FrameReader(new FrameCodec({ limits: testLimits }));
  const frames: string[] = [];
  let close: { code: number; reason: string } | null = null;
  socket.addEventListener("message", (event) => {
    if (!(event.data instanceof ArrayBuffer)) return;
    reader.push(new Uint8Array(event.data));
    for (let result = reader.next(); result.status === "frame"; result = reader.next()) {
      const stanza = result.stanza;
      frames.push("code" in stanza ? `${stanza.kind} ${stanza.code}` : stanza.kind);
    }
  });
  socket.addEventListener("close", (event) => {
    close = { code: event.code, reason: event.reason };
  });
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener("open", () => resolve());
    socket.addEventListener("error", () => reject(new Error("websocket failed")));
  });
  cleanups.push(() => socket.close());
  return {
    socket,
    frames,
    async closed(): Promise<{ code: number; reason: string }> {
      await waitFor(() => close !== null, closeWaitMs, "close");
      return close!;
    },
  };
}

test("a message over inboundBytesMax: close code 1009, and no error frame", async () => {
  const server = await serverWithWebSocket();
  const client = await open(server);
  client.socket.send(new Uint8Array(encodePreamble()));
  await waitFor(() => client.frames.includes("challenge"), closeWaitMs, "challenge");
  client.socket.send(new Uint8Array(testLimits.inboundBytesMax + 1));
  expect((await client.closed()).code).toBe(1009);
  expect(client.frames).toEqual(["challenge"]);
});

test("the server's own closes: its error or goaway frame, then close code 1000", async () => {
  const server = await serverWithWebSocket();
  const text = await open(server);
  text.socket.send(new Uint8Array(encodePreamble()));
  text.socket.send("a text message");
  expect(await text.closed()).toEqual({ code: 1000, reason: "closed by server" });
  expect(text.frames).toEqual(["challenge", `error ${ErrorCode.malformedFrame}`]);

  const preamble = await open(server);
  preamble.socket.send(Uint8Array.of(0x47, 0x45, 0x54, 0x20));
  expect((await preamble.closed()).code).toBe(1000);
  expect(preamble.frames).toEqual([`error ${ErrorCode.badPreamble}`]);

  const stopping = await open(server);
  stopping.socket.send(new Uint8Array(encodePreamble()));
  await waitFor(() => stopping.frames.includes("challenge"), closeWaitMs, "challenge");
  const stopped = server.stop({ timeoutMs: 500 });
  expect((await stopping.closed()).code).toBe(1000);
  await stopped;
  expect(stopping.frames).toEqual(["challenge", `goaway ${ErrorCode.shuttingDown}`]);
});
