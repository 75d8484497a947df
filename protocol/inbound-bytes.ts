// Bytes received and not decoded yet, appended to in place. Both the client's FrameReader and the server's session
// keep their partial frame this way: a frame that arrives a byte at a time costs time linear in its length (growing by
// doubling), not quadratic, which a slow-drip peer could otherwise use to burn the server's CPU.
//
// Appending in place writes only past the end of the bytes held, never over bytes already handed out as payload views
// of decoded frames, so those views stay intact.

export interface InboundBytes {
  /** The bytes held (a view), or null when nothing is pending. */
  inbound: Uint8Array | null;
  /** `inbound` lives in a buffer allocated here, with room past its end; false while it is a chunk given to us. */
  inboundOwned: boolean;
}

/** Smallest buffer allocated for a partial frame. */
const inboundBytesInitial = 256;

/** Appends `chunk` (kept by reference when nothing is pending; the caller must not reuse it). */
export function appendInbound(target: InboundBytes, chunk: Uint8Array, growthCapBytes: number): void {
  const held = target.inbound;
  if (held === null || held.length === 0) {
    target.inbound = chunk;
    target.inboundOwned = false;
    return;
  }
  const end = held.byteOffset + held.length;
  if (target.inboundOwned && end + chunk.length <= held.buffer.byteLength) {
    new Uint8Array(held.buffer, end, chunk.length).set(chunk);
    target.inbound = new Uint8Array(held.buffer, held.byteOffset, held.length + chunk.length);
    return;
  }
  const size = Math.max(held.length + chunk.length, Math.min(2 * held.length, growthCapBytes), inboundBytesInitial);
  const grown = new Uint8Array(size);
  grown.set(held, 0);
  grown.set(chunk, held.length);
  target.inbound = grown.subarray(0, held.length + chunk.length);
  target.inboundOwned = true;
}

/** Drops the first `consumed` bytes (a decoded frame). */
export function consumeInbound(target: InboundBytes, consumed: number): void {
  const held = target.inbound;
  if (held === null || consumed >= held.length) {
    target.inbound = null;
    target.inboundOwned = false;
  } else {
    target.inbound = held.subarray(consumed);
  }
}
