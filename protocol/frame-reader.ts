// A streaming reader for one connection: feed it chunks as they arrive, take frames out. It keeps at most one partial
// frame (bounded by frameBytesMax). The server keeps its partial frames in its session slot instead, to stay small.

import type { DecodeResult, FrameCodec } from "./frame-codec.ts";

export class FrameReader {
  private pending: Uint8Array | null = null;
  private offset = 0;

  constructor(private readonly codec: FrameCodec) {}

  /** Appends a chunk. The reader keeps a reference (no copy) when nothing is pending; the caller must not reuse it. */
  push(chunk: Uint8Array): void {
    if (this.pending === null || this.offset >= this.pending.length) {
      this.pending = chunk;
      this.offset = 0;
      return;
    }
    const rest = this.pending.length - this.offset;
    const joined = new Uint8Array(rest + chunk.length);
    joined.set(this.pending.subarray(this.offset), 0);
    joined.set(chunk, rest);
    this.pending = joined;
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
      }
    }
    return result;
  }

  /** Bytes of an incomplete frame still held. */
  get bufferedBytes(): number {
    return this.pending === null ? 0 : this.pending.length - this.offset;
  }
}
