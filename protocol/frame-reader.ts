// A streaming reader for one connection: feed it chunks as they arrive, take frames out. It keeps at most one partial
// frame (bounded by frameBytesMax), appended to in place (inbound-bytes.ts).

import type { DecodeResult, FrameCodec } from "./frame-codec.ts";
import { appendInbound, consumeInbound, type InboundBytes } from "./inbound-bytes.ts";

export class FrameReader implements InboundBytes {
  inbound: Uint8Array | null = null;
  inboundOwned = false;

  constructor(private readonly codec: FrameCodec) {}

  /** Appends a chunk. The reader keeps a reference (no copy) when nothing is pending; the caller must not reuse it. */
  push(chunk: Uint8Array): void {
    appendInbound(this, chunk, this.codec.limits.frameBytesMax);
  }

  /** The next frame, "more" when none is complete, or an error (after which the connection must be closed). */
  next(): DecodeResult {
    if (this.inbound === null) return { status: "more", needed: 1 };
    const result = this.codec.decode(this.inbound, 0);
    if (result.status === "frame") consumeInbound(this, result.consumed);
    return result;
  }

  /** Bytes of an incomplete frame still held. */
  get bufferedBytes(): number {
    return this.inbound === null ? 0 : this.inbound.length;
  }
}
