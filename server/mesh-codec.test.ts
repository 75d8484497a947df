import { describe, expect, test } from "bun:test";
import { encode } from "@msgpack/msgpack";
import { meshFrameBytesMax } from "../protocol/limits.ts";
import type { MeshMessage } from "./mesh.ts";
import {
  MeshEncoder,
  MeshFrameError,
  MeshFrameReader,
  meshFrameHeaderBytes,
  meshHello,
  meshHelloSender,
  meshHelloVersion,
} from "./mesh-codec.ts";

const messages: MeshMessage[] = [
  { t: "deliver", device: 7, seq: 123456789012, payload: new Uint8Array([0, 1, 2, 255]) },
  { t: "presence", account: "alice", online: true, last: null, devices: [1, 2, [3, 4]] },
  { t: "", nested: { a: { b: -1.5, c: "ü€😀" } }, empty: new Uint8Array(0) },
  { t: "big", payload: new Uint8Array(70_000).fill(9) },
];

function readAll(reader: MeshFrameReader, chunks: Uint8Array[]): { messages: MeshMessage[]; fault?: string } {
  const out: MeshMessage[] = [];
  for (const chunk of chunks) {
    const fault = reader.read(chunk, (message) => out.push(message));
    if (fault !== undefined) return { messages: out, fault };
  }
  return { messages: out };
}

function frameOf(body: Uint8Array): Uint8Array {
  const frame = new Uint8Array(meshFrameHeaderBytes + body.length);
  new DataView(frame.buffer).setUint32(0, body.length, true);
  frame.set(body, meshFrameHeaderBytes);
  return frame;
}

const concat = (parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

describe("mesh codec", () => {
  test("a frame is a u32 little-endian length and the msgpack bytes", () => {
    const frame = new MeshEncoder().encode({ t: "x", n: 1 });
    // fixmap of 2: "t" -> "x", "n" -> 1
    expect(Buffer.from(frame).toString("hex")).toBe("0800000082a174a178a16e01");
  });

  test("round trip of mixed messages, many frames in one chunk", () => {
    const encoder = new MeshEncoder();
    const bytes = concat(messages.map((message) => encoder.encode(message)));
    const result = readAll(new MeshFrameReader(), [bytes]);
    expect(result.fault).toBeUndefined();
    expect(result.messages).toEqual(messages);
    expect(result.messages[0]!.payload).toBeInstanceOf(Uint8Array);
  });

  test("a stream split at every byte boundary, and fed byte by byte", () => {
    const encoder = new MeshEncoder();
    const small = messages.slice(0, 3);
    const bytes = concat(small.map((message) => encoder.encode(message)));
    for (let cut = 0; cut <= bytes.length; cut++) {
      const result = readAll(new MeshFrameReader(), [bytes.subarray(0, cut), bytes.subarray(cut)]);
      expect(result.fault).toBeUndefined();
      expect(result.messages).toEqual(small);
    }
    const single = readAll(
      new MeshFrameReader(),
      Array.from(bytes, (byte) => Uint8Array.of(byte)),
    );
    expect(single.messages).toEqual(small);
  });

  test("seeded random chunking", () => {
    const seed = Number(process.env.MESH_CODEC_SEED ?? Date.now() % 100_000);
    let state = seed;
    const random = () => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return state / 2 ** 31;
    };
    const encoder = new MeshEncoder();
    const sent: MeshMessage[] = [];
    for (let index = 0; index < 500; index++) {
      sent.push({ t: "m", index, payload: new Uint8Array(Math.floor(random() * 3000)).fill(index & 255) });
    }
    const bytes = concat(sent.map((message) => encoder.encode(message)));
    const chunks: Uint8Array[] = [];
    for (let offset = 0; offset < bytes.length; ) {
      const length = 1 + Math.floor(random() * 10_000);
      chunks.push(bytes.subarray(offset, offset + length));
      offset += length;
    }
    const result = readAll(new MeshFrameReader(), chunks);
    if (result.fault !== undefined || result.messages.length !== sent.length) console.log(`mesh codec seed ${seed}`);
    expect(result.messages).toEqual(sent);
  });

  test("a declared length over the limit is a fault before any body arrives", () => {
    const header = new Uint8Array(4);
    new DataView(header.buffer).setUint32(0, meshFrameBytesMax + 1, true);
    expect(readAll(new MeshFrameReader(), [header]).fault).toMatch(/declared frame length/);
    // Also when the header itself arrives split.
    expect(readAll(new MeshFrameReader(), [header.subarray(0, 1), header.subarray(1)]).fault).toMatch(/declared/);
    const reader = new MeshFrameReader(16);
    expect(reader.read(frameOf(new Uint8Array(17)), () => {})).toMatch(/over 16/);
    // A fault is final.
    expect(reader.read(new MeshEncoder().encode({ t: "ok" }), () => {})).toMatch(/over 16/);
  });

  const garbage: [string, Uint8Array][] = [
    ["an empty frame", frameOf(new Uint8Array(0))],
    ["a reserved msgpack byte", frameOf(Uint8Array.of(0xc1))],
    ["a truncated map", frameOf(Uint8Array.of(0x82, 0xa1, 0x74))],
    ["trailing bytes", frameOf(concat([encode({ t: "x" }), Uint8Array.of(0)]))],
    ["a number", frameOf(encode(5))],
    ["an array", frameOf(encode(["t", "x"]))],
    ["a map without t", frameOf(encode({ kind: "x" }))],
    ["a map whose t is a number", frameOf(encode({ t: 1 }))],
    ["a __proto__ key", frameOf(Uint8Array.of(0x81, 0xa9, ...Buffer.from("__proto__"), 0x01))],
    ["a timestamp", frameOf(encode(new Date(0)))],
    ["text", Buffer.from("GET / HTTP/1.1\r\n\r\n")],
  ];
  for (const [name, bytes] of garbage) {
    test(`garbage is a fault: ${name}`, () => {
      const seen: MeshMessage[] = [];
      const fault = new MeshFrameReader().read(bytes, (message) => seen.push(message));
      expect(fault).toBeString();
      expect(seen).toEqual([]);
    });
  }

  test("frames before a fault in the same chunk are delivered", () => {
    const encoder = new MeshEncoder();
    const seen: MeshMessage[] = [];
    const fault = new MeshFrameReader().read(concat([encoder.encode({ t: "a" }), frameOf(encode(1))]), (message) =>
      seen.push(message),
    );
    expect(fault).toBeString();
    expect(seen).toEqual([{ t: "a" }]);
  });

  test("the encoder refuses what the receiver would call garbage, and oversize messages", () => {
    const encoder = new MeshEncoder(100);
    expect(() => encoder.encode({ t: "big", payload: new Uint8Array(101) })).toThrow(MeshFrameError);
    expect(() => encoder.encode({ t: 5 } as unknown as MeshMessage)).toThrow(MeshFrameError);
    expect(() => encoder.encode(["t"] as unknown as MeshMessage)).toThrow(MeshFrameError);
    expect(() => encoder.encode({ t: "n", value: 10n })).toThrow(MeshFrameError);
    expect(() => new MeshEncoder().encode({ t: "big", payload: new Uint8Array(meshFrameBytesMax) })).toThrow(
      MeshFrameError,
    );
    // The encoder still works after a refusal.
    expect(new MeshFrameReader().read(encoder.encode({ t: "ok" }), () => {})).toBeUndefined();
  });

  test("hello rules", () => {
    expect(meshHelloSender(meshHello(2, 4), 0, 4)).toEqual({ sender: 2 });
    const faults: [string, MeshMessage][] = [
      ["not a hello", { t: "deliver", sender: 2, size: 4, v: meshHelloVersion }],
      ["another version", { ...meshHello(2, 4), v: meshHelloVersion + 1 }],
      ["another size", meshHello(2, 5)],
      ["itself", meshHello(0, 4)],
      ["out of range", meshHello(4, 4)],
      ["negative", meshHello(-1, 4)],
      ["fractional", meshHello(1.5, 4)],
      ["a string sender", { ...meshHello(1, 4), sender: "1" }],
    ];
    for (const [name, message] of faults) {
      const result = meshHelloSender(message, 0, 4);
      expect({ name, fault: "fault" in result }).toEqual({ name, fault: true });
    }
  });
});
