// Golden vectors of a whole Switchboard Noise connection from fixed keys (PROTOCOL.md section 19): the client's
// opening bytes, the server's message 2, the client's message 3, the handshake hash and transport keys, the first
// records each way, the budget frames sealed, and the v3 login message that signs the handshake hash. For IK as well.
// `bun protocol/vectors/noise-golden.ts --write` rewrites noise-golden.json after a deliberate change; the tests
// compare the committed file with this output. Fixed ephemeral keys are for vectors only: a real handshake draws
// them fresh (a repeated ephemeral key breaks the handshake's secrecy).

import { writeFileSync } from "node:fs";
import { loginMessage } from "../auth-message.ts";
import { FrameCodec } from "../frame-codec.ts";
import { defaultLimits } from "../limits.ts";
import { nobleAead } from "../noise-aead.ts";
import { NoiseCipherTable } from "../noise-cipher-table.ts";
import { NoiseHandshake, type NoisePatternName, noiseKeyPair, noiseProtocolName } from "../noise-handshake.ts";
import { encodeNoisePreamble, frameNoiseMessage } from "../noise-records.ts";
import { encodePreamble } from "../preamble.ts";
import type { Stanza } from "../stanzas.ts";
import { bytesToHex } from "./generate.ts";

/** A 32-byte key whose bytes count up from `first`: easy to type into another language's test. */
function countingKey(first: number): Uint8Array {
  return Uint8Array.from({ length: 32 }, (_, index) => (first + index) & 0xff);
}

export const noiseGoldenKeys = Object.freeze({
  clientStatic: countingKey(0x00),
  clientEphemeral: countingKey(0x20),
  serverStatic: countingKey(0x40),
  serverEphemeral: countingKey(0x60),
});

const codec = new FrameCodec({ limits: defaultLimits });
const high = 0xffff_ffff;
const payload = Uint8Array.from({ length: 20 }, (_, index) => 0x80 + index);
const challenge: Stanza = {
  kind: "challenge",
  nonce: countingKey(0xa0),
  serverTimeSeconds: 1_763_800_000,
  registrationMode: 1,
  frameBytesMax: defaultLimits.frameBytesMax,
  payloadBytesMax: defaultLimits.payloadBytesMax,
};
const send: Stanza = { kind: "send", clientId: high - 1, to: high - 2, payload };
const deliver: Stanza = {
  kind: "deliver",
  seq: high - 3,
  from: high - 2,
  fromDevice: 127,
  clientId: high - 1,
  timeSeconds: 1_763_800_000,
  payload,
};

function connection(pattern: NoisePatternName) {
  const keys = noiseGoldenKeys;
  const preamble = encodeNoisePreamble(pattern);
  const serverStatic = noiseKeyPair(keys.serverStatic);
  const client = new NoiseHandshake({
    pattern,
    role: "initiator",
    prologue: preamble,
    staticKeyPair: noiseKeyPair(keys.clientStatic),
    ephemeralKeyPair: noiseKeyPair(keys.clientEphemeral),
    ...(pattern === "IK" ? { remoteStaticKey: serverStatic.publicKey } : {}),
  });
  const server = new NoiseHandshake({
    pattern,
    role: "responder",
    prologue: preamble,
    staticKeyPair: serverStatic,
    ephemeralKeyPair: noiseKeyPair(keys.serverEphemeral),
  });
  const messages: { from: "client" | "server"; hex: string; bytes: number }[] = [];
  const opening = frameNoiseMessage(client.writeMessage());
  messages.push({ from: "client", hex: bytesToHex(preamble) + bytesToHex(opening), bytes: 4 + opening.length });
  if (server.readMessage(opening.subarray(2)) instanceof Error) throw new Error("golden: message 1 refused");
  const second = frameNoiseMessage(server.writeMessage());
  messages.push({ from: "server", hex: bytesToHex(second), bytes: second.length });
  if (client.readMessage(second.subarray(2)) instanceof Error) throw new Error("golden: message 2 refused");
  if (pattern === "XX") {
    const third = frameNoiseMessage(client.writeMessage());
    messages.push({ from: "client", hex: bytesToHex(third), bytes: third.length });
    if (server.readMessage(third.subarray(2)) instanceof Error) throw new Error("golden: message 3 refused");
  }
  const clientKeys = client.split();
  const serverKeys = server.split();
  if (bytesToHex(clientKeys.handshakeHash) !== bytesToHex(serverKeys.handshakeHash)) throw new Error("golden: h");
  const clientTable = new NoiseCipherTable(nobleAead, 1);
  const serverTable = new NoiseCipherTable(nobleAead, 1);
  const clientSlot = clientTable.install(clientKeys);
  const serverSlot = serverTable.install(serverKeys);
  const record = (from: "client" | "server", name: string, plaintext: Uint8Array) => {
    const sealed = (
      from === "client" ? clientTable.seal(clientSlot, plaintext) : serverTable.seal(serverSlot, plaintext)
    ) as Uint8Array;
    return { from, name, plaintextHex: bytesToHex(plaintext), hex: bytesToHex(sealed), bytes: sealed.length };
  };
  // In the order they travel: each side's counter starts at 0.
  const records = [
    record("client", "the plaintext protocol's preamble (counter 0)", encodePreamble()),
    record("server", "challenge (counter 0)", codec.encode(challenge)),
    record("client", "send, 20-byte payload, ids near 2^32 (counter 1)", codec.encode(send)),
    record("server", "deliver, 20-byte payload, ids near 2^32 (counter 1)", codec.encode(deliver)),
  ];
  return {
    protocolName: noiseProtocolName(pattern),
    prologueHex: bytesToHex(preamble),
    messages,
    handshakeHashHex: bytesToHex(clientKeys.handshakeHash),
    clientToServerKeyHex: bytesToHex(clientKeys.sendKey),
    serverToClientKeyHex: bytesToHex(clientKeys.receiveKey),
    records,
    loginMessageHex: bytesToHex(
      loginMessage(countingKey(0xa0), "chat.example.com", high - 2, 1, clientKeys.handshakeHash),
    ),
  };
}

export function noiseGolden() {
  return {
    description:
      "A whole Switchboard Noise connection from fixed keys (PROTOCOL.md section 19). Private keys are 32 bytes " +
      "counting up from the first byte given; public keys follow from them (X25519). Messages and records are the " +
      "exact bytes on the wire, length prefixes included. loginMessage: the v3 login message for account " +
      "4294967293, device 1, server name chat.example.com and the challenge nonce a0 a1 .. bf. " +
      "Generated by noise-golden.ts.",
    keys: Object.fromEntries(
      Object.entries(noiseGoldenKeys).map(([name, key]) => [
        name,
        { privateHex: bytesToHex(key), publicHex: bytesToHex(noiseKeyPair(key).publicKey) },
      ]),
    ),
    connections: [connection("XX"), connection("IK")],
  };
}

if (import.meta.main && process.argv.includes("--write")) {
  writeFileSync(new URL("./noise-golden.json", import.meta.url), `${JSON.stringify(noiseGolden(), null, 2)}\n`);
} else if (import.meta.main) {
  console.log(JSON.stringify(noiseGolden(), null, 2));
}
