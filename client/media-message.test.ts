import { describe, expect, test } from "bun:test";
import { decodeFileMessage, encodeFileMessage, safeFileName } from "./media-message.ts";

const ref = { hash: "ab".repeat(32), size: 116, key: "a2V5" };

describe("file messages", () => {
  test("round trip; ordinary text and malformed file messages are not files", () => {
    const payload = encodeFileMessage({ name: "cat.png", type: "image/png", ref });
    expect(decodeFileMessage(payload)).toEqual({ name: "cat.png", type: "image/png", ref });
    expect(decodeFileMessage(new TextEncoder().encode("hello"))).toBeNull();
    const marker = "\u0000switchboard-file\n";
    for (const body of ["{", "{}", JSON.stringify({ name: "x", ref: { ...ref, hash: "AB".repeat(32) } })]) {
      expect(decodeFileMessage(new TextEncoder().encode(marker + body))).toBeNull();
    }
  });

  test("a received name cannot leave the download directory or hide", () => {
    expect(safeFileName("../../etc/passwd")).toBe("passwd");
    expect(safeFileName("C:\\\\Users\\\\x.txt")).toBe("x.txt");
    expect(safeFileName("..")).toBe("file");
    expect(safeFileName(".bashrc")).toBe("bashrc");
    expect(safeFileName("a\u0000b\nc")).toBe("abc");
  });
});
