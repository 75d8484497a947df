import { describe, expect, test } from "bun:test";
import { deflateSync } from "fflate";
import {
  type Compressor,
  defaultLimits,
  ErrorCode,
  FrameCodec,
  fflateCompressor,
  ProtocolError,
  presetDictionary,
  type Stanza,
} from "../protocol/index.ts";
import { hexToBytes, loadBadInputs, loadGolden, toJsonValue } from "../protocol/vectors/generate.ts";
import { zlibCompressor } from "./compression-zlib.ts";

const golden = await loadGolden();
const badInputs = await loadBadInputs();
const repoRoot = new URL("..", import.meta.url).pathname;

function bytesEqual(left: Uint8Array, right: Uint8Array): boolean {
  return left.length === right.length && left.every((byte, index) => byte === right[index]);
}

function expectCode(result: Uint8Array | ProtocolError, code: number): void {
  expect(result).toBeInstanceOf(ProtocolError);
  expect((result as ProtocolError).code).toBe(code);
}

/** Bodies that frames really carry: golden bodies, a big device list, text, zeros, and incompressible noise. */
function sampleBodies(): Uint8Array[] {
  const codec = new FrameCodec({ limits: defaultLimits });
  const bodies = [...golden.frames, ...golden.budgets].map((vector) => {
    const frame = hexToBytes(vector.hex);
    return frame.subarray(frame[0]! < 0x80 ? 2 : 3);
  });
  const deviceList: Stanza = {
    kind: "deviceList",
    clientId: 3,
    devices: Array.from({ length: 16 }, (_, index) => ({
      device: index + 1,
      createdAtSeconds: 1_760_000_000 + index,
      lastSeenAtSeconds: 1_763_800_000 - index,
    })),
  };
  const noise = new Uint8Array(5000);
  crypto.getRandomValues(noise);
  bodies.push(codec.encode(deviceList).subarray(2));
  bodies.push(new TextEncoder().encode("unknown device; ".repeat(200)));
  bodies.push(new Uint8Array(defaultLimits.frameBytesMax));
  bodies.push(noise, new Uint8Array(0), Uint8Array.of(0x90));
  return bodies;
}

describe("zlibCompressor", () => {
  const sides: ReadonlyArray<readonly [string, Compressor, Compressor]> = [
    ["zlib -> fflate", zlibCompressor, fflateCompressor],
    ["fflate -> zlib", fflateCompressor, zlibCompressor],
    ["zlib -> zlib", zlibCompressor, zlibCompressor],
  ];
  test.each(sides)("%s: what one side deflates, the other inflates to the same bytes", (_name, source, target) => {
    for (const body of sampleBodies()) {
      const deflated = source.deflate(body);
      const inflated = target.inflate(deflated, defaultLimits.frameBytesMax);
      expect(inflated).toBeInstanceOf(Uint8Array);
      expect(bytesEqual(inflated as Uint8Array, body)).toBe(true);
    }
  });

  test("uses the preset dictionary (a dictionary-only match compresses far below its plain size)", () => {
    const text = new TextEncoder().encode("payloads do not match the recipient's devices");
    expect(zlibCompressor.deflate(text).length).toBeLessThan(12);
  });

  test("returns plain Uint8Array views, not Buffers", () => {
    const inflated = zlibCompressor.inflate(zlibCompressor.deflate(Uint8Array.of(1, 2, 3)), 100) as Uint8Array;
    expect(inflated.constructor).toBe(Uint8Array);
    expect(zlibCompressor.deflate(Uint8Array.of(1)).constructor).toBe(Uint8Array);
  });

  test("the cap: exactly bytesMax inflates, one byte more is inflateTooLarge (Bun honours maxOutputLength)", () => {
    const body = new Uint8Array(4096).fill(0x61);
    const deflated = zlibCompressor.deflate(body);
    expect((zlibCompressor.inflate(deflated, 4096) as Uint8Array).length).toBe(4096);
    expectCode(zlibCompressor.inflate(deflated, 4095), ErrorCode.inflateTooLarge);
  });

  test("refuses what is not deflate with badCompression", () => {
    expectCode(zlibCompressor.inflate(new Uint8Array(0), 100), ErrorCode.badCompression);
    expectCode(zlibCompressor.inflate(hexToBytes("07"), 100), ErrorCode.badCompression);
    const deflated = zlibCompressor.deflate(new Uint8Array(300).map((_, index) => index * 31));
    expectCode(zlibCompressor.inflate(deflated.subarray(0, deflated.length - 4), 1000), ErrorCode.badCompression);
  });

  test("a FrameCodec on zlib decodes every golden frame and refuses every bad input with its code", () => {
    const codec = new FrameCodec({ limits: defaultLimits, compressor: zlibCompressor });
    for (const vector of [...golden.frames, ...golden.budgets]) {
      const result = codec.decode(hexToBytes(vector.hex));
      expect(result.status).toBe("frame");
      if (result.status === "frame") expect(toJsonValue(result.stanza)).toEqual(vector.value);
    }
    for (const input of badInputs.inputs) {
      const result = codec.decode(hexToBytes(input.hex));
      expect([input.name, result.status === "error" ? result.error.code : result.status]).toEqual([
        input.name,
        input.code,
      ]);
    }
  });

  test("a deflate bomb is refused fast, with bounded memory (measured in a fresh process)", () => {
    const bomb = deflateSync(new Uint8Array(60 << 20), { level: 9, dictionary: presetDictionary });
    expect(bomb.length).toBeLessThan(defaultLimits.frameBytesMax);
    const started = performance.now();
    expectCode(zlibCompressor.inflate(bomb, defaultLimits.frameBytesMax), ErrorCode.inflateTooLarge);
    expect(performance.now() - started).toBeLessThan(200);

    const script = `
      import { deflateSync } from "fflate";
      import { presetDictionary } from "./protocol/index.ts";
      import { zlibCompressor } from "./server/compression-zlib.ts";
      const bomb = deflateSync(new Uint8Array(60 << 20), { level: 9, dictionary: presetDictionary });
      Bun.gc(true);
      const before = process.memoryUsage().rss;
      let peak = before;
      const codes = new Set();
      for (let round = 0; round < 20; round++) {
        codes.add(zlibCompressor.inflate(bomb, 65536).code);
        peak = Math.max(peak, process.memoryUsage().rss);
      }
      console.log(JSON.stringify({ codes: [...codes], growthBytes: peak - before }));
    `;
    const child = Bun.spawnSync([process.execPath, "-e", script], { cwd: repoRoot, stderr: "pipe" });
    expect(child.stderr.toString()).toBe("");
    const report = JSON.parse(child.stdout.toString().trim()) as { codes: unknown[]; growthBytes: number };
    expect(report.codes).toEqual([ErrorCode.inflateTooLarge]);
    expect(report.growthBytes).toBeLessThan(32 * 1024 * 1024);
  });
});
