// Framing of the mesh (mesh.ts): every message is one frame, a u32 little-endian length and then that many bytes of
// MessagePack (a map with a string `t`). The first frame on a link is a hello naming the sender and the mesh size.
// No I/O here, so the reader can be fed byte by byte and fuzzed.
//
// One frame per message rather than one array frame per batch: send() encodes at once, so an oversize or
// unencodable message throws in the stack of the code that sent it (where the bug is), the message is captured as
// it was when sent, and a batch is nothing more than the frames of one turn written together.

import { Decoder, Encoder } from "@msgpack/msgpack";
import { meshFrameBytesMax } from "../protocol/limits.ts";
import type { MeshMessage } from "./mesh.ts";

/** Bytes of the length prefix. The length counts the MessagePack bytes after it, at most meshFrameBytesMax. */
export const meshFrameHeaderBytes = 4;

/** Kind of the first frame on a link. Bump `meshHelloVersion` when the framing or the hello changes. */
export const meshHelloKind = "mesh.hello";
export const meshHelloVersion = 1;

/** A message the sending worker cannot frame: too large, not encodable, or without a string `t`. A bug of the sender. */
export class MeshFrameError extends Error {
  override readonly name = "MeshFrameError";
}

export class MeshEncoder {
  private readonly encoder = new Encoder({ ignoreUndefined: false, initialBufferSize: 4096 });

  constructor(readonly frameBytesMax: number = meshFrameBytesMax) {}

  /** The whole frame (prefix included), as a new buffer the caller owns. Throws MeshFrameError; see above. */
  encode(message: MeshMessage): Uint8Array {
    if (!isPlainObject(message) || typeof message.t !== "string") {
      throw new MeshFrameError("mesh: a message must be a plain object with a string `t`");
    }
    let body: Uint8Array;
    try {
      body = this.encoder.encodeSharedRef(message);
    } catch (cause) {
      throw new MeshFrameError(`mesh: message ${message.t} is not encodable`, { cause });
    }
    if (body.length > this.frameBytesMax) {
      throw new MeshFrameError(`mesh: message ${message.t} is ${body.length} bytes, over ${this.frameBytesMax}`);
    }
    const frame = new Uint8Array(meshFrameHeaderBytes + body.length);
    new DataView(frame.buffer).setUint32(0, body.length, true);
    frame.set(body, meshFrameHeaderBytes);
    return frame;
  }
}

/**
 * Cuts frames out of the chunks of one stream and decodes them. Complete frames are decoded straight from the chunk
 * (their Uint8Array fields are views into it); only a frame split across chunks is copied. The first fault is
 * final: the reader returns it from then on, because the stream cannot be resynchronised.
 */
export class MeshFrameReader {
  private readonly decoder = new Decoder();
  private readonly header = new Uint8Array(meshFrameHeaderBytes);
  private headerFilled = 0;
  /** The body of a frame split across chunks, once its length is known. */
  private body: Uint8Array | undefined;
  private bodyFilled = 0;
  private fault: string | undefined;

  constructor(readonly frameBytesMax: number = meshFrameBytesMax) {}

  /**
   * Hands every complete message in `chunk` to `sink`, in order. Returns the fault (a reason for the fatal
   * handler) or undefined. Never throws, except what `sink` throws (after which this reader must not be used).
   */
  read(chunk: Uint8Array, sink: (message: MeshMessage) => void): string | undefined {
    if (this.fault !== undefined) return this.fault;
    let offset = this.completePartial(chunk, sink);
    if (offset < 0) return this.fault;
    // Still partial: the whole chunk went into it.
    if (this.headerFilled > 0) return undefined;
    const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    while (chunk.length - offset >= meshFrameHeaderBytes) {
      const length = view.getUint32(offset, true);
      if (length > this.frameBytesMax)
        return this.fail(`mesh: declared frame length ${length} over ${this.frameBytesMax}`);
      const start = offset + meshFrameHeaderBytes;
      if (chunk.length - start < length) {
        this.body = new Uint8Array(length);
        this.body.set(chunk.subarray(start));
        this.bodyFilled = chunk.length - start;
        this.headerFilled = meshFrameHeaderBytes;
        return undefined;
      }
      if (!this.decode(chunk.subarray(start, start + length), sink)) return this.fault;
      offset = start + length;
    }
    this.header.set(chunk.subarray(offset));
    this.headerFilled = chunk.length - offset;
    return undefined;
  }

  /** Feeds the frame left partial by earlier chunks; returns the offset in `chunk` after it, or -1 on a fault. */
  private completePartial(chunk: Uint8Array, sink: (message: MeshMessage) => void): number {
    if (this.headerFilled === 0) return 0;
    let offset = 0;
    if (this.body === undefined) {
      const taken = Math.min(meshFrameHeaderBytes - this.headerFilled, chunk.length);
      this.header.set(chunk.subarray(0, taken), this.headerFilled);
      this.headerFilled += taken;
      offset = taken;
      if (this.headerFilled < meshFrameHeaderBytes) return offset;
      const length = new DataView(this.header.buffer).getUint32(0, true);
      if (length > this.frameBytesMax) {
        this.fail(`mesh: declared frame length ${length} over ${this.frameBytesMax}`);
        return -1;
      }
      this.body = new Uint8Array(length);
      this.bodyFilled = 0;
    }
    const taken = Math.min(this.body.length - this.bodyFilled, chunk.length - offset);
    this.body.set(chunk.subarray(offset, offset + taken), this.bodyFilled);
    this.bodyFilled += taken;
    offset += taken;
    if (this.bodyFilled < this.body.length) return offset;
    const body = this.body;
    this.body = undefined;
    this.headerFilled = 0;
    return this.decode(body, sink) ? offset : -1;
  }

  private decode(bytes: Uint8Array, sink: (message: MeshMessage) => void): boolean {
    let value: unknown;
    try {
      value = this.decoder.decode(bytes);
    } catch (error) {
      this.fail(`mesh: undecodable frame (${error instanceof Error ? error.message : String(error)})`);
      return false;
    }
    if (!isPlainObject(value) || typeof value.t !== "string") {
      this.fail("mesh: a frame that is not a map with a string `t`");
      return false;
    }
    sink(value as MeshMessage);
    return true;
  }

  private fail(reason: string): string {
    this.fault = reason;
    return reason;
  }
}

export function meshHello(sender: number, size: number): MeshMessage {
  return { t: meshHelloKind, v: meshHelloVersion, sender, size };
}

/**
 * The sender named by the first message of a link, or the fault: not a hello, another version, another mesh
 * size, or a sender that is not a valid peer of `self` (out of range, or `self` itself).
 */
export function meshHelloSender(
  message: MeshMessage,
  self: number,
  size: number,
): { readonly sender: number } | { readonly fault: string } {
  if (message.t !== meshHelloKind) return { fault: `mesh: ${message.t} before the hello` };
  if (message.v !== meshHelloVersion) return { fault: `mesh: hello of version ${String(message.v)}` };
  if (message.size !== size) return { fault: `mesh: hello for a mesh of ${String(message.size)}, not ${size}` };
  const sender = message.sender;
  if (typeof sender !== "number" || !Number.isInteger(sender) || sender < 0 || sender >= size || sender === self) {
    return { fault: `mesh: hello from an invalid sender ${String(sender)}` };
  }
  return { sender };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}
