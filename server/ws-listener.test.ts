// The WebSocket path at the server level: the same frames as TCP in binary messages, one session model for both
// transports, origin checks, and text messages refused.

import { afterEach, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import {
  ErrorCode,
  encodePreamble,
  FrameCodec,
  FrameReader,
  registerMessage,
  type Stanza,
  testLimits,
} from "../protocol/index.ts";
import { loadConfig } from "./config.ts";
import { createLogger } from "./log.ts";
import { type RunningServer, startServer } from "./server.ts";
import { hostAllowed, hostHeaderName, serverNames } from "./server-names.ts";
import {
  bytesOf,
  newDeviceKey,
  rawHttpRequest,
  registeredClient,
  signWith,
  temporaryDirectory,
  textOf,
  waitFor,
} from "./test-kit.ts";
import { originAllowed } from "./ws-listener.ts";

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function serverWithWebSocket(extra: Record<string, string> = {}): Promise<RunningServer> {
  const dataDir = temporaryDirectory();
  const wsPort = 18_000 + Math.floor(Math.random() * 2000);
  const server = await startServer(
    loadConfig({
      base: { port: 0, adminPort: 0, dataDir, registration: "open", wsPort, limits: testLimits },
      flags: extra,
    }),
    { log: createLogger("warn", () => {}) },
  );
  cleanups.push(async () => {
    await server.stop({ timeoutMs: 500 });
    rmSync(dataDir, { recursive: true, force: true });
  });
  return server;
}

class WsClient {
  readonly received: Stanza[] = [];
  readonly codec = new FrameCodec({ limits: testLimits });
  private readonly reader = new FrameReader(this.codec);
  closed = false;
  constructor(readonly socket: WebSocket) {
    socket.binaryType = "arraybuffer";
    socket.addEventListener("message", (event) => {
      if (!(event.data instanceof ArrayBuffer)) return;
      this.reader.push(new Uint8Array(event.data));
      for (;;) {
        const result = this.reader.next();
        if (result.status !== "frame") break;
        this.received.push(result.stanza);
      }
    });
    socket.addEventListener("close", () => {
      this.closed = true;
    });
  }
  static async open(url: string, headers?: Record<string, string>): Promise<WsClient> {
    const socket = new WebSocket(url, headers === undefined ? undefined : ({ headers } as never));
    const client = new WsClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener("open", () => resolve());
      socket.addEventListener("error", () => reject(new Error("websocket failed")));
      socket.addEventListener("close", () => reject(new Error("websocket closed")));
    });
    return client;
  }
  async next<K extends Stanza["kind"]>(kind: K): Promise<Extract<Stanza, { kind: K }>> {
    await waitFor(() => this.received.some((stanza) => stanza.kind === kind), 3000, kind);
    const index = this.received.findIndex((stanza) => stanza.kind === kind);
    return this.received.splice(index, 1)[0] as Extract<Stanza, { kind: K }>;
  }
  send(stanza: Stanza): void {
    this.socket.send(new Uint8Array(this.codec.encode(stanza)));
  }
}

describe("WebSocket listener", () => {
  test("a WebSocket device and a TCP device talk to each other", async () => {
    const server = await serverWithWebSocket();
    const web = await WsClient.open(`ws://127.0.0.1:${server.wsPort}/ws`);
    cleanups.push(() => web.socket.close());
    web.socket.send(new Uint8Array(encodePreamble()));
    const { nonce } = await web.next("challenge");
    const key = newDeviceKey();
    web.send({
      kind: "register",
      invite: null,
      handle: "webby",
      publicKey: key.publicKey,
      signature: signWith(key, registerMessage(nonce, "127.0.0.1", "webby")),
      serverName: "127.0.0.1",
    });
    const welcome = await web.next("welcome");
    await web.next("queueEmpty");

    const { client: tcp } = await registeredClient(server.port, "tcpy");
    cleanups.push(() => tcp.close());
    tcp.send(welcome.account, bytesOf("over tcp"));
    await tcp.next("serverAck");
    const deliver = await web.next("deliver");
    expect(textOf(deliver.payload)).toBe("over tcp");
    web.send({ kind: "ack", seq: deliver.seq });
    expect((await tcp.next("deliverReceipt")).clientIds).toEqual([1]);

    web.send({ kind: "send", clientId: 1, to: tcp.account, payload: bytesOf("over ws") });
    expect((await web.next("serverAck")).clientId).toBe(1);
    expect(textOf((await tcp.next("deliver")).payload)).toBe("over ws");
  });

  test("a text message is refused with an error and a closed session", async () => {
    const server = await serverWithWebSocket();
    const web = await WsClient.open(`ws://127.0.0.1:${server.wsPort}/ws`);
    web.socket.send("hello");
    expect((await web.next("error")).code).toBe(ErrorCode.malformedFrame);
    await waitFor(() => web.closed, 3000, "close");
  });

  test("origins outside the allow-list get 403; no Origin header (not a browser) passes", async () => {
    const server = await serverWithWebSocket({ "ws-origins": "https://chat.example.com" });
    const refused = await fetch(`http://127.0.0.1:${server.wsPort}/ws`, {
      headers: { origin: "https://evil.example.net", upgrade: "websocket", connection: "upgrade" },
    });
    expect(refused.status).toBe(403);
    const allowed = await WsClient.open(`ws://127.0.0.1:${server.wsPort}/ws`, { origin: "https://chat.example.com" });
    allowed.socket.close();
    expect(originAllowed(null, "", "http://x")).toBe(true);
    expect(originAllowed("http://x", "", "http://x")).toBe(true);
    expect(originAllowed("http://y", "", "http://x")).toBe(false);
    expect(originAllowed("http://y", "*", "http://x")).toBe(true);
  });
});

describe("Host check (DNS rebinding)", () => {
  const upgrade = {
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
  };

  test("an upgrade whose Host is not a server name gets 421 and no WebSocket, even with a matching Origin", async () => {
    const server = await serverWithWebSocket();
    const port = server.wsPort;
    // What a rebinding page at evil.example sends: its own name as Host, and the Origin that goes with it.
    const rebound = await rawHttpRequest(port, {
      path: "/ws",
      host: `evil.example:${port}`,
      headers: { ...upgrade, Origin: `http://evil.example:${port}` },
    });
    expect(rebound.status).toBe(421);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST.:${port}`, `[::1]:${port}`]) {
      const origin = `http://${host.toLowerCase()}`; // as a browser sends it
      const answer = await rawHttpRequest(port, { path: "/ws", host, headers: { ...upgrade, Origin: origin } });
      expect([host, answer.status]).toEqual([host, 101]);
    }
    // No Origin (not a browser) does not get past the Host check either.
    expect((await rawHttpRequest(port, { path: "/ws", host: "evil.example", headers: upgrade })).status).toBe(421);
  });

  test("the web page too answers only the server's names; serverNames replaces the defaults", async () => {
    const server = await serverWithWebSocket({ "web-client": "on", "server-names": "chat.example.com" });
    const port = server.wsPort;
    expect((await rawHttpRequest(port, { path: "/", host: `evil.example:${port}` })).status).toBe(421);
    expect((await rawHttpRequest(port, { path: "/", host: "chat.example.com" })).status).toBe(200);
    expect((await rawHttpRequest(port, { path: "/", host: `127.0.0.1:${port}` })).status).toBe(200); // wsHost
    expect((await rawHttpRequest(port, { path: "/", host: `localhost:${port}` })).status).toBe(421);
    const socket = await rawHttpRequest(port, {
      path: "/ws",
      host: "chat.example.com",
      headers: { ...upgrade, Origin: "http://chat.example.com" },
    });
    expect(socket.status).toBe(101);
  });

  test("Host headers are read as name and port, in canonical form", () => {
    expect(hostHeaderName("Chat.Example.COM:443")).toBe("chat.example.com");
    expect(hostHeaderName("chat.example.com.")).toBe("chat.example.com");
    expect(hostHeaderName("[::1]:7422")).toBe("::1");
    expect(hostHeaderName("127.0.0.1")).toBe("127.0.0.1");
    for (const bad of [null, "", ":80", "host:port", "a:1:2", "[::1", "[::1]x", "::1"]) {
      expect([bad, hostHeaderName(bad)]).toEqual([bad, null]);
    }
    const names = serverNames({ serverNames: "localhost,127.0.0.1,::1", host: "0.0.0.0", wsHost: "10.0.0.5" });
    expect([...names].sort()).toEqual(["10.0.0.5", "127.0.0.1", "::1", "localhost"]);
    expect(hostAllowed("10.0.0.5:7422", names)).toBe(true);
    expect(hostAllowed("10.0.0.6:7422", names)).toBe(false);
    expect(hostAllowed("10.0.0.6:7422", names, true)).toBe(true);
    expect(hostAllowed("evil.example", names, true)).toBe(false);
  });
});

describe("start failures", () => {
  test("a WebSocket port in use fails the start and leaves nothing open behind", async () => {
    const blocker = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    cleanups.push(() => blocker.stop(true));
    const dataDir = temporaryDirectory();
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const config = loadConfig({
      base: { port: 0, adminPort: 0, dataDir, registration: "open", wsPort: blocker.port, limits: testLimits },
    });
    await expect(startServer(config, { log: createLogger("warn", () => {}) })).rejects.toThrow();
    // The store was closed: a second server opens the same data directory and serves.
    const again = await startServer(loadConfig({ base: { port: 0, adminPort: 0, dataDir, registration: "open" } }), {
      log: createLogger("warn", () => {}),
    });
    cleanups.push(() => again.stop({ timeoutMs: 500 }));
    const { client } = await registeredClient(again.port, "after");
    cleanups.push(() => client.close());
    expect(client.account).toBe(1);
  });
});
