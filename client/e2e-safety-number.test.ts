import { expect, test } from "bun:test";
import { FingerprintGenerator, KeyHelper } from "@privacyresearch/libsignal-protocol-typescript";
import { safetyNumber } from "./e2e-safety-number.ts";

test("the safety number is the library's fingerprint, computed with WebCrypto's SHA-512", async () => {
  for (let round = 0; round < 2; round++) {
    const [mine, theirs] = [await KeyHelper.generateIdentityKeyPair(), await KeyHelper.generateIdentityKeyPair()];
    const expected = await new FingerprintGenerator(50).createFor("1000001", mine.pubKey, "42", theirs.pubKey);
    expect(await safetyNumber("1000001", mine.pubKey, "42", theirs.pubKey, 50)).toBe(expected);
    // Symmetric: the peer computes the same digits.
    expect(await safetyNumber("42", theirs.pubKey, "1000001", mine.pubKey, 50)).toBe(expected);
    expect(expected).toMatch(/^\d{60}$/);
  }
});
