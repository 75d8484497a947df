import { describe, expect, test } from "bun:test";
import {
  hashFromHex,
  MediaPurpose,
  MediaTokenSigner,
  mediaTokenBytes,
  tokenFromText,
  tokenToText,
} from "./media-token.ts";

const key = new Uint8Array(32).fill(7);
const claims = {
  purpose: MediaPurpose.upload,
  account: 0xffff_fffe,
  device: 3,
  hash: new Uint8Array(32).fill(0xab),
  size: 0xffff_ffff,
  expiresAtMs: 1_800_000_000_123,
} as const;

describe("media tokens", () => {
  test("a signed token verifies to its claims until it expires, and travels as base64url", () => {
    const signer = new MediaTokenSigner(key);
    const token = signer.sign(claims);
    expect(token.length).toBe(mediaTokenBytes);
    expect(signer.verify(token, claims.expiresAtMs - 1)).toEqual({ ...claims, hash: claims.hash });
    expect(signer.verify(token, claims.expiresAtMs)).toBe("expired");
    const text = tokenToText(token);
    expect(text).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(tokenFromText(text)).toEqual(token);
  });

  test("any changed byte, another key, another length or version: refused", () => {
    const signer = new MediaTokenSigner(key);
    const token = signer.sign(claims);
    for (let index = 0; index < token.length; index++) {
      const changed = token.slice();
      changed[index] = changed[index]! ^ 0x01;
      expect(typeof signer.verify(changed, 0)).toBe("string");
    }
    expect(new MediaTokenSigner(new Uint8Array(32).fill(8)).verify(token, 0)).toBe("forged");
    expect(signer.verify(token.subarray(1), 0)).toBe("malformed");
    expect(tokenFromText("not base64url!")).toBeNull();
    expect(() => new MediaTokenSigner(new Uint8Array(16))).toThrow();
  });

  test("hashes in paths are 64 lowercase hex digits", () => {
    expect(hashFromHex("ab".repeat(32))).toEqual(new Uint8Array(32).fill(0xab));
    for (const bad of ["AB".repeat(32), "ab".repeat(31), `${"ab".repeat(32)}0`, "../etc/passwd"]) {
      expect(hashFromHex(bad)).toBeNull();
    }
  });
});
