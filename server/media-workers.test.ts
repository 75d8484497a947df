// The media listener with `--workers 2`: both workers serve the media port (SO_REUSEPORT), grants made by the
// worker holding a session are honoured by whichever worker the kernel hands an HTTP connection to (the token key
// and the index are shared files), and an upload spread over many connections ends as one verified blob.

import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { askDownload, askUpload, bearer, freePort, granted, hex, mediaFiles } from "./media-test-kit.ts";
import { type RawClient, registeredClient, waitFor } from "./test-kit.ts";

const cli = join(import.meta.dir, "cli.ts");
const startMs = 15_000;

const children: Subprocess[] = [];
const directories: string[] = [];
const clients: RawClient[] = [];
afterEach(() => {
  for (const client of clients.splice(0)) client.close();
  for (const child of children.splice(0)) child.kill("SIGKILL");
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

async function supervisor(
  workers: number,
): Promise<{ port: number; mediaPort: number; dataDir: string; started: Array<Record<string, unknown>> }> {
  const dataDir = mkdtempSync(join(tmpdir(), "sb-media-w-"));
  directories.push(dataDir);
  const port = freePort();
  let mediaPort = freePort();
  for (let pick = 0; pick < 10 && mediaPort === port; pick++) mediaPort = freePort();
  const child = Bun.spawn(
    [
      process.execPath,
      cli,
      "start",
      `--workers=${workers}`,
      `--port=${port}`,
      "--admin-port=0",
      `--media-port=${mediaPort}`,
      `--data-dir=${dataDir}`,
      "--registration=open",
      "--partitions=8",
      "--lame-duck-ms=0",
      "--log-level=info",
    ],
    { stdin: "ignore", stdout: "pipe", stderr: "inherit" },
  );
  children.push(child);
  const started: Array<Record<string, unknown>> = [];
  void (async () => {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of child.stdout) {
      buffered += decoder.decode(chunk, { stream: true });
      for (let newline = buffered.indexOf("\n"); newline >= 0; newline = buffered.indexOf("\n")) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        try {
          const parsed = JSON.parse(line) as Record<string, unknown>;
          if (parsed.event === "server_started") started.push(parsed);
        } catch {
          // not a log line
        }
      }
    }
  })();
  await waitFor(() => started.length >= workers, startMs, `${workers} workers serving`);
  return { port, mediaPort, dataDir, started };
}

describe("media with workers", () => {
  test("two workers serve the media port; an upload over 8 connections and downloads on others give one verified blob", async () => {
    const server = await supervisor(2);
    expect(server.started.map((line) => line.mediaPort)).toEqual([server.mediaPort, server.mediaPort]);
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
