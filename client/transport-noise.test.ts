// The SDK over Noise against a real server on loopback: a pinned key that is not the server's, a key that changed
// since the first use, and a Noise client at a plaintext listener all end in a clear stop-range error (never a
// hang or a reconnect loop); a known key resumes with IK.

import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { ErrorCode } from "../protocol/index.ts";
import { nodeAead } from "../protocol/noise-aead-node.ts";
import { nodeDh } from "../protocol/noise-dh-node.ts";
import { noiseKeyPair } from "../protocol/noise-handshake.ts";
import { cleanups, recordedClient, runCleanups, startInProcessServer, temporaryDataDir } from "./delivery-suite.ts";
import { ClientError, type ClientOptions, tcpTransport } from "./index.ts";
import { MemoryServerKeys, serverKeyHex } from "./known-server-keys.ts";
import { FileServerKeys } from "./known-server-keys-file.ts";
import { type NoiseOptions, type NoiseTransport, noiseTransport } from "./transport-noise.ts";

afterEach(runCleanups);

async function server(tcpEncryption: "noise" | "none") {
  const dataDir = temporaryDataDir();
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const running = await startInProcessServer({ dataDir, config: { tcpEncryption } });
  cleanups.push(() => running.stop({ timeoutMs: 1000 }));
  return running;
}

/** A Noise transport factory that keeps every transport it made (to see their handshake patterns). */
function observedNoise(port: number, options: NoiseOptions) {
  const made: NoiseTransport[] = [];
  const inner = noiseTransport(
    tcpTransport({ host: "127.0.0.1", port, bufferedBytesMax: 1 << 20 }),
    `127.0.0.1:${port}`,
    { aead: nodeAead, dh: nodeDh, ...options },
  );
  return {
    made,
    factory: () => {
      const transport = inner() as NoiseTransport;
      made.push(transport);
      return transport;
    },
  };
}

async function refusal(options: ClientOptions): Promise<{ error: ClientError; events: Error[]; reconnects: number }> {
  const recorder = recordedClient(options);
  const events: Error[] = [];
  recorder.client.on("error", (error) => events.push(error));
  const error = await recorder.client.connect().then(
    () => null,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ClientError);
  const reconnects = recorder.disconnects.filter((event) => event.willReconnect).length;
  return { error: error as ClientError, events, reconnects };
}

describe("Noise in the SDK", () => {
  test("a pinned key that is not the server's: serverKeyMismatch, loud, and the client stops", async () => {
    const { port } = await server("noise");
    const pinned = noiseKeyPair().publicKey;
    const { error, events } = await refusal({
      register: { handle: "pinned" },
      transport: observedNoise(port, { serverKey: pinned, resume: false }).factory,
    });
    expect(error.code).toBe(ErrorCode.serverKeyMismatch);
    expect(error.action).toBe("stop");
    expect(error.message).toContain(serverKeyHex(pinned));
    expect(error.message).toContain("configured");
    expect(events.some((event) => (event as ClientError).code === ErrorCode.serverKeyMismatch)).toBe(true);
  });

  test("trust on first use: the key is remembered, a reconnect resumes with IK, a changed key stops the client", async () => {
    const running = await server("noise");
    const directory = temporaryDataDir();
    cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
    const knownKeys = new FileServerKeys(join(directory, "known-servers"));
    const first = observedNoise(running.port, { knownKeys });
    const alice = recordedClient({ register: { handle: "alice" }, transport: first.factory });
    await alice.client.connect();
    expect(first.made[0]!.handshakePattern).toBe("XX");
    expect(statSync(knownKeys.where).mode & 0o777).toBe(0o600);
    const remembered = knownKeys.get(`127.0.0.1:${running.port}`)!;
    expect(readFileSync(knownKeys.where, "utf8")).toContain(serverKeyHex(remembered));
    const credentials = alice.client.credentials!;
    await alice.client.close();

    // The same store on a new client: IK, and the login (signing the IK handshake hash) is accepted.
    const second = observedNoise(running.port, { knownKeys });
    const again = recordedClient({ credentials, transport: second.factory });
    await again.client.connect();
    expect(second.made[0]!.handshakePattern).toBe("IK");
    await again.client.close();

    // The server's key changes (another key in the store stands for it): IK is refused, the XX that follows shows
    // the new key, and the client stops with both keys and the store named.
    const other = noiseKeyPair().publicKey;
    knownKeys.remember(`127.0.0.1:${running.port}`, other);
    const third = observedNoise(running.port, { knownKeys });
    const { error } = await refusal({ credentials, transport: third.factory });
    expect(third.made.map((transport) => transport.handshakePattern)).toEqual(["IK", "XX"]);
    expect(error.code).toBe(ErrorCode.serverKeyMismatch);
    expect(error.message).toContain(serverKeyHex(other));
    expect(error.message).toContain(serverKeyHex(remembered));
    expect(error.message).toContain(knownKeys.where);
  });

  test("a Noise client at a plaintext listener: versionUnsupported from the server, and a stop", async () => {
    const { port } = await server("none");
    const { error, reconnects } = await refusal({
      register: { handle: "lost" },
      transport: observedNoise(port, { knownKeys: new MemoryServerKeys() }).factory,
    });
    expect(error.code).toBe(ErrorCode.versionUnsupported);
    expect(reconnects).toBe(0);
  });

  test("a plaintext client at a Noise listener: encryptionRequired, and a stop", async () => {
    const { port } = await server("noise");
    const { error, reconnects } = await refusal({ register: { handle: "plain" }, host: "127.0.0.1", port });
    expect(error.code).toBe(ErrorCode.encryptionRequired);
    expect(reconnects).toBe(0);
  });
});
