// Test fixtures for the server: a server on 127.0.0.1 port 0 with a temporary data directory, and a raw protocol
// client that speaks frames directly (independent of the client SDK, so server tests do not depend on it).
// Every wait is bounded.

import { generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket } from "bun";
import {
  canonicalServerName,
  encodePreamble,
  FrameCodec,
  FrameReader,
  type Limits,
  linkMessage,
  loginMessage,
  registerMessage,
  type Stanza,
  type StanzaOf,
  testLimits,
} from "../protocol/index.ts";
import { type Config, loadConfig } from "./config.ts";
import { createLogger } from "./log.ts";
import { type RunningServer, startServer } from "./server.ts";

export const waitTimeoutMs = 5000;

export function temporaryDirectory(prefix = "switchboard-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Calls `onLine` with each line of a text stream (a child's stdout or stderr) until it ends. */
export async function forEachLine(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of stream) {
    buffered += decoder.decode(chunk, { stream: true });
    for (let newline = buffered.indexOf("\n"); newline >= 0; newline = buffered.indexOf("\n")) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      onLine(line);
    }
  }
}

/** A loopback port free at the time of the call (the kernel may hand it to someone else before it is bound). */
export function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

export async function waitFor(predicate: () => boolean, timeoutMs = waitTimeoutMs, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}

export interface TestServer {
  readonly server: RunningServer;
  readonly port: number;
  readonly dataDir: string;
  readonly config: Config;
  stop(): Promise<void>;
}

/** Partitions of a test server's data directory. */
export const testPartitions = 4;

export function testConfig(options: {
  dataDir: string;
  limits?: Partial<Limits>;
  registration?: Config["registration"];
  port?: number;
  serverNames?: string;
  /** Other config keys (tcpEncryption...). */
  config?: Partial<Omit<Config, "limits">>;
}): Config {
  return loadConfig({
    base: {
      ...options.config,
      port: options.port ?? 0,
      dataDir: options.dataDir,
      registration: options.registration ?? "open",
      ...(options.serverNames === undefined ? {} : { serverNames: options.serverNames }),
      adminPort: 0,
      logLevel: "warn",
      // Few partitions: each costs its open at start, and tests start many servers (several partitions still).
      partitions: testPartitions,
      limits: { ...testLimits, ...options.limits },
    },
  });
}

export async function startTestServer(
  options: {
    limits?: Partial<Limits>;
    registration?: Config["registration"];
    dataDir?: string;
    port?: number;
    serverNames?: string;
    config?: Partial<Omit<Config, "limits">>;
  } = {},
): Promise<TestServer> {
  const dataDir = options.dataDir ?? temporaryDirectory();
  const config = testConfig({ ...options, dataDir });
  const server = await startServer(config, { log: createLogger("warn", (line) => process.stderr.write(line)) });
  return {
    server,
    port: server.port,
    dataDir,
    config,
    async stop() {
      await server.stop({ timeoutMs: 1000 });
      if (options.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface DeviceKey {
  readonly privateKey: KeyObject;
  readonly publicKey: Uint8Array;
}

export function newDeviceKey(): DeviceKey {
  const pair = generateKeyPairSync("ed25519");
  const der = pair.publicKey.export({ format: "der", type: "spki" });
  return { privateKey: pair.privateKey, publicKey: new Uint8Array(der.subarray(der.length - 32)) };
}

export function signWith(key: DeviceKey, message: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, message, key.privateKey));
}

/** A raw protocol client over TCP. Collects every stanza it receives; `next` takes them out in order, by kind. */
export class RawClient {
  readonly codec: FrameCodec;
  private readonly reader: FrameReader;
  readonly received: Stanza[] = [];
  private taken = new Set<Stanza>();
  socket: Socket<undefined> | null = null;
  closed = false;
  decodeError: string | null = null;
  account = 0;
  device = 0;
  nonce: Uint8Array | null = null;
  challenge: StanzaOf<"challenge"> | null = null;
  /** The name signed in login, register and link: the host dialed, unless connect() was told another. */
  serverName = "127.0.0.1";
  private nextClientId = 1;

  constructor(limits: Limits = testLimits) {
    this.codec = new FrameCodec({ limits });
    this.reader = new FrameReader(this.codec);
  }

  static async connect(
    port: number,
    options: { preamble?: boolean; host?: string; limits?: Limits; serverName?: string } = {},
  ): Promise<RawClient> {
    const client = new RawClient(options.limits);
    client.serverName = canonicalServerName(options.serverName ?? options.host ?? "127.0.0.1");
    client.socket = await Bun.connect({
      hostname: options.host ?? "127.0.0.1",
      port,
      socket: {
        data: (_socket, chunk) => client.onData(chunk),
        drain: () => client.flushUnsent(),
        close: () => {
          client.closed = true;
        },
        error: () => {
          client.closed = true;
        },
      },
    });
    if (options.preamble !== false) {
      client.write(encodePreamble());
      const challenge = await client.next("challenge");
      client.nonce = challenge.nonce;
      client.challenge = challenge;
    }
    return client;
  }

  private onData(chunk: Uint8Array): void {
    this.reader.push(new Uint8Array(chunk));
    for (;;) {
      const result = this.reader.next();
      if (result.status === "more") return;
      if (result.status === "error") {
        this.decodeError = result.error.message;
        return;
      }
      this.received.push(result.stanza);
    }
  }

  /**
   * Writes `bytes` in order, keeping what the socket does not take now and writing it on drain (Bun's write() takes
   * what it can and drops the rest; a server that applies backpressure makes that happen). Returns bytes.length.
   */
  write(bytes: Uint8Array): number {
    if (this.unsent.length > 0) {
      this.unsent.push(bytes.slice());
      return bytes.length;
    }
    const taken = this.socket!.write(bytes);
    if (taken < bytes.length) this.unsent.push(bytes.slice(Math.max(0, taken)));
    return bytes.length;
  }

  /** Unsent bytes, in order (see write). */
  private readonly unsent: Uint8Array[] = [];

  flushUnsent(): void {
    while (this.unsent.length > 0 && this.socket !== null && !this.closed) {
      const head = this.unsent[0]!;
      const taken = this.socket.write(head);
      if (taken >= head.length) {
        this.unsent.shift();
        continue;
      }
      this.unsent[0] = head.slice(Math.max(0, taken));
      return;
    }
  }

  sendStanza(stanza: Stanza): void {
    this.write(this.codec.encode(stanza));
  }

  clientId(): number {
    return this.nextClientId++;
  }

  setNextClientId(next: number): void {
    this.nextClientId = next;
  }

  /** The next not-yet-taken stanza of `kind` (matching `where`), waiting for it up to timeoutMs. */
  async next<K extends Stanza["kind"]>(
    kind: K,
    where: (stanza: StanzaOf<K>) => boolean = () => true,
    timeoutMs = waitTimeoutMs,
  ): Promise<StanzaOf<K>> {
    let found: StanzaOf<K> | undefined;
    await waitFor(
      () => {
        found = this.received.find(
          (stanza): stanza is StanzaOf<K> =>
            stanza.kind === kind && !this.taken.has(stanza) && where(stanza as StanzaOf<K>),
        );
        return found !== undefined;
      },
      timeoutMs,
      `${kind} (received so far: ${this.received.map((stanza) => stanza.kind).join(",")})`,
    );
    this.taken.add(found!);
    return found!;
  }

  all<K extends Stanza["kind"]>(kind: K): StanzaOf<K>[] {
    return this.received.filter((stanza): stanza is StanzaOf<K> => stanza.kind === kind);
  }

  async register(
    handle: string,
    key: DeviceKey = newDeviceKey(),
    invite: string | null = null,
  ): Promise<StanzaOf<"welcome">> {
    this.sendStanza({
      kind: "register",
      invite,
      handle,
      publicKey: key.publicKey,
      signature: signWith(key, registerMessage(this.nonce!, this.serverName, handle)),
      serverName: this.serverName,
    });
    const welcome = await this.next("welcome");
    this.account = welcome.account;
    this.device = welcome.device;
    return welcome;
  }

  async login(account: number, device: number, key: DeviceKey): Promise<StanzaOf<"welcome">> {
    this.sendStanza({
      kind: "login",
      account,
      device,
      signature: signWith(key, loginMessage(this.nonce!, this.serverName, account, device)),
      serverName: this.serverName,
    });
    const welcome = await this.next("welcome");
    this.account = welcome.account;
    this.device = welcome.device;
    this.setNextClientId(welcome.lastClientId + 1);
    return welcome;
  }

  async link(code: string, key: DeviceKey): Promise<StanzaOf<"welcome">> {
    this.sendStanza({
      kind: "link",
      code,
      publicKey: key.publicKey,
      signature: signWith(key, linkMessage(this.nonce!, this.serverName, code)),
      serverName: this.serverName,
    });
    const welcome = await this.next("welcome");
    this.account = welcome.account;
    this.device = welcome.device;
    return welcome;
  }

  /** Sends a message and returns its client id (does not wait for the server-ack). */
  send(
    to: number,
    payload: Uint8Array | Array<{ device: number; payload: Uint8Array }>,
    clientId = this.clientId(),
  ): number {
    this.sendStanza({ kind: "send", clientId, to, payload });
    return clientId;
  }

  ack(seq: number): void {
    this.sendStanza({ kind: "ack", seq });
  }

  async waitClosed(timeoutMs = waitTimeoutMs): Promise<void> {
    await waitFor(() => this.closed, timeoutMs, "connection close");
  }

  close(): void {
    this.socket?.end();
  }
}

/** Registers a new account on a fresh connection; returns the logged-in client and its key. */
export async function registeredClient(port: number, handle: string): Promise<{ client: RawClient; key: DeviceKey }> {
  const client = await RawClient.connect(port);
  const key = newDeviceKey();
  await client.register(handle, key);
  await client.next("queueEmpty");
  return { client, key };
}

export function bytesOf(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

export function textOf(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

/**
 * One HTTP/1.1 request written as raw bytes (so that any Host header can be sent, as a rebinding browser would) to
 * 127.0.0.1:port; resolves with the status code and the head of the answer. The connection is closed after the head.
 */
export async function rawHttpRequest(
  port: number,
  head: { path: string; host: string; headers?: Record<string, string> },
  timeoutMs = waitTimeoutMs,
): Promise<{ status: number; head: string }> {
  let text = "";
  let closed = false;
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_socket, chunk) => {
        text += new TextDecoder().decode(chunk);
      },
      close: () => {
        closed = true;
      },
      error: () => {
        closed = true;
      },
    },
  });
  try {
    const lines = [`GET ${head.path} HTTP/1.1`, `Host: ${head.host}`];
    for (const [name, value] of Object.entries(head.headers ?? {})) lines.push(`${name}: ${value}`);
    socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    await waitFor(() => text.includes("\r\n\r\n") || closed, timeoutMs, "an HTTP answer");
  } finally {
    socket.end();
  }
  const match = /^HTTP\/1\.1 (\d{3})/.exec(text);
  if (match === null) throw new Error(`no HTTP status line in ${JSON.stringify(text.slice(0, 80))}`);
  const end = text.indexOf("\r\n\r\n");
  return { status: Number(match[1]), head: end < 0 ? text : text.slice(0, end) };
}

/**
 * A relay on 127.0.0.1 that forwards bytes both ways between each client and the server, unchanged: what a crafted
 * link or a wrong host setting would make a client dial. Counts the bytes it carried from the server.
 */
export interface Relay {
  readonly port: number;
  readonly bytesFromServer: () => number;
  stop(): void;
}

export function startRelay(serverPort: number): Relay {
  interface Pipe {
    upstream: Socket<undefined> | null;
    pending: Uint8Array[];
    closed: boolean;
  }
  let bytesFromServer = 0;
  const upstreams = new Set<Socket<undefined>>();
  const listener = Bun.listen<Pipe>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(client) {
        client.data = { upstream: null, pending: [], closed: false };
        Bun.connect({
          hostname: "127.0.0.1",
          port: serverPort,
          socket: {
            open(upstream) {
              if (client.data.closed) return void upstream.end();
              upstreams.add(upstream);
              client.data.upstream = upstream;
              for (const chunk of client.data.pending.splice(0)) upstream.write(chunk);
            },
            data(_upstream, chunk) {
              bytesFromServer += chunk.length;
              client.write(new Uint8Array(chunk));
            },
            close(upstream) {
              upstreams.delete(upstream);
              client.end();
            },
          },
        }).catch(() => client.end());
      },
      data(client, chunk) {
        const bytes = new Uint8Array(chunk);
        if (client.data.upstream === null) client.data.pending.push(bytes);
        else client.data.upstream.write(bytes);
      },
      close(client) {
        client.data.closed = true;
        client.data.upstream?.end();
      },
    },
  });
  return {
    port: listener.port,
    bytesFromServer: () => bytesFromServer,
    stop() {
      for (const upstream of upstreams) upstream.end();
      listener.stop(true);
    },
  };
}
