// The media listener through the real path: a server on loopback with its media port, raw sessions asking for
// grants, HTTP exactly as PROTOCOL.md "Media" writes it, and real files under the data directory.

import { afterEach, describe, expect, test } from "bun:test";
import { ErrorCode, encodePreamble, StanzaKind } from "../protocol/index.ts";
import { ConfigError, loadConfig } from "./config.ts";
import { parseRange } from "./media-http.ts";
import {
  askDownload,
  askUpload,
  bearer,
  get,
  granted,
  head,
  hex,
  type MediaTestServer,
  mediaClient,
  mediaFiles,
  patch,
  sha256,
  startMediaServer,
} from "./media-test-kit.ts";
import { bytesOf, RawClient, startTestServer } from "./test-kit.ts";

const servers: MediaTestServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.stop();
});

async function started(limits: Parameters<typeof startMediaServer>[0] = {}): Promise<MediaTestServer> {
  const server = await startMediaServer(limits);
  servers.push(server);
  return server;
}

function randomBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let offset = 0; offset < length; offset += 65_536) {
    crypto.getRandomValues(bytes.subarray(offset, Math.min(length, offset + 65_536)));
  }
  return bytes;
}

async function errorOf(answer: { kind: string }): Promise<number> {
  expect(answer.kind).toBe("error");
  return (answer as unknown as { code: number }).code;
}

describe("media: upload, download, ranges", () => {
  test("an upload in two PATCHes becomes a blob; a recipient downloads it whole and by ranges, bytes identical", async () => {
    const server = await started();
    const alice = await mediaClient(server.port, "alice");
    const bob = await mediaClient(server.port, "bob");
    const bytes = randomBytes(300_000);
    const hash = sha256(bytes);
    const grant = granted(await askUpload(alice, hash, bytes.length, [bob.account]));
    expect(grant.stored).toBe(false);
    expect(grant.port).toBe(server.mediaPort);
    expect(grant.url).toBeNull();

    const first = await patch(server.base, hash, grant.token, 0, bytes.subarray(0, 100_000));
    expect(first.status).toBe(204);
    expect(first.headers.get("upload-offset")).toBe("100000");
    const offset = await head(server.base, hash, grant.token);
    expect(offset.status).toBe(200);
    expect(offset.headers.get("upload-offset")).toBe("100000");
    expect(offset.headers.get("upload-length")).toBe("300000");
    expect(mediaFiles(server.dataDir)).toEqual([`media/partial/${hex(hash)}-${alice.account}`]);
    // A PATCH from a stale offset is refused with the server's offset, and changes nothing.
    const stale = await patch(server.base, hash, grant.token, 0, bytes.subarray(0, 10));
    expect(stale.status).toBe(409);
    expect(stale.headers.get("upload-offset")).toBe("100000");
    const last = await patch(server.base, hash, grant.token, 100_000, bytes.subarray(100_000));
    expect(last.status).toBe(204);
    expect(last.headers.get("upload-offset")).toBe("300000");
    expect(mediaFiles(server.dataDir)).toEqual([`media/blobs/${hex(hash).slice(0, 2)}/${hex(hash)}`]);

    const download = granted(await askDownload(bob, hash));
    expect(download.size).toBe(bytes.length);
    const whole = await get(server.base, hash, download.token);
    expect(whole.status).toBe(200);
    expect(whole.headers.get("accept-ranges")).toBe("bytes");
    expect(sha256(new Uint8Array(await whole.arrayBuffer()))).toEqual(hash);
    const middle = await get(server.base, hash, download.token, "bytes=1000-1999");
    expect(middle.status).toBe(206);
    expect(middle.headers.get("content-range")).toBe("bytes 1000-1999/300000");
    expect(new Uint8Array(await middle.arrayBuffer())).toEqual(bytes.slice(1000, 2000));
    const tail = await get(server.base, hash, download.token, "bytes=-10");
    expect(new Uint8Array(await tail.arrayBuffer())).toEqual(bytes.slice(bytes.length - 10));
    const beyond = await get(server.base, hash, download.token, "bytes=300000-");
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get("content-range")).toBe("bytes */300000");
    // The uploader's account may read its own blob too.
    expect((await askDownload(alice, hash)).kind).toBe("mediaDownloadGrant");
    const metrics = await server.server.context.metrics.renderFresh();
    expect(metrics).toContain("switchboard_media_uploads_stored_total 1\n");
    expect(metrics).toContain("switchboard_media_upload_bytes_total 300000\n");
    expect(metrics).toContain("switchboard_media_refusals_total 2\n"); // the stale offset (409) and the 416
    expect(metrics).toContain('switchboard_media_index_rows{table="blobs"} 1\n');
  });

  test("the same bytes uploaded again are stored once: the grant says stored, and the new recipient may read", async () => {
    const server = await started();
    const alice = await mediaClient(server.port, "alice");
    const bob = await mediaClient(server.port, "bob");
    const carol = await mediaClient(server.port, "carol");
    const bytes = randomBytes(5000);
    const hash = sha256(bytes);
    const grant = granted(await askUpload(alice, hash, bytes.length, [bob.account]));
    expect((await patch(server.base, hash, grant.token, 0, bytes)).status).toBe(204);
    const again = granted(await askUpload(bob, hash, bytes.length, [carol.account]));
    expect(again.stored).toBe(true);
    expect((await askDownload(carol, hash)).kind).toBe("mediaDownloadGrant");
    expect(mediaFiles(server.dataDir).length).toBe(1);
  });

  test("parseRange: one range of each form; unsatisfiable ones; others ignored", () => {
    expect(parseRange(null, 100)).toBeNull();
    expect(parseRange("bytes=0-9", 100)).toEqual([0, 9]);
    expect(parseRange("bytes=90-", 100)).toEqual([90, 99]);
    expect(parseRange("bytes=-5", 100)).toEqual([95, 99]);
    expect(parseRange("bytes=50-500", 100)).toEqual([50, 99]);
    expect(parseRange("bytes=100-", 100)).toBe("unsatisfiable");
    expect(parseRange("bytes=9-3", 100)).toBe("unsatisfiable");
    expect(parseRange("bytes=0-1,5-6", 100)).toBeNull();
    expect(parseRange("items=0-1", 100)).toBeNull();
  });
});

describe("media: refusals leave no file behind", () => {
  test("a wrong hash: 460, no partial file, no blob, and the upload must be granted again", async () => {
    const server = await started();
    const alice = await mediaClient(server.port, "alice");
    const bob = await mediaClient(server.port, "bob");
    const bytes = randomBytes(20_000);
    const claimed = sha256(randomBytes(32));
    const grant = granted(await askUpload(alice, claimed, bytes.length, [bob.account]));
    expect((await patch(server.base, claimed, grant.token, 0, bytes.subarray(0, 5000))).status).toBe(204);
    const response = await patch(server.base, claimed, grant.token, 5000, bytes.subarray(5000));
    expect(response.status).toBe(460);
    expect(mediaFiles(server.dataDir)).toEqual([]);
    expect((await head(server.base, claimed, grant.token)).status).toBe(404);
    expect(server.server.media!.index.counts()).toEqual({ blobs: 0, uploads: 0, audience: 0 });
    expect(await errorOf(await askDownload(bob, claimed))).toBe(ErrorCode.mediaUnknown);
  });

  test("an expired token: 401 with WWW-Authenticate, nothing written; a new grant resumes", async () => {
    const server = await started({ limits: { mediaTokenTtlMs: 300 } });
    const alice = await mediaClient(server.port, "alice");
    const bob = await mediaClient(server.port, "bob");
    const bytes = randomBytes(4000);
    const hash = sha256(bytes);
    const grant = granted(await askUpload(alice, hash, bytes.length, [bob.account]));
    await Bun.sleep(400);
    const response = await patch(server.base, hash, grant.token, 0, bytes);
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toContain("invalid_token");
    expect(mediaFiles(server.dataDir)).toEqual([]);
    const fresh = granted(await askUpload(alice, hash, bytes.length, [bob.account]));
    expect((await patch(server.base, hash, fresh.token, 0, bytes)).status).toBe(204);
    expect(mediaFiles(server.dataDir).length).toBe(1);
  });

  test("another account's token or another hash: 403; a forged token: 401; a stranger gets no download grant", async () => {
    const server = await started();
    const alice = await mediaClient(server.port, "alice");
    const bob = await mediaClient(server.port, "bob");
    const mallory = await mediaClient(server.port, "mallory");
    const bytes = randomBytes(3000);
    const hash = sha256(bytes);
    const grant = granted(await askUpload(alice, hash, bytes.length, [bob.account]));
    // Mallory's own grant is for her hash: it does not open alice's upload, nor her blob.
    const other = randomBytes(3000);
    const malloryGrant = granted(await askUpload(mallory, sha256(other), other.length, [bob.account]));
    expect((await patch(server.base, hash, malloryGrant.token, 0, other)).status).toBe(403);
    const forged = grant.token.slice();
    forged[20] = (forged[20]! + 1) % 256;
    expect((await patch(server.base, hash, forged, 0, bytes)).status).toBe(401);
    expect((await patch(server.base, hash, grant.token, 0, bytes)).status).toBe(204);
    // An upload token is not a download token.
    expect((await get(server.base, hash, grant.token)).status).toBe(403);
    expect(await errorOf(await askDownload(mallory, hash))).toBe(ErrorCode.mediaUnknown);
    const malloryDownload = await fetch(`${server.base}/media/v1/blobs/${hex(hash)}`, {
      headers: bearer(new Uint8Array(86)),
    });
    expect(malloryDownload.status).toBe(401);
    expect(mediaFiles(server.dataDir).length).toBe(1);
  });

  test("a file over the cap is refused at the grant (mediaTooLarge); bytes past the granted size get 413 and are dropped", async () => {
    const server = await started({ limits: { mediaFileBytesMax: 10_000 } });
    const alice = await mediaClient(server.port, "alice");
    const bob = await mediaClient(server.port, "bob");
    const big = randomBytes(10_001);
    expect(await errorOf(await askUpload(alice, sha256(big), big.length, [bob.account]))).toBe(ErrorCode.mediaTooLarge);
    const bytes = randomBytes(8000);
    const hash = sha256(bytes);
    const grant = granted(await askUpload(alice, hash, 4000, [bob.account]));
    expect((await patch(server.base, hash, grant.token, 0, bytes.subarray(0, 2000))).status).toBe(204);
    const over = await patch(server.base, hash, grant.token, 2000, bytes.subarray(2000));
    expect(over.status).toBe(413);
    expect(mediaFiles(server.dataDir)).toEqual([]);
    // A streamed body without a length that runs past the size is cut the same way.
    const again = granted(await askUpload(alice, hash, 4000, [bob.account]));
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.subarray(0, 3000));
        controller.enqueue(bytes.subarray(3000, 6000));
        controller.close();
      },
    });
    expect((await patch(server.base, hash, again.token, 0, stream)).status).toBe(413);
    expect(mediaFiles(server.dataDir)).toEqual([]);
  });

  test("a quota overrun is refused at the grant (mediaQuotaExceeded) and nothing is written", async () => {
    const server = await started({ limits: { mediaFileBytesMax: 6000, mediaAccountBytesMax: 10_000 } });
    const alice = await mediaClient(server.port, "alice");
    const bob = await mediaClient(server.port, "bob");
    const first = randomBytes(6000);
    const grant = granted(await askUpload(alice, sha256(first), first.length, [bob.account]));
    expect((await patch(server.base, sha256(first), grant.token, 0, first)).status).toBe(204);
    const second = randomBytes(5000);
    const refused = await askUpload(alice, sha256(second), second.length, [bob.account]);
    expect(await errorOf(refused)).toBe(ErrorCode.mediaQuotaExceeded);
    expect(mediaFiles(server.dataDir).length).toBe(1);
    // Another account has its own quota.
    expect((await askUpload(bob, sha256(second), second.length, [alice.account])).kind).toBe("mediaUploadGrant");
  });

  test("the upload volume per account and 24 hours is bounded (mediaBusy), finished uploads counting too", async () => {
    const server = await started({
      limits: { mediaFileBytesMax: 6000, mediaAccountBytesMax: 1_000_000, mediaAccountUploadBytesPerDayMax: 10_000 },
    });
    const alice = await mediaClient(server.port, "alice");
    const bob = await mediaClient(server.port, "bob");
    const first = randomBytes(6000);
    const grant = granted(await askUpload(alice, sha256(first), first.length, [bob.account]));
    // Asking again for the same upload is not more volume.
    granted(await askUpload(alice, sha256(first), first.length, [bob.account]));
    expect((await patch(server.base, sha256(first), grant.token, 0, first)).status).toBe(204);
    const second = randomBytes(5000);
    expect(await errorOf(await askUpload(alice, sha256(second), second.length, [bob.account]))).toBe(
      ErrorCode.mediaBusy,
    );
    expect((await askUpload(alice, sha256(second.subarray(0, 4000)), 4000, [bob.account])).kind).toBe(
      "mediaUploadGrant",
    );
  });

  test("unfinished uploads per device are bounded (mediaBusy, retry range); unknown recipients are refused", async () => {
    const server = await started({ limits: { mediaUploadsPerDeviceMax: 2 } });
    const alice = await mediaClient(server.port, "alice");
    const bob = await mediaClient(server.port, "bob");
    for (const size of [100, 200]) {
      expect((await askUpload(alice, sha256(randomBytes(size)), size, [bob.account])).kind).toBe("mediaUploadGrant");
    }
    const third = await askUpload(alice, sha256(randomBytes(300)), 300, [bob.account]);
    expect(await errorOf(third)).toBe(ErrorCode.mediaBusy);
    expect(await errorOf(await askUpload(bob, sha256(randomBytes(9)), 9, [999_999]))).toBe(ErrorCode.unknownAccount);
  });

  test("a body that stalls is ended with 408 after mediaUploadStallMs; what arrived is kept and the upload resumes", async () => {
    const server = await started({ limits: { mediaUploadStallMs: 300 } });
    const alice = await mediaClient(server.port, "alice");
    const bob = await mediaClient(server.port, "bob");
    const bytes = randomBytes(50_000);
    const hash = sha256(bytes);
    const grant = granted(await askUpload(alice, hash, bytes.length, [bob.account]));
    let cancel: (() => void) | null = null;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.subarray(0, 20_000));
        cancel = () => {
          try {
            controller.close();
          } catch {
            // The server ended the request first: fetch closed the stream.
          }
        };
      },
    });
    const stalled = await patch(server.base, hash, grant.token, 0, stream).catch((error: Error) => error);
    (cancel as (() => void) | null)?.();
    if (stalled instanceof Response) expect(stalled.status).toBe(408);
    const offset = Number((await head(server.base, hash, grant.token)).headers.get("upload-offset"));
    expect(offset).toBe(20_000);
    expect((await patch(server.base, hash, grant.token, offset, bytes.subarray(offset))).status).toBe(204);
    const download = granted(await askDownload(bob, hash));
    expect(sha256(new Uint8Array(await (await get(server.base, hash, download.token)).arrayBuffer()))).toEqual(hash);
  });
});

describe("media: retention", () => {
  test("a blob every addressed device fetched is deleted after the grace; an unfetched one after retention", async () => {
    const server = await started({
      limits: {
        mediaTokenTtlMs: 200,
        mediaRetentionMs: 1500,
        mediaPartialRetentionMs: 200,
        mediaSweepIntervalMs: 60_000,
      },
    });
    const sweeper = server.server.mediaSweeper!;
    const alice = await mediaClient(server.port, "alice");
    const bob = await mediaClient(server.port, "bob");
    const fetchedBytes = randomBytes(1000);
    const keptBytes = randomBytes(1000);
    for (const bytes of [fetchedBytes, keptBytes]) {
      const grant = granted(await askUpload(alice, sha256(bytes), bytes.length, [bob.account]));
      expect((await patch(server.base, sha256(bytes), grant.token, 0, bytes)).status).toBe(204);
    }
    const abandoned = randomBytes(1000);
    const partial = granted(await askUpload(alice, sha256(abandoned), abandoned.length, [bob.account]));
    expect((await patch(server.base, sha256(abandoned), partial.token, 0, abandoned.subarray(0, 10))).status).toBe(204);
    const download = granted(await askDownload(bob, sha256(fetchedBytes)));
    // A range short of the end is not a fetch; the rest is.
    await (await get(server.base, sha256(fetchedBytes), download.token, "bytes=0-9")).arrayBuffer();
    expect(await sweeper.sweep()).toEqual({ blobs: 0, partials: 0 });
    await (await get(server.base, sha256(fetchedBytes), download.token, "bytes=10-")).arrayBuffer();
    await Bun.sleep(300);
    expect(await sweeper.sweep()).toEqual({ blobs: 1, partials: 1 });
    expect(mediaFiles(server.dataDir)).toEqual([
      `media/blobs/${hex(sha256(keptBytes)).slice(0, 2)}/${hex(sha256(keptBytes))}`,
    ]);
    await Bun.sleep(1300);
    expect(await sweeper.sweep()).toEqual({ blobs: 1, partials: 0 });
    expect(mediaFiles(server.dataDir)).toEqual([]);
    expect(server.server.media!.index.counts()).toEqual({ blobs: 0, uploads: 0, audience: 0 });
  });
});

describe("media: older clients", () => {
  test("clients announcing dictionary 1 or 2 still log in and chat beside media users, and get no version-3 kind", async () => {
    const server = await started();
    const modern = await mediaClient(server.port, "modern");
    for (const dictionaryVersion of [1, 2]) {
      const old = await RawClient.connect(server.port, { preamble: false });
      old.write(encodePreamble({ protocolVersion: 1, dictionaryVersion }));
      const challenge = await old.next("challenge");
      old.nonce = challenge.nonce;
      await old.register(`old${dictionaryVersion}`);
      await old.next("queueEmpty");
      old.send(modern.account, bytesOf("hello from an old client"));
      await old.next("serverAck");
      const bytes = randomBytes(500);
      const grant = granted(await askUpload(modern, sha256(bytes), bytes.length, [old.account]));
      expect((await patch(server.base, sha256(bytes), grant.token, 0, bytes)).status).toBe(204);
      modern.send(old.account, bytesOf("a file for you (an old client cannot fetch it)"));
      await old.next("deliver");
      const newest = dictionaryVersion === 1 ? StanzaKind.deviceRemove : StanzaKind.reverseLookupResult;
      expect(old.received.every((stanza) => StanzaKind[stanza.kind] <= newest)).toBe(true);
      old.close();
    }
  });
});

describe("media: config", () => {
  test("mediaUrl is an http(s) URL without a trailing slash, or empty; mediaPort is a port", () => {
    const base = { dataDir: "/tmp/unused", adminPort: 0 };
    expect(loadConfig({ base: { ...base, mediaUrl: "https://media.example.com" } }).mediaUrl).toBe(
      "https://media.example.com",
    );
    expect(loadConfig({ base: { ...base, mediaUrl: "http://10.0.0.1:8080/media" } }).mediaUrl).toBe(
      "http://10.0.0.1:8080/media",
    );
    for (const mediaUrl of ["https://media.example.com/", "ftp://media.example.com", "media.example.com"]) {
      expect(() => loadConfig({ base: { ...base, mediaUrl } })).toThrow(ConfigError);
    }
    expect(() => loadConfig({ base: { ...base, mediaPort: 70_000 } })).toThrow(ConfigError);
    expect(loadConfig({ base }).mediaPort).toBe(0);
  });
});

describe("media: off", () => {
  test("without a media port the server answers the requests with mediaOff and keeps the session", async () => {
    const server = await startTestServer();
    try {
      const alice = await mediaClient(server.port, "alice");
      expect(await errorOf(await askUpload(alice, sha256(randomBytes(8)), 8, [alice.account]))).toBe(
        ErrorCode.mediaOff,
      );
      expect(await errorOf(await askDownload(alice, sha256(randomBytes(8))))).toBe(ErrorCode.mediaOff);
      expect(alice.closed).toBe(false);
    } finally {
      await server.stop();
    }
  });
});
