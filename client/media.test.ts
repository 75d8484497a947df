// The SDK's media path against a real server on loopback: encrypt with a fresh key, upload in chunks (one PATCH cut
// on the way and resumed), send only the reference, download, verify and decrypt. The server's file is ciphertext.

import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { testLimits } from "../protocol/index.ts";
import { type MediaTestServer, startMediaServer } from "../server/media-test-kit.ts";
import { decryptMedia, encryptMedia, MediaError, type MediaRef, plaintextSize } from "./media.ts";
import { SwitchboardClient } from "./switchboard-client.ts";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function client(port: number, handle: string): Promise<SwitchboardClient & { account: number }> {
  const created = new SwitchboardClient({ port, register: { handle }, limits: testLimits });
  cleanups.push(() => created.close());
  const { account } = await created.connect();
  return Object.assign(created, { account });
}

describe("SDK media", () => {
  test("uploadMedia encrypts, uploads through a cut, and downloadMedia gives the plaintext back; the server holds ciphertext", async () => {
    const server: MediaTestServer = await startMediaServer();
    cleanups.push(() => server.stop());
    const alice = await client(server.port, "alice");
    const bob = await client(server.port, "bob");
    const plaintext = new TextEncoder().encode("a photo, of sorts. ".repeat(20_000));
    let patches = 0;
    // The second PATCH is cut before it reaches the server: the SDK asks for the offset (HEAD) and goes on.
    const flaky: typeof fetch = Object.assign(
      async (input: RequestInfo | URL, init?: RequestInit) => {
        if (init?.method === "PATCH" && ++patches === 2) throw new TypeError("connection reset");
        return fetch(input, init);
      },
      { preconnect: fetch.preconnect },
    );
    const progress: number[] = [];
    const ref = await alice.uploadMedia(plaintext, [bob.account], {
      chunkBytes: 64 * 1024,
      fetch: flaky,
      retryDelayMs: 10,
      onProgress: (offset) => progress.push(offset),
    });
    expect(patches).toBeGreaterThan(2);
    expect(ref.size).toBe(plaintext.length + 16);
    expect(plaintextSize(ref)).toBe(plaintext.length);
    expect(progress.at(-1)).toBe(ref.size);
    const stored = readFileSync(join(server.dataDir, "media", "blobs", ref.hash.slice(0, 2), ref.hash));
    expect(stored.length).toBe(ref.size);
    expect(Buffer.from(stored).includes(Buffer.from("a photo, of sorts."))).toBe(false);

    // Only the reference travels, as JSON inside a (here unencrypted, in real use end-to-end-encrypted) message.
    const sent = JSON.parse(JSON.stringify(ref)) as MediaRef;
    expect(await bob.downloadMedia(sent)).toEqual(plaintext);
    // A wrong key does not open it; a reference to bytes that are not there is refused.
    const wrongKey = { ...sent, key: sent.key.startsWith("A") ? `B${sent.key.slice(1)}` : `A${sent.key.slice(1)}` };
    await expect(bob.downloadMedia(wrongKey)).rejects.toThrow();
    await expect(bob.downloadMedia({ ...sent, hash: "0".repeat(64) })).rejects.toThrow();
  });

  test("encryptMedia uses a fresh key each time: the same file gives different ciphertexts; decryptMedia checks the tag", async () => {
    const bytes = new Uint8Array(1000).fill(7);
    const first = await encryptMedia(bytes);
    const second = await encryptMedia(bytes);
    expect(first.key).not.toEqual(second.key);
    expect(first.ciphertext).not.toEqual(second.ciphertext);
    expect(await decryptMedia(first.ciphertext, first.key)).toEqual(bytes);
    const tampered = first.ciphertext.slice();
    tampered[0] = tampered[0]! ^ 1;
    await expect(decryptMedia(tampered, first.key)).rejects.toThrow();
    expect(new MediaError("x", 403).status).toBe(403);
  });
});
