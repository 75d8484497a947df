// Ed25519 verification with node:crypto (synchronous, BoringSSL in Bun). The server stores public keys only, so a
// stolen database lets nobody log in: a login needs a signature of a fresh per-connection nonce.

import { createPublicKey, type KeyObject, verify } from "node:crypto";

/** DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32 raw key bytes follow it. */
const ed25519SpkiPrefix = Buffer.from("302a300506032b6570032100", "hex");
const publicKeyBytes = 32;
const signatureBytes = 64;

export function ed25519PublicKey(raw: Uint8Array): KeyObject | undefined {
  if (raw.length !== publicKeyBytes) return undefined;
  try {
    return createPublicKey({ key: Buffer.concat([ed25519SpkiPrefix, raw]), format: "der", type: "spki" });
  } catch {
    return undefined;
  }
}

/** True when `signature` is a valid Ed25519 signature of `message` by `publicKey` (raw 32 bytes). */
export function verifyEd25519(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== signatureBytes) return false;
  const key = ed25519PublicKey(publicKey);
  if (key === undefined) return false;
  try {
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
}
