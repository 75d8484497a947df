import { describe, expect, test } from "bun:test";
import { ErrorCode, ProtocolError } from "./errors.ts";
import { decodePreamble, encodePreamble, preambleBytes, protocolVersion, protocolVersionMin } from "./preamble.ts";
import { tokenDictionaryVersion } from "./tokens.ts";
import { bytesToHex, hexToBytes, loadGolden } from "./vectors/generate.ts";

const golden = await loadGolden();

describe("preamble", () => {
  test("the default preamble is S B, this protocol version, this dictionary version", () => {
    expect(bytesToHex(encodePreamble())).toBe("53420104");
    expect(preambleBytes).toBe(4);
    expect(protocolVersion).toBe(golden.protocolVersion);
    expect(tokenDictionaryVersion).toBe(golden.dictionaryVersion);
  });

  test("the golden preambles cover good, partial, wrong magic and both version errors", () => {
    const results = new Set(golden.preambles.map((vector) => vector.codeName ?? vector.result));
    expect([...results].sort()).toEqual(["badPreamble", "more", "ok", "versionUnsupported"]);
  });

  test.each(golden.preambles.map((vector) => [vector.name, vector] as const))("golden: %s", (_name, vector) => {
    const result = decodePreamble(hexToBytes(vector.hex));
    if (vector.result === "more") {
      expect(result).toBe("more");
    } else if (vector.result === "error") {
      expect(result).toBeInstanceOf(ProtocolError);
      expect((result as ProtocolError).code).toBe(vector.code!);
      expect(vector.code).toBe(ErrorCode[vector.codeName as keyof typeof ErrorCode]);
    } else {
      expect(result).toEqual(vector.value!);
      expect(bytesToHex(encodePreamble(vector.value))).toBe(vector.hex);
    }
  });

  test("wrong magic is refused before the preamble is complete", () => {
    const refused = decodePreamble(hexToBytes("16"));
    expect(refused).toBeInstanceOf(ProtocolError);
    expect((refused as ProtocolError).code).toBe(ErrorCode.badPreamble);
    expect((refused as ProtocolError).action).toBe("reconnect");
  });

  test("versions out of range are versionUnsupported, a stop code", () => {
    for (const version of [0, protocolVersionMin - 1, protocolVersion + 1, 255]) {
      if (version >= protocolVersionMin && version <= protocolVersion) continue;
      const result = decodePreamble(encodePreamble({ protocolVersion: version, dictionaryVersion: 1 }));
      expect(result).toBeInstanceOf(ProtocolError);
      expect((result as ProtocolError).code).toBe(ErrorCode.versionUnsupported);
      expect((result as ProtocolError).action).toBe("stop");
    }
  });

  test("reads only the first 4 bytes: the first frame may follow in the same chunk", () => {
    const chunk = hexToBytes("53420101020e90");
    expect(decodePreamble(chunk)).toEqual({ protocolVersion: 1, dictionaryVersion: 1 });
  });

  test("every prefix of a good preamble asks for more", () => {
    const good = encodePreamble();
    for (let cut = 0; cut < good.length; cut++) expect(decodePreamble(good.subarray(0, cut))).toBe("more");
  });
});
