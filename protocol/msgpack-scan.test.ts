import { describe, expect, test } from "bun:test";
import { encode } from "@msgpack/msgpack";
import { Random } from "./fuzz.ts";
import { scanMsgpack } from "./msgpack-scan.ts";
import { hexToBytes, loadGolden } from "./vectors/generate.ts";

const golden = await loadGolden();

function scan(hex: string, depthMax = 3) {
  const bytes = hexToBytes(hex);
  return scanMsgpack(bytes, 0, bytes.length, depthMax);
}

/** The body of an uncompressed golden frame: after the length varint and the header byte. */
function bodyOf(frameHex: string): Uint8Array {
  const frame = hexToBytes(frameHex);
  let offset = 0;
  while ((frame[offset]! & 0x80) !== 0) offset++;
  return frame.subarray(offset + 2);
}

const plainBodies = [...golden.frames, ...golden.budgets]
  .filter((vector) => !vector.compressed)
  .map((vector) => [vector.name, bodyOf(vector.hex)] as const);

describe("scanMsgpack", () => {
  test.each(plainBodies)("golden body of %s is one value", (_name, body) => {
    expect(scanMsgpack(body, 0, body.length, 3)).toBe("ok");
    // Every strict prefix is truncated, never accepted.
    for (let cut = 0; cut < body.length; cut++) expect(scanMsgpack(body, 0, cut, 3)).toBe("truncated");
    // Any byte after it is trailing.
    const longer = new Uint8Array(body.length + 1);
    longer.set(body);
    expect(scanMsgpack(longer, 0, longer.length, 3)).toBe("trailing");
  });

  test("every fixed-size type is skipped by its size", () => {
    const values: ReadonlyArray<readonly [string, string]> = [
      ["positive fixint", "7f"],
      ["negative fixint", "e0"],
      ["nil", "c0"],
      ["false", "c2"],
      ["true", "c3"],
      ["uint8", "ccff"],
      ["uint16", "cdffff"],
      ["uint32", "ceffffffff"],
      ["uint64", "cfffffffffffffffff"],
      ["int8", "d080"],
      ["int16", "d18000"],
      ["int32", "d280000000"],
      ["int64", "d38000000000000000"],
      ["float32", "ca3fc00000"],
      ["float64", "cb3ff8000000000000"],
      ["fixext 1", "d40001"],
      ["fixext 2", "d5000102"],
      ["fixext 4", "d60001020304"],
      ["fixext 8", "d7000102030405060708"],
      ["fixext 16", `d800${"01".repeat(16)}`],
    ];
    for (const [name, hex] of values) {
      expect([name, scan(hex)]).toEqual([name, "ok"]);
      if (hex.length > 2) expect([name, scan(hex.slice(0, -2))]).toEqual([name, "truncated"]);
    }
  });

  test("strings, binaries and extensions are skipped by their length field", () => {
    expect(scan("a3616263")).toBe("ok");
    expect(scan("d903616263")).toBe("ok");
    expect(scan("da0003616263")).toBe("ok");
    expect(scan("db00000003616263")).toBe("ok");
    expect(scan("c403010203")).toBe("ok");
    expect(scan("c5000201ff")).toBe("ok");
    expect(scan("c60000000101")).toBe("ok");
    expect(scan("c70201aabb")).toBe("ok");
    expect(scan("c8000101aa")).toBe("ok");
    expect(scan("c90000000101aa")).toBe("ok");
    // Contents are never parsed: a payload full of type bytes is still one bin.
    expect(scan("c404c1dcdddf")).toBe("ok");
    expect(scan("c40401")).toBe("truncated");
    expect(scan("c5ff")).toBe("truncated");
    expect(scan("db0000")).toBe("truncated");
  });

  test("a length field near 2^32 is truncated, not a huge skip that wraps", () => {
    expect(scan("c6ffffffff00")).toBe("truncated");
    expect(scan("dbffffffff")).toBe("truncated");
    expect(scan("ddffffffff")).toBe("truncated");
  });

  test("0xc1 is invalid wherever it stands", () => {
    expect(scan("c1")).toBe("invalid");
    expect(scan("92c100")).toBe("invalid");
    expect(scan("91c1ffffffffff")).toBe("invalid");
  });

  test("maps count keys and values as items", () => {
    expect(scan("81a16101")).toBe("ok");
    expect(scan("81a161")).toBe("truncated");
    expect(scan("de0001a16101")).toBe("ok");
    expect(scan("df00000001a16101")).toBe("ok");
  });

  test("nesting: the body is depth 1, and depth depthMax is the deepest allowed", () => {
    expect(scan("90", 1)).toBe("ok");
    expect(scan("9190", 1)).toBe("tooDeep");
    expect(scan("919190", 3)).toBe("ok");
    expect(scan("91919190", 3)).toBe("tooDeep");
    expect(scan("81a161819090", 2)).toBe("tooDeep");
    expect(scan("81a161819090", 3)).toBe("ok");
    expect(scan("dc0001dd000000019190", 3)).toBe("tooDeep");
    // Siblings do not add up: depth returns after each container closes.
    expect(scan("93919091909190", 3)).toBe("ok");
  });

  test("a container that claims more items than bytes left is truncated at once", () => {
    expect(scan("dcffff")).toBe("truncated");
    expect(scan("ddffffffff01")).toBe("truncated");
    expect(scan("9f01")).toBe("truncated");
  });

  test("respects offset and end", () => {
    const bytes = hexToBytes("ffff9201029999");
    expect(scanMsgpack(bytes, 2, 5, 3)).toBe("ok");
    expect(scanMsgpack(bytes, 2, 4, 3)).toBe("truncated");
    expect(scanMsgpack(bytes, 2, 6, 3)).toBe("trailing");
    expect(scanMsgpack(bytes, 7, 7, 3)).toBe("truncated");
  });

  test("agrees with @msgpack/msgpack on seeded random values", () => {
    const random = new Random(0xacce55);
    const value = (depth: number): unknown => {
      const choice = random.below(depth >= 3 ? 7 : 9);
      switch (choice) {
        case 0:
          return random.below(2 ** 32);
        case 1:
          return -random.below(2 ** 31);
        case 2:
          return random.next();
        case 3:
          return "x".repeat(random.below(300));
        case 4:
          return random.bytes(random.below(70_000));
        case 5:
          return random.pick([null, true, false]);
        case 6:
          return 2 ** 40 + random.below(1000);
        case 7:
          return Array.from({ length: random.below(20) }, () => value(depth + 1));
        default:
          return Object.fromEntries(
            Array.from({ length: random.below(5) }, (_, index) => [`k${index}`, value(depth + 1)]),
          );
      }
    };
    for (let round = 0; round < 300; round++) {
      const body = Array.from({ length: random.below(8) }, () => value(2));
      const bytes = encode(body);
      const depth = (item: unknown): number =>
        Array.isArray(item)
          ? 1 + Math.max(0, ...item.map(depth))
          : item !== null && typeof item === "object" && !(item instanceof Uint8Array)
            ? 1 + Math.max(0, ...Object.values(item).map(depth))
            : 0;
      const actual = depth(body);
      expect(scanMsgpack(bytes, 0, bytes.length, actual)).toBe("ok");
      expect(scanMsgpack(bytes, 0, bytes.length, actual - 1)).toBe("tooDeep");
    }
  });
});
