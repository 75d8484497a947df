import { describe, expect, test } from "bun:test";
import { appendInbound, consumeInbound, type InboundBytes } from "./inbound-bytes.ts";

describe("inbound bytes", () => {
  test("a frame arriving a byte at a time reuses its buffer: allocations grow with the log of its length", () => {
    const target: InboundBytes = { inbound: null, inboundOwned: false };
    const buffers = new Set<ArrayBufferLike>();
    const length = 60_000;
    for (let index = 0; index < length; index++) {
      appendInbound(target, Uint8Array.of(index & 0xff), 65_536);
      buffers.add(target.inbound!.buffer);
    }
    expect(target.inbound!.length).toBe(length);
    expect(target.inbound![12_345]).toBe(12_345 & 0xff);
    // The first chunk itself, then 256, 512, ... 65,536 bytes: a handful of buffers, not one per byte.
    expect(buffers.size).toBeLessThanOrEqual(12);
  });

  test("views handed out before an append keep their bytes", () => {
    const target: InboundBytes = { inbound: null, inboundOwned: false };
    appendInbound(target, Uint8Array.of(1, 2, 3), 1024);
    appendInbound(target, Uint8Array.of(4, 5), 1024);
    const handedOut = target.inbound!.subarray(0, 3);
    consumeInbound(target, 3);
    appendInbound(target, Uint8Array.of(6, 7, 8), 1024);
    expect([...handedOut]).toEqual([1, 2, 3]);
    expect([...target.inbound!]).toEqual([4, 5, 6, 7, 8]);
    consumeInbound(target, 5);
    expect(target.inbound).toBeNull();
    expect(target.inboundOwned).toBe(false);
  });

  test("a chunk given by the caller is never written past its end", () => {
    const backing = new Uint8Array(16).fill(9);
    const target: InboundBytes = { inbound: null, inboundOwned: false };
    appendInbound(target, backing.subarray(0, 4), 1024);
    appendInbound(target, Uint8Array.of(1), 1024);
    expect([...backing.subarray(4)]).toEqual(new Array(12).fill(9));
  });
});
