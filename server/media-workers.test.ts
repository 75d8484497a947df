// The media listener with `--workers 2`: both workers serve the media port (SO_REUSEPORT), grants made by the
// worker holding a session are honoured by whichever worker the kernel hands an HTTP connection to (the token key
// and the index are shared files), and an upload spread over many connections ends as one verified blob.

import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { askDownload, askUpload, bearer, granted, hex, mediaFiles } from "./media-test-kit.ts";
import { SupervisorKit } from "./supervisor-test-kit.ts";
import { type RawClient, registeredClient } from "./test-kit.ts";

const supervisors = new SupervisorKit();
const clients: RawClient[] = [];
afterEach(() => {
  for (const client of clients.splice(0)) client.close();
  supervisors.cleanup();
});

describe("media with workers", () => {
  test("two workers serve the media port; an upload over 8 connections and downloads on others give one verified blob", async () => {
    const server = await supervisors.start({ workers: 2, media: true });
    const started = server.lines.filter((line) => line.event === "server_started");
    expect(started.map((line) => line.mediaPort)).toEqual([server.mediaPort, server.mediaPort]);
    const alice = (await registeredClient(server.port, "alice")).client;
    const bob = (await registeredClient(server.port, "bob")).client;
    clients.push(alice, bob);
    const bytes = new Uint8Array(800_000);
    for (let offset = 0; offset < bytes.length; offset += 65_536) {
      crypto.getRandomValues(bytes.subarray(offset, Math.min(bytes.length, offset + 65_536)));
    }
    const hash = new Uint8Array(new Bun.CryptoHasher("sha256").update(bytes).digest());
    const grant = granted(await askUpload(alice, hash, bytes.length, [bob.account]));
    const base = `http://127.0.0.1:${server.mediaPort}`;
    // Each PATCH on a connection of its own: the kernel spreads them over the workers.
    for (let part = 0; part < 8; part++) {
      const start = part * 100_000;
      const response = await fetch(`${base}/media/v1/uploads/${hex(hash)}`, {
        method: "PATCH",
        headers: {
          ...bearer(grant.token),
          Connection: "close",
          "Content-Type": "application/offset+octet-stream",
          "Upload-Offset": String(start),
        },
        body: bytes.slice(start, start + 100_000),
      });
      expect(response.status).toBe(204);
      expect(response.headers.get("upload-offset")).toBe(String(start + 100_000));
    }
    expect(mediaFiles(server.dataDir)).toEqual([`media/blobs/${hex(hash).slice(0, 2)}/${hex(hash)}`]);
    const download = granted(await askDownload(bob, hash));
    for (let attempt = 0; attempt < 4; attempt++) {
      const response = await fetch(`${base}/media/v1/blobs/${hex(hash)}`, {
        headers: { ...bearer(download.token), Connection: "close" },
      });
      expect(response.status).toBe(200);
      const body = new Uint8Array(await response.arrayBuffer());
      expect(new Uint8Array(new Bun.CryptoHasher("sha256").update(body).digest())).toEqual(hash);
    }
    // One key file, made by whichever worker came first, used by both.
    expect(readFileSync(join(server.dataDir, "media", "token.key")).length).toBe(32);
  }, 30_000);
});
