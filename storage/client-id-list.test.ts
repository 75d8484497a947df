import { describe, expect, test } from "bun:test";
import { packClientIds, unpackClientIds } from "./client-id-list.ts";

describe("client id list", () => {
  test("packs as little-endian uint32", () => {
    const bytes = packClientIds([1, 0x01020304, 0xffffffff]);
    expect(Buffer.from(bytes).toString("hex")).toBe("01000000" + "04030201" + "ffffffff");
  });

  test("round trips, including empty and from an offset view", () => {
    expect(unpackClientIds(packClientIds([]))).toEqual([]);
    const packed = packClientIds([7, 8, 9]);
    const shifted = new Uint8Array(packed.byteLength + 3);
    shifted.set(packed, 3);
    expect(unpackClientIds(shifted.subarray(3))).toEqual([7, 8, 9]);
  });

  test("refuses values that are not uint32 and blobs of the wrong length", () => {
    expect(() => packClientIds([-1])).toThrow(RangeError);
    expect(() => packClientIds([2 ** 32])).toThrow(RangeError);
    expect(() => packClientIds([1.5])).toThrow(RangeError);
    expect(() => unpackClientIds(new Uint8Array(5))).toThrow();
  });
});
