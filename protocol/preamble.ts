// The connection preamble: the first 4 bytes a client sends, before any frame.
//   0x53 0x42 ('S' 'B')  magic
//   protocol version     (1 byte)
//   dictionary version   (1 byte)
// The server answers a supported preamble with a `challenge` frame; otherwise with an `error` frame
// (versionUnsupported or badPreamble) and closes. The error frame's encoding never changes across versions, so an old
// client can always read why it was refused.

import { ErrorCode, ProtocolError } from "./errors.ts";
import { tokenDictionaryVersion } from "./tokens.ts";

export const preambleMagic = Object.freeze([0x53, 0x42] as const);
export const preambleBytes = 4;
export const protocolVersion = 1;
/** Oldest protocol version this code still speaks. */
export const protocolVersionMin = 1;

export interface Preamble {
  readonly protocolVersion: number;
  readonly dictionaryVersion: number;
}

export function encodePreamble(
  preamble: Preamble = { protocolVersion, dictionaryVersion: tokenDictionaryVersion },
): Uint8Array {
  return Uint8Array.of(preambleMagic[0], preambleMagic[1], preamble.protocolVersion, preamble.dictionaryVersion);
}

/**
 * Reads the preamble from the start of `source`. Returns "more" until 4 bytes are there; a ProtocolError for a
 * wrong magic (badPreamble) or a version this server does not speak (versionUnsupported).
 */
export function decodePreamble(source: Uint8Array): Preamble | "more" | ProtocolError {
  for (let index = 0; index < preambleMagic.length && index < source.length; index++) {
    if (source[index] !== preambleMagic[index])
      return new ProtocolError(ErrorCode.badPreamble, "not a Switchboard peer");
  }
  if (source.length < preambleBytes) return "more";
  const preamble = { protocolVersion: source[2]!, dictionaryVersion: source[3]! };
  if (preamble.protocolVersion < protocolVersionMin || preamble.protocolVersion > protocolVersion) {
    return new ProtocolError(
      ErrorCode.versionUnsupported,
      `protocol version ${preamble.protocolVersion} unsupported; this server speaks ${protocolVersionMin}..${protocolVersion}`,
    );
  }
  if (preamble.dictionaryVersion > tokenDictionaryVersion || preamble.dictionaryVersion < 1) {
    return new ProtocolError(
      ErrorCode.versionUnsupported,
      `token dictionary ${preamble.dictionaryVersion} unsupported; this server has 1..${tokenDictionaryVersion}`,
    );
  }
  return preamble;
}
