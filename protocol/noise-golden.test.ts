// The committed Noise golden vectors (protocol/vectors/noise-golden.json) are what the code produces, each record
// opens with the keys written next to it, and the encrypted wire budgets of PROTOCOL.md section 14 hold.

import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { FrameCodec } from "./frame-codec.ts";
import { defaultLimits, noiseLengthBytes } from "./limits.ts";
import { nobleAead, noiseTagBytes } from "./noise-aead.ts";
import { NoiseCipherTable } from "./noise-cipher-table.ts";
import { noiseKeyPair } from "./noise-handshake.ts";
import { bytesToHex, hexToBytes } from "./vectors/generate.ts";
import { noiseGolden } from "./vectors/noise-golden.ts";

const committed = JSON.parse(readFileSync(new URL("./vectors/noise-golden.json", import.meta.url), "utf8"));

describe("Noise golden vectors", () => {
  test("the committed file is what the code produces (bun protocol/vectors/noise-golden.ts --write)", () => {
    expect(committed).toEqual(JSON.parse(JSON.stringify(noiseGolden())));
  });

  test("each record opens with the transport key of its direction and the next counter", () => {
    for (const connection of committed.connections) {
      const counters = { client: 0, server: 0 };
      for (const record of connection.records as { from: "client" | "server"; hex: string; plaintextHex: string }[]) {
        const key = hexToBytes(
          record.from === "client" ? connection.clientToServerKeyHex : connection.serverToClientKeyHex,
        );
        const bytes = hexToBytes(record.hex);
        expect((bytes[0]! << 8) | bytes[1]!).toBe(bytes.length - noiseLengthBytes);
        const opened = nobleAead.open(
          key,
          counters[record.from]++,
          new Uint8Array(0),
          bytes.subarray(noiseLengthBytes),
        );
        expect(bytesToHex(opened!)).toBe(record.plaintextHex);
      }
    }
  });

  test("the public keys follow from the private ones", () => {
    for (const key of Object.values(committed.keys) as { privateHex: string; publicHex: string }[]) {
      expect(bytesToHex(noiseKeyPair(hexToBytes(key.privateHex)).publicKey)).toBe(key.publicHex);
    }
  });
});

describe("wire budgets over Noise", () => {
  // A frame sent alone costs 18 more bytes: the record's length (2) and the GCM tag (16). Frames written in the same
  // turn share one record, so a batch pays it once.
  const codec = new FrameCodec({ limits: defaultLimits });
  const high = 0xffff_ffff;
  const payload = new Uint8Array(20).fill(0xee);
  const table = new NoiseCipherTable(nobleAead, 1);
  const slot = table.install({
    sendKey: new Uint8Array(32).fill(1),
    receiveKey: new Uint8Array(32).fill(2),
    handshakeHash: new Uint8Array(32),
    remoteStaticKey: new Uint8Array(32),
  });
  test.each([
    ["send", codec.encode({ kind: "send", clientId: high, to: high, payload }), 36 + 18],
    [
      "deliver",
      codec.encode({
        kind: "deliver",
        seq: high,
        from: high,
        fromDevice: 127,
        clientId: high,
        timeSeconds: high,
        payload,
      }),
      48 + 18,
    ],
  ] as const)("%s with a 20-byte payload, alone in a record, fits its budget (frame + 18)", (_name, frame, budget) => {
    const record = table.seal(slot, frame) as Uint8Array;
    expect(record.length).toBe(frame.length + noiseLengthBytes + noiseTagBytes);
    expect(record.length).toBeLessThanOrEqual(budget);
  });
});
