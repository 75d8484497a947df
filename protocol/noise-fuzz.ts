// A seeded fuzz loop for the Noise layer (PROTOCOL.md section 19): mutated and random handshake messages fed to
// every reading step of XX and IK, mutated and random records fed to a session's cipher table, and random bytes to
// the preamble and length-prefix readers. The contract checked:
//   - nothing throws: a reader returns a payload, "more", or a ProtocolError with the code of its layer
//     (noiseHandshakeFailed, noiseRecordFailed; badPreamble, versionUnsupported, encryptionRequired for preambles);
//   - a handshake message or record that differs from the one sent is never accepted (authenticity), and a failed
//     record does not advance the receive counter (the genuine record still opens after it).
// Replay a failure with the printed seed: FUZZ_SEED=<seed> bun test protocol/noise-fuzz.test.ts

import { ErrorCode, ProtocolError } from "./errors.ts";
import { Random } from "./fuzz.ts";
import { nobleAead } from "./noise-aead.ts";
import { NoiseCipherTable } from "./noise-cipher-table.ts";
import { nodeDh } from "./noise-dh-node.ts";
import { NoiseHandshake, type NoisePatternName } from "./noise-handshake.ts";
import { decodeNoisePreamble, encodeNoisePreamble, readNoiseMessage } from "./noise-records.ts";

export interface NoiseFuzzReport {
  readonly seed: number;
  readonly iterations: number;
  /** How often each outcome was seen (accepted, refused with a code, "more"). */
  readonly outcomes: Readonly<Record<string, number>>;
}

export class NoiseFuzzFailure extends Error {
  override readonly name = "NoiseFuzzFailure";
}

const preambleCodes = new Set<number>([
  ErrorCode.badPreamble,
  ErrorCode.versionUnsupported,
  ErrorCode.encryptionRequired,
]);

/** One change to `input`: a bit flip, a cut, an extension, a replaced byte, or all random bytes. */
function mutate(random: Random, input: Uint8Array): Uint8Array {
  const copy = input.slice();
  switch (random.below(5)) {
    case 0:
      if (copy.length > 0) copy[random.below(copy.length)]! ^= 1 << random.below(8);
      return copy;
    case 1:
      return copy.subarray(0, random.below(copy.length + 1));
    case 2: {
      const longer = new Uint8Array(copy.length + random.between(1, 80));
      longer.set(copy);
      longer.set(random.bytes(longer.length - copy.length), copy.length);
      return longer;
    }
    case 3:
      if (copy.length > 0) copy[random.below(copy.length)] = random.below(256);
      return copy;
    default:
      return random.bytes(random.below(200));
  }
}

function sameBytes(left: Uint8Array, right: Uint8Array): boolean {
  return left.length === right.length && left.every((byte, index) => byte === right[index]);
}

/** A handshake of `pattern` run to the step before `step` is read, and the genuine message of that step. */
function handshakeAt(pattern: NoisePatternName, step: number) {
  const prologue = encodeNoisePreamble(pattern);
  const server = nodeDh.generateKeyPair();
  const initiator = new NoiseHandshake({
    pattern,
    role: "initiator",
    prologue,
    staticKeyPair: nodeDh.generateKeyPair(),
    ...(pattern === "IK" ? { remoteStaticKey: server.publicKey } : {}),
    dh: nodeDh,
  });
  const responder = new NoiseHandshake({ pattern, role: "responder", prologue, staticKeyPair: server, dh: nodeDh });
  for (let index = 0; ; index++) {
    const [writer, reader] = index % 2 === 0 ? [initiator, responder] : [responder, initiator];
    const message = writer.writeMessage();
    if (index === step) return { reader, message };
    if (reader.readMessage(message) instanceof ProtocolError) throw new NoiseFuzzFailure("a genuine message failed");
  }
}

export function runNoiseFuzz(options: { seed: number; iterations: number; timeMs: number }): NoiseFuzzReport {
  const random = new Random(options.seed);
  const outcomes: Record<string, number> = {};
  const count = (outcome: string) => {
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  };
  const fail = (what: string) => {
    throw new NoiseFuzzFailure(`${what} (seed ${options.seed}; replay with FUZZ_SEED=${options.seed})`);
  };
  const startedAtMs = performance.now();
  const table = new NoiseCipherTable(nobleAead, 4);
  const key = random.bytes(32);
  const sender = table.install({
    sendKey: key,
    receiveKey: key,
    handshakeHash: new Uint8Array(32),
    remoteStaticKey: key,
  });
  const receiver = table.install({
    sendKey: key,
    receiveKey: key,
    handshakeHash: new Uint8Array(32),
    remoteStaticKey: key,
  });
  let iterations = 0;
  for (; iterations < options.iterations && performance.now() - startedAtMs < options.timeMs; iterations++) {
    // In turn, so that a short run (a loaded CI host) still covers every kind.
    const kind = iterations % 4;
    if (kind === 0) {
      // A handshake message, mutated, at a random step of XX or IK.
      const pattern = random.pick(["XX", "IK"] as const);
      const step = random.below(pattern === "XX" ? 3 : 2);
      const { reader, message } = handshakeAt(pattern, step);
      const mutated = mutate(random, message);
      let result: Uint8Array | ProtocolError;
      try {
        result = reader.readMessage(mutated);
      } catch (error) {
        return fail(`handshake ${pattern} step ${step} threw: ${error}`);
      }
      if (result instanceof ProtocolError) {
        if (result.code !== ErrorCode.noiseHandshakeFailed) fail(`handshake refused with code ${result.code}`);
        count("handshake refused");
      } else {
        // Message 1 of XX is plaintext (e, and an empty payload): a changed key or payload is still a message.
        const plaintextStep = pattern === "XX" && step === 0;
        if (!plaintextStep && !sameBytes(mutated, message))
          fail(`a changed ${pattern} message ${step + 1} was accepted`);
        count("handshake accepted");
      }
    } else if (kind === 1) {
      // A record, mutated: refused unless unchanged; a refusal leaves the counter for the genuine one.
      const plaintext = random.bytes(random.below(300));
      const record = table.seal(sender, plaintext) as Uint8Array;
      const body = record.subarray(2);
      const mutated = mutate(random, body);
      let opened: Uint8Array | ProtocolError;
      try {
        opened = table.open(receiver, mutated);
      } catch (error) {
        return fail(`open threw: ${error}`);
      }
      if (opened instanceof ProtocolError) {
        if (opened.code !== ErrorCode.noiseRecordFailed) fail(`record refused with code ${opened.code}`);
        const genuine = table.open(receiver, body);
        if (!(genuine instanceof Uint8Array) || !sameBytes(genuine, plaintext))
          fail("the genuine record did not open after a refusal");
        count("record refused");
      } else {
        if (!sameBytes(mutated, body) || !sameBytes(opened, plaintext)) fail("a changed record was accepted");
        count("record accepted");
      }
    } else if (kind === 2) {
      const bytes = random.bytes(random.below(8));
      const result = decodeNoisePreamble(bytes);
      if (result instanceof ProtocolError && !preambleCodes.has(result.code)) fail(`preamble code ${result.code}`);
      count(result instanceof ProtocolError ? "preamble refused" : `preamble ${result}`);
    } else {
      // A length below 600 with up to 600 bytes behind it: some whole, some short.
      const bytes = random.bytes(2 + random.below(600));
      const length = random.below(600);
      bytes[0] = length >>> 8;
      bytes[1] = length & 0xff;
      const result = readNoiseMessage(bytes);
      if (result !== "more" && result.consumed !== 2 + result.message.length) fail("a length prefix miscounted");
      count(result === "more" ? "record more" : "record framed");
    }
  }
  return { seed: options.seed, iterations, outcomes };
}
