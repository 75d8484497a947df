// The handshake against the Noise specification's published vectors (cacophony and snow, for the two protocols we
// speak; protocol/vectors/noise-spec-vectors.json names their source), then against bad input.

import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ErrorCode, ProtocolError } from "./errors.ts";
import { nobleAead } from "./noise-aead.ts";
import { NoiseHandshake, type NoisePatternName, noiseKeyPair, noiseProtocolName } from "./noise-handshake.ts";

interface Vector {
  protocol_name: string;
  init_prologue: string;
  init_static: string;
  init_ephemeral: string;
  init_remote_static?: string;
  resp_prologue: string;
  resp_static: string;
  resp_ephemeral: string;
  handshake_hash?: string;
  messages: { payload: string; ciphertext: string }[];
  source: string;
}

const fromHex = (hex: string) => Uint8Array.from(Buffer.from(hex, "hex"));
const toHex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

const vectors: Vector[] = JSON.parse(
  readFileSync(join(import.meta.dir, "vectors", "noise-spec-vectors.json"), "utf8"),
).vectors;

import { nobleDh } from "./noise-dh.ts";
import { nodeDh } from "./noise-dh-node.ts";

describe("Noise specification vectors", () => {
  test("the file holds the XX and IK cases of both sources", () => {
    const names = vectors.map((vector) => `${vector.protocol_name} ${vector.source}`);
    expect(names.filter((name) => name.startsWith(noiseProtocolName("XX"))).length).toBe(2);
    expect(names.filter((name) => name.startsWith(noiseProtocolName("IK"))).length).toBe(2);
  });

  for (const [backend, dh] of [
    ["noble", nobleDh],
    ["node:crypto", nodeDh],
  ] as const)
    for (const vector of vectors) {
      const pattern = vector.protocol_name.split("_")[1] as NoisePatternName;
      test(`${vector.protocol_name} (${vector.source}), X25519 of ${backend}`, () => {
        const initiator = new NoiseHandshake({
          pattern,
          role: "initiator",
          prologue: fromHex(vector.init_prologue),
          staticKeyPair: noiseKeyPair(fromHex(vector.init_static)),
          ephemeralKeyPair: noiseKeyPair(fromHex(vector.init_ephemeral)),
          ...(vector.init_remote_static === undefined ? {} : { remoteStaticKey: fromHex(vector.init_remote_static) }),
          dh,
        });
        const responder = new NoiseHandshake({
          pattern,
          role: "responder",
          prologue: fromHex(vector.resp_prologue),
          staticKeyPair: noiseKeyPair(fromHex(vector.resp_static)),
          ephemeralKeyPair: noiseKeyPair(fromHex(vector.resp_ephemeral)),
          dh,
        });
        let index = 0;
        // Handshake messages: each side writes in turn, the other reads and must get the payload back.
        while (!initiator.complete) {
          const message = vector.messages[index]!;
          const [writer, reader] = index % 2 === 0 ? [initiator, responder] : [responder, initiator];
          const written = writer.writeMessage(fromHex(message.payload));
          expect(toHex(written)).toBe(message.ciphertext);
          const read = reader.readMessage(written);
          expect(read).toBeInstanceOf(Uint8Array);
          expect(toHex(read as Uint8Array)).toBe(message.payload);
          index++;
        }
        expect(responder.complete).toBe(true);
        const initiatorKeys = initiator.split();
        const responderKeys = responder.split();
        if (vector.handshake_hash !== undefined) {
          expect(toHex(initiatorKeys.handshakeHash)).toBe(vector.handshake_hash);
        }
        expect(toHex(responderKeys.handshakeHash)).toBe(toHex(initiatorKeys.handshakeHash));
        expect(toHex(initiatorKeys.remoteStaticKey)).toBe(toHex(noiseKeyPair(fromHex(vector.resp_static)).publicKey));
        // Transport messages: the same alternation, counters per direction from 0, empty associated data.
        const counters = { initiator: 0, responder: 0 };
        for (; index < vector.messages.length; index++) {
          const message = vector.messages[index]!;
          const fromInitiator = index % 2 === 0;
          const key = fromInitiator ? initiatorKeys.sendKey : responderKeys.sendKey;
          const counter = fromInitiator ? counters.initiator++ : counters.responder++;
          const sealed = nobleAead.seal(key, counter, new Uint8Array(0), fromHex(message.payload));
          expect(toHex(sealed)).toBe(message.ciphertext);
          const receiveKey = fromInitiator ? responderKeys.receiveKey : initiatorKeys.receiveKey;
          expect(toHex(nobleAead.open(receiveKey, counter, new Uint8Array(0), sealed)!)).toBe(message.payload);
        }
      });
    }
});

function xxPair(prologue = Uint8Array.of(1, 2, 3)) {
  const server = noiseKeyPair();
  const initiator = new NoiseHandshake({ pattern: "XX", role: "initiator", prologue, staticKeyPair: noiseKeyPair() });
  const responder = new NoiseHandshake({ pattern: "XX", role: "responder", prologue, staticKeyPair: server });
  return { server, initiator, responder };
}

function expectFailure(result: Uint8Array | ProtocolError): void {
  expect(result).toBeInstanceOf(ProtocolError);
  expect((result as ProtocolError).code).toBe(ErrorCode.noiseHandshakeFailed);
}

describe("bad handshake input", () => {
  test("a flipped bit anywhere in message 2 fails the read", () => {
    for (const position of [0, 31, 32, 60, 79, 80, 95]) {
      const { initiator, responder } = xxPair();
      responder.readMessage(initiator.writeMessage());
      const message = responder.writeMessage();
      message[position]! ^= 0x01;
      expectFailure(initiator.readMessage(message));
      // Dead for good: a later good message does not revive it.
      expectFailure(initiator.readMessage(message));
    }
  });

  test("a different prologue on each side (a changed preamble) fails at message 2", () => {
    const initiator = new NoiseHandshake({
      pattern: "XX",
      role: "initiator",
      prologue: Uint8Array.of(1),
      staticKeyPair: noiseKeyPair(),
    });
    const responder = new NoiseHandshake({
      pattern: "XX",
      role: "responder",
      prologue: Uint8Array.of(2),
      staticKeyPair: noiseKeyPair(),
    });
    responder.readMessage(initiator.writeMessage());
    expectFailure(initiator.readMessage(responder.writeMessage()));
  });

  test("messages 1 and 3 of a recorded handshake, replayed to the same server, fail at message 3", () => {
    const first = xxPair();
    const recorded1 = first.initiator.writeMessage();
    first.responder.readMessage(recorded1);
    first.initiator.readMessage(first.responder.writeMessage());
    const recorded3 = first.initiator.writeMessage();
    expect(first.responder.readMessage(recorded3)).toBeInstanceOf(Uint8Array);
    // The same server key, a new responder: its new ephemeral key changes every key after message 1.
    const replayed = new NoiseHandshake({
      pattern: "XX",
      role: "responder",
      prologue: Uint8Array.of(1, 2, 3),
      staticKeyPair: first.server,
    });
    expect(replayed.readMessage(recorded1)).toBeInstanceOf(Uint8Array);
    replayed.writeMessage();
    expectFailure(replayed.readMessage(recorded3));
  });

  test("both X25519 backends refuse known small-order points (all-zero result), and agree otherwise", () => {
    const keyPair = noiseKeyPair();
    const lowOrder = [
      "0000000000000000000000000000000000000000000000000000000000000000",
      "0100000000000000000000000000000000000000000000000000000000000000",
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    ];
    for (const hex of lowOrder) {
      expect(nobleDh.sharedSecret(keyPair, fromHex(hex))).toBeNull();
      expect(nodeDh.sharedSecret(keyPair, fromHex(hex))).toBeNull();
    }
    const peer = nodeDh.generateKeyPair();
    expect(toHex(nodeDh.sharedSecret(keyPair, peer.publicKey)!)).toBe(
      toHex(nobleDh.sharedSecret(keyPair, peer.publicKey)!),
    );
    expect(toHex(noiseKeyPair(peer.privateKey).publicKey)).toBe(toHex(peer.publicKey));
  });

  test("short, oversize, out-of-turn and low-order messages", () => {
    // The initiator writes first: reading before that is out of turn.
    expectFailure(xxPair().initiator.readMessage(new Uint8Array(48)));
    const fresh = xxPair();
    expectFailure(fresh.responder.readMessage(new Uint8Array(31)));
    const tooLong = xxPair();
    expectFailure(tooLong.responder.readMessage(new Uint8Array(32 + 64 + 1)));
    // The all-zero public key is of low order: the initiator refuses it in ee.
    const lowOrder = xxPair();
    lowOrder.responder.readMessage(lowOrder.initiator.writeMessage());
    const message2 = lowOrder.responder.writeMessage();
    message2.fill(0, 0, 32);
    expectFailure(lowOrder.initiator.readMessage(message2));
  });
});
