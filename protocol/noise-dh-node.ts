// X25519 through node:crypto (BoringSSL in Bun) for the server and the TCP client; see noise-dh.ts for the figures.
// Not exported from protocol/index.ts, so a browser bundle never pulls node:crypto in. Keys stay raw bytes (what the
// handshake hashes); they become KeyObjects only for the call.

import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync } from "node:crypto";
import type { NoiseDh, NoiseKeyPair } from "./noise-dh.ts";

const base64url = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64url");
const fromBase64url = (text: string) => new Uint8Array(Buffer.from(text, "base64url"));

export const nodeDh: NoiseDh = Object.freeze({
  generateKeyPair(): NoiseKeyPair {
    const jwk = generateKeyPairSync("x25519").privateKey.export({ format: "jwk" });
    return Object.freeze({ privateKey: fromBase64url(jwk.d!), publicKey: fromBase64url(jwk.x!) });
  },
  sharedSecret(keyPair: NoiseKeyPair, publicKey: Uint8Array): Uint8Array | null {
    if (publicKey.length !== 32) return null;
    try {
      const privateKey = createPrivateKey({
        key: { kty: "OKP", crv: "X25519", d: base64url(keyPair.privateKey), x: base64url(keyPair.publicKey) },
        format: "jwk",
      });
      const peer = createPublicKey({ key: { kty: "OKP", crv: "X25519", x: base64url(publicKey) }, format: "jwk" });
      const shared = new Uint8Array(diffieHellman({ privateKey, publicKey: peer }));
      // BoringSSL refuses the all-zero result itself; checked here too, so both backends agree on low-order keys.
      return shared.some((byte) => byte !== 0) ? shared : null;
    } catch {
      return null;
    }
  },
});
