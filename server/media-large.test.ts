// A large file through a real server process (the figure: 200 MB), in chunks, with the upload connection cut
// twice and the download cut once; each resumes from the server's offset, the downloaded bytes hash the same, and
// the server's resident memory grows by no more than a bounded buffer while the bytes pass. MEDIA_LARGE_MB sets the
// size (default 200). The server runs in its own process so that its memory is its own (STYLE.md: memory tests in a
// subprocess).

import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { type ServerProcess, startServerProcess } from "./fixtures/server-process.ts";
import { askDownload, askUpload, bearer, granted, head, hex, mediaFiles, patch } from "./media-test-kit.ts";
import { freePort, registeredClient, temporaryDirectory } from "./test-kit.ts";

const mebibyte = 1024 * 1024;
const sizeBytes = Number(process.env.MEDIA_LARGE_MB ?? 200) * mebibyte;
/**
 * The bound on the server's RSS growth (above its level after start and login) while the file passes. Streaming
 * holds a few body chunks (Bun hands them over at up to 1 MiB) and, on a resume, one 1 MiB hashing buffer; what
 * grows is chunks already written and waiting for the collector. Measured peak growth (2 shared cores): 48 MiB for a
 * 50 MiB file, 47-78 MiB for 200 MiB, 73 MiB for 400 MiB: bounded by the collector's pace, not by the file's size.
 * A full collection every 16 MiB kept it near 30 MiB but paused the event loop 20-35 ms each time and halved upload
 * throughput (BENCHMARKS.md "Media"), so the server does not force one.
 */
const rssGrowthBytesMax = 96 * mebibyte;
/** Bytes per PATCH after the cuts. */
const patchBytes = Number(process.env.MEDIA_PATCH_MB ?? 32) * mebibyte;

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match === null ? 0 : Number(match[1]) * 1024;
}

function patternBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  // Random 64 KiB blocks: no run of identical chunks that a layer could compress or dedupe.
  for (let offset = 0; offset < length; offset += 65_536) {
    crypto.getRandomValues(bytes.subarray(offset, Math.min(length, offset + 65_536)));
  }
  return bytes;
}

/** A body of `bytes` in 1 MiB pieces that, after `cutAfter` bytes, aborts its request (the connection is cut). */
function cutBody(bytes: Uint8Array, cutAfter: number, abort: AbortController): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent >= cutAfter) {
        // Let the server take what was sent so far, then cut.
        await Bun.sleep(100);
        abort.abort();
        controller.error(new Error("cut"));
        return;
      }
      const end = Math.min(bytes.length, sent + mebibyte);
      controller.enqueue(bytes.slice(sent, end));
      sent = end;
      if (sent >= bytes.length) controller.close();
    },
  });
}

describe("media: a large file", () => {
  test(`${sizeBytes / mebibyte} MiB in chunks, connection cut twice on upload and once on download: resumed, hashes equal, server RSS bounded`, async () => {
    const dataDir = temporaryDirectory("switchboard-media-large-");
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    let server: ServerProcess | null = null;
    const mediaPort = freePort();
    server = await startServerProcess({
      registration: "open",
      "admin-port": 0,
      "data-dir": dataDir,
      "media-port": mediaPort,
      "media-file-bytes-max": 512 * mebibyte,
      "media-account-bytes-max": 1024 * mebibyte,
      "log-level": "warn",
    });
    const child = server;
    cleanups.push(() => void child.process.kill("SIGKILL"));
    const base = `http://127.0.0.1:${mediaPort}`;
    const alice = (await registeredClient(server.port, "alice")).client;
    const bob = (await registeredClient(server.port, "bob")).client;
    cleanups.push(() => {
      alice.close();
      bob.close();
    });

    const bytes = patternBytes(sizeBytes);
    const hash = new Uint8Array(new Bun.CryptoHasher("sha256").update(bytes).digest());
    const pid = server.process.pid;
    const rssBefore = rssBytes(pid);
    let rssMax = rssBefore;
    const phases: Record<string, number> = {};
    const phase = (name: string) => {
      phases[name] = Math.round((rssBytes(pid) - rssBefore) / mebibyte);
    };
    const sampler = setInterval(() => {
      rssMax = Math.max(rssMax, rssBytes(pid));
    }, 20);
    cleanups.push(() => clearInterval(sampler));

    const grant = granted(await askUpload(alice, hash, bytes.length, [bob.account]));
    const offsets: number[] = [];
    // Two cuts: at about 30 % and 65 % of the file, each inside a PATCH that meant to send the rest.
    for (const cutAt of [0.3, 0.65]) {
      const offset = Number((await head(base, hash, grant.token)).headers.get("upload-offset"));
      const abort = new AbortController();
      const cutAfter = Math.floor(bytes.length * cutAt) - offset;
      const cut = await patch(
        base,
        hash,
        grant.token,
        offset,
        cutBody(bytes.subarray(offset), cutAfter, abort),
        abort.signal,
      )
        .then((response) => response.status)
        .catch(() => "cut");
      expect(cut).toBe("cut");
      // The server ends the request when it sees the cut; its offset is what it wrote (bounded wait).
      const deadline = Date.now() + 5000;
      let after = offset;
      while (Date.now() < deadline) {
        const response = await head(base, hash, grant.token);
        after = Number(response.headers.get("upload-offset"));
        // A cut request still holding its lease answers 423 on PATCH; HEAD is free. Wait until writes stop.
        await Bun.sleep(50);
        const again = Number((await head(base, hash, grant.token)).headers.get("upload-offset"));
        if (again === after) break;
      }
      expect(after).toBeGreaterThan(offset);
      // At most what the body sent before the cut (whole 1 MiB pieces, so up to one piece past the mark).
      expect(after).toBeLessThanOrEqual(Math.floor(bytes.length * cutAt) + mebibyte);
      offsets.push(after);
      phase(`cut${offsets.length}`);
    }
    // The rest in PATCHes of patchBytes, each retried while the cut request's lease is still held (423).
    let offset = offsets.at(-1)!;
    while (offset < bytes.length) {
      const end = Math.min(bytes.length, offset + patchBytes);
      const response = await patch(base, hash, grant.token, offset, bytes.subarray(offset, end));
      if (response.status === 423) {
        await Bun.sleep(100);
        continue;
      }
      expect(response.status).toBe(204);
      offset = Number(response.headers.get("upload-offset"));
    }
    expect(offset).toBe(bytes.length);
    phase("uploaded");
    const uploadPeak = rssMax - rssBefore;
    expect(mediaFiles(dataDir)).toEqual([`media/blobs/${hex(hash).slice(0, 2)}/${hex(hash)}`]);
    expect(statSync(join(dataDir, "media", "blobs", hex(hash).slice(0, 2), hex(hash))).size).toBe(bytes.length);

    // Download: cut once after ~40 %, resumed with Range; the hash is computed as the bytes stream in.
    const download = granted(await askDownload(bob, hash));
    const hasher = new Bun.CryptoHasher("sha256");
    let received = 0;
    const first = await fetch(`${base}/media/v1/blobs/${hex(hash)}`, { headers: bearer(download.token) });
    expect(first.status).toBe(200);
    const reader = first.body!.getReader();
    while (received < bytes.length * 0.4) {
      const { done, value } = await reader.read();
      if (done) break;
      hasher.update(value);
      received += value.length;
    }
    await reader.cancel();
    const rest = await fetch(`${base}/media/v1/blobs/${hex(hash)}`, {
      headers: { ...bearer(download.token), Range: `bytes=${received}-` },
    });
    expect(rest.status).toBe(206);
    for await (const chunk of rest.body!) {
      hasher.update(chunk);
      received += chunk.length;
    }
    clearInterval(sampler);
    phase("downloaded");
    expect(received).toBe(bytes.length);
    expect(new Uint8Array(hasher.digest())).toEqual(hash);
    const growth = rssMax - rssBefore;
    console.log(
      JSON.stringify({
        sizeMiB: sizeBytes / mebibyte,
        cutOffsets: offsets,
        rssBeforeMiB: rssBefore / mebibyte,
        rssGrowthMiB: growth / mebibyte,
        phasesMiB: phases,
        uploadPeakMiB: uploadPeak / mebibyte,
      }),
    );
    expect(growth).toBeLessThan(rssGrowthBytesMax);
  }, 120_000);
});
