import { describe, expect, test } from "bun:test";
import { nobleAead, noiseNonce } from "./noise-aead.ts";
import { nodeAead } from "./noise-aead-node.ts";

describe("the two AES-GCM backends", () => {
  test("agree byte for byte, and each opens the other's records", () => {
    const key = crypto.getRandomValues(new Uint8Array(32));
    for (const [counter, size] of [
      [0, 0],
      [1, 20],
      [2 ** 32 + 5, 1000],
      [2 ** 47, 65_519],
    ] as const) {
      const plaintext = crypto.getRandomValues(new Uint8Array(Math.min(size, 65_536)));
      const ad = counter % 2 === 0 ? new Uint8Array(0) : Uint8Array.of(1, 2, 3);
      const fromNode = nodeAead.seal(key, counter, ad, plaintext);
      expect(Buffer.from(fromNode).equals(Buffer.from(nobleAead.seal(key, counter, ad, plaintext)))).toBe(true);
      expect(Buffer.from(nobleAead.open(key, counter, ad, fromNode)!).equals(Buffer.from(plaintext))).toBe(true);
      expect(Buffer.from(nodeAead.open(key, counter, ad, fromNode)!).equals(Buffer.from(plaintext))).toBe(true);
    }
  });

  test("a flipped bit, a wrong counter, a short ciphertext: null from both, never a throw", () => {
    const key = crypto.getRandomValues(new Uint8Array(32));
    const sealed = nodeAead.seal(key, 3, new Uint8Array(0), new Uint8Array(20));
    for (const aead of [nodeAead, nobleAead]) {
      expect(aead.open(key, 4, new Uint8Array(0), sealed)).toBeNull();
      for (let bit = 0; bit < sealed.length * 8; bit += 13) {
        const tampered = sealed.slice();
        tampered[bit >> 3]! ^= 1 << (bit & 7);
        expect(aead.open(key, 3, new Uint8Array(0), tampered)).toBeNull();
      }
      expect(aead.open(key, 3, new Uint8Array(0), sealed.subarray(0, 15))).toBeNull();
    }
  });

  test("the nonce is 4 zero bytes then the counter big-endian", () => {
    expect(Buffer.from(noiseNonce(0x0102030405)).toString("hex")).toBe("000000000000000102030405");
  });
});
