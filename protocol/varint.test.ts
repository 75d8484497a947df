import { describe, expect, test } from "bun:test";
import { Random } from "./fuzz.ts";
import { frameLengthVarintBytesMax } from "./limits.ts";
import { readVarint, varintLength, writeVarint } from "./varint.ts";
import { bytesToHex, hexToBytes } from "./vectors/generate.ts";

function encode(value: number): Uint8Array {
  const bytes = new Uint8Array(varintLength(value));
  expect(writeVarint(bytes, 0, value)).toBe(bytes.length);
  return bytes;
}

describe("varint", () => {
  // Boundaries of each length, with their exact LEB128 bytes (low group first).
  const known: ReadonlyArray<readonly [number, string]> = [
    [0, "00"],
    [1, "01"],
    [127, "7f"],
    [128, "8001"],
    [300, "ac02"],
    [16_383, "ff7f"],
    [16_384, "808001"],
    [65_536, "808004"],
    [2 ** 21 - 1, "ffff7f"],
    [2 ** 21, "80808001"],
    [2 ** 28 - 1, "ffffff7f"],
  ];

  test.each(known)("%d encodes as %s and back", (value, hex) => {
    expect(bytesToHex(encode(value))).toBe(hex);
    expect(varintLength(value)).toBe(hex.length / 2);
    expect(readVarint(hexToBytes(hex), 0, 4)).toEqual({ value, length: hex.length / 2 });
  });

  test("writes at an offset and returns the offset after it", () => {
    const target = new Uint8Array(6).fill(0xee);
    expect(writeVarint(target, 2, 300)).toBe(4);
    expect(bytesToHex(target)).toBe("eeeeac02eeee");
    expect(readVarint(target, 2, 3)).toEqual({ value: 300, length: 2 });
  });

  test("reads only its own bytes when more follow", () => {
    expect(readVarint(hexToBytes("ac02ffff"), 0, 3)).toEqual({ value: 300, length: 2 });
  });

  test('"more" while the input ends inside the varint', () => {
    expect(readVarint(new Uint8Array(0), 0, 3)).toBe("more");
    expect(readVarint(hexToBytes("80"), 0, 3)).toBe("more");
    expect(readVarint(hexToBytes("ffff"), 0, 3)).toBe("more");
    expect(readVarint(hexToBytes("00ff"), 1, 3)).toBe("more");
  });

  test('"overlong" for a non-canonical form', () => {
    expect(readVarint(hexToBytes("8000"), 0, 3)).toBe("overlong");
    expect(readVarint(hexToBytes("ff00"), 0, 3)).toBe("overlong");
    expect(readVarint(hexToBytes("808000"), 0, 3)).toBe("overlong");
    // A zero in the last byte is only overlong after the first byte: a lone 00 is the value 0.
    expect(readVarint(hexToBytes("00"), 0, 3)).toEqual({ value: 0, length: 1 });
  });

  test('"overlong" past bytesMax, before the input runs out', () => {
    expect(readVarint(hexToBytes("808080"), 0, 3)).toBe("overlong");
    expect(readVarint(hexToBytes("80808001"), 0, frameLengthVarintBytesMax)).toBe("overlong");
    expect(readVarint(hexToBytes("80808001"), 0, 4)).toEqual({ value: 2 ** 21, length: 4 });
  });

  test("seeded random values round trip", () => {
    const seed = 0x5eed;
    const random = new Random(seed);
    for (let round = 0; round < 2000; round++) {
      const value = random.below(2 ** random.between(1, 28));
      const bytes = encode(value);
      expect(readVarint(bytes, 0, 4)).toEqual({ value, length: bytes.length });
      // Every strict prefix is incomplete, never wrong.
      for (let cut = 0; cut < bytes.length; cut++) expect(readVarint(bytes.subarray(0, cut), 0, 4)).toBe("more");
    }
  });
});
