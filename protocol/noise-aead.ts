// The AEAD of Noise_*_AESGCM_*: AES-256-GCM with a 96-bit nonce of 32 zero bits followed by the 64-bit big-endian
// message counter (Noise specification, section 12.3). The cipher itself is a library's, never ours: the browser-safe
// default here is @noble/ciphers (audited, pure JS); the server and the TCP client pass node:crypto's
// (noise-aead-node.ts), which runs BoringSSL's AES-NI code, about 80 times faster here (BENCHMARKS.md "transport
// encryption").

import { gcm } from "@noble/ciphers/aes.js";

/** Bytes of the GCM authentication tag every Noise ciphertext carries. */
export const noiseTagBytes = 16;
/** Bytes of a Noise cipher key. */
export const noiseKeyBytes = 32;

export interface NoiseAead {
  /**
   * ciphertext || tag of `plaintext` under `key` (32 bytes) and nonce `counter`, authenticating `ad`, after
   * `prefixBytes` zero bytes left for the caller (a record's length prefix, without a copy).
   */
  seal(key: Uint8Array, counter: number, ad: Uint8Array, plaintext: Uint8Array, prefixBytes?: number): Uint8Array;
  /** The plaintext, or null when the tag does not match (tampered, wrong key or wrong counter). */
  open(key: Uint8Array, counter: number, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | null;
}

/**
 * The 12-byte nonce for `counter`. Counters are JavaScript numbers, exact up to 2^53; a session is closed long
 * before (limits.ts noiseMessagesMax), so the high 11 bits of the 64-bit counter are always zero.
 */
export function noiseNonce(counter: number, target = new Uint8Array(12)): Uint8Array {
  const view = new DataView(target.buffer, target.byteOffset, 12);
  view.setUint32(0, 0);
  view.setUint32(4, Math.floor(counter / 0x1_0000_0000));
  view.setUint32(8, counter >>> 0);
  return target;
}

export const nobleAead: NoiseAead = Object.freeze({
  seal(key: Uint8Array, counter: number, ad: Uint8Array, plaintext: Uint8Array, prefixBytes = 0): Uint8Array {
    const sealed = gcm(key, noiseNonce(counter), ad).encrypt(plaintext);
    if (prefixBytes === 0) return sealed;
    const prefixed = new Uint8Array(prefixBytes + sealed.length);
    prefixed.set(sealed, prefixBytes);
    return prefixed;
  },
  open(key: Uint8Array, counter: number, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | null {
    if (ciphertext.length < noiseTagBytes) return null;
    try {
      return gcm(key, noiseNonce(counter), ad).decrypt(ciphertext);
    } catch {
      // @noble/ciphers throws on a tag mismatch; to us that is the peer's bad input, a null.
      return null;
    }
  },
});
