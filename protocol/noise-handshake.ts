// The Noise handshake (noiseprotocol.org/noise.html, revision 34) for the two patterns Switchboard speaks:
//   Noise_XX_25519_AESGCM_SHA256   first contact: the client learns the server's static key in message 2
//   Noise_IK_25519_AESGCM_SHA256   resumption: the client already knows (has pinned) the server's static key
// A pure state machine without I/O: it turns handshake messages into the next message, the peer's payloads and, at
// the end, the two transport keys and the handshake hash. Primitives are libraries' (X25519 of @noble/curves, SHA-256
// and HMAC of @noble/hashes, AES-GCM through NoiseAead); only the Noise composition (MixKey, MixHash, HKDF, Split,
// the token sequence) is written here, checked against the specification's published vectors
// (noise-handshake.test.ts, protocol/vectors/noise-spec-vectors.json).
//
// Bad input never throws: readMessage returns a ProtocolError (noiseHandshakeFailed) for a short or oversize
// message, a failed decryption or a low-order public key.

import { x25519 } from "@noble/curves/ed25519.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { ErrorCode, ProtocolError } from "./errors.ts";
import { noiseHandshakePayloadBytesMax, noiseMessageBytesMax } from "./limits.ts";
import { type NoiseAead, nobleAead, noiseTagBytes } from "./noise-aead.ts";
import { type NoiseDh, type NoiseKeyPair, nobleDh } from "./noise-dh.ts";

export type { NoiseKeyPair } from "./noise-dh.ts";

/** Bytes of an X25519 key (private or public), of a SHA-256 hash, and of a Noise cipher key. */
export const noiseDhBytes = 32;
export const noiseHashBytes = 32;

export type NoisePatternName = "XX" | "IK";
export type NoiseRole = "initiator" | "responder";

type Token = "e" | "s" | "ee" | "es" | "se" | "ss";

/** Message patterns: even indexes go initiator -> responder. */
const patterns: Readonly<Record<NoisePatternName, readonly (readonly Token[])[]>> = Object.freeze({
  XX: [["e"], ["e", "ee", "s", "es"], ["s", "se"]],
  IK: [
    ["e", "es", "s", "ss"],
    ["e", "ee", "se"],
  ],
});

export function noiseProtocolName(pattern: NoisePatternName): string {
  return `Noise_${pattern}_25519_AESGCM_SHA256`;
}

export function noiseKeyPair(privateKey: Uint8Array = x25519.utils.randomSecretKey()): NoiseKeyPair {
  return Object.freeze({ privateKey, publicKey: x25519.getPublicKey(privateKey) });
}

export interface NoiseHandshakeOptions {
  readonly pattern: NoisePatternName;
  readonly role: NoiseRole;
  readonly prologue: Uint8Array;
  /** This side's static key (both sides have one in XX and IK). */
  readonly staticKeyPair: NoiseKeyPair;
  /** IK initiator: the responder's static public key it already knows. */
  readonly remoteStaticKey?: Uint8Array;
  /** A fixed ephemeral key: test vectors only (a repeated ephemeral breaks the handshake's secrecy). */
  readonly ephemeralKeyPair?: NoiseKeyPair;
  /** Default: @noble/ciphers. */
  readonly aead?: NoiseAead;
  /** Default: @noble/curves. */
  readonly dh?: NoiseDh;
}

/** What a completed handshake leaves: a key per direction, and the hash that names this handshake. */
export interface NoiseSplit {
  readonly sendKey: Uint8Array;
  readonly receiveKey: Uint8Array;
  /** h at the end of the handshake: the channel binding a login signs (PROTOCOL.md section 19). */
  readonly handshakeHash: Uint8Array;
  /** The peer's static public key (the server's, on the client: compare it with the pinned one). */
  readonly remoteStaticKey: Uint8Array;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const joined = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

/** The Noise HKDF: two or three 32-byte outputs from chaining key `chainingKey` and input `input`. */
export function noiseHkdf(chainingKey: Uint8Array, input: Uint8Array, outputs: 2 | 3): Uint8Array[] {
  const tempKey = hmac(sha256, chainingKey, input);
  const first = hmac(sha256, tempKey, Uint8Array.of(1));
  const second = hmac(sha256, tempKey, concat(first, Uint8Array.of(2)));
  if (outputs === 2) return [first, second];
  return [first, second, hmac(sha256, tempKey, concat(second, Uint8Array.of(3)))];
}

export class NoiseHandshake {
  private readonly pattern: readonly (readonly Token[])[];
  private readonly initiator: boolean;
  private readonly aead: NoiseAead;
  private readonly dhFunctions: NoiseDh;
  private readonly staticKeyPair: NoiseKeyPair;
  private ephemeralKeyPair: NoiseKeyPair | null = null;
  private readonly fixedEphemeral: NoiseKeyPair | null;
  private remoteStatic: Uint8Array | null;
  private remoteEphemeral: Uint8Array | null = null;
  private chainingKey: Uint8Array;
  private hash: Uint8Array;
  /** The handshake's cipher key, once a DH was mixed in; its counter. */
  private key: Uint8Array | null = null;
  private counter = 0;
  /** Index of the next message pattern. */
  private step = 0;
  private failed = false;

  constructor(options: NoiseHandshakeOptions) {
    this.pattern = patterns[options.pattern];
    this.initiator = options.role === "initiator";
    this.aead = options.aead ?? nobleAead;
    this.dhFunctions = options.dh ?? nobleDh;
    this.staticKeyPair = options.staticKeyPair;
    this.fixedEphemeral = options.ephemeralKeyPair ?? null;
    this.remoteStatic = options.remoteStaticKey ?? null;
    // InitializeSymmetric: the name fits in HASHLEN, so h is the name padded with zeros.
    const name = new TextEncoder().encode(noiseProtocolName(options.pattern));
    this.hash = new Uint8Array(noiseHashBytes);
    this.hash.set(name);
    this.chainingKey = this.hash.slice();
    this.mixHash(options.prologue);
    if (options.pattern === "IK") {
      // Pre-message "<- s": both sides hash the responder's static key.
      if (this.initiator) {
        if (this.remoteStatic === null || this.remoteStatic.length !== noiseDhBytes) {
          throw new TypeError("an IK initiator needs the responder's 32-byte static key");
        }
        this.mixHash(this.remoteStatic);
      } else this.mixHash(this.staticKeyPair.publicKey);
    }
  }

  /** The handshake is over: split() gives the transport keys. */
  get complete(): boolean {
    return this.step >= this.pattern.length;
  }

  /** It is this side's turn to write. */
  get writing(): boolean {
    return !this.complete && this.step % 2 === (this.initiator ? 0 : 1);
  }

  /** The peer's static public key once known (after reading the message that carries it; IK initiator: from the start). */
  get remoteStaticKey(): Uint8Array | null {
    return this.remoteStatic;
  }

  /** The current handshake hash (for golden vectors and tests). */
  get handshakeHash(): Uint8Array {
    return this.hash.slice();
  }

  /** The next handshake message, carrying `payload` (at most noiseHandshakePayloadBytesMax bytes). */
  writeMessage(payload: Uint8Array = new Uint8Array(0)): Uint8Array {
    if (this.failed || !this.writing) throw new Error("not this side's turn to write a handshake message");
    if (payload.length > noiseHandshakePayloadBytesMax) throw new RangeError("handshake payload too long");
    const parts: Uint8Array[] = [];
    for (const token of this.pattern[this.step]!) {
      if (token === "e") {
        this.ephemeralKeyPair = this.fixedEphemeral ?? this.dhFunctions.generateKeyPair();
        parts.push(this.ephemeralKeyPair.publicKey);
        this.mixHash(this.ephemeralKeyPair.publicKey);
      } else if (token === "s") {
        parts.push(this.encryptAndHash(this.staticKeyPair.publicKey));
      } else {
        const shared = this.dh(token);
        // Our own ephemeral and the peer's keys were checked when read: a failure here is a bug.
        if (shared === null) throw new Error("DH with a key that was already accepted failed");
        this.mixKey(shared);
      }
    }
    parts.push(this.encryptAndHash(payload));
    this.step++;
    return concat(...parts);
  }

  /** Reads the peer's handshake message: its payload, or a ProtocolError (the handshake is then dead). */
  readMessage(message: Uint8Array): Uint8Array | ProtocolError {
    if (this.failed || this.complete || this.writing) return this.fail("handshake message out of turn");
    if (message.length > noiseMessageBytesMax) return this.fail("handshake message too long");
    let offset = 0;
    for (const token of this.pattern[this.step]!) {
      if (token === "e") {
        if (message.length - offset < noiseDhBytes) return this.fail("handshake message too short");
        this.remoteEphemeral = message.slice(offset, offset + noiseDhBytes);
        offset += noiseDhBytes;
        this.mixHash(this.remoteEphemeral);
      } else if (token === "s") {
        const length = noiseDhBytes + (this.key === null ? 0 : noiseTagBytes);
        if (message.length - offset < length) return this.fail("handshake message too short");
        const remoteStatic = this.decryptAndHash(message.subarray(offset, offset + length));
        if (remoteStatic === null) return this.fail("the peer's static key does not decrypt");
        this.remoteStatic = remoteStatic;
        offset += length;
      } else {
        const shared = this.dh(token);
        if (shared === null) return this.fail("a public key of low order");
        this.mixKey(shared);
      }
    }
    const rest = message.subarray(offset);
    const tagBytes = this.key === null ? 0 : noiseTagBytes;
    if (rest.length > noiseHandshakePayloadBytesMax + tagBytes) return this.fail("handshake payload too long");
    if (this.key !== null && rest.length < noiseTagBytes) return this.fail("handshake message too short");
    const payload = this.decryptAndHash(rest);
    if (payload === null) return this.fail("handshake message does not decrypt");
    this.step++;
    return payload;
  }

  /** The transport keys; call once the handshake is complete. */
  split(): NoiseSplit {
    if (!this.complete || this.failed) throw new Error("split before the handshake completed");
    const [initiatorKey, responderKey] = noiseHkdf(this.chainingKey, new Uint8Array(0), 2) as [Uint8Array, Uint8Array];
    return Object.freeze({
      sendKey: this.initiator ? initiatorKey : responderKey,
      receiveKey: this.initiator ? responderKey : initiatorKey,
      handshakeHash: this.hash.slice(),
      remoteStaticKey: this.remoteStatic!.slice(),
    });
  }

  private fail(message: string): ProtocolError {
    this.failed = true;
    return new ProtocolError(ErrorCode.noiseHandshakeFailed, message);
  }

  /** DH for a token; null when the peer's key is of low order (the all-zero shared secret). */
  private dh(token: "ee" | "es" | "se" | "ss"): Uint8Array | null {
    // es: initiator's ephemeral with responder's static; se: initiator's static with responder's ephemeral.
    const local =
      token === "ee" || (token === "es" && this.initiator) || (token === "se" && !this.initiator)
        ? this.ephemeralKeyPair
        : this.staticKeyPair;
    const remote =
      token === "ee" || (token === "se" && this.initiator) || (token === "es" && !this.initiator)
        ? this.remoteEphemeral
        : this.remoteStatic;
    if (local === null || remote === null) return null;
    return this.dhFunctions.sharedSecret(local, remote);
  }

  private mixHash(data: Uint8Array): void {
    this.hash = sha256(concat(this.hash, data));
  }

  private mixKey(input: Uint8Array): void {
    const [chainingKey, key] = noiseHkdf(this.chainingKey, input, 2) as [Uint8Array, Uint8Array];
    this.chainingKey = chainingKey;
    this.key = key;
    this.counter = 0;
  }

  private encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ciphertext =
      this.key === null ? plaintext.slice() : this.aead.seal(this.key, this.counter++, this.hash, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  private decryptAndHash(ciphertext: Uint8Array): Uint8Array | null {
    let plaintext: Uint8Array | null;
    if (this.key === null) plaintext = ciphertext.slice();
    else {
      plaintext = this.aead.open(this.key, this.counter, this.hash, ciphertext);
      if (plaintext === null) return null;
      this.counter++;
    }
    this.mixHash(ciphertext);
    return plaintext;
  }
}
