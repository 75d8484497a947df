// A minimal WebSocket client layer (RFC 6455) for the load workers, which keep their Bun.connect sockets (Bun's
// WebSocket client cannot bind a source address) and speak WebSocket over them: the upgrade request and the check of
// its 101 answer, masked binary frames out, unmasked server frames in. No extensions, no Origin, no text messages.
// Stateless functions over byte arrays, so a socket keeps nothing but the unparsed tail of what it read.

export const WsOpcode = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/** The server's answer to the upgrade is refused past this many bytes without its blank line. */
export const handshakeBytesMax = 4096;
/** A server frame this large is refused (the protocol's own frames are far smaller; bounds the buffered tail). */
export const serverFramePayloadMax = 16 * 1024 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A random Sec-WebSocket-Key: 16 random bytes in base64. */
export function websocketKey(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
}

/** The client's upgrade request (no Origin: not a browser; no extensions: no per-message compression). */
export function upgradeRequest(host: string, port: number, path: string, key = websocketKey()): Uint8Array {
  return encoder.encode(
    `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
}

export type HandshakeResult =
  | { readonly status: "more" }
  | { readonly status: "open"; readonly consumed: number }
  | { readonly status: "error"; readonly reason: string };

/** Index of "\r\n\r\n" in `bytes` (the first byte after it), or -1. */
function headersEnd(bytes: Uint8Array): number {
  for (let index = 3; index < bytes.length; index++) {
    if (bytes[index] === 0x0a && bytes[index - 1] === 0x0d && bytes[index - 2] === 0x0a && bytes[index - 3] === 0x0d) {
      return index + 1;
    }
  }
  return -1;
}

/**
 * Reads the server's answer to the upgrade from the start of `bytes` (everything read so far): open with the bytes it
 * took (frames may follow in the same read) on `HTTP/1.1 101`, more while the headers are incomplete and within
 * handshakeBytesMax, else an error.
 */
export function readHandshake(bytes: Uint8Array): HandshakeResult {
  const end = headersEnd(bytes);
  if (end < 0) {
    if (bytes.length >= handshakeBytesMax) return { status: "error", reason: "wsHandshakeTooLong" };
    const head = decoder.decode(bytes.subarray(0, Math.min(bytes.length, 12)));
    if (!"HTTP/1.1 101".startsWith(head)) return { status: "error", reason: "wsHandshakeRefused" };
    return { status: "more" };
  }
  if (end > handshakeBytesMax) return { status: "error", reason: "wsHandshakeTooLong" };
  const statusLine = decoder.decode(bytes.subarray(0, Math.min(end, 13)));
  if (!statusLine.startsWith("HTTP/1.1 101 ") && !statusLine.startsWith("HTTP/1.1 101\r")) {
    return { status: "error", reason: "wsHandshakeRefused" };
  }
  return { status: "open", consumed: end };
}

/** One masked client frame, FIN set, around `payload` (7-, 16- or 64-bit length). */
export function encodeClientFrame(
  opcode: number,
  payload: Uint8Array,
  mask: Uint8Array = crypto.getRandomValues(new Uint8Array(4)),
): Uint8Array {
  const length = payload.length;
  const lengthBytes = length < 126 ? 0 : length <= 0xffff ? 2 : 8;
  const header = 2 + lengthBytes + 4;
  const frame = new Uint8Array(header + length);
  frame[0] = 0x80 | (opcode & 0x0f);
  if (lengthBytes === 0) frame[1] = 0x80 | length;
  else if (lengthBytes === 2) {
    frame[1] = 0x80 | 126;
    frame[2] = length >>> 8;
    frame[3] = length & 0xff;
  } else {
    frame[1] = 0x80 | 127;
    const view = new DataView(frame.buffer);
    view.setUint32(2, Math.floor(length / 2 ** 32));
    view.setUint32(6, length >>> 0);
  }
  frame.set(mask, 2 + lengthBytes);
  const m0 = mask[0]!;
  const m1 = mask[1]!;
  const m2 = mask[2]!;
  const m3 = mask[3]!;
  for (let index = 0; index < length; index++) {
    const key = (index & 3) === 0 ? m0 : (index & 3) === 1 ? m1 : (index & 3) === 2 ? m2 : m3;
    frame[header + index] = payload[index]! ^ key;
  }
  return frame;
}

export interface ServerFrame {
  readonly fin: boolean;
  readonly opcode: number;
  /** A view into the input (unmasked in place when the frame was masked). */
  readonly payload: Uint8Array;
}

export type FrameResult =
  | { readonly status: "more" }
  | { readonly status: "frame"; readonly frame: ServerFrame; readonly consumed: number }
  | { readonly status: "error"; readonly reason: string };

/**
 * Decodes one frame at `offset` of `bytes`. Server frames are unmasked; a masked one (a client's, as in the tests)
 * is unmasked in place. Reserved bits (no extension was negotiated) and oversized frames are errors.
 */
export function decodeFrame(bytes: Uint8Array, offset = 0): FrameResult {
  const available = bytes.length - offset;
  if (available < 2) return { status: "more" };
  const first = bytes[offset]!;
  const second = bytes[offset + 1]!;
  if ((first & 0x70) !== 0) return { status: "error", reason: "wsReservedBits" };
  const masked = (second & 0x80) !== 0;
  let length = second & 0x7f;
  let header = 2;
  if (length === 126) {
    if (available < 4) return { status: "more" };
    length = (bytes[offset + 2]! << 8) | bytes[offset + 3]!;
    header = 4;
  } else if (length === 127) {
    if (available < 10) return { status: "more" };
    const view = new DataView(bytes.buffer, bytes.byteOffset + offset + 2, 8);
    length = view.getUint32(0) * 2 ** 32 + view.getUint32(4);
    header = 10;
  }
  if (length > serverFramePayloadMax) return { status: "error", reason: "wsFrameTooLarge" };
  const maskAt = offset + header;
  if (masked) header += 4;
  if (available < header + length) return { status: "more" };
  const payload = bytes.subarray(offset + header, offset + header + length);
  if (masked) {
    for (let index = 0; index < length; index++) payload[index] = payload[index]! ^ bytes[maskAt + (index & 3)]!;
  }
  return {
    status: "frame",
    frame: { fin: (first & 0x80) !== 0, opcode: first & 0x0f, payload },
    consumed: header + length,
  };
}

export interface ReadFramesResult {
  /** Binary (and continuation) payloads of the input, joined: the protocol's byte stream. null when none. */
  readonly data: Uint8Array | null;
  /** Pong frames to write back, one per ping (masked, ready to write). */
  readonly replies: Uint8Array[];
  /** A close frame arrived (the rest of the input is ignored). */
  readonly closed: boolean;
  /** Bytes of the input taken (whole frames); the rest is a partial frame to keep for the next read. */
  readonly consumed: number;
  readonly error: string | null;
}

/**
 * Reads every whole frame of `bytes` from `offset`: binary and continuation payloads become the protocol's stream
 * (message boundaries do not matter to it), pings are answered with pongs, a close ends the reading. Text messages
 * are an error (the protocol is binary).
 */
export function readServerFrames(bytes: Uint8Array, offset = 0): ReadFramesResult {
  const payloads: Uint8Array[] = [];
  let total = 0;
  const replies: Uint8Array[] = [];
  let closed = false;
  let error: string | null = null;
  let position = offset;
  while (position < bytes.length) {
    const result = decodeFrame(bytes, position);
    if (result.status === "more") break;
    if (result.status === "error") {
      error = result.reason;
      break;
    }
    position += result.consumed;
    const { opcode, payload } = result.frame;
    if (opcode === WsOpcode.binary || opcode === WsOpcode.continuation) {
      if (payload.length > 0) {
        payloads.push(payload);
        total += payload.length;
      }
    } else if (opcode === WsOpcode.ping) {
      replies.push(encodeClientFrame(WsOpcode.pong, payload));
    } else if (opcode === WsOpcode.close) {
      closed = true;
      break;
    } else if (opcode !== WsOpcode.pong) {
      error = opcode === WsOpcode.text ? "wsTextMessage" : `wsOpcode${opcode}`;
      break;
    }
  }
  let data: Uint8Array | null = null;
  if (payloads.length === 1) data = payloads[0]!;
  else if (payloads.length > 1) {
    data = new Uint8Array(total);
    let at = 0;
    for (const payload of payloads) {
      data.set(payload, at);
      at += payload.length;
    }
  }
  return { data, replies, closed, consumed: position - offset, error };
}
