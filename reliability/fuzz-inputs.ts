// The inputs of the live fuzz: the golden frames and bad inputs (protocol/vectors), fresh valid stanzas of random
// kinds (protocol/fuzz.ts's randomStanza), and valid stanzas aimed at a probe account, each mutated 0-3 times with
// protocol/fuzz.ts's operators (its mutation list is not exported; the same operators are written again here).

import { type Random, randomStanza } from "../protocol/fuzz.ts";
import type { FrameCodec, Stanza } from "../protocol/index.ts";
import { hexToBytes, loadBadInputs, loadGolden } from "../protocol/vectors/generate.ts";

const clientKinds = [
  "login",
  "register",
  "link",
  "send",
  "ack",
  "receipt",
  "ping",
  "pong",
  "lookup",
  "linkCreate",
  "devices",
  "deviceRemove",
] as const;
const serverKinds = ["challenge", "welcome", "serverAck", "error", "deliver", "deliverReceipt", "queueEmpty"] as const;
/** ping with the reserved header bit (0x40) set: malformedFrame whatever state the session is in. */
export const certainlyBad = Uint8Array.of(0x02, 0x4e, 0x90);

function concat(...parts: Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

function varint(value: number): Uint8Array {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Uint8Array.from(bytes);
}

function headerOffset(input: Uint8Array): number {
  for (let index = 0; index < Math.min(3, input.length); index++) if ((input[index]! & 0x80) === 0) return index + 1;
  return 0;
}

/** protocol/fuzz.ts's mutation operators. */
export function mutate(random: Random, input: Uint8Array, corpus: readonly Uint8Array[]): Uint8Array {
  const withByte = (index: number, byte: number) => {
    const copy = input.slice();
    copy[index] = byte;
    return copy;
  };
  switch (random.below(12)) {
    case 0: {
      const copy = input.slice();
      for (let flip = random.between(1, 4); flip > 0 && copy.length > 0; flip--)
        copy[random.below(copy.length)]! ^= 1 << random.below(8);
      return copy;
    }
    case 1:
      return input.length === 0 ? input : withByte(random.below(input.length), random.below(256));
    case 2:
      return input.subarray(0, random.below(input.length + 1));
    case 3: {
      const at = random.below(input.length + 1);
      return concat(input.subarray(0, at), random.bytes(random.between(1, 8)), input.subarray(at));
    }
    case 4: {
      const at = random.below(input.length + 1);
      return concat(input.subarray(0, at), input.subarray(Math.min(input.length, at + random.between(1, 8))));
    }
    case 5: {
      const body = input.subarray(headerOffset(input));
      const length = random.pick([0, 1, body.length - 1, body.length + 1, random.below(300), random.below(1 << 21)]);
      return concat(varint(Math.max(0, length)), body);
    }
    case 6: {
      const at = headerOffset(input);
      return at < input.length ? withByte(at, random.below(256)) : input;
    }
    case 7: {
      const at = headerOffset(input);
      return at < input.length ? withByte(at, input[at]! ^ 0x80) : input;
    }
    case 8: {
      const types = [0x90, 0x91, 0x9f, 0xdc, 0xdd, 0x80, 0xde, 0xc0, 0xc1, 0xc4, 0xc5, 0xc6, 0xca, 0xcb, 0xcf, 0xd9];
      return input.length === 0 ? input : withByte(random.below(input.length), random.pick(types));
    }
    case 9: {
      const other = random.pick(corpus);
      return concat(input.subarray(0, random.below(input.length + 1)), other.subarray(random.below(other.length + 1)));
    }
    case 10:
      return concat(input, random.pick(corpus), random.pick(corpus));
    default:
      return random.bytes(random.between(0, 64));
  }
}

/** Valid stanzas aimed at the probe's receiver (sends, receipts, lookups) and at the session itself. */
function aimed(random: Random, account: number): Stanza {
  const clientId = random.between(1, 1000);
  switch (random.below(6)) {
    case 0:
      return { kind: "send", clientId, to: account, payload: random.bytes(random.below(200)) };
    case 1:
      return { kind: "receipt", type: random.pick([1, 2]), to: account, toDevice: 1, clientIds: [clientId] };
    case 2:
      return { kind: "lookup", clientId, handle: "fuzz-probe-b" };
    case 3:
      return { kind: "ack", seq: random.between(1, 2 ** 32 - 1) };
    case 4:
      return { kind: "deviceRemove", clientId, device: random.between(1, 3) };
    default:
      return { kind: "linkCreate", clientId };
  }
}

/** The golden frames and the bad inputs, as bytes (the 60 KiB bad input is left out: it would dominate). */
export async function loadCorpus(): Promise<Uint8Array[]> {
  const golden = await loadGolden();
  const badInputs = await loadBadInputs();
  return [
    ...golden.frames.map((frame) => hexToBytes(frame.hex)),
    ...badInputs.inputs.filter((input) => input.hex.length < 8192).map((input) => hexToBytes(input.hex)),
  ];
}

/** One input: from the corpus, a fresh stanza of a client or server kind, or one aimed at `account`; then mutated. */
export function nextInput(
  random: Random,
  corpus: readonly Uint8Array[],
  codec: FrameCodec,
  account: number,
): Uint8Array {
  let input: Uint8Array;
  const choice = random.below(10);
  if (choice < 3) input = random.pick(corpus);
  else if (choice < 6) input = codec.encode(randomStanza(random, random.pick(clientKinds), codec.limits));
  else if (choice < 7) input = codec.encode(randomStanza(random, random.pick(serverKinds), codec.limits));
  else input = codec.encode(aimed(random, account));
  for (let rounds = random.below(4); rounds > 0; rounds--) input = mutate(random, input, corpus);
  return input;
}
