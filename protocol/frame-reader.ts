// A streaming reader for one connection: feed it chunks as they arrive, take frames out. It keeps at most one partial
// frame (bounded by frameBytesMax). The server keeps its partial frames in its session slot instead, to stay small.

import type { DecodeResult, FrameCodec } from "./frame-codec.ts";

export class FrameReader {
  private pending: Uint8Array | null = null;
  private offset = 0;
  /** A buffer this reader allocated, with room past `pending` to append in place; null while `pending` is a chunk. */
  private owned: Uint8Array | null = null;

  constructor(private readonly codec: FrameCodec) {}

  /** Appends a chunk. The reader keeps a reference (no copy) when nothing is pending; the caller must not reuse it. */
  push(chunk: Uint8Array): void {
    if (this.pending === null || this.offset >= this.pending.length) {
      this.pending = chunk;
      this.offset = 0;
      this.owned = null;
      return;
    }
    const rest = this.pending.length - this.offset;
    // Appending in place only ever writes past the bytes already handed out, so earlier payload views stay intact.
    // Growing by doubling keeps a frame that arrives a byte at a time linear, not quadratic, in its length.
    const owned = this.owned;
    if (owned !== null && this.pending.byteOffset + this.pending.length + chunk.length <= owned.length) {
      const end = this.pending.byteOffset + this.pending.length;
      owned.set(chunk, end);
      this.pending = owned.subarray(this.pending.byteOffset, end + chunk.length);
      return;
    }
    const grown = new Uint8Array(
      Math.max(rest + chunk.length, Math.min(2 * rest, this.codec.limits.frameBytesMax), 256),
    );
    grown.set(this.pending.subarray(this.offset), 0);
    grown.set(chunk, rest);
    this.owned = grown;
    this.pending = grown.subarray(0, rest + chunk.length);
    this.offset = 0;
  }

  /** The next frame, "more" when none is complete, or an error (after which the connection must be closed). */
  next(): DecodeResult {
    if (this.pending === null || this.offset >= this.pending.length) return { status: "more", needed: 1 };
    const result = this.codec.decode(this.pending, this.offset);
    if (result.status === "frame") {
      this.offset += result.consumed;
      if (this.offset >= this.pending.length) {
        this.pending = null;
        this.offset = 0;
        this.owned = null;
      }
    }
    return result;
  }

  /** Bytes of an incomplete frame still held. */
  get bufferedBytes(): number {
    return this.pending === null ? 0 : this.pending.length - this.offset;
  }
}
