// The media listener: blobs over HTTP beside the chat server, never through it (PROTOCOL.md "Media"). Uploads follow
// the tus 1.0 core protocol (HEAD for the offset, PATCH to append from it) at a URL the client knows from the hash,
// so no creation request is needed: the grant stanza did that. Each PATCH hashes what is already on disk, then the
// body as it streams to the partial file; the upload that reaches the declared size becomes the blob only if its
// SHA-256 is the one in the URL (else 460 and nothing is kept). Downloads answer Range requests from the file.
//
// Why not @tus/server: its file store writes the bytes and a JSON sidecar but leaves hashing to a hook that sees no
// bytes, so verifying an upload would need the file read back once more at its end (and a resumed one's state
// rebuilt anyway); this is that core protocol in a few hundred lines, with the hash computed as the bytes pass.
// Measured (bench/media.ts, BENCHMARKS.md "media"): @tus/server alone, hashing nothing, uploads with less CPU than
// this listener does with its hash; it is the baseline to beat, not a drop-in with the same guarantees.

import type { FileHandle } from "node:fs/promises";
import type { Server } from "bun";
import type { Logger } from "./log.ts";
import type { MediaService } from "./media-service.ts";
import { hashFromHex, MediaPurpose, type MediaTokenClaims, tokenFromText } from "./media-token.ts";

export interface MediaListener {
  readonly port: number;
  stop(): void;
}

/** Bun's idle timeout is in seconds, at most 255; the stall timer per read (mediaUploadStallMs) comes first. */
const bunIdleTimeoutSecondsMax = 255;
/** The largest request body Bun lets through: the largest size a grant can carry (sizes are uint32). */
const requestBodyBytesMax = 0xffff_ffff;
export const tusVersion = "1.0.0";
/** tus checksum extension's status for "the bytes do not match their checksum" (here: the hash in the URL). */
export const checksumMismatchStatus = 460;
const uploadPathPrefix = "/media/v1/uploads/";
/** The stall watchdog's shortest period. */
const stallCheckMsMin = 50;
/** Unfinished uploads whose hash state a process keeps between PATCHes (a few hundred bytes each). */
const hashStatesMax = 4096;
const blobPathPrefix = "/media/v1/blobs/";

// Bearer tokens, never cookies, authorise every request: any origin may call (a web page served elsewhere, a
// proxy), as the browser sends no ambient credential that another origin could ride on.
const corsHeaders = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Methods": "GET, HEAD, PATCH, OPTIONS",
  "Access-Control-Allow-Headers": "Authorization, Content-Type, Upload-Offset, Tus-Resumable, Range",
  "Access-Control-Expose-Headers": "Upload-Offset, Upload-Length, Tus-Resumable, Content-Range, Content-Length",
  "Access-Control-Max-Age": "86400",
};

function answer(status: number, message: string | null, headers: Record<string, string> = {}): Response {
  return new Response(message === null ? null : `${message}\n`, {
    status,
    headers: {
      ...corsHeaders,
      "Tus-Resumable": tusVersion,
      "Cache-Control": "no-store",
      ...(message === null ? {} : { "Content-Type": "text/plain; charset=utf-8" }),
      ...headers,
    },
  });
}

export function listenMedia(
  options: { host: string; port: number; reusePort: boolean },
  media: MediaService,
  log: () => Logger,
): MediaListener {
  const handler = new MediaHttp(media, log);
  const server: Server<undefined> = Bun.serve({
    hostname: options.host,
    port: options.port,
    reusePort: options.reusePort,
    idleTimeout: Math.min(bunIdleTimeoutSecondsMax, Math.ceil(media.limits().mediaUploadStallMs / 1000) + 5),
    maxRequestBodySize: requestBodyBytesMax,
    fetch: (request) => handler.handle(request),
    error: (error) => {
      log().error("media_handler_failed", { error: String(error) });
      return answer(500, "internal error");
    },
  });
  media.port = server.port ?? 0;
  return {
    port: server.port ?? 0,
    stop: () => void server.stop(true),
  };
}

interface HashState {
  readonly hasher: Bun.CryptoHasher;
  readonly offset: number;
  readonly inode: number;
}

export class MediaHttp {
  /** Hash states of unfinished uploads between their PATCHes, by `<hash>-<account>` (see hashState()). */
  private readonly hashStates = new Map<string, HashState>();

  constructor(
    private readonly media: MediaService,
    private readonly log: () => Logger,
  ) {}

  async handle(request: Request): Promise<Response> {
    const response = await this.route(request);
    if (response.status >= 400) this.media.stats.refusals++;
    return response;
  }

  private async route(request: Request): Promise<Response> {
    const path = new URL(request.url).pathname;
    if (request.method === "OPTIONS") {
      return answer(204, null, {
        "Tus-Version": tusVersion,
        "Tus-Max-Size": String(this.media.limits().mediaFileBytesMax),
        "Tus-Extension": "",
      });
    }
    if (path.startsWith(uploadPathPrefix)) {
      const hash = hashFromHex(path.slice(uploadPathPrefix.length));
      if (hash === null) return answer(404, "not a media path: expected 64 lowercase hex digits");
      if (request.method === "HEAD") return this.uploadOffset(request, hash);
      if (request.method === "PATCH") return this.append(request, hash);
      return answer(405, "use HEAD or PATCH", { Allow: "HEAD, PATCH, OPTIONS" });
    }
    if (path.startsWith(blobPathPrefix)) {
      const hash = hashFromHex(path.slice(blobPathPrefix.length));
      if (hash === null) return answer(404, "not a media path: expected 64 lowercase hex digits");
      if (request.method === "GET" || request.method === "HEAD") return this.download(request, hash);
      return answer(405, "use GET or HEAD", { Allow: "GET, HEAD, OPTIONS" });
    }
    return answer(404, "not found");
  }

  /** The token's claims, or the response refusing it: 401 for a token that is missing, forged or expired, 403 for
   * a good token of another purpose or another hash. */
  private authorize(request: Request, purpose: number, hash: Uint8Array): MediaTokenClaims | Response {
    const header = request.headers.get("authorization") ?? "";
    const match = /^Bearer ([A-Za-z0-9_-]+)$/.exec(header);
    const token = match === null ? null : tokenFromText(match[1]!);
    if (token === null) return unauthorized("missing or malformed bearer token");
    const claims = this.media.signer.verify(token, this.media.now());
    if (typeof claims === "string") return unauthorized(`token ${claims}`);
    if (claims.purpose !== purpose) return answer(403, "token of another purpose");
    if (!sameBytes(claims.hash, hash)) return answer(403, "token for another hash");
    return claims;
  }

  private uploadOffset(request: Request, hash: Uint8Array): Response {
    const claims = this.authorize(request, MediaPurpose.upload, hash);
    if (claims instanceof Response) return claims;
    const { index, files } = this.media;
    const lengths = { "Upload-Length": String(claims.size) };
    if (index.blob(hash) !== undefined) return answer(200, null, { ...lengths, "Upload-Offset": String(claims.size) });
    if (index.upload(hash, claims.account) === undefined) return answer(404, null);
    const offset = Math.max(0, files.size(files.partialPath(hexOf(hash), claims.account)));
    return answer(200, null, { ...lengths, "Upload-Offset": String(offset) });
  }

  private async append(request: Request, hash: Uint8Array): Promise<Response> {
    const claims = this.authorize(request, MediaPurpose.upload, hash);
    if (claims instanceof Response) return claims;
    if (request.headers.get("content-type") !== "application/offset+octet-stream") {
      return answer(415, "Content-Type must be application/offset+octet-stream");
    }
    const offsetHeader = request.headers.get("upload-offset") ?? "";
    if (!/^[0-9]{1,10}$/.test(offsetHeader)) return answer(400, "Upload-Offset must be a byte count");
    const offset = Number(offsetHeader);
    const { index, files } = this.media;
    const limits = this.media.limits();
    const sizeHeader = { "Upload-Length": String(claims.size) };
    // Already stored (this upload finished on another connection, or dedup): nothing more to take.
    if (index.blob(hash) !== undefined)
      return answer(204, null, { ...sizeHeader, "Upload-Offset": String(claims.size) });
    const upload = index.upload(hash, claims.account);
    if (upload === undefined) return answer(404, "no upload granted for this hash (or it was swept): ask again");
    if (upload.size !== claims.size) return answer(409, "the upload was granted again with another size");
    const nowMs = this.media.now();
    const leaseMs = limits.mediaUploadStallMs * 2;
    if (!index.lease(hash, claims.account, nowMs, nowMs + leaseMs)) {
      return answer(423, "another request is writing this upload", {
        "Retry-After": String(Math.ceil(leaseMs / 1000)),
      });
    }
    const hex = hexOf(hash);
    const partialPath = files.partialPath(hex, claims.account);
    let handle: FileHandle | null = null;
    let keep = true;
    try {
      const onDisk = Math.max(0, files.size(partialPath));
      if (offset !== onDisk)
        return answer(409, "Upload-Offset is not the offset on the server", { "Upload-Offset": String(onDisk) });
      const declared = Number(request.headers.get("content-length") ?? "0");
      if (offset + declared > claims.size) {
        keep = false;
        return answer(413, `more bytes than the ${claims.size} granted`);
      }
      handle = await files.openPartial(hex, claims.account);
      const inode = (await handle.stat()).ino;
      const hasher = await this.hashState(hex, claims.account, inode, offset, partialPath);
      let written = offset;
      let leaseRenewedAtMs = nowMs;
      const body = request.body;
      if (body !== null) {
        const reader = body.getReader();
        // One watchdog per request, not a timer per chunk (a timer and a race per read cost more than the hash):
        // a body silent for mediaUploadStallMs (checked every quarter of it) is cancelled, which ends the read.
        let lastByteAtMs = performance.now();
        let stalled = false;
        const watchdog = setInterval(
          () => {
            if (performance.now() - lastByteAtMs < limits.mediaUploadStallMs) return;
            stalled = true;
            void reader.cancel().catch(() => {});
          },
          Math.max(stallCheckMsMin, limits.mediaUploadStallMs / 4),
        );
        try {
          for (;;) {
            let next: Awaited<ReturnType<typeof reader.read>>;
            try {
              next = await reader.read();
            } catch {
              break; // the peer went away: keep what was written, for a resume
            }
            if (stalled) {
              this.log().peer("info", "media_upload_stalled", { account: claims.account, written });
              return answer(408, `no bytes for ${limits.mediaUploadStallMs} ms; resume from Upload-Offset`, {
                "Upload-Offset": String(written),
                Connection: "close",
              });
            }
            if (next.done) break;
            lastByteAtMs = performance.now();
            const chunk = next.value;
            if (written + chunk.length > claims.size) {
              void reader.cancel().catch(() => {});
              keep = false;
              return answer(413, `more bytes than the ${claims.size} granted`, { Connection: "close" });
            }
            hasher.update(chunk);
            await writeAll(handle, chunk);
            written += chunk.length;
            this.media.stats.uploadBytes += chunk.length;
            const nowLoopMs = this.media.now();
            if (nowLoopMs - leaseRenewedAtMs > leaseMs / 2) {
              index.lease(hash, claims.account, nowLoopMs, nowLoopMs + leaseMs, true);
              leaseRenewedAtMs = nowLoopMs;
            }
          }
        } finally {
          clearInterval(watchdog);
        }
      }
      if (written < claims.size) {
        this.keepHashState(hex, claims.account, { hasher, offset: written, inode });
        return answer(204, null, { ...sizeHeader, "Upload-Offset": String(written) });
      }
      const digest = new Uint8Array(hasher.digest());
      if (!sameBytes(digest, hash)) {
        keep = false;
        this.media.stats.hashMismatches++;
        this.log().peer("info", "media_hash_mismatch", { account: claims.account, size: claims.size });
        return answer(checksumMismatchStatus, "the bytes do not hash to the SHA-256 in the URL; nothing was kept");
      }
      await files.commit(hex, claims.account, handle);
      index.finishUpload(upload, this.media.now());
      this.media.stats.uploadsStored++;
      return answer(204, null, { ...sizeHeader, "Upload-Offset": String(written) });
    } finally {
      await handle?.close();
      if (!keep) {
        await files.removePartial(hex, claims.account);
        index.dropUpload(hash, claims.account);
      } else {
        index.release(hash, claims.account);
      }
    }
  }

  /**
   * The SHA-256 state of an upload's first `offset` bytes: the one this process kept after the upload's last PATCH
   * when it still matches the file (same inode, same length), else made by reading the bytes on disk. Without it
   * every PATCH of a file sent in chunks would hash everything before it again (quadratic: a 256 MiB file in 8 MiB
   * PATCHes hashed 4 GiB). A PATCH that lands on another worker reads the prefix once.
   */
  private async hashState(
    hex: string,
    account: number,
    inode: number,
    offset: number,
    partialPath: string,
  ): Promise<Bun.CryptoHasher> {
    const key = `${hex}-${account}`;
    const kept = this.hashStates.get(key);
    this.hashStates.delete(key);
    if (kept !== undefined && kept.inode === inode && kept.offset === offset) return kept.hasher;
    const hasher = new Bun.CryptoHasher("sha256");
    await this.media.files.hashPrefix(partialPath, offset, (chunk) => hasher.update(chunk));
    return hasher;
  }

  private keepHashState(hex: string, account: number, state: HashState): void {
    this.hashStates.set(`${hex}-${account}`, state);
    // Oldest first out: a state forgotten costs one read of that upload's bytes on its next PATCH.
    if (this.hashStates.size > hashStatesMax) this.hashStates.delete(this.hashStates.keys().next().value!);
  }

  private download(request: Request, hash: Uint8Array): Response {
    const claims = this.authorize(request, MediaPurpose.download, hash);
    if (claims instanceof Response) return claims;
    const { files, index } = this.media;
    const hex = hexOf(hash);
    const path = files.blobPath(hex);
    const size = files.size(path);
    if (size < 0) return answer(404, "no such blob (expired, or every addressed device fetched it)");
    const headers: Record<string, string> = {
      ...corsHeaders,
      "Accept-Ranges": "bytes",
      "Content-Type": "application/octet-stream",
      ETag: `"${hex}"`,
      // The bytes of a hash never change; a cache may keep them as long as the token's holder may read them.
      "Cache-Control": "private, max-age=86400, immutable",
    };
    const range = parseRange(request.headers.get("range"), size);
    if (range === "unsatisfiable") {
      return new Response(null, { status: 416, headers: { ...headers, "Content-Range": `bytes */${size}` } });
    }
    const [start, end] = range ?? [0, size - 1];
    // The response that reaches the last byte counts as this device's fetch (the sweeper deletes a blob only after
    // a grace of one token lifetime past the last fetch, so a download cut near its end can still be retried).
    if (end === size - 1 && request.method === "GET")
      index.fetched(hash, claims.account, claims.device, this.media.now());
    const status = range === null ? 200 : 206;
    if (range !== null) headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
    if (request.method === "HEAD") {
      return new Response(null, { status, headers: { ...headers, "Content-Length": String(end - start + 1) } });
    }
    this.media.stats.downloadBytes += end - start + 1;
    return new Response(Bun.file(path).slice(start, end + 1), { status, headers });
  }
}

function unauthorized(message: string): Response {
  return answer(401, message, { "WWW-Authenticate": 'Bearer error="invalid_token"' });
}

/** One range of `bytes=a-b`, `bytes=a-` or `bytes=-n`; null for no (or an ignored multi-) range. */
export function parseRange(header: string | null, size: number): [number, number] | null | "unsatisfiable" {
  if (header === null) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (match === null) return null;
  const [, first, last] = match as unknown as [string, string, string];
  if (first === "" && last === "") return null;
  if (first === "") {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return [Math.max(0, size - suffix), size - 1];
  }
  const start = Number(first);
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  if (start >= size || end < start) return "unsatisfiable";
  return [start, end];
}

async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let done = 0;
  while (done < chunk.length) {
    const { bytesWritten } = await handle.write(chunk, done, chunk.length - done);
    done += bytesWritten;
  }
}

function sameBytes(left: Uint8Array, right: Uint8Array): boolean {
  if (left.length !== right.length) return false;
  for (let index = 0; index < left.length; index++) if (left[index] !== right[index]) return false;
  return true;
}

function hexOf(hash: Uint8Array): string {
  return Buffer.from(hash).toString("hex");
}
