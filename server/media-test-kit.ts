// Helpers for the media tests: a server with its media listener on, a logged-in raw client asking for grants, and
// HTTP calls to the listener exactly as PROTOCOL.md "Media" writes them (no SDK in between).

import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Limits, Stanza, StanzaOf } from "../protocol/index.ts";
import { createLogger } from "./log.ts";
import { tokenToText } from "./media-token.ts";
import { type RunningServer, startServer } from "./server.ts";
import { freePort, type RawClient, registeredClient, temporaryDirectory, testConfig } from "./test-kit.ts";

export interface MediaTestServer {
  readonly server: RunningServer;
  readonly port: number;
  readonly mediaPort: number;
  readonly dataDir: string;
  readonly base: string;
  stop(): Promise<void>;
}

export async function startMediaServer(
  options: { limits?: Partial<Limits>; mediaPort?: number; dataDir?: string } = {},
): Promise<MediaTestServer> {
  const dataDir = options.dataDir ?? temporaryDirectory("switchboard-media-");
  // A port picked free can be taken by another test before the bind: try a few.
  for (let attempt = 0; ; attempt++) {
    const mediaPort = options.mediaPort ?? freePort();
    const config = testConfig({ dataDir, limits: options.limits, config: { mediaPort } });
    try {
      const server = await startServer(config, { log: createLogger("warn", (line) => process.stderr.write(line)) });
      return {
        server,
        port: server.port,
        mediaPort: server.mediaPort,
        dataDir,
        base: `http://127.0.0.1:${server.mediaPort}`,
        async stop() {
          await server.stop({ timeoutMs: 1000 });
          if (options.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
        },
      };
    } catch (error) {
      if (attempt >= 3 || options.mediaPort !== undefined) throw error;
    }
  }
}

export async function mediaClient(port: number, handle: string): Promise<RawClient> {
  return (await registeredClient(port, handle)).client;
}

/** Sends mediaUpload and returns its grant, or the error stanza answering it. */
export async function askUpload(
  client: RawClient,
  hash: Uint8Array,
  size: number,
  recipients: number[],
): Promise<StanzaOf<"mediaUploadGrant"> | StanzaOf<"error">> {
  const clientId = client.clientId();
  client.sendStanza({ kind: "mediaUpload", clientId, hash, size, recipients });
  return answerTo(client, clientId, "mediaUploadGrant");
}

export async function askDownload(
  client: RawClient,
  hash: Uint8Array,
): Promise<StanzaOf<"mediaDownloadGrant"> | StanzaOf<"error">> {
  const clientId = client.clientId();
  client.sendStanza({ kind: "mediaDownload", clientId, hash });
  return answerTo(client, clientId, "mediaDownloadGrant");
}

async function answerTo<K extends "mediaUploadGrant" | "mediaDownloadGrant">(
  client: RawClient,
  clientId: number,
  kind: K,
): Promise<StanzaOf<K> | StanzaOf<"error">> {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const found = client.received.find(
      (stanza) =>
        (stanza.kind === kind || stanza.kind === "error") && "clientId" in stanza && stanza.clientId === clientId,
    );
    if (found !== undefined) return found as StanzaOf<K> | StanzaOf<"error">;
    await Bun.sleep(5);
  }
  throw new Error(`no answer to ${kind} request ${clientId}`);
}

export function granted<K extends "mediaUploadGrant" | "mediaDownloadGrant">(
  answer: StanzaOf<K> | StanzaOf<"error">,
): StanzaOf<K> {
  const stanza = answer as Stanza;
  if (stanza.kind === "error") throw new Error(`refused: ${stanza.code} ${stanza.message}`);
  return answer as StanzaOf<K>;
}

export function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(new Bun.CryptoHasher("sha256").update(bytes).digest());
}

export function hex(hash: Uint8Array): string {
  return Buffer.from(hash).toString("hex");
}

export function bearer(token: Uint8Array): Record<string, string> {
  return { Authorization: `Bearer ${tokenToText(token)}` };
}

export function patch(
  base: string,
  hash: Uint8Array,
  token: Uint8Array,
  offset: number,
  body: Uint8Array | ReadableStream<Uint8Array>,
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(`${base}/media/v1/uploads/${hex(hash)}`, {
    method: "PATCH",
    headers: {
      ...bearer(token),
      "Tus-Resumable": "1.0.0",
      "Content-Type": "application/offset+octet-stream",
      "Upload-Offset": String(offset),
    },
    body: body as BodyInit,
    signal,
    // A streamed body needs half-duplex in fetch.
    ...(body instanceof Uint8Array ? {} : { duplex: "half" }),
  } as RequestInit);
}

export function head(base: string, hash: Uint8Array, token: Uint8Array): Promise<Response> {
  return fetch(`${base}/media/v1/uploads/${hex(hash)}`, { method: "HEAD", headers: bearer(token) });
}

export function get(base: string, hash: Uint8Array, token: Uint8Array, range?: string): Promise<Response> {
  return fetch(`${base}/media/v1/blobs/${hex(hash)}`, {
    headers: { ...bearer(token), ...(range === undefined ? {} : { Range: range }) },
  });
}

/** Every file under dataDir/media/blobs and media/partial (the index and the key are not media). */
export function mediaFiles(dataDir: string): string[] {
  const found: string[] = [];
  const walk = (directory: string) => {
    if (!existsSync(directory)) return;
    for (const entry of readdirSync(directory, { withFileTypes: true })) {
      const path = join(directory, entry.name);
      if (entry.isDirectory()) walk(path);
      else found.push(path.slice(dataDir.length + 1));
    }
  };
  walk(join(dataDir, "media", "blobs"));
  walk(join(dataDir, "media", "partial"));
  return found.sort();
}
