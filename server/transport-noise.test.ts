// The Noise listener through real sockets on loopback, with a raw Noise client built from the protocol's pieces:
// a plaintext client is told encryptionRequired (no hang), a tampered record closes the session with
// noiseRecordFailed, replayed handshake messages fail with noiseHandshakeFailed, and a login must sign this
// connection's handshake hash.

import { afterEach, describe, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { join } from "node:path";
import type { Socket } from "bun";
import {
  ErrorCode,
  encodePreamble,
  FrameCodec,
  FrameReader,
  loginMessage,
  registerMessage,
  type Stanza,
  testLimits,
} from "../protocol/index.ts";
import { nodeAead } from "../protocol/noise-aead-node.ts";
import { NoiseCipherTable } from "../protocol/noise-cipher-table.ts";
import { NoiseHandshake, type NoisePatternName, noiseKeyPair } from "../protocol/noise-handshake.ts";
import { encodeNoisePreamble, frameNoiseMessage, readNoiseMessage } from "../protocol/noise-records.ts";
import { noiseStaticKeyFileName, readNoiseStaticKey } from "./noise-static-key.ts";
import { newDeviceKey, signWith, startTestServer, type TestServer, waitFor, waitTimeoutMs } from "./test-kit.ts";

const codec = new FrameCodec({ limits: testLimits });

/** A Noise client on a raw socket: every byte it receives, and the records' plaintext decoded into stanzas. */
class RawNoiseClient {
  socket: Socket<undefined> | null = null;
  received = new Uint8Array(0);
  closed = false;
  readonly table = new NoiseCipherTable(nodeAead, 1);
  slot = -1;
  handshakeHash: Uint8Array | null = null;
  readonly stanzas: Stanza[] = [];
  private readonly reader = new FrameReader(codec);
  /** Bytes the client wrote, for replay tests. */
  readonly written: Uint8Array[] = [];

  static async connect(port: number): Promise<RawNoiseClient> {
    const client = new RawNoiseClient();
    client.socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_socket, chunk) => client.onData(new Uint8Array(chunk)),
        close: () => {
          client.closed = true;
        },
        error: () => {
          client.closed = true;
        },
      },
    });
    return client;
  }

  write(bytes: Uint8Array): void {
    this.written.push(bytes.slice());
    expect(this.socket!.write(bytes)).toBe(bytes.length);
  }

  private onData(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.received.length + chunk.length);
    joined.set(this.received);
    joined.set(chunk, this.received.length);
    this.received = joined;
    if (this.slot < 0) return;
    for (;;) {
      const next = readNoiseMessage(this.received);
      if (next === "more") return;
      this.received = this.received.slice(next.consumed);
      const plaintext = this.table.open(this.slot, next.message);
      if (!(plaintext instanceof Uint8Array)) throw plaintext;
      this.reader.push(plaintext);
      for (let result = this.reader.next(); result.status === "frame"; result = this.reader.next()) {
        this.stanzas.push(result.stanza);
      }
    }
  }

  /** The next length-prefixed handshake message from the server. */
  async handshakeMessage(): Promise<Uint8Array> {
    await waitFor(
      () => readNoiseMessage(this.received) !== "more" || this.closed,
      waitTimeoutMs,
      "a handshake message",
    );
    const next = readNoiseMessage(this.received);
    if (next === "more") throw new Error("closed before a handshake message");
    this.received = this.received.slice(next.consumed);
    return next.message;
  }

  /** XX (or IK with the server's key) to completion; returns the handshake. */
  async handshake(pattern: NoisePatternName = "XX", serverKey?: Uint8Array): Promise<void> {
    const preamble = encodeNoisePreamble(pattern);
    const handshake = new NoiseHandshake({
      pattern,
      role: "initiator",
      prologue: preamble,
      staticKeyPair: noiseKeyPair(),
      ...(serverKey === undefined ? {} : { remoteStaticKey: serverKey }),
    });
    this.write(concat(preamble, frameNoiseMessage(handshake.writeMessage())));
    expect(handshake.readMessage(await this.handshakeMessage())).toBeInstanceOf(Uint8Array);
    if (handshake.writing) this.write(frameNoiseMessage(handshake.writeMessage()));
    expect(handshake.complete).toBe(true);
    const split = handshake.split();
    this.slot = this.table.install(split);
    this.handshakeHash = split.handshakeHash;
  }

  /** Plaintext protocol bytes, sealed into one record. */
  sendPlain(bytes: Uint8Array): void {
    const record = this.table.seal(this.slot, bytes);
    if (!(record instanceof Uint8Array)) throw record;
    this.write(record);
  }

  async next<K extends Stanza["kind"]>(kind: K): Promise<Extract<Stanza, { kind: K }>> {
    await waitFor(() => this.stanzas.some((stanza) => stanza.kind === kind), waitTimeoutMs, kind);
    const index = this.stanzas.findIndex((stanza) => stanza.kind === kind);
    return this.stanzas.splice(index, 1)[0] as Extract<Stanza, { kind: K }>;
  }

  close(): void {
    this.socket?.end();
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

/** The plaintext error frame the server wrote before any handshake completed. */
function plaintextError(bytes: Uint8Array): Extract<Stanza, { kind: "error" }> {
  const result = codec.decode(bytes, 0);
  if (result.status !== "frame" || result.stanza.kind !== "error") throw new Error("expected a plaintext error frame");
  return result.stanza;
}

let server: TestServer | null = null;
const clients: RawNoiseClient[] = [];

async function noiseServer(): Promise<TestServer> {
  server = await startTestServer({ config: { tcpEncryption: "noise" } });
  return server;
}

async function connect(port: number): Promise<RawNoiseClient> {
  const client = await RawNoiseClient.connect(port);
  clients.push(client);
  return client;
}

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await server?.stop();
  server = null;
});

describe("the Noise listener", () => {
  test("the static key is made 0600 in the data directory; XX registers and logs in signing the handshake hash", async () => {
    const { port, dataDir } = await noiseServer();
    const keyPath = join(dataDir, noiseStaticKeyFileName);
    expect(statSync(keyPath).mode & 0o777).toBe(0o600);
    const serverKey = readNoiseStaticKey(dataDir)!.publicKey;

    const client = await connect(port);
    await client.handshake("XX");
    client.sendPlain(encodePreamble());
    const challenge = await client.next("challenge");
    const key = newDeviceKey();
    const signature = signWith(key, registerMessage(challenge.nonce, "127.0.0.1", "noisy", client.handshakeHash));
    client.sendPlain(
      codec.encode({
        kind: "register",
        invite: null,
        handle: "noisy",
        publicKey: key.publicKey,
        signature,
        serverName: "127.0.0.1",
      }),
    );
    const welcome = await client.next("welcome");

    // IK with the key the operator publishes: one round trip, then a login bound to this connection.
    const resumed = await connect(port);
    await resumed.handshake("IK", serverKey);
    resumed.sendPlain(encodePreamble());
    const second = await resumed.next("challenge");
    const login = (binding: Uint8Array | null) =>
      codec.encode({
        kind: "login",
        account: welcome.account,
        device: welcome.device,
        signature: signWith(key, loginMessage(second.nonce, "127.0.0.1", welcome.account, welcome.device, binding)),
        serverName: "127.0.0.1",
      });
    resumed.sendPlain(login(resumed.handshakeHash));
    expect((await resumed.next("welcome")).account).toBe(welcome.account);

    // The same login signed without the binding (a v2 signature, as a relay would forward) is refused.
    const relayed = await connect(port);
    await relayed.handshake("XX");
    relayed.sendPlain(encodePreamble());
    const third = await relayed.next("challenge");
    relayed.sendPlain(
      codec.encode({
        kind: "login",
        account: welcome.account,
        device: welcome.device,
        signature: signWith(key, loginMessage(third.nonce, "127.0.0.1", welcome.account, welcome.device)),
        serverName: "127.0.0.1",
      }),
    );
    expect((await relayed.next("error")).code).toBe(ErrorCode.badCredentials);
  });

  test("a plaintext client gets encryptionRequired in plaintext and a closed socket, not a hang", async () => {
    const { port } = await noiseServer();
    const client = await connect(port);
    client.write(encodePreamble());
    await waitFor(() => client.closed, waitTimeoutMs, "the server to close");
    expect(plaintextError(client.received).code).toBe(ErrorCode.encryptionRequired);
  });

  test("a tampered record closes the session with noiseRecordFailed (sent encrypted)", async () => {
    const { port } = await noiseServer();
    const client = await connect(port);
    await client.handshake("XX");
    client.sendPlain(encodePreamble());
    await client.next("challenge");
    const record = client.table.seal(client.slot, codec.encode({ kind: "ping" })) as Uint8Array;
    record[record.length - 1]! ^= 0x80;
    client.write(record);
    expect((await client.next("error")).code).toBe(ErrorCode.noiseRecordFailed);
    await waitFor(() => client.closed, waitTimeoutMs, "the server to close");
  });

  test("a replayed record (an old counter) is refused like a tampered one", async () => {
    const { port } = await noiseServer();
    const client = await connect(port);
    await client.handshake("XX");
    client.sendPlain(encodePreamble());
    await client.next("challenge");
    client.sendPlain(codec.encode({ kind: "ping" }));
    await client.next("pong");
    client.write(client.written.at(-1)!);
    expect((await client.next("error")).code).toBe(ErrorCode.noiseRecordFailed);
  });

  test("handshake messages replayed from a recorded connection fail with noiseHandshakeFailed", async () => {
    const { port } = await noiseServer();
    const recorded = await connect(port);
    await recorded.handshake("XX");
    const [opening, message3] = recorded.written as [Uint8Array, Uint8Array];

    const replay = await connect(port);
    replay.write(opening);
    await replay.handshakeMessage();
    replay.write(message3);
    await waitFor(() => replay.closed, waitTimeoutMs, "the server to close");
    expect(plaintextError(replay.received).code).toBe(ErrorCode.noiseHandshakeFailed);
  });

  test("IK with a wrong server key, an oversize handshake message and an unknown pattern are refused", async () => {
    const { port } = await noiseServer();
    const wrongKey = await connect(port);
    const preamble = encodeNoisePreamble("IK");
    const handshake = new NoiseHandshake({
      pattern: "IK",
      role: "initiator",
      prologue: preamble,
      staticKeyPair: noiseKeyPair(),
      remoteStaticKey: noiseKeyPair().publicKey,
    });
    wrongKey.write(concat(preamble, frameNoiseMessage(handshake.writeMessage())));
    await waitFor(() => wrongKey.closed, waitTimeoutMs, "the server to close");
    expect(plaintextError(wrongKey.received).code).toBe(ErrorCode.noiseHandshakeFailed);

    const oversize = await connect(port);
    oversize.write(concat(encodeNoisePreamble("XX"), Uint8Array.of(0x01, 0x00)));
    await waitFor(() => oversize.closed, waitTimeoutMs, "the server to close");
    expect(plaintextError(oversize.received).code).toBe(ErrorCode.noiseHandshakeFailed);

    const unknown = await connect(port);
    unknown.write(Uint8Array.of(0x53, 0x42, 0x02, 0x09));
    await waitFor(() => unknown.closed, waitTimeoutMs, "the server to close");
    expect(plaintextError(unknown.received).code).toBe(ErrorCode.versionUnsupported);
  });
});
