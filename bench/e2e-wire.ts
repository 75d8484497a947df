// Bytes on the wire of an end-to-end encrypted 20-byte text (BENCHMARKS.md, "End-to-end encryption on the wire"):
// a Signal session between two in-memory stores with the library the SDK uses, the payload as the SDK frames it
// ([type byte][Signal message]), and the send and deliver frames around it with ids near 2^32 (the wire budgets'
// worst case). Run: bun bench/e2e-wire.ts
import {
  KeyHelper,
  SessionBuilder,
  SessionCipher,
  SignalProtocolAddress,
} from "@privacyresearch/libsignal-protocol-typescript";
import { MemoryE2eStore } from "../client/e2e-store.ts";
import { SignalStore } from "../client/signal-store.ts";
import { defaultLimits, FrameCodec } from "../protocol/index.ts";

const codec = new FrameCodec({ limits: defaultLimits });
async function dev() {
  const s = new SignalStore(new MemoryE2eStore());
  await s.setIdentityKeyPair(await KeyHelper.generateIdentityKeyPair(), 1234);
  return s;
}
const a = await dev(),
  b = await dev();
const bId = (await b.getIdentityKeyPair())!;
const spk = await KeyHelper.generateSignedPreKey(bId, 1);
await b.storeSignedPreKey(1, spk.keyPair);
const pk = await KeyHelper.generatePreKey(7);
await b.storePreKey(7, pk.keyPair);
const bAddr = new SignalProtocolAddress("4294967294", 1),
  aAddr = new SignalProtocolAddress("4294967293", 1);
await new SessionBuilder(a, bAddr).processPreKey({
  identityKey: bId.pubKey,
  registrationId: 1234,
  signedPreKey: { keyId: 1, publicKey: spk.keyPair.pubKey, signature: spk.signature },
  preKey: { keyId: 7, publicKey: pk.keyPair.pubKey },
});
const text = new TextEncoder().encode("twenty bytes of text"); // 20 bytes
const enc = async (from: SignalStore, to: SignalProtocolAddress) => {
  const m = await new SessionCipher(from, to).encrypt(text.slice().buffer);
  const p = new Uint8Array(m.body!.length + 1);
  p[0] = m.type;
  for (let i = 0; i < m.body!.length; i++) p[i + 1] = m.body!.charCodeAt(i);
  return p;
};
const send = (p: Uint8Array) =>
  codec.encode({ kind: "send", clientId: 0xfffffffe, to: 0xfffffffd, payload: [{ device: 1, payload: p }] }).length;
const deliver = (p: Uint8Array) =>
  codec.encode({
    kind: "deliver",
    seq: 0xfffffffc,
    from: 0xfffffffd,
    fromDevice: 1,
    clientId: 0xfffffffe,
    timeSeconds: 1763800000,
    payload: p,
  }).length;
const first = await enc(a, bAddr);
await new SessionCipher(b, aAddr).decryptPreKeyWhisperMessage(first.slice(1).buffer, "binary");
const reply = await enc(b, aAddr);
await new SessionCipher(a, bAddr).decryptWhisperMessage(reply.slice(1).buffer, "binary");
const steady = await enc(a, bAddr);
console.log(`first message: payload ${first.length} B, send frame ${send(first)} B, deliver frame ${deliver(first)} B`);
console.log(
  `steady state:  payload ${steady.length} B, send frame ${send(steady)} B, deliver frame ${deliver(steady)} B`,
);
console.log(`plaintext 20 B: send frame ${send(text)} B, deliver frame ${deliver(text)} B`);
