// Media tokens: stateless, HMAC-signed capabilities for the media listener (PROTOCOL.md "Media"). A worker that
// grants one over a session and the worker that serves the HTTP request (any of them, with SO_REUSEPORT) share only
// the key file in the data directory, so a token needs no lookup and no state across workers.
//
// Layout (86 bytes, big-endian): version (1), purpose (1: upload, 2: download), account (4), device (4), hash (32),
// size (4), expiresAtMs (8), then HMAC-SHA-256 of the 54 bytes before it under the key. Sent in HTTP as
// `Authorization: Bearer <base64url without padding>`.

import { createHmac, timingSafeEqual } from "node:crypto";

export const mediaTokenVersion = 1;
export const MediaPurpose = Object.freeze({ upload: 1, download: 2 } as const);
export type MediaPurposeValue = (typeof MediaPurpose)[keyof typeof MediaPurpose];

const signedBytes = 54;
const macBytes = 32;
export const mediaTokenBytes = signedBytes + macBytes;

export interface MediaTokenClaims {
  readonly purpose: MediaPurposeValue;
  readonly account: number;
  readonly device: number;
  /** SHA-256 of the blob: 32 bytes. */
  readonly hash: Uint8Array;
  readonly size: number;
  readonly expiresAtMs: number;
}

/** Why a token was refused: `malformed` and `forged` read as 401, `expired` too (ask for a new one). */
export type MediaTokenProblem = "malformed" | "forged" | "expired";

export class MediaTokenSigner {
  constructor(private readonly key: Uint8Array) {
    if (key.length < 32) throw new Error("media token key: at least 32 bytes");
  }

  sign(claims: MediaTokenClaims): Uint8Array {
    if (claims.hash.length !== 32) throw new Error("media token: hash must be 32 bytes");
    const token = new Uint8Array(mediaTokenBytes);
    const view = new DataView(token.buffer);
    token[0] = mediaTokenVersion;
    token[1] = claims.purpose;
    view.setUint32(2, claims.account);
    view.setUint32(6, claims.device);
    token.set(claims.hash, 10);
    view.setUint32(42, claims.size);
    view.setBigUint64(46, BigInt(Math.floor(claims.expiresAtMs)));
    token.set(this.mac(token.subarray(0, signedBytes)), signedBytes);
    return token;
  }

  /** The claims of a token this key signed that has not expired at `nowMs`, or why not. */
  verify(token: Uint8Array, nowMs: number): MediaTokenClaims | MediaTokenProblem {
    if (token.length !== mediaTokenBytes || token[0] !== mediaTokenVersion) return "malformed";
    const purpose = token[1];
    if (purpose !== MediaPurpose.upload && purpose !== MediaPurpose.download) return "malformed";
    const expected = this.mac(token.subarray(0, signedBytes));
    if (!timingSafeEqual(expected, token.subarray(signedBytes))) return "forged";
    const view = new DataView(token.buffer, token.byteOffset, token.byteLength);
    const expiresAtMs = Number(view.getBigUint64(46));
    if (expiresAtMs <= nowMs) return "expired";
    return {
      purpose,
      account: view.getUint32(2),
      device: view.getUint32(6),
      hash: token.slice(10, 42),
      size: view.getUint32(42),
      expiresAtMs,
    };
  }

  private mac(bytes: Uint8Array): Uint8Array {
    return new Uint8Array(createHmac("sha256", this.key).update(bytes).digest());
  }
}

/** base64url without padding (RFC 4648 section 5), as tokens travel in HTTP headers. */
export function tokenToText(token: Uint8Array): string {
  return Buffer.from(token).toString("base64url");
}

/** The bytes of a token from its header text, or null when it is not base64url. */
export function tokenFromText(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]{1,256}$/.test(text)) return null;
  return new Uint8Array(Buffer.from(text, "base64url"));
}

export function hashToHex(hash: Uint8Array): string {
  return Buffer.from(hash).toString("hex");
}

/** A 64-character lowercase hex SHA-256, or null. */
export function hashFromHex(hex: string): Uint8Array | null {
  if (!/^[0-9a-f]{64}$/.test(hex)) return null;
  return new Uint8Array(Buffer.from(hex, "hex"));
}
