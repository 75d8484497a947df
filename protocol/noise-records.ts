// The bytes around Noise on a TCP connection (PROTOCOL.md section 19):
//   client preamble   'S' 'B' 0x02 pattern     (protocol version 2 = "a Noise handshake follows"; pattern 1 XX, 2 IK)
//   every message     length (2 bytes, big-endian) || Noise message (handshake message, or ciphertext || 16-byte tag)
// After the handshake the records carry the plaintext protocol's byte stream, starting with its own 4-byte preamble
// (version 1): a record may hold several frames or part of one. The preamble bytes are the handshake's prologue, so a
// peer that changed them in flight fails the handshake.

import { ErrorCode, ProtocolError } from "./errors.ts";
import { noiseLengthBytes, noiseMessageBytesMax } from "./limits.ts";
import type { NoisePatternName } from "./noise-handshake.ts";
import { preambleBytes, preambleMagic } from "./preamble.ts";

/** The protocol version byte of an encrypted connection's preamble. */
export const noiseProtocolVersion = 2;
export const NoisePatternByte: Readonly<Record<NoisePatternName, number>> = Object.freeze({ XX: 1, IK: 2 });

export function encodeNoisePreamble(pattern: NoisePatternName): Uint8Array {
  return Uint8Array.of(preambleMagic[0], preambleMagic[1], noiseProtocolVersion, NoisePatternByte[pattern]);
}

/**
 * The pattern a client's preamble asks for; "more" until 4 bytes are there. A plaintext preamble (version 1) gets
 * encryptionRequired: the client must be configured for this listener, retrying does not help.
 */
export function decodeNoisePreamble(source: Uint8Array): NoisePatternName | "more" | ProtocolError {
  for (let index = 0; index < preambleMagic.length && index < source.length; index++) {
    if (source[index] !== preambleMagic[index])
      return new ProtocolError(ErrorCode.badPreamble, "not a Switchboard peer");
  }
  if (source.length < preambleBytes) return "more";
  if (source[2] === 1) {
    return new ProtocolError(ErrorCode.encryptionRequired, "this listener speaks Noise only (protocol version 2)");
  }
  if (source[2] !== noiseProtocolVersion) {
    return new ProtocolError(
      ErrorCode.versionUnsupported,
      `protocol version ${source[2]} unsupported; this listener speaks 2`,
    );
  }
  if (source[3] === NoisePatternByte.XX) return "XX";
  if (source[3] === NoisePatternByte.IK) return "IK";
  return new ProtocolError(
    ErrorCode.versionUnsupported,
    `Noise pattern ${source[3]} unsupported; this listener has 1 (XX), 2 (IK)`,
  );
}

/** `message` with its 2-byte length in front. */
export function frameNoiseMessage(message: Uint8Array): Uint8Array {
  if (message.length > noiseMessageBytesMax) throw new RangeError("a Noise message is at most 65535 bytes");
  const framed = new Uint8Array(noiseLengthBytes + message.length);
  writeNoiseLength(framed, message.length);
  framed.set(message, noiseLengthBytes);
  return framed;
}

export function writeNoiseLength(target: Uint8Array, length: number): void {
  target[0] = length >>> 8;
  target[1] = length & 0xff;
}

/**
 * The next length-prefixed message at the start of `source` (a view), and the bytes it took; "more" until it is all
 * there. Every length is valid framing (0..65535): what a message must hold is for its reader to check.
 */
export function readNoiseMessage(source: Uint8Array): { message: Uint8Array; consumed: number } | "more" {
  if (source.length < noiseLengthBytes) return "more";
  const length = (source[0]! << 8) | source[1]!;
  if (source.length < noiseLengthBytes + length) return "more";
  return { message: source.subarray(noiseLengthBytes, noiseLengthBytes + length), consumed: noiseLengthBytes + length };
}
