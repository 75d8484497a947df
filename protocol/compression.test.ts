import { describe, expect, test } from "bun:test";
import { deflateSync, inflateSync } from "fflate";
import { fflateCompressor, presetDictionary } from "./compression.ts";
import { ErrorCode, ProtocolError } from "./errors.ts";
import { FrameCodec, headerCompressedBit } from "./frame-codec.ts";
import { defaultLimits } from "./limits.ts";
import type { Stanza } from "./stanzas.ts";
import { bytesToHex, fromJsonValue, hexToBytes, loadBadInputs, loadGolden, toJsonValue } from "./vectors/generate.ts";

const golden = await loadGolden();
const badInputs = await loadBadInputs();
const codec = new FrameCodec({ limits: defaultLimits });
const repoRoot = new URL("..", import.meta.url).pathname;

function expectCode(result: Uint8Array | ProtocolError, code: number): void {
  expect(result).toBeInstanceOf(ProtocolError);
  expect((result as ProtocolError).code).toBe(code);
}

const sixteenDevices: Stanza = {
  kind: "deviceList",
  clientId: 9,
  devices: Array.from({ length: 16 }, (_, index) => ({
    device: index + 1,
    createdAtSeconds: 1_760_000_000 + index * 86_400,
    lastSeenAtSeconds: 1_763_800_000 - index * 60,
  })),
};

describe("preset dictionary", () => {
  test("is the bytes written in the golden vectors (a change is a wire change)", () => {
    expect(bytesToHex(presetDictionary)).toBe(golden.presetDictionaryHex);
  });

  test("ends with raw MessagePack bytes, not their UTF-8 encoding", () => {
    expect(bytesToHex(presetDictionary.subarray(-14))).toBe("9301ce00000000ce9302ce9303ce");
    expect(presetDictionary.includes(0xc2)).toBe(false);
  });

  test("is used: a compressed golden frame does not inflate without it to the same body", () => {
    const vector = golden.frames.find((frame) => frame.compressed && frame.kind === "error")!;
    const frame = hexToBytes(vector.hex);
    const body = frame.subarray(2);
    const withDictionary = fflateCompressor.inflate(body, 4096) as Uint8Array;
    let without: Uint8Array | undefined;
    try {
      without = inflateSync(body);
    } catch {
      without = undefined;
    }
    expect(without === undefined || bytesToHex(without) !== bytesToHex(withDictionary)).toBe(true);
  });
});

describe("fflateCompressor", () => {
  test("round trips bodies of every size up to the cap", () => {
    for (const size of [0, 1, 95, 96, 1000, 65_536]) {
      const body = new Uint8Array(size).map((_, index) => (index * 7) % 13);
      const inflated = fflateCompressor.inflate(fflateCompressor.deflate(body), 65_536);
      expect(bytesToHex(inflated as Uint8Array)).toBe(bytesToHex(body));
    }
  });

  test("inflates to exactly bytesMax, refuses one byte more", () => {
    const body = new Uint8Array(4096).fill(0x61);
    const deflated = fflateCompressor.deflate(body);
    expect((fflateCompressor.inflate(deflated, 4096) as Uint8Array).length).toBe(4096);
    expectCode(fflateCompressor.inflate(deflated, 4095), ErrorCode.inflateTooLarge);
  });

  test("refuses what is not deflate with badCompression", () => {
    expectCode(fflateCompressor.inflate(new Uint8Array(0), 100), ErrorCode.badCompression);
    expectCode(fflateCompressor.inflate(hexToBytes("07"), 100), ErrorCode.badCompression);
    const cut = fflateCompressor.deflate(new Uint8Array(300).map((_, index) => index * 31));
    expectCode(fflateCompressor.inflate(cut.subarray(0, cut.length - 4), 1000), ErrorCode.badCompression);
  });

  test("a deflate bomb stops at the cap, quickly", () => {
    const bomb = deflateSync(new Uint8Array(60 << 20), { level: 9, dictionary: presetDictionary });
    expect(bomb.length).toBeLessThan(defaultLimits.frameBytesMax);
    const started = performance.now();
    expectCode(fflateCompressor.inflate(bomb, defaultLimits.frameBytesMax), ErrorCode.inflateTooLarge);
    expect(performance.now() - started).toBeLessThan(500);
  });

  test("a deflate bomb costs bounded memory (measured in a fresh process)", () => {
    // 20 bombs of 60 MiB each inside one frame: inflating any one fully would add 60 MiB to the process.
    const script = `
      import { deflateSync } from "fflate";
      import { FrameCodec, defaultLimits, presetDictionary } from "./protocol/index.ts";
      const codec = new FrameCodec({ limits: defaultLimits });
      const body = deflateSync(new Uint8Array(60 << 20), { level: 9, dictionary: presetDictionary });
      const frame = new Uint8Array(3 + 1 + body.length);
      let length = 1 + body.length;
      frame[0] = (length & 0x7f) | 0x80; frame[1] = ((length >> 7) & 0x7f) | 0x80; frame[2] = length >> 14;
      frame[3] = 0x80 | 14;
      frame.set(body, 4);
      Bun.gc(true);
      const before = process.memoryUsage().rss;
      let peak = before;
      const codes = new Set();
      for (let round = 0; round < 20; round++) {
        const result = codec.decode(frame);
        codes.add(result.status === "error" ? result.error.code : result.status);
        peak = Math.max(peak, process.memoryUsage().rss);
      }
      console.log(JSON.stringify({ codes: [...codes], growthBytes: peak - before, frameBytes: frame.length }));
    `;
    const child = Bun.spawnSync([process.execPath, "-e", script], { cwd: repoRoot, stderr: "pipe" });
    expect(child.stderr.toString()).toBe("");
    const report = JSON.parse(child.stdout.toString().trim()) as {
      codes: unknown[];
      growthBytes: number;
      frameBytes: number;
    };
    expect(report.frameBytes).toBeLessThanOrEqual(defaultLimits.frameBytesMax);
    expect(report.codes).toEqual([ErrorCode.inflateTooLarge]);
    expect(report.growthBytes).toBeLessThan(32 * 1024 * 1024);
  });
});

describe("compression in frames", () => {
  test("a device list of 16 devices is compressed and smaller", () => {
    const plain = codec.encode(sixteenDevices);
    const compressed = codec.encode(sixteenDevices, { compress: true });
    expect(compressed[plain[0]! < 0x80 ? 1 : 2]! & headerCompressedBit).toBe(headerCompressedBit);
    expect(compressed.length).toBeLessThan(plain.length);
    const decoded = codec.decode(compressed);
    expect(decoded.status).toBe("frame");
    if (decoded.status !== "frame") return;
    expect(decoded.compressed).toBe(true);
    expect(decoded.consumed).toBe(compressed.length);
    expect(toJsonValue(decoded.stanza)).toEqual(toJsonValue(sixteenDevices));
  });

  test("a long error message is compressed and smaller", () => {
    const error: Stanza = {
      kind: "error",
      code: ErrorCode.deviceMismatch,
      clientId: 77,
      // The server's own messages, which the preset dictionary holds (a body this long is rare: a sender's choice).
      message: "payloads do not match the recipient's devices; queue of device 2 is full; retry later; no such device",
    };
    const plain = codec.encode(error);
    const compressed = codec.encode(error, { compress: true });
    expect(compressed.length).toBeLessThan(plain.length / 2);
    expect(toJsonValue((codec.decode(compressed) as { stanza: Stanza }).stanza)).toEqual(toJsonValue(error));
  });

  test("an incompressible payload frame is sent plain, even when compression is asked for", () => {
    const payload = new Uint8Array(400);
    crypto.getRandomValues(payload);
    const send: Stanza = { kind: "send", clientId: 1, to: 2, payload };
    const frame = codec.encode(send, { compress: true });
    expect(bytesToHex(frame)).toBe(bytesToHex(codec.encode(send)));
    expect(frame[2]! & headerCompressedBit).toBe(0);
  });

  test("a body under compressionBodyBytesMin is never compressed, however repetitive", () => {
    const send: Stanza = { kind: "send", clientId: 1, to: 2, payload: new Uint8Array(80) };
    const plain = codec.encode(send);
    expect(plain.length - 2).toBeLessThan(defaultLimits.compressionBodyBytesMin);
    expect(bytesToHex(codec.encode(send, { compress: true }))).toBe(bytesToHex(plain));
    const longer: Stanza = { ...send, payload: new Uint8Array(200) };
    expect(codec.encode(longer, { compress: true }).length).toBeLessThan(codec.encode(longer).length);
  });

  test("compressed golden frames decode to their value", () => {
    for (const vector of golden.frames.filter((frame) => frame.compressed)) {
      const decoded = codec.decode(hexToBytes(vector.hex));
      expect(decoded.status).toBe("frame");
      if (decoded.status !== "frame") continue;
      expect(decoded.compressed).toBe(true);
      expect(toJsonValue(decoded.stanza)).toEqual(vector.value);
      expect(toJsonValue(fromJsonValue(vector.value))).toEqual(vector.value);
    }
  });

  test("the golden deflate bomb is refused with inflateTooLarge; bad deflate with badCompression", () => {
    const bomb = badInputs.inputs.find((input) => input.codeName === "inflateTooLarge")!;
    const result = codec.decode(hexToBytes(bomb.hex));
    expect(result.status).toBe("error");
    if (result.status === "error") expect(result.error.code).toBe(ErrorCode.inflateTooLarge);
    const bad = badInputs.inputs.filter((input) => input.codeName === "badCompression");
    expect(bad.length).toBeGreaterThanOrEqual(2);
    for (const input of bad) {
      const refused = codec.decode(hexToBytes(input.hex));
      expect(refused.status === "error" && refused.error.code === ErrorCode.badCompression).toBe(true);
    }
  });
});
