// X25519 for the Noise handshake. The default is @noble/curves (audited, pure JS, runs in the browser); the server
// and the TCP client pass node:crypto's (noise-dh-node.ts), about 10 times faster per DH and 19 times per key pair
// (60 us against 645 us; 16 us against 301 us: `npm run bench -- micro`), which is what a login storm pays.

import { x25519 } from "@noble/curves/ed25519.js";

export interface NoiseKeyPair {
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

export interface NoiseDh {
  /** A fresh key pair (an ephemeral key). */
  generateKeyPair(): NoiseKeyPair;
  /** The shared secret, or null when `publicKey` is of low order (the all-zero result) or malformed. */
  sharedSecret(keyPair: NoiseKeyPair, publicKey: Uint8Array): Uint8Array | null;
}

export const nobleDh: NoiseDh = Object.freeze({
  generateKeyPair(): NoiseKeyPair {
    const privateKey = x25519.utils.randomSecretKey();
    return Object.freeze({ privateKey, publicKey: x25519.getPublicKey(privateKey) });
  },
  sharedSecret(keyPair: NoiseKeyPair, publicKey: Uint8Array): Uint8Array | null {
    try {
      return x25519.getSharedSecret(keyPair.privateKey, publicKey);
    } catch {
      // @noble/curves refuses low-order points.
      return null;
    }
  },
});
