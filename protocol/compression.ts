// Stateless per-frame compression: raw DEFLATE (RFC 1951) with a preset dictionary, flagged in the header byte.
// A stream per connection would compress better but costs 77-215 KB of window and state per socket, which is the
// whole memory budget of a hundred idle sessions; so every frame stands alone and only the dictionary is shared.
// The encoder compresses only bodies of at least compressionBodyBytesMin and keeps the result only when smaller
// (ciphertext does not compress). Inflate is capped at the frame limit so a deflate bomb costs at most that.

import { deflateSync, Inflate } from "fflate";
import { ErrorCode, ProtocolError } from "./errors.ts";

export interface Compressor {
  readonly name: string;
  deflate(body: Uint8Array): Uint8Array;
  /** Inflates `body`; a ProtocolError (inflateTooLarge, badCompression) instead of throwing. */
  inflate(body: Uint8Array, bytesMax: number): Uint8Array | ProtocolError;
}

/**
 * The preset dictionary of token dictionary version 1. DEFLATE matches against its last bytes first (a nearer match
 * costs fewer bits), so the most common strings come last. It holds what compressible frames repeat: the messages of
 * the reference server's error and goaway frames, and MessagePack shapes of device lists (the one kind the server
 * compresses today, so it comes last). Changing it changes the wire format: a new dictionary needs a new dictionary
 * version; so the texts stay as they are here when the server's messages change later.
 */
export const presetDictionary: Uint8Array = joinBytes(
  new TextEncoder().encode(
    // The texts of server/*.ts when dictionary version 1 was frozen, least common first. A message with a variable
    // part (a number, a handle) is written without it: DEFLATE matches the parts on either side.
    [
      "handle  is taken",
      "invite code unknown, used or expired",
      "link code unknown, used or expired",
      "no device can be added to this account",
      "an account has at most  devices",
      "this device was removed from its account",
      "replaced by a newer login of this device",
      "server full",
      "server shutting down",
      "an account keeps at least one device",
      "no such device",
      "the recipient has no other device",
      "client id  is older than the retry window; use a new id",
      "payload over  bytes",
      "server busy; retry",
      "no account",
      "queue of device  is full; retry later",
      "rate limited; slow down",
      "payloads do not match the recipient's devices",
    ].join("\n"),
  ),
  // Device-list entries: [device, createdAtSeconds (uint32), lastSeenAtSeconds (uint32)]. Raw bytes, not text: as a
  // string, TextEncoder would turn each byte >= 0x80 into two UTF-8 bytes (0x93 -> c2 93).
  Uint8Array.of(0x93, 0x01, 0xce, 0x00, 0x00, 0x00, 0x00, 0xce, 0x93, 0x02, 0xce, 0x93, 0x03, 0xce),
);

function joinBytes(head: Uint8Array, tail: Uint8Array): Uint8Array {
  const joined = new Uint8Array(head.length + tail.length);
  joined.set(head, 0);
  joined.set(tail, head.length);
  return joined;
}

/** Input bytes fed to the streaming inflater per step: one step can produce at most ~1 MB (1032:1), then we check. */
const inflateStepBytes = 256;
/** DEFLATE level: 6 is zlib's default trade-off between speed and size. */
const deflateLevel = 6;

export const fflateCompressor: Compressor = Object.freeze({
  name: "fflate",
  deflate(body: Uint8Array): Uint8Array {
    return deflateSync(body, { level: deflateLevel, dictionary: presetDictionary });
  },
  inflate(body: Uint8Array, bytesMax: number): Uint8Array | ProtocolError {
    const chunks: Uint8Array[] = [];
    let total = 0;
    let tooLarge = false;
    const inflater = new Inflate({ dictionary: presetDictionary }, (chunk) => {
      total += chunk.length;
      if (total > bytesMax) tooLarge = true;
      else chunks.push(chunk);
    });
    try {
      for (let offset = 0; offset < body.length && !tooLarge; offset += inflateStepBytes) {
        const end = Math.min(offset + inflateStepBytes, body.length);
        inflater.push(body.subarray(offset, end), end === body.length);
      }
    } catch (caught) {
      return new ProtocolError(ErrorCode.badCompression, "compressed body does not inflate", { cause: caught });
    }
    if (tooLarge)
      return new ProtocolError(ErrorCode.inflateTooLarge, `compressed body inflates past ${bytesMax} bytes`);
    if (body.length === 0) return new ProtocolError(ErrorCode.badCompression, "empty compressed body");
    if (chunks.length === 1) return chunks[0]!;
    const joined = new Uint8Array(total);
    let offset = 0;
    for (const chunk of chunks) {
      joined.set(chunk, offset);
      offset += chunk.length;
    }
    return joined;
  },
});
