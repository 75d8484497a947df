// The one check of a signed prekey the server can make: Signal signs a prekey's 33-byte public key with XEdDSA by
// the device's Curve25519 identity key. The verification is the audited curve25519-donna build that the client's
// Signal library uses (@privacyresearch/curve25519-typescript); nothing here is home-made cryptography. It is loaded
// on the first upload (an asm.js module of about 860 KB of source: workers that never see an upload neither load nor
// parse it, so the import is dynamic too, not only the instance).

import type { Curve25519Wrapper } from "@privacyresearch/curve25519-typescript";

let curve: Promise<Curve25519Wrapper> | null = null;

/** Signal's type byte of a Curve25519 public key (the first of its 33 bytes). */
export const djbKeyType = 0x05;

/** True when `signature` is the identity key's XEdDSA signature of `signedPublicKey` (both 33-byte keys). */
export async function signedPreKeyValid(
  identityKey: Uint8Array,
  signedPublicKey: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  if (identityKey.length !== 33 || identityKey[0] !== djbKeyType) return false;
  curve ??= import("@privacyresearch/curve25519-typescript").then((module) => module.Curve25519Wrapper.create());
  const wrapper = await curve;
  return wrapper.signatureIsValid(copy(identityKey.subarray(1)), copy(signedPublicKey), copy(signature));
}

/** A copy in an ArrayBuffer of its own (a Node Buffer's slice() is a view into a larger pool: not that). */
function copy(bytes: Uint8Array): ArrayBuffer {
  const own = new Uint8Array(bytes.length);
  own.set(bytes);
  return own.buffer;
}
