// Media for the SDK (PROTOCOL.md "Media"): a file is encrypted on the device with a fresh AES-256-GCM key, uploaded
// over HTTP to the media listener by the SHA-256 of its ciphertext, and only its reference (hash, size, key) travels
// inside an end-to-end-encrypted chat message. The server sees ciphertext and its hash, never the key.
//
// The key is used for this one file only, so the GCM nonce is fixed (12 zero bytes): a (key, nonce) pair is never
// reused, which is what GCM needs (WhatsApp likewise derives its media IV from the per-file key). Encryption is
// one-shot WebCrypto over the whole file in the client's memory (a streamed, segmented format is left to a later
// version); the transfer itself goes in chunks and resumes after a cut.
//
// Web platform APIs only (fetch, WebCrypto), so it runs in a browser as in Bun.

import type { MediaDownloadGrantStanza, MediaUploadGrantStanza } from "../protocol/index.ts";

export const mediaKeyBytes = 32;
const gcmTagBytes = 16;
const fixedNonce = new Uint8Array(12);

/** What a recipient needs to fetch and open a file: send it inside an end-to-end-encrypted message. */
export interface MediaRef {
  /** SHA-256 of the ciphertext, lowercase hex: the blob's address on the server. */
  readonly hash: string;
  /** Bytes of the ciphertext (plaintext + 16). */
  readonly size: number;
  /** The AES-256-GCM key, 32 bytes, base64url. */
  readonly key: string;
}

/** How the SDK reaches the session side (the client implements it; tests may stub it). */
export interface MediaSession {
  uploadGrant(hash: Uint8Array, size: number, recipients: readonly number[]): Promise<MediaUploadGrantStanza>;
  downloadGrant(hash: Uint8Array): Promise<MediaDownloadGrantStanza>;
  /** `http://host:port` for a grant that names only a port (the host dialed for chat). */
  mediaBase(port: number): string;
}

export interface MediaTransferOptions {
  /** Bytes per PATCH (a cut costs at most one chunk's resend). */
  readonly chunkBytes?: number;
  /** Attempts after a failed request (network error, 408, 423, 5xx) before giving up. */
  readonly retriesMax?: number;
  /** Wait before a retry. */
  readonly retryDelayMs?: number;
  /** Called after each chunk the server took, with the offset it confirmed. */
  readonly onProgress?: (offset: number, size: number) => void;
  /** The fetch to use (tests cut connections through it). */
  readonly fetch?: typeof fetch;
}

export const mediaChunkBytesDefault = 8 * 1024 * 1024;
const retriesMaxDefault = 5;
/** Waits for an upload another (cut) request of ours still holds (423), and the longest one. */
const lockedWaitsMax = 30;
const lockedWaitMsMax = 5000;
const retryDelayMsDefault = 200;

/** A transfer failed for a reason a retry cannot fix (refused token, hash mismatch, ...). */
export class MediaError extends Error {
  override readonly name = "MediaError";
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export async function encryptMedia(plaintext: Uint8Array): Promise<{ ciphertext: Uint8Array; key: Uint8Array }> {
  const key = crypto.getRandomValues(new Uint8Array(mediaKeyBytes));
  const cryptoKey = await crypto.subtle.importKey("raw", key as BufferSource, "AES-GCM", false, ["encrypt"]);
  const ciphertext = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv: fixedNonce }, cryptoKey, plaintext as BufferSource),
  );
  return { ciphertext, key };
}

export async function decryptMedia(ciphertext: Uint8Array, key: Uint8Array): Promise<Uint8Array> {
  const cryptoKey = await crypto.subtle.importKey("raw", key as BufferSource, "AES-GCM", false, ["decrypt"]);
  return new Uint8Array(
    await crypto.subtle.decrypt({ name: "AES-GCM", iv: fixedNonce }, cryptoKey, ciphertext as BufferSource),
  );
}

export async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
}

/** Encrypts `data` with a fresh key, uploads the ciphertext (resuming after cuts) and returns its reference. */
export async function uploadMedia(
  session: MediaSession,
  data: Uint8Array | ReadableStream<Uint8Array>,
  recipients: readonly number[],
  options: MediaTransferOptions = {},
): Promise<MediaRef> {
  const plaintext = data instanceof Uint8Array ? data : await readAll(data);
  const { ciphertext, key } = await encryptMedia(plaintext);
  const hash = await sha256(ciphertext);
  const ref: MediaRef = { hash: toHex(hash), size: ciphertext.length, key: toBase64Url(key) };
  await uploadBlob(session, hash, ciphertext, recipients, options);
  return ref;
}

/** Uploads bytes already encrypted (tus-style: HEAD for the offset, PATCH from it, a new grant when one expires). */
export async function uploadBlob(
  session: MediaSession,
  hash: Uint8Array,
  bytes: Uint8Array,
  recipients: readonly number[],
  options: MediaTransferOptions = {},
): Promise<void> {
  const doFetch = options.fetch ?? fetch;
  const chunkBytes = options.chunkBytes ?? mediaChunkBytesDefault;
  const retriesMax = options.retriesMax ?? retriesMaxDefault;
  let grant = await session.uploadGrant(hash, bytes.length, recipients);
  if (grant.stored) return;
  const url = () => `${grant.url ?? session.mediaBase(grant.port)}/media/v1/uploads/${toHex(hash)}`;
  const headers = () => ({ Authorization: `Bearer ${toBase64Url(grant.token)}`, "Tus-Resumable": "1.0.0" });
  let failures = 0;
  let lockedWaits = 0;
  let offset: number | null = 0;
  while (true) {
    try {
      if (offset === null) {
        const head = await doFetch(url(), { method: "HEAD", headers: headers() });
        if (head.status === 401) {
          grant = await session.uploadGrant(hash, bytes.length, recipients);
          if (grant.stored) return;
          continue;
        }
        if (head.status !== 200) throw new MediaError(`HEAD answered ${head.status}`, head.status);
        offset = Number(head.headers.get("upload-offset"));
      }
      if (offset >= bytes.length) return;
      const end = Math.min(bytes.length, offset + chunkBytes);
      const response: Response = await doFetch(url(), {
        method: "PATCH",
        headers: { ...headers(), "Content-Type": "application/offset+octet-stream", "Upload-Offset": String(offset) },
        body: bytes.subarray(offset, end) as Uint8Array<ArrayBuffer>,
      });
      await response.body?.cancel();
      if (response.status === 204) {
        offset = Number(response.headers.get("upload-offset"));
        options.onProgress?.(offset, bytes.length);
        failures = 0;
        continue;
      }
      if (response.status === 401) {
        grant = await session.uploadGrant(hash, bytes.length, recipients);
        if (grant.stored) return;
        offset = null;
        continue;
      }
      if (response.status === 423 && ++lockedWaits <= lockedWaitsMax) {
        // A cut PATCH of ours still holds the upload on the server until it notices the cut (at most 2 stall
        // timeouts): wait as told, without spending a retry.
        const seconds = Number(response.headers.get("retry-after") ?? "1");
        await new Promise((resolve) => setTimeout(resolve, Math.min(lockedWaitMsMax, Math.max(1, seconds) * 1000)));
        offset = null;
        continue;
      }
      if (response.status === 409 || response.status === 408 || response.status === 423 || response.status >= 500) {
        throw new RetryableError(response.status);
      }
      throw new MediaError(`upload refused: HTTP ${response.status}`, response.status);
    } catch (error) {
      if (error instanceof MediaError) throw error;
      if (++failures > retriesMax) throw new MediaError(`upload failed after ${retriesMax} retries: ${error}`, 0);
      offset = null;
      await new Promise((resolve) => setTimeout(resolve, options.retryDelayMs ?? retryDelayMsDefault));
    }
  }
}

class RetryableError extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

/** Downloads the blob of `ref` (resuming with Range after a cut), checks its hash, and decrypts it. */
export async function downloadMedia(
  session: MediaSession,
  ref: MediaRef,
  options: MediaTransferOptions = {},
): Promise<Uint8Array> {
  const ciphertext = await downloadBlob(session, fromHex(ref.hash), options);
  if (ciphertext.length !== ref.size) throw new MediaError("the blob's size is not the reference's", 0);
  return decryptMedia(ciphertext, fromBase64Url(ref.key));
}

/** The bytes of the blob `hash`, verified against it. */
export async function downloadBlob(
  session: MediaSession,
  hash: Uint8Array,
  options: MediaTransferOptions = {},
): Promise<Uint8Array> {
  const doFetch = options.fetch ?? fetch;
  const retriesMax = options.retriesMax ?? retriesMaxDefault;
  let grant = await session.downloadGrant(hash);
  const bytes = new Uint8Array(grant.size);
  let offset = 0;
  let failures = 0;
  while (offset < grant.size) {
    try {
      const response = await doFetch(`${grant.url ?? session.mediaBase(grant.port)}/media/v1/blobs/${toHex(hash)}`, {
        headers: { Authorization: `Bearer ${toBase64Url(grant.token)}`, Range: `bytes=${offset}-` },
      });
      if (response.status === 401) {
        grant = await session.downloadGrant(hash);
        continue;
      }
      if (response.status !== 206 && response.status !== 200) {
        await response.body?.cancel();
        if (response.status >= 500) throw new RetryableError(response.status);
        throw new MediaError(`download refused: HTTP ${response.status}`, response.status);
      }
      if (response.status === 200) offset = 0;
      const reader = response.body!.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (offset + value.length > bytes.length) throw new MediaError("more bytes than the grant's size", 0);
        bytes.set(value, offset);
        offset += value.length;
        options.onProgress?.(offset, bytes.length);
      }
      failures = 0;
    } catch (error) {
      if (error instanceof MediaError) throw error;
      if (++failures > retriesMax) throw new MediaError(`download failed after ${retriesMax} retries: ${error}`, 0);
      await new Promise((resolve) => setTimeout(resolve, options.retryDelayMs ?? retryDelayMsDefault));
    }
  }
  const digest = await sha256(bytes);
  if (toHex(digest) !== toHex(hash)) throw new MediaError("the downloaded bytes do not hash to the reference", 0);
  return bytes;
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

export function toHex(bytes: Uint8Array): string {
  let hex = "";
  for (const byte of bytes) hex += byte.toString(16).padStart(2, "0");
  return hex;
}

export function fromHex(hex: string): Uint8Array {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new MediaError("a media hash is 64 lowercase hex digits", 0);
  const bytes = new Uint8Array(32);
  for (let index = 0; index < 32; index++) bytes[index] = Number.parseInt(hex.slice(index * 2, index * 2 + 2), 16);
  return bytes;
}

export function toBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

export function fromBase64Url(text: string): Uint8Array {
  const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}

/** Plaintext bytes of a reference's file. */
export function plaintextSize(ref: MediaRef): number {
  return ref.size - gcmTagBytes;
}
