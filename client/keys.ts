// Device keys: Ed25519 through WebCrypto (`crypto.subtle`), so the same code runs in Bun, Node and browsers. The
// server stores the 32-byte raw public key; the private key never leaves the device. For storage a private key is
// exported as JWK (it carries the public key too, `x`) or PKCS8 (which does not: keep the raw public key beside it).

const algorithm = { name: "Ed25519" } as const;
export const publicKeyBytes = 32;
export const signatureBytes = 64;

export interface DeviceKeyPair {
  /** A WebCrypto Ed25519 private key with usage "sign". */
  readonly privateKey: CryptoKey;
  /** The raw 32-byte public key, as the server stores it. */
  readonly publicKey: Uint8Array;
}

export interface GenerateKeyPairOptions {
  /**
   * Whether the private key can be exported (default true: a file-based app stores it as JWK). A browser app keeps
   * a non-extractable key instead and stores the CryptoKey object itself in IndexedDB (it is structured-cloneable):
   * page scripts can then sign with it but never read its bytes.
   */
  readonly extractable?: boolean;
}

/** A fresh key pair. The private key is extractable unless `extractable: false`. */
export async function generateKeyPair(options: GenerateKeyPairOptions = {}): Promise<DeviceKeyPair> {
  const extractable = options.extractable ?? true;
  const pair = (await crypto.subtle.generateKey(algorithm, extractable, ["sign", "verify"])) as CryptoKeyPair;
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return Object.freeze({ privateKey: pair.privateKey, publicKey });
}

/** The Ed25519 signature (64 bytes) of `message`. */
export async function sign(keyPair: DeviceKeyPair, message: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.sign(algorithm, keyPair.privateKey, message as Uint8Array<ArrayBuffer>));
}

/** True when `signature` is a valid signature of `message` by the raw `publicKey` (for tests and tools). */
export async function verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
  const key = await crypto.subtle.importKey("raw", publicKey as Uint8Array<ArrayBuffer>, algorithm, true, ["verify"]);
  return crypto.subtle.verify(algorithm, key, signature as Uint8Array<ArrayBuffer>, message as Uint8Array<ArrayBuffer>);
}

/** The private key as a JWK (kty OKP, crv Ed25519, with `d` and `x`): keep it secret. */
export async function exportKeyPairJwk(keyPair: DeviceKeyPair): Promise<JsonWebKey> {
  return crypto.subtle.exportKey("jwk", keyPair.privateKey);
}

export async function importKeyPairJwk(jwk: JsonWebKey): Promise<DeviceKeyPair> {
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.d !== "string" || typeof jwk.x !== "string") {
    throw new TypeError("not an Ed25519 private key JWK (needs kty OKP, crv Ed25519, d and x)");
  }
  const privateKey = await crypto.subtle.importKey("jwk", { ...jwk, key_ops: ["sign"] }, algorithm, true, ["sign"]);
  const publicJwk: JsonWebKey = { kty: "OKP", crv: "Ed25519", x: jwk.x };
  const publicCryptoKey = await crypto.subtle.importKey("jwk", publicJwk, algorithm, true, ["verify"]);
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", publicCryptoKey));
  return Object.freeze({ privateKey, publicKey });
}

/** The private key as PKCS8 DER; store the raw public key with it (PKCS8 of Ed25519 does not carry it). */
export async function exportPrivateKeyPkcs8(keyPair: DeviceKeyPair): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("pkcs8", keyPair.privateKey));
}

export async function importKeyPairPkcs8(pkcs8: Uint8Array, publicKey: Uint8Array): Promise<DeviceKeyPair> {
  if (publicKey.length !== publicKeyBytes) throw new TypeError(`public key must be ${publicKeyBytes} bytes`);
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8 as Uint8Array<ArrayBuffer>, algorithm, true, [
    "sign",
  ]);
  return Object.freeze({ privateKey, publicKey: publicKey.slice() });
}
