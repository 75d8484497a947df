// The inputs of the live fuzz: the golden frames and bad inputs (protocol/vectors), fresh valid stanzas of random
// kinds (protocol/fuzz.ts's randomStanza), and valid stanzas aimed at a probe account, each mutated 0-3 times with
// protocol/fuzz.ts's mutate.

import { mutate, type Random, randomStanza } from "../protocol/fuzz.ts";
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
