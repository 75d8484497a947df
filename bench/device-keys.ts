// Ed25519 device keys derived from (run seed, index), so that the seeding step and every load worker agree on the
// keys of thousands of devices without passing secrets between processes: the seeder stores public keys, a worker
// derives the private keys of the devices it logs in. Bench keys only: anyone who knows the seed has them.

import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign } from "node:crypto";

/** DER prefix of a PKCS#8 Ed25519 private key; the 32-byte seed follows it (RFC 8410). */
const pkcs8Ed25519Prefix = Buffer.from("302e020100300506032b657004220420", "hex");
const publicKeyBytes = 32;

export function deviceKeySeed(runSeed: string, index: number): Buffer {
  return createHash("sha256").update(`switchboard-bench-device:${runSeed}:${index}`).digest();
}

export function devicePrivateKey(runSeed: string, index: number): KeyObject {
  return createPrivateKey({
    key: Buffer.concat([pkcs8Ed25519Prefix, deviceKeySeed(runSeed, index)]),
    format: "der",
    type: "pkcs8",
  });
}

/** The raw 32-byte public key, as the protocol carries it. */
export function rawPublicKey(privateKey: KeyObject): Uint8Array {
  const der = createPublicKey(privateKey).export({ format: "der", type: "spki" });
  return new Uint8Array(der.subarray(der.length - publicKeyBytes));
}

export function signWith(privateKey: KeyObject, message: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, message, privateKey));
}
