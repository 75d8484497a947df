// The safety number of a conversation: Signal's displayable fingerprint (version 0), 60 digits both sides compute
// alike from the two identity keys and compare out of band. The same computation as the library's
// FingerprintGenerator (e2e-safety-number.test.ts checks they agree), over WebCrypto's SHA-512: the library hashes
// with msrcrypto, a JavaScript SHA-512 that never finished in Chromium's page (5200 rounds per side), and is slow
// everywhere. The hash is the platform's; only Signal's iteration and digit encoding are written here.

/** Iterations of the hash, as Signal's clients use. */
export const safetyNumberIterations = 5200;

/** 30 digits for one side: SHA-512 iterated over (version 0, key, identifier), then (digest, key) each round. */
async function displayStringFor(identifier: string, key: ArrayBuffer, iterations: number): Promise<string> {
  const keyBytes = new Uint8Array(key);
  const id = new TextEncoder().encode(identifier);
  let data = new Uint8Array(2 + keyBytes.length + id.length);
  data.set(keyBytes, 2); // the version, 0, as two bytes
  data.set(id, 2 + keyBytes.length);
  let hash = new Uint8Array(0);
  for (let round = 0; round < iterations; round++) {
    const input = new Uint8Array(data.length + keyBytes.length);
    input.set(data);
    input.set(keyBytes, data.length);
    hash = new Uint8Array(await crypto.subtle.digest("SHA-512", input));
    data = hash;
  }
  let digits = "";
  for (let offset = 0; offset < 30; offset += 5) {
    let chunk = 0;
    for (let index = 0; index < 5; index++) chunk = chunk * 256 + hash[offset + index]!;
    digits += String(chunk % 100_000).padStart(5, "0");
  }
  return digits;
}

/** The conversation's 60 digits: the two sides' 30 digits, the smaller first (so both compute the same). */
export async function safetyNumber(
  localIdentifier: string,
  localKey: ArrayBuffer,
  remoteIdentifier: string,
  remoteKey: ArrayBuffer,
  iterations = safetyNumberIterations,
): Promise<string> {
  const local = await displayStringFor(localIdentifier, localKey, iterations);
  const remote = await displayStringFor(remoteIdentifier, remoteKey, iterations);
  return [local, remote].sort().join("");
}
