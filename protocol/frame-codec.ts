// Frames: varint length (of header + body), one header byte, then the body.
//   header byte: bits 0-5 stanza kind (1..63), bit 6 reserved (must be 0), bit 7 compressed (body is raw DEFLATE
//   with the preset dictionary; the inflated bytes are the MessagePack body).
// The decoder works on whatever bytes have arrived: a frame and the bytes it consumed, "more" when the frame is not
// complete yet, or a ProtocolError. It never throws: every failure of a peer's bytes is a returned ProtocolError.

import { Decoder, Encoder } from "@msgpack/msgpack";
import { type Compressor, fflateCompressor } from "./compression.ts";
import { ErrorCode, ProtocolError } from "./errors.ts";
import { frameLengthVarintBytesMax, type Limits } from "./limits.ts";
import { scanMsgpack } from "./msgpack-scan.ts";
import { stanzaFields, stanzaFromFields, stanzaKindToken } from "./stanza-codec.ts";
import type { Stanza } from "./stanzas.ts";
import { stanzaKindName } from "./tokens.ts";
import { readVarint, varintLength, writeVarint } from "./varint.ts";

export const headerKindMask = 0x3f;
export const headerReservedBit = 0x40;
export const headerCompressedBit = 0x80;

export type DecodeResult =
  | { readonly status: "frame"; readonly stanza: Stanza; readonly consumed: number; readonly compressed: boolean }
  | { readonly status: "more"; readonly needed: number }
  | { readonly status: "error"; readonly error: ProtocolError };

const needMore = (needed: number): DecodeResult => ({ status: "more", needed });
const failed = (code: number, message: string, cause?: unknown): DecodeResult => ({
  status: "error",
  error: new ProtocolError(code, message, cause === undefined ? undefined : { cause }),
});

export interface FrameCodecOptions {
  readonly limits: Limits;
  /** Defaults to fflate (runs everywhere); the server may pass a faster one with the same wire format. */
  readonly compressor?: Compressor;
}

export interface EncodeOptions {
  /** Try DEFLATE and keep it when it saves bytes. Off by default: payload-carrying frames hold ciphertext. */
  readonly compress?: boolean;
}

/**
 * Encodes and decodes frames. Holds one MessagePack encoder and decoder, reused for every frame (they keep a
 * scratch buffer, so one codec serves a whole process; JavaScript runs one frame at a time).
 */
export class FrameCodec {
  readonly limits: Limits;
  readonly compressor: Compressor;
  private readonly encoder = new Encoder({ ignoreUndefined: false, initialBufferSize: 2048 });
  private readonly decoder: Decoder;

  constructor(options: FrameCodecOptions) {
    this.limits = options.limits;
    this.compressor = options.compressor ?? fflateCompressor;
    this.decoder = new Decoder({
      maxStrLength: this.limits.stringBytesMax,
      maxBinLength: this.limits.frameBytesMax,
      maxArrayLength: this.limits.arrayItemsMax,
      maxMapLength: 0,
      maxExtLength: 0,
    });
  }

  /** The whole frame for `stanza`, as a new buffer the caller owns. Throws only on a bug (a stanza over the limits). */
  encode(stanza: Stanza, options?: EncodeOptions): Uint8Array {
    // A human-readable message longer than the peer may decode would turn an error into a malformed frame.
    if ((stanza.kind === "error" || stanza.kind === "goaway") && stanza.message !== null) {
      const message = truncateUtf8(stanza.message, this.limits.stringBytesMax);
      if (message !== stanza.message) stanza = { ...stanza, message };
    }
    let body: Uint8Array = this.encoder.encodeSharedRef(stanzaFields(stanza));
    let header = stanzaKindToken(stanza);
    if (options?.compress === true && body.length >= this.limits.compressionBodyBytesMin) {
      const deflated = this.compressor.deflate(body);
      if (deflated.length < body.length) {
        body = deflated;
        header |= headerCompressedBit;
      }
    }
    const length = 1 + body.length;
    const frameBytes = varintLength(length) + length;
    if (frameBytes > this.limits.frameBytesMax) {
      throw new Error(`bug: ${stanza.kind} frame of ${frameBytes} bytes passes frameBytesMax`);
    }
    const frame = new Uint8Array(frameBytes);
    let offset = writeVarint(frame, 0, length);
    frame[offset++] = header;
    frame.set(body, offset);
    return frame;
  }

  /**
   * Decodes one frame starting at `offset`. Payload fields of the stanza are views into `source`: the caller must
   * not reuse `source` for other bytes while the stanza lives (Bun hands every `data` event a fresh buffer).
   */
  decode(source: Uint8Array, offset = 0): DecodeResult {
    const prefix = readVarint(source, offset, frameLengthVarintBytesMax);
    if (prefix === "more") return needMore(1);
    if (prefix === "overlong") return failed(ErrorCode.malformedFrame, "frame length is not a canonical varint");
    const length = prefix.value;
    if (length === 0) return failed(ErrorCode.malformedFrame, "empty frame");
    const frameBytes = prefix.length + length;
    if (frameBytes > this.limits.frameBytesMax) {
      return failed(
        ErrorCode.frameTooLarge,
        `frame of ${frameBytes} bytes passes the limit of ${this.limits.frameBytesMax}`,
      );
    }
    const end = offset + frameBytes;
    if (source.length < end) return needMore(end - source.length);
    const header = source[offset + prefix.length]!;
    if ((header & headerReservedBit) !== 0) return failed(ErrorCode.malformedFrame, "reserved header bit set");
    const kind = header & headerKindMask;
    if (stanzaKindName(kind) === undefined) return failed(ErrorCode.unknownKind, `unknown stanza kind ${kind}`);
    const compressed = (header & headerCompressedBit) !== 0;
    let body = source.subarray(offset + prefix.length + 1, end);
    if (compressed) {
      const inflated = this.compressor.inflate(body, this.limits.frameBytesMax);
      if (inflated instanceof ProtocolError) return { status: "error", error: inflated };
      body = inflated;
    }
    const scan = scanMsgpack(body, 0, body.length, this.limits.nestingDepthMax);
    if (scan === "tooDeep") {
      return failed(ErrorCode.nestingTooDeep, `body nests deeper than ${this.limits.nestingDepthMax}`);
    }
    if (scan !== "ok") return failed(ErrorCode.malformedBody, `body is not one MessagePack value (${scan})`);
    let fields: unknown;
    try {
      fields = this.decoder.decode(body);
    } catch (caught) {
      return failed(ErrorCode.malformedBody, "body is not valid MessagePack within the limits", caught);
    }
    const stanza = stanzaFromFields(kind, fields, this.limits);
    if (stanza instanceof ProtocolError) return { status: "error", error: stanza };
    return { status: "frame", stanza, consumed: frameBytes, compressed };
  }
}

const utf8 = new TextEncoder();

/** `text` cut to at most `bytesMax` UTF-8 bytes, on a character boundary. */
export function truncateUtf8(text: string, bytesMax: number): string {
  if (text.length * 3 <= bytesMax) return text;
  const bytes = utf8.encode(text);
  if (bytes.length <= bytesMax) return text;
  let end = bytesMax;
  // Back up over continuation bytes (10xxxxxx) so the cut falls between characters.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return new TextDecoder().decode(bytes.subarray(0, end));
}
