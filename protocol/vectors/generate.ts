// Generates the language-neutral test vectors (golden.json, bad-inputs.json) from the codec, and checks each one on
// the way: a golden frame must decode back to its value, a bad input must fail with the code written next to it.
// Run `bun protocol/vectors/generate.ts --write` after a deliberate wire change, then read the diff by hand; without
// a flag it prints both files as one JSON object. The tests compare the committed files with this output.
//
// Also the place of the small JSON helpers the test kit shares: bytes travel in JSON as {"hex": "..."}.

import { createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
import { deflateSync } from "fflate";
import { linkMessage, loginMessage, registerMessage } from "../auth-message.ts";
import { presetDictionary } from "../compression.ts";
import { ErrorCode, type ErrorCodeName, errorCodeName, ProtocolError } from "../errors.ts";
import { FrameCodec } from "../frame-codec.ts";
import { defaultLimits, groupNameBytesMax } from "../limits.ts";
import { protocolVersion } from "../preamble.ts";
import type { Stanza } from "../stanzas.ts";
import { GroupOp, ReceiptType, RegistrationMode, StanzaKind, tokenDictionaryVersion } from "../tokens.ts";

// ---------------------------------------------------------------------------------------------------------------
// JSON helpers

export function bytesToHex(bytes: Uint8Array): string {
  let hex = "";
  for (const byte of bytes) hex += byte.toString(16).padStart(2, "0");
  return hex;
}

export function hexToBytes(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || /[^0-9a-f]/.test(hex)) throw new Error(`not lowercase hex: ${hex.slice(0, 40)}`);
  const bytes = new Uint8Array(hex.length / 2);
  for (let index = 0; index < bytes.length; index++)
    bytes[index] = Number.parseInt(hex.slice(index * 2, index * 2 + 2), 16);
  return bytes;
}

/** A stanza (or any part of one) as plain JSON: byte fields become {"hex": "..."}; undefined fields are dropped. */
export function toJsonValue(value: unknown): unknown {
  if (value instanceof Uint8Array) return { hex: bytesToHex(value) };
  if (Array.isArray(value)) return value.map(toJsonValue);
  if (value !== null && typeof value === "object") {
    const result: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(value)) if (field !== undefined) result[key] = toJsonValue(field);
    return result;
  }
  return value;
}

/** The inverse of toJsonValue: {"hex": "..."} objects become Uint8Array. */
export function fromJsonValue(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fromJsonValue);
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value);
    if (entries.length === 1 && entries[0]![0] === "hex" && typeof entries[0]![1] === "string") {
      return hexToBytes(entries[0]![1]);
    }
    return Object.fromEntries(entries.map(([key, field]) => [key, fromJsonValue(field)]));
  }
  return value;
}

// ---------------------------------------------------------------------------------------------------------------
// Shapes of the two files

export interface FrameVector {
  readonly name: string;
  readonly kind: string;
  /** The stanza kind token (low 6 bits of the header byte). */
  readonly token: number;
  /** The whole frame: length varint, header byte, body. */
  readonly hex: string;
  /** True when the header's compressed bit is set. Deflate output is not canonical: check these by decoding. */
  readonly compressed: boolean;
  readonly value: unknown;
}

export interface BudgetVector extends FrameVector {
  readonly bytes: number;
  readonly budgetBytesMax: number;
}

export interface PreambleVector {
  readonly name: string;
  readonly hex: string;
  /** "ok" with the versions, "more" (too few bytes yet), or "error" with the code. */
  readonly result: "ok" | "more" | "error";
  readonly value?: { readonly protocolVersion: number; readonly dictionaryVersion: number };
  readonly code?: number;
  readonly codeName?: string;
}

/**
 * A signed message (PROTOCOL.md section 9) with a real Ed25519 signature: the private key's 32-byte seed, its
 * public key, the exact bytes signed, and the signature (Ed25519 is deterministic, so it is the only one).
 */
export interface SignedMessageVector {
  readonly name: string;
  readonly kind: "login" | "register" | "link";
  readonly nonceHex: string;
  readonly serverName: string;
  readonly account?: number;
  readonly device?: number;
  readonly handle?: string;
  readonly code?: string;
  readonly messageHex: string;
  readonly seedHex: string;
  readonly publicKeyHex: string;
  readonly signatureHex: string;
}

export interface GoldenFile {
  readonly description: string;
  readonly limits: "default";
  readonly protocolVersion: number;
  readonly dictionaryVersion: number;
  readonly presetDictionaryHex: string;
  readonly preambles: readonly PreambleVector[];
  readonly frames: readonly FrameVector[];
  readonly budgets: readonly BudgetVector[];
  readonly signedMessages: readonly SignedMessageVector[];
}

export interface BadInput {
  readonly name: string;
  readonly hex: string;
  readonly code: number;
  readonly codeName: string;
}

export interface BadInputsFile {
  readonly description: string;
  readonly limits: "default";
  readonly inputs: readonly BadInput[];
}

// ---------------------------------------------------------------------------------------------------------------
// Sample values: recognisable byte patterns, realistic ids and times

function pattern(length: number, start: number): Uint8Array {
  return Uint8Array.from({ length }, (_, index) => (start + index) & 0xff);
}

const nonce = pattern(32, 0x00);
const publicKey = pattern(32, 0xa0);
const signature = pattern(64, 0x40);
const payload20 = pattern(20, 0x80);
/** A Curve25519 public key as Signal serialises it: the type byte 0x05, then 32 bytes. */
function signalKey(start: number): Uint8Array {
  return Uint8Array.of(0x05, ...pattern(32, start));
}
/** The name the sample client dialed (signed in login, register and link). */
const serverName = "chat.example.com";
const time = 1_763_800_000; // 2025-11-22T08:26:40Z
const alice = 1_000_001;
const bob = 1_000_002;
/** Ids near 2^32, for the budget cases. */
const idHigh = 0xffff_fffe;

function deviceInfos(count: number): Array<{ device: number; createdAtSeconds: number; lastSeenAtSeconds: number }> {
  return Array.from({ length: count }, (_, index) => ({
    device: index + 1,
    createdAtSeconds: time - 86_400 * (count - index),
    lastSeenAtSeconds: time - 60 * index,
  }));
}

interface FrameCase {
  readonly name: string;
  readonly stanza: Stanza;
  readonly compress?: boolean;
}

/** The two member devices the groupReceipt vectors name. */
const groupReceiptReaders = [
  { account: bob, device: 1 },
  { account: 1_000_003, device: 1 },
];

const frameCases: readonly FrameCase[] = [
  {
    name: "challenge, invite registration",
    stanza: {
      kind: "challenge",
      nonce,
      serverTimeSeconds: time,
      registrationMode: RegistrationMode.invite,
      frameBytesMax: 65536,
      payloadBytesMax: 61440,
    },
  },
  { name: "login", stanza: { kind: "login", account: alice, device: 1, signature, serverName } },
  {
    name: "register with an invite",
    stanza: { kind: "register", invite: "K7QX-93FD", handle: "alice", publicKey, signature, serverName },
  },
  {
    name: "register in open mode (invite null)",
    stanza: { kind: "register", invite: null, handle: "bob", publicKey, signature, serverName: "localhost" },
  },
  { name: "link", stanza: { kind: "link", code: "482913", publicKey, signature, serverName } },
  { name: "welcome", stanza: { kind: "welcome", account: alice, device: 2, lastClientId: 41 } },
  { name: "welcome of a new device", stanza: { kind: "welcome", account: bob, device: 1, lastClientId: 0 } },
  {
    name: "send, one payload for every device",
    stanza: { kind: "send", clientId: 42, to: bob, payload: payload20 },
  },
  {
    name: "send, one payload per device",
    stanza: {
      kind: "send",
      clientId: 43,
      to: bob,
      payload: [
        { device: 1, payload: pattern(16, 0x10) },
        { device: 3, payload: pattern(16, 0x30) },
      ],
    },
  },
  { name: "serverAck", stanza: { kind: "serverAck", clientId: 42 } },
  {
    name: "error answering a send (queueFull)",
    stanza: {
      kind: "error",
      code: ErrorCode.queueFull,
      clientId: 44,
      message: "queue of device 2 is full; retry later",
    },
  },
  {
    name: "error for the session (unexpectedStanza, no client id, no message)",
    stanza: { kind: "error", code: ErrorCode.unexpectedStanza, clientId: null, message: null },
  },
  {
    name: "error with device lists (deviceMismatch)",
    stanza: {
      kind: "error",
      code: ErrorCode.deviceMismatch,
      clientId: 43,
      message: "payloads do not match the recipient's devices",
      missingDevices: [2],
      extraDevices: [3],
    },
  },
  {
    name: "deliver",
    stanza: {
      kind: "deliver",
      seq: 7,
      from: alice,
      fromDevice: 1,
      clientId: 42,
      timeSeconds: time,
      payload: payload20,
    },
  },
  { name: "ack", stanza: { kind: "ack", seq: 7 } },
  {
    // Clients send read receipts only: delivered receipts come from the server (PROTOCOL.md, receipt).
    name: "receipt, read, one message",
    stanza: { kind: "receipt", type: ReceiptType.read, to: alice, toDevice: 1, clientIds: [42] },
  },
  {
    name: "receipt, read, three messages",
    stanza: { kind: "receipt", type: ReceiptType.read, to: alice, toDevice: 1, clientIds: [42, 43, 44] },
  },
  {
    name: "deliverReceipt",
    stanza: {
      kind: "deliverReceipt",
      seq: 8,
      type: ReceiptType.delivered,
      from: bob,
      fromDevice: 1,
      senderDevice: 1,
      clientIds: [42],
      timeSeconds: time + 2,
    },
  },
  { name: "queueEmpty", stanza: { kind: "queueEmpty" } },
  { name: "ping", stanza: { kind: "ping" } },
  { name: "pong", stanza: { kind: "pong" } },
  {
    name: "goaway, server stopping",
    stanza: {
      kind: "goaway",
      code: ErrorCode.shuttingDown,
      retryAfterMs: 12_500,
      message: "server shutting down",
    },
  },
  { name: "goaway, replaced", stanza: { kind: "goaway", code: ErrorCode.replaced, retryAfterMs: 0, message: null } },
  { name: "lookup", stanza: { kind: "lookup", clientId: 45, handle: "bob" } },
  { name: "lookupResult, found", stanza: { kind: "lookupResult", clientId: 45, account: bob, devices: [1, 3] } },
  { name: "lookupResult, no such handle", stanza: { kind: "lookupResult", clientId: 45, account: null, devices: [] } },
  { name: "linkCreate", stanza: { kind: "linkCreate", clientId: 46 } },
  {
    // Shaped as the server makes them (randomCode in server/account-requests.ts): 16 base32 characters, 80 bits.
    name: "linkCode",
    stanza: { kind: "linkCode", clientId: 46, code: "k7qxm93fdr2hwtne", expiresAtSeconds: time + 600 },
  },
  { name: "devices", stanza: { kind: "devices", clientId: 47 } },
  { name: "deviceList, two devices", stanza: { kind: "deviceList", clientId: 47, devices: deviceInfos(2) } },
  { name: "deviceRemove", stanza: { kind: "deviceRemove", clientId: 48, device: 3 } },
  // Dictionary version 2: handles by account id.
  { name: "reverseLookup", stanza: { kind: "reverseLookup", clientId: 51, accounts: [alice, bob, 1_000_003] } },
  {
    // bob's handle, alice may not learn (or has none), and a third that may not be learned either.
    name: "reverseLookupResult",
    stanza: { kind: "reverseLookupResult", clientId: 51, handles: ["alice", "bob", null] },
  },
  // Dictionary version 3: the key directory (PROTOCOL.md, "Key directory"). Keys are Signal's 33-byte serialisation.
  {
    name: "welcome with one-time prekeys left (dictionary 3)",
    stanza: { kind: "welcome", account: alice, device: 2, lastClientId: 41, oneTimePreKeysLeft: 7 },
  },
  {
    name: "keysUpload, two one-time prekeys and a last-resort key",
    stanza: {
      kind: "keysUpload",
      clientId: 52,
      registrationId: 9876,
      identityKey: signalKey(0x11),
      signedPreKey: { keyId: 1, publicKey: signalKey(0x22), signature: pattern(64, 0x33) },
      oneTimePreKeys: [
        { keyId: 100, publicKey: signalKey(0x44) },
        { keyId: 101, publicKey: signalKey(0x55) },
      ],
      lastResortKey: { keyId: 0xfff_fff0, publicKey: signalKey(0x66), signature: pattern(64, 0x77) },
    },
  },
  { name: "keysUploaded", stanza: { kind: "keysUploaded", clientId: 52, oneTimePreKeysLeft: 2 } },
  { name: "keysFetch", stanza: { kind: "keysFetch", clientId: 53, account: bob } },
  {
    name: "keyBundles, a one-time prekey and the last-resort key",
    stanza: {
      kind: "keyBundles",
      clientId: 53,
      account: bob,
      bundles: [
        {
          device: 1,
          registrationId: 9876,
          identityKey: signalKey(0x11),
          signedPreKey: { keyId: 1, publicKey: signalKey(0x22), signature: pattern(64, 0x33) },
          preKey: { keyId: 100, publicKey: signalKey(0x44) },
          lastResort: false,
        },
        {
          device: 2,
          registrationId: 1234,
          identityKey: signalKey(0x12),
          signedPreKey: { keyId: 1, publicKey: signalKey(0x23), signature: pattern(64, 0x34) },
          preKey: { keyId: 0xfff_fff0, publicKey: signalKey(0x66) },
          lastResort: true,
        },
      ],
    },
  },
  {
    name: "keyBundles, an account with no keys",
    stanza: { kind: "keyBundles", clientId: 54, account: bob, bundles: [] },
  },
  { name: "keysLow", stanza: { kind: "keysLow", oneTimePreKeysLeft: 2, threshold: 10 } },
  {
    name: "identityChange",
    stanza: { kind: "identityChange", seq: 9, account: bob, device: 2, timeSeconds: time + 5 },
  },
  // Dictionary version 3: media tokens (PROTOCOL.md "Media").
  {
    name: "mediaUpload",
    stanza: { kind: "mediaUpload", clientId: 61, hash: pattern(32, 0xa0), size: 1_048_604, recipients: [bob] },
  },
  {
    name: "mediaUploadGrant",
    stanza: {
      kind: "mediaUploadGrant",
      clientId: 61,
      token: pattern(86, 0x01),
      expiresAtSeconds: 1_800_000_900,
      stored: false,
      port: 7423,
      url: null,
    },
  },
  { name: "mediaDownload", stanza: { kind: "mediaDownload", clientId: 62, hash: pattern(32, 0xa0) } },
  {
    name: "mediaDownloadGrant, behind a proxy",
    stanza: {
      kind: "mediaDownloadGrant",
      clientId: 62,
      token: pattern(86, 0x02),
      expiresAtSeconds: 1_800_000_900,
      size: 1_048_604,
      port: 7423,
      url: "https://media.example.com",
    },
  },
  // Dictionary version 4: groups (PROTOCOL.md section 18). Lists of accounts and devices are packed big-endian.
  {
    name: "groupCreate",
    stanza: { kind: "groupCreate", clientId: 70, name: pattern(12, 0x30), members: [bob, 1_000_003] },
  },
  {
    name: "groupUpdate, add",
    stanza: {
      kind: "groupUpdate",
      clientId: 71,
      groupId: 0x1234_5678,
      op: GroupOp.add,
      accounts: [1_000_004],
      name: null,
    },
  },
  {
    name: "groupUpdate, rename",
    stanza: {
      kind: "groupUpdate",
      clientId: 72,
      groupId: 0x1234_5678,
      op: GroupOp.rename,
      accounts: [],
      name: pattern(12, 0x31),
    },
  },
  { name: "groupFetch", stanza: { kind: "groupFetch", clientId: 73, groupId: 0x1234_5678 } },
  {
    name: "groupInfo",
    stanza: {
      kind: "groupInfo",
      clientId: 70,
      groupId: 0x1234_5678,
      version: 1,
      name: pattern(12, 0x30),
      members: [alice, bob, 1_000_003],
      admins: [alice],
      devices: [
        { account: alice, device: 1 },
        { account: alice, device: 2 },
        { account: bob, device: 1 },
        { account: 1_000_003, device: 1 },
      ],
    },
  },
  {
    name: "groupSend, device list and a part",
    stanza: {
      kind: "groupSend",
      clientId: 74,
      groupId: 0x1234_5678,
      devices: [
        { account: alice, device: 2 },
        { account: bob, device: 1 },
      ],
      devicesHash: null,
      payload: payload20,
      parts: [{ account: bob, device: 1, part: pattern(8, 0x50) }],
    },
  },
  {
    name: "groupSend, device-list hash",
    stanza: {
      kind: "groupSend",
      clientId: 75,
      groupId: 0x1234_5678,
      devices: null,
      devicesHash: pattern(8, 0x60),
      payload: payload20,
      parts: [],
    },
  },
  {
    name: "groupDeliver with a part",
    stanza: {
      kind: "groupDeliver",
      seq: 12,
      groupId: 0x1234_5678,
      from: alice,
      fromDevice: 1,
      clientId: 74,
      timeSeconds: time,
      payload: payload20,
      part: pattern(8, 0x50),
    },
  },
  {
    name: "groupEvent, add",
    stanza: {
      kind: "groupEvent",
      seq: 11,
      groupId: 0x1234_5678,
      version: 2,
      op: GroupOp.add,
      actor: alice,
      actorDevice: 1,
      accounts: [1_000_004],
      name: null,
      timeSeconds: time,
    },
  },
  {
    name: "groupReceipt from two members",
    stanza: {
      kind: "groupReceipt",
      seq: 13,
      type: ReceiptType.delivered,
      groupId: 0x1234_5678,
      senderDevice: 1,
      clientId: 74,
      readers: groupReceiptReaders,
      timeSeconds: time,
    },
  },
  {
    name: "groupReceipt, read, from two members",
    stanza: {
      kind: "groupReceipt",
      seq: 14,
      type: ReceiptType.read,
      groupId: 0x1234_5678,
      senderDevice: 1,
      clientId: 74,
      readers: groupReceiptReaders,
      timeSeconds: time,
    },
  },
  {
    // Dictionary 4: a read receipt naming the group (section 18, Receipts): gathered across members.
    name: "receipt, read, of a group message",
    stanza: {
      kind: "receipt",
      type: ReceiptType.read,
      to: alice,
      toDevice: 1,
      clientIds: [74],
      groupId: 0x1234_5678,
    },
  },
  {
    name: "error, deviceMismatch of a groupSend",
    stanza: {
      kind: "error",
      code: ErrorCode.deviceMismatch,
      clientId: 74,
      message: null,
      missingMemberDevices: [{ account: 1_000_003, device: 1 }],
      extraMemberDevices: [{ account: alice, device: 2 }],
    },
  },
  {
    name: "deviceList, 16 devices, compressed",
    stanza: { kind: "deviceList", clientId: 49, devices: deviceInfos(16) },
    compress: true,
  },
  {
    // A sender with a stale list of 6 devices, to an account that has 16 others now (device numbers are never reused,
    // so an account that linked many devices has numbers past 127, two bytes each): a body over compressionBodyBytesMin.
    name: "error with long device lists (deviceMismatch), compressed",
    stanza: {
      kind: "error",
      code: ErrorCode.deviceMismatch,
      clientId: 50,
      message: "payloads do not match the recipient's devices",
      missingDevices: Array.from({ length: 16 }, (_, index) => 140 + index),
      extraDevices: [128, 129, 130, 131, 132, 133],
    },
    compress: true,
  },
];

interface BudgetCase extends FrameCase {
  readonly budgetBytesMax: number;
}

// The wire budgets of DESIGN.md: a 20-byte payload, account ids, client ids and sequences near 2^32. Device numbers
// are per account (1, 2, ...), so they stay one-byte fixints; 127 is the largest that does.
const budgetCases: readonly BudgetCase[] = [
  {
    name: "budget: send, 20-byte payload",
    stanza: { kind: "send", clientId: idHigh, to: idHigh - 1, payload: payload20 },
    budgetBytesMax: 36,
  },
  {
    name: "budget: deliver, 20-byte payload",
    stanza: {
      kind: "deliver",
      seq: idHigh - 2,
      from: idHigh - 1,
      fromDevice: 127,
      clientId: idHigh,
      timeSeconds: time,
      payload: payload20,
    },
    budgetBytesMax: 48,
  },
  { name: "budget: serverAck", stanza: { kind: "serverAck", clientId: idHigh }, budgetBytesMax: 8 },
  { name: "budget: ack", stanza: { kind: "ack", seq: idHigh - 2 }, budgetBytesMax: 8 },
  {
    name: "budget: groupSend, 20-byte payload, device-list hash",
    stanza: {
      kind: "groupSend",
      clientId: idHigh,
      groupId: idHigh - 1,
      devices: null,
      devicesHash: pattern(8, 0x60),
      payload: payload20,
      parts: [],
    },
    budgetBytesMax: 48,
  },
  {
    name: "budget: groupDeliver, 20-byte payload",
    stanza: {
      kind: "groupDeliver",
      seq: idHigh - 2,
      groupId: idHigh - 3,
      from: idHigh - 1,
      fromDevice: 127,
      clientId: idHigh,
      timeSeconds: time,
      payload: payload20,
      part: null,
    },
    budgetBytesMax: 56,
  },
  {
    name: "budget: receipt for one message",
    stanza: { kind: "receipt", type: ReceiptType.read, to: idHigh - 1, toDevice: 127, clientIds: [idHigh] },
    budgetBytesMax: 16,
  },
];

// ---------------------------------------------------------------------------------------------------------------
// Builders

function frameVector(codec: FrameCodec, frameCase: FrameCase): FrameVector {
  const frame = codec.encode(frameCase.stanza, { compress: frameCase.compress === true });
  const decoded = codec.decode(frame);
  if (decoded.status !== "frame") throw new Error(`${frameCase.name}: does not decode: ${JSON.stringify(decoded)}`);
  if (decoded.consumed !== frame.length) throw new Error(`${frameCase.name}: consumed ${decoded.consumed}`);
  const value = toJsonValue(decoded.stanza);
  if (JSON.stringify(value) !== JSON.stringify(toJsonValue(frameCase.stanza))) {
    throw new Error(`${frameCase.name}: decodes to another value: ${JSON.stringify(value)}`);
  }
  if ((frameCase.compress === true) !== decoded.compressed) {
    throw new Error(`${frameCase.name}: compressed is ${decoded.compressed}`);
  }
  return {
    name: frameCase.name,
    kind: frameCase.stanza.kind,
    token: StanzaKind[frameCase.stanza.kind],
    hex: bytesToHex(frame),
    compressed: decoded.compressed,
    value,
  };
}

function preambleVectors(): PreambleVector[] {
  const ok = (name: string, hex: string, protocol: number, dictionary: number): PreambleVector => ({
    name,
    hex,
    result: "ok",
    value: { protocolVersion: protocol, dictionaryVersion: dictionary },
  });
  const error = (name: string, hex: string, codeName: ErrorCodeName): PreambleVector => ({
    name,
    hex,
    result: "error",
    code: ErrorCode[codeName],
    codeName,
  });
  return [
    ok("protocol 1, dictionary 4", "53420104", protocolVersion, tokenDictionaryVersion),
    ok("protocol 1, dictionary 3 (an older client: no group kinds)", "53420103", protocolVersion, 3),
    ok("protocol 1, dictionary 2 (an older client: kinds 1..25)", "53420102", protocolVersion, 2),
    ok("protocol 1, dictionary 1 (an older client: kinds 1..23)", "53420101", protocolVersion, 1),
    { name: "magic only: wait for more", hex: "5342", result: "more" },
    { name: "first byte only: wait for more", hex: "53", result: "more" },
    { name: "nothing yet", hex: "", result: "more" },
    error("an HTTP request is not a Switchboard peer", "47455420", "badPreamble"),
    error("a wrong first byte fails at once", "47", "badPreamble"),
    error("a wrong second byte fails at once", "5343", "badPreamble"),
    error("protocol version 0", "53420001", "versionUnsupported"),
    error("protocol version 2 (newer than this server)", "53420201", "versionUnsupported"),
    error("dictionary version 0", "53420100", "versionUnsupported"),
    error("dictionary version 5 (newer than this server)", "53420105", "versionUnsupported"),
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// Signed messages, with a fixed key so that other-language clients can check their bytes and their signer

/** PKCS#8 DER of an Ed25519 private key is this prefix and the 32-byte seed (RFC 8410). */
const pkcs8Ed25519Prefix = "302e020100300506032b657004220420";
const signingSeed = pattern(32, 0x60);

function signedMessageVectors(): SignedMessageVector[] {
  const privateKey = createPrivateKey({
    key: Buffer.from(pkcs8Ed25519Prefix + bytesToHex(signingSeed), "hex"),
    format: "der",
    type: "pkcs8",
  });
  const spki = createPublicKey(privateKey).export({ format: "der", type: "spki" });
  const publicKeyHex = bytesToHex(new Uint8Array(spki.subarray(spki.length - 32)));
  const cases = [
    {
      name: "login, account 1000001 device 1, dialed as chat.example.com",
      kind: "login" as const,
      serverName,
      account: alice,
      device: 1,
      message: loginMessage(nonce, serverName, alice, 1),
    },
    {
      name: "register alice, dialed as chat.example.com",
      kind: "register" as const,
      serverName,
      handle: "alice",
      message: registerMessage(nonce, serverName, "alice"),
    },
    {
      name: "link with code 482913, dialed as ::1",
      kind: "link" as const,
      serverName: "::1",
      code: "482913",
      message: linkMessage(nonce, "::1", "482913"),
    },
  ];
  return cases.map(({ message, ...fields }) => {
    const signature = new Uint8Array(sign(null, message, privateKey));
    if (!verify(null, message, createPublicKey(privateKey), signature)) throw new Error(`${fields.name}: no verify`);
    return {
      ...fields,
      nonceHex: bytesToHex(nonce),
      messageHex: bytesToHex(message),
      seedHex: bytesToHex(signingSeed),
      publicKeyHex,
      signatureHex: bytesToHex(signature),
    };
  });
}

export function buildGolden(): GoldenFile {
  const codec = new FrameCodec({ limits: defaultLimits });
  const frames = frameCases.map((frameCase) => frameVector(codec, frameCase));
  const covered = new Set(frames.map((frame) => frame.kind));
  for (const kind of Object.keys(StanzaKind)) if (!covered.has(kind)) throw new Error(`no golden frame for ${kind}`);
  const budgets = budgetCases.map((budgetCase): BudgetVector => {
    const vector = frameVector(codec, budgetCase);
    const bytes = vector.hex.length / 2;
    if (bytes > budgetCase.budgetBytesMax) {
      throw new Error(`${budgetCase.name}: ${bytes} bytes pass the budget of ${budgetCase.budgetBytesMax}`);
    }
    return { ...vector, bytes, budgetBytesMax: budgetCase.budgetBytesMax };
  });
  return {
    description:
      "Switchboard protocol golden vectors. Every frame's hex is the whole frame (length varint, header byte, " +
      "MessagePack body); value is the decoded stanza with byte fields as {hex}. Compressed frames must decode to " +
      "their value; their deflate bytes are one valid encoding, not the only one. signedMessages are the exact " +
      "bytes a device signs (PROTOCOL.md section 9) with an Ed25519 key from a fixed seed and the signature. " +
      "Generated by generate.ts.",
    limits: "default",
    protocolVersion,
    dictionaryVersion: tokenDictionaryVersion,
    presetDictionaryHex: bytesToHex(presetDictionary),
    preambles: preambleVectors(),
    frames,
    budgets,
    signedMessages: signedMessageVectors(),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Bad inputs: hand-assembled bytes, so that they say exactly what is wrong

/** A frame around `bodyHex`: canonical length varint, then the header byte. */
function frameHex(header: number, bodyHex: string): string {
  const length = 1 + bodyHex.length / 2;
  const prefix: number[] = [];
  let rest = length;
  while (rest >= 0x80) {
    prefix.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  prefix.push(rest);
  return bytesToHex(Uint8Array.from(prefix)) + header.toString(16).padStart(2, "0") + bodyHex;
}

/** A MessagePack bin of `length` bytes of `fill`, as hex (bin 8/16). */
function binHex(length: number, fill: number): string {
  const head =
    length < 0x100 ? `c4${length.toString(16).padStart(2, "0")}` : `c5${length.toString(16).padStart(4, "0")}`;
  return head + fill.toString(16).padStart(2, "0").repeat(length);
}

function deflateHex(body: Uint8Array): string {
  return bytesToHex(deflateSync(body, { level: 9, dictionary: presetDictionary }));
}

const k = StanzaKind;
const compressedBit = 0x80;

function badInputCases(): Array<{ name: string; hex: string; codeName: ErrorCodeName }> {
  const limits = defaultLimits;
  const signature63 = binHex(63, 0x40);
  const publicKey31 = binHex(31, 0xa0);
  const signature64 = binHex(64, 0x40);
  const nonce31 = binHex(31, 0x00);
  // A body of a million 0x90 bytes (empty arrays): it deflates to about a kilobyte and inflates far past the limit.
  const bomb = new Uint8Array(1 << 20).fill(0x90);
  const tooManyDevices = Array.from({ length: limits.devicesPerAccountMax + 1 }, (_, index) => index + 1);
  return [
    // framing
    {
      name: "declared length one past frameBytesMax (65534 + 3 prefix bytes = 65537)",
      hex: "feff03",
      codeName: "frameTooLarge",
    },
    { name: "largest 3-byte declared length", hex: "ffff7f", codeName: "frameTooLarge" },
    { name: "non-canonical (overlong) length varint: 2 as 82 00", hex: "82000e90", codeName: "malformedFrame" },
    { name: "length varint longer than 3 bytes", hex: "8080808001", codeName: "malformedFrame" },
    { name: "empty frame (length 0)", hex: "00", codeName: "malformedFrame" },
    { name: "reserved header bit (0x40) set", hex: frameHex(0x40 | k.ping, "90"), codeName: "malformedFrame" },
    { name: "unknown kind 0", hex: frameHex(0, "90"), codeName: "unknownKind" },
    { name: "unknown kind 63", hex: frameHex(63, "90"), codeName: "unknownKind" },
    { name: "unknown kind 63 (not assigned)", hex: frameHex(63, "90"), codeName: "unknownKind" },
    { name: "header byte only, no body", hex: frameHex(k.ping, ""), codeName: "malformedBody" },
    // MessagePack structure
    { name: "trailing bytes after the body value", hex: frameHex(k.ping, "9000"), codeName: "malformedBody" },
    { name: "invalid MessagePack byte 0xc1", hex: frameHex(k.ping, "c1"), codeName: "malformedBody" },
    { name: "body truncated inside an array", hex: frameHex(k.serverAck, "92"), codeName: "malformedBody" },
    { name: "map body (maps are never used)", hex: frameHex(k.ping, "81a16101"), codeName: "malformedBody" },
    { name: "empty map body", hex: frameHex(k.ping, "80"), codeName: "wrongFieldType" },
    { name: "body not an array (nil)", hex: frameHex(k.ping, "c0"), codeName: "wrongFieldType" },
    { name: "body not an array (integer)", hex: frameHex(k.ack, "07"), codeName: "wrongFieldType" },
    {
      name: "nesting deeper than nestingDepthMax (3)",
      hex: frameHex(k.deviceList, "922f91919190"),
      codeName: "nestingTooDeep",
    },
    { name: "extension type (never used)", hex: frameHex(k.ping, "91d40001"), codeName: "malformedBody" },
    {
      name: "string longer than stringBytesMax",
      hex: frameHex(k.goaway, `93cd013900da0101${"61".repeat(257)}`),
      codeName: "malformedBody",
    },
    {
      name: "array longer than arrayItemsMax",
      hex: frameHex(k.lookupResult, `932dce000f4242dc0101${"01".repeat(257)}`),
      codeName: "malformedBody",
    },
    // field types
    { name: "string where an id is expected", hex: frameHex(k.serverAck, "91a23432"), codeName: "wrongFieldType" },
    { name: "negative integer id", hex: frameHex(k.serverAck, "91ff"), codeName: "wrongFieldType" },
    { name: "float id (1.5)", hex: frameHex(k.serverAck, "91cb3ff8000000000000"), codeName: "wrongFieldType" },
    { name: "id 0", hex: frameHex(k.serverAck, "9100"), codeName: "wrongFieldType" },
    { name: "id 2^32 (uint 64)", hex: frameHex(k.serverAck, "91cf0000000100000000"), codeName: "wrongFieldType" },
    { name: "nil where an id is expected", hex: frameHex(k.ack, "91c0"), codeName: "wrongFieldType" },
    { name: "bin where a string is expected", hex: frameHex(k.lookup, "922dc403626f62"), codeName: "wrongFieldType" },
    {
      name: "login signature of 63 bytes",
      hex: frameHex(k.login, `93ce000f424101${signature63}`),
      codeName: "wrongFieldType",
    },
    {
      name: "register publicKey of 31 bytes",
      hex: frameHex(k.register, `94c0a3626f62${publicKey31}${signature64}`),
      codeName: "wrongFieldType",
    },
    {
      name: "challenge nonce of 31 bytes",
      hex: frameHex(k.challenge, `94${nonce31}ce6921738001ce00010000`),
      codeName: "wrongFieldType",
    },
    {
      name: "login serverName that is bin, not a string",
      hex: frameHex(k.login, `94ce000f424101${signature64}c403616263`),
      codeName: "wrongFieldType",
    },
    {
      name: "missing field (login without signature)",
      hex: frameHex(k.login, "92ce000f424101"),
      codeName: "wrongFieldType",
    },
    { name: "missing field (empty body for ack)", hex: frameHex(k.ack, "90"), codeName: "wrongFieldType" },
    {
      name: "receipt with an empty clientIds list",
      hex: frameHex(k.receipt, "9401ce000f42410190"),
      codeName: "wrongFieldType",
    },
    { name: "receipt type 3 (unknown)", hex: frameHex(k.receipt, "9403ce000f424101912a"), codeName: "wrongFieldType" },
    {
      name: "receipt naming more than receiptClientIdsMax client ids",
      hex: frameHex(
        k.receipt,
        `9401ce000f424101dc${(limits.receiptClientIdsMax + 1).toString(16).padStart(4, "0")}${"2a".repeat(limits.receiptClientIdsMax + 1)}`,
      ),
      codeName: "wrongFieldType",
    },
    {
      name: "send with a per-device list of odd length",
      hex: frameHex(k.send, `932ace000f424293${"01"}${binHex(4, 0x11)}${"03"}`),
      codeName: "wrongFieldType",
    },
    {
      name: "send with an empty per-device list",
      hex: frameHex(k.send, "932ace000f424290"),
      codeName: "wrongFieldType",
    },
    {
      name: "lookupResult with more devices than devicesPerAccountMax",
      hex: frameHex(
        k.lookupResult,
        `932dce000f4242dc00${tooManyDevices.length.toString(16)}${tooManyDevices.map((device) => device.toString(16).padStart(2, "0")).join("")}`,
      ),
      codeName: "wrongFieldType",
    },
    {
      name: "reverseLookup with an empty accounts list",
      hex: frameHex(k.reverseLookup, "923390"),
      codeName: "wrongFieldType",
    },
    {
      name: "reverseLookup naming more than reverseLookupAccountsMax accounts",
      hex: frameHex(
        k.reverseLookup,
        `9233dc00${(limits.reverseLookupAccountsMax + 1).toString(16)}${"01".repeat(limits.reverseLookupAccountsMax + 1)}`,
      ),
      codeName: "wrongFieldType",
    },
    {
      name: "reverseLookup with account 0",
      hex: frameHex(k.reverseLookup, "92339100"),
      codeName: "wrongFieldType",
    },
    {
      name: "reverseLookupResult with a handle longer than handleBytesMax",
      hex: frameHex(k.reverseLookupResult, `923391d921${"61".repeat(33)}`),
      codeName: "wrongFieldType",
    },
    {
      name: "reverseLookupResult with a number where a handle is expected",
      hex: frameHex(k.reverseLookupResult, "92339101"),
      codeName: "wrongFieldType",
    },
    {
      name: "mediaUpload with a 31-byte hash",
      hex: frameHex(k.mediaUpload, `943dc41f${"aa".repeat(31)}0191cd0102`),
      codeName: "wrongFieldType",
    },
    {
      name: "mediaUpload of size 0",
      hex: frameHex(k.mediaUpload, `943dc420${"aa".repeat(32)}0091cd0102`),
      codeName: "wrongFieldType",
    },
    {
      name: "mediaUpload with no recipients",
      hex: frameHex(k.mediaUpload, `943dc420${"aa".repeat(32)}0190`),
      codeName: "wrongFieldType",
    },
    {
      name: "mediaUploadGrant with 1 where stored (a boolean) is expected",
      hex: frameHex(k.mediaUploadGrant, "963dc401740001cd1cffc0"),
      codeName: "wrongFieldType",
    },
    // groups (dictionary version 4)
    {
      name: "groupSend with both a device list and a hash",
      hex: frameHex(k.groupSend, `964a01c408${"00000001".repeat(2)}c408${"60".repeat(8)}c400 90`.replace(" ", "")),
      codeName: "wrongFieldType",
    },
    {
      name: "groupSend with neither a device list nor a hash",
      hex: frameHex(k.groupSend, "964a01c0c0c40090"),
      codeName: "wrongFieldType",
    },
    {
      name: "groupSend device list of 7 bytes (not whole (account, device) pairs)",
      hex: frameHex(k.groupSend, `964a01c407${"01".repeat(7)}c0c40090`),
      codeName: "wrongFieldType",
    },
    {
      name: "groupSend parts not in triples",
      hex: frameHex(k.groupSend, `964a01c0c408${"60".repeat(8)}c4009201 01`.replace(" ", "")),
      codeName: "wrongFieldType",
    },
    {
      name: "groupCreate member list with account 0",
      hex: frameHex(k.groupCreate, "9346c40130c40400000000"),
      codeName: "wrongFieldType",
    },
    {
      name: "groupUpdate with op create",
      hex: frameHex(k.groupUpdate, "9501ce1234567801c40400000001c0"),
      codeName: "wrongFieldType",
    },
    {
      name: "groupUpdate rename without a name",
      hex: frameHex(k.groupUpdate, "9501ce1234567807c400c0"),
      codeName: "wrongFieldType",
    },
    {
      name: "groupUpdate with an unknown op (8)",
      hex: frameHex(k.groupUpdate, "9501ce1234567808c400c0"),
      codeName: "wrongFieldType",
    },
    {
      name: "groupCreate name one byte over groupNameBytesMax",
      hex: frameHex(
        k.groupCreate,
        `9346c5${(groupNameBytesMax + 1).toString(16).padStart(4, "0")}${"30".repeat(groupNameBytesMax + 1)}c400`,
      ),
      codeName: "wrongFieldType",
    },
    {
      name: "deviceList entry that is not an array",
      hex: frameHex(k.deviceList, "922f9101"),
      codeName: "wrongFieldType",
    },
    {
      name: "deliver payload one byte over payloadBytesMax",
      hex: frameHex(k.deliver, `9601ce000f42420101ce692173c0${binHex(limits.payloadBytesMax + 1, 0x80)}`),
      codeName: "wrongFieldType",
    },
    // compression
    {
      name: "compressed frame that is not valid deflate (reserved block type)",
      hex: frameHex(compressedBit | k.ping, "07"),
      codeName: "badCompression",
    },
    {
      name: "compressed frame cut short inside the deflate stream",
      hex: frameHex(compressedBit | k.ping, deflateHex(pattern(200, 0)).slice(0, 20)),
      codeName: "badCompression",
    },
    {
      name: "compressed frame with an empty body",
      hex: frameHex(compressedBit | k.ping, ""),
      codeName: "badCompression",
    },
    {
      name: "deflate bomb: 1 MiB of body in about 1 KiB, past frameBytesMax",
      hex: frameHex(compressedBit | k.ping, deflateHex(bomb)),
      codeName: "inflateTooLarge",
    },
    {
      name: "compressed body that inflates to invalid MessagePack",
      hex: frameHex(compressedBit | k.ping, deflateHex(Uint8Array.of(0xc1))),
      codeName: "malformedBody",
    },
    // strings: well-formed UTF-8 only (RFC 3629), checked while parsing, in any string, even an ignored one
    {
      name: "string with a byte never used in UTF-8 (ff)",
      hex: frameHex(k.lookup, "922da362ff62"),
      codeName: "malformedBody",
    },
    {
      name: "string with an overlong form ('/' as c0 af)",
      hex: frameHex(k.goaway, "93cd013900a2c0af"),
      codeName: "malformedBody",
    },
    {
      name: "string with a UTF-16 surrogate (ed a0 80)",
      hex: frameHex(k.error, "93ccc9c0a3eda080"),
      codeName: "malformedBody",
    },
    {
      name: "string with a code point past U+10FFFF (f4 90 80 80)",
      hex: frameHex(k.lookup, "922da4f4908080"),
      codeName: "malformedBody",
    },
    {
      name: "string cut inside a character (c3 at its end)",
      hex: frameHex(k.lookup, "922da262c3"),
      codeName: "malformedBody",
    },
    {
      name: "string with a stray continuation byte (80)",
      hex: frameHex(k.lookup, "922da3628062"),
      codeName: "malformedBody",
    },
    {
      name: "ill-formed string in an extra field a receiver ignores",
      hex: frameHex(k.ping, "91a1ff"),
      codeName: "malformedBody",
    },
    // two errors at once: the first check in decoding order gives the code (PROTOCOL.md section 4)
    {
      name: "two errors: declared length past frameBytesMax and reserved header bit: the length",
      hex: "feff034e",
      codeName: "frameTooLarge",
    },
    {
      name: "two errors: reserved header bit and unknown kind 0: the reserved bit",
      hex: frameHex(0x40, "90"),
      codeName: "malformedFrame",
    },
    {
      name: "two errors: unknown kind 63 and invalid deflate: the kind",
      hex: frameHex(compressedBit | 63, "07"),
      codeName: "unknownKind",
    },
    {
      name: "two errors: nesting too deep, then trailing bytes: the nesting",
      hex: frameHex(k.deviceList, "922f9191919000"),
      codeName: "nestingTooDeep",
    },
    {
      name: "two errors: invalid byte c1, then nesting too deep: the first in byte order",
      hex: frameHex(k.deviceList, "92c191919190"),
      codeName: "malformedBody",
    },
    {
      name: "two errors: nesting too deep, then invalid byte c1: the first in byte order",
      hex: frameHex(k.deviceList, "929191919190c1"),
      codeName: "nestingTooDeep",
    },
    {
      name: "two errors: string over stringBytesMax, then nesting too deep: the nesting (limits come after the scan)",
      hex: frameHex(k.goaway, `94cd013900da0101${"61".repeat(257)}91919190`),
      codeName: "nestingTooDeep",
    },
    {
      name: "two errors: ill-formed string where an id is expected: the string (structure before fields)",
      hex: frameHex(k.serverAck, "91a1ff"),
      codeName: "malformedBody",
    },
    {
      name: "two errors: string where an id is expected, then trailing bytes: the trailing bytes",
      hex: frameHex(k.serverAck, "91a2343200"),
      codeName: "malformedBody",
    },
  ];
}

export function buildBadInputs(): BadInputsFile {
  const codec = new FrameCodec({ limits: defaultLimits });
  const inputs = badInputCases().map(({ name, hex, codeName }): BadInput => {
    const result = codec.decode(hexToBytes(hex));
    if (result.status !== "error") throw new Error(`bad input "${name}" gives ${result.status}`);
    if (!(result.error instanceof ProtocolError)) throw new Error(`bad input "${name}": not a ProtocolError`);
    if (result.error.code !== ErrorCode[codeName]) {
      throw new Error(
        `bad input "${name}": ${errorCodeName(result.error.code)} (${result.error.message}), not ${codeName}`,
      );
    }
    return { name, hex, code: ErrorCode[codeName], codeName };
  });
  return {
    description:
      "Switchboard protocol bad inputs: each hex is the start of a stream (after the preamble) that a receiver must " +
      "refuse with the error code given, decoding with the default limits. Generated and checked by generate.ts.",
    limits: "default",
    inputs,
  };
}

export const goldenPath = new URL("./golden.json", import.meta.url);
export const badInputsPath = new URL("./bad-inputs.json", import.meta.url);

/** The committed vector files, as the tests read them. */
export async function loadGolden(): Promise<GoldenFile> {
  return (await Bun.file(goldenPath).json()) as GoldenFile;
}

export async function loadBadInputs(): Promise<BadInputsFile> {
  return (await Bun.file(badInputsPath).json()) as BadInputsFile;
}

export function serialize(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

if (import.meta.main) {
  const write = process.argv.includes("--write");
  const golden = serialize(buildGolden());
  const badInputs = serialize(buildBadInputs());
  if (write) {
    await Bun.write(goldenPath, golden);
    await Bun.write(badInputsPath, badInputs);
    // The repository's formatter owns the layout of JSON files (short arrays on one line); run it so that the lint
    // step stays clean. The tests compare parsed values, so the layout never matters to them.
    const biome = new URL("../../node_modules/.bin/biome", import.meta.url).pathname;
    const formatted = Bun.spawnSync([biome, "format", "--write", goldenPath.pathname, badInputsPath.pathname]);
    if (formatted.exitCode !== 0) console.warn(`biome format failed: ${formatted.stderr.toString()}`);
    console.log(`wrote ${goldenPath.pathname} and ${badInputsPath.pathname}`);
  } else {
    console.log(serialize({ golden: JSON.parse(golden), badInputs: JSON.parse(badInputs) }));
  }
}
