import { describe, expect, test } from "bun:test";
import { decode } from "@msgpack/msgpack";
import { ErrorCode, errorAction, errorCodeName, errorCodes, ProtocolError } from "./errors.ts";
import { Random, randomStanza } from "./fuzz.ts";
import { defaultLimits, type Limits, testLimits } from "./limits.ts";
import { stanzaFields, stanzaFromFields, stanzaKindToken } from "./stanza-codec.ts";
import type { SendStanza, Stanza } from "./stanzas.ts";
import {
  GroupOp,
  ReceiptType,
  RegistrationMode,
  StanzaKind,
  type StanzaKindName,
  stanzaKindName,
  stanzaKindSinceDictionary,
  tokenDictionaryVersion,
} from "./tokens.ts";
import { fromJsonValue, hexToBytes, loadGolden, toJsonValue } from "./vectors/generate.ts";

const golden = await loadGolden();
const goldenFrames = [...golden.frames, ...golden.budgets];
const kindNames = Object.keys(StanzaKind) as StanzaKindName[];

function fromFields(kind: StanzaKindName, fields: unknown, limits: Limits = defaultLimits): Stanza | ProtocolError {
  return stanzaFromFields(StanzaKind[kind], fields, limits);
}

function expectWrongField(result: Stanza | ProtocolError, messagePart?: string): void {
  expect(result).toBeInstanceOf(ProtocolError);
  expect((result as ProtocolError).code).toBe(ErrorCode.wrongFieldType);
  if (messagePart !== undefined) expect((result as ProtocolError).message).toContain(messagePart);
}

function classOf(value: unknown): string {
  if (value === null || typeof value === "string") return "string or null";
  if (value instanceof Uint8Array) return "bytes";
  return typeof value;
}

/** Number of fields a kind must have; the rest are optional (error's device lists). */
function requiredFields(stanza: Stanza): number {
  if (stanza.kind === "error") return 3;
  // welcome's oneTimePreKeysLeft is absent for clients before dictionary version 3.
  if (stanza.kind === "welcome") return 3;
  // serverName, at the end of login, register and link, may be absent (a client from before it): the server refuses
  // such a login with wrongServer, the codec takes it.
  if ("serverName" in stanza && stanza.serverName !== null) return stanzaFields(stanza).length - 1;
  return stanzaFields(stanza).length;
}

describe("token dictionary", () => {
  test("kinds are 1..31, 34..37 and 40..47, unique, within the 6 header bits, and named back", () => {
    const tokens = Object.values(StanzaKind);
    expect(new Set(tokens).size).toBe(tokens.length);
    expect(Math.min(...tokens)).toBe(1);
    // 32 and 33 are reserved for the key directory; the media kinds took 34..37; the group kinds 40..47.
    expect(Math.max(...tokens)).toBe(47);
    const expected: number[] = [
      ...Array.from({ length: 31 }, (_, index) => index + 1),
      34,
      35,
      36,
      37,
      ...[40, 41, 42, 43, 44, 45, 46, 47],
    ];
    expect([...tokens].sort((a, b) => a - b) as number[]).toEqual(expected);
    for (const name of kindNames) expect(stanzaKindName(StanzaKind[name])).toBe(name);
    expect(stanzaKindName(0)).toBeUndefined();
    expect(stanzaKindName(32)).toBeUndefined();
    expect(stanzaKindName(33)).toBeUndefined();
    expect(stanzaKindName(38)).toBeUndefined();
    expect(stanzaKindName(63)).toBeUndefined();
  });

  test("dictionary version 2 added reverseLookup (24) and reverseLookupResult (25); version 3 the media kinds 34..37", () => {
    expect(tokenDictionaryVersion).toBe(4);
    expect(StanzaKind.deviceRemove).toBe(23);
    expect(StanzaKind.reverseLookup).toBe(24);
    expect(StanzaKind.reverseLookupResult).toBe(25);
    const added = Object.entries(stanzaKindSinceDictionary).map(([name]) => StanzaKind[name as StanzaKindName]);
    expect(added.sort((a, b) => a - b)).toEqual([
      24, 25, 26, 27, 28, 29, 30, 31, 34, 35, 36, 37, 40, 41, 42, 43, 44, 45, 46, 47,
    ]);
    expect(stanzaKindSinceDictionary.mediaUpload).toBe(3);
    expect(stanzaKindSinceDictionary.mediaDownloadGrant).toBe(3);
  });

  test("dictionary version 3 added the key directory's kinds 26..31 and the media kinds 34..37", () => {
    expect(tokenDictionaryVersion).toBe(4);
    const added = Object.entries(stanzaKindSinceDictionary)
      .filter(([, version]) => version === 3)
      .map(([name]) => StanzaKind[name as StanzaKindName]);
    expect(added.sort((a, b) => a - b)).toEqual([26, 27, 28, 29, 30, 31, 34, 35, 36, 37]);
    expect(StanzaKind.keysUpload).toBe(26);
    expect(StanzaKind.identityChange).toBe(31);
  });

  test("dictionary version 4 added the group kinds 40..47 and the group operations", () => {
    const added = Object.entries(stanzaKindSinceDictionary)
      .filter(([, version]) => version === 4)
      .map(([name]) => StanzaKind[name as StanzaKindName]);
    expect(added.sort((a, b) => a - b)).toEqual([40, 41, 42, 43, 44, 45, 46, 47]);
    expect(GroupOp).toEqual({ create: 1, add: 2, remove: 3, promote: 4, demote: 5, leave: 6, rename: 7 });
  });

  test("receipt types and registration modes keep their tokens", () => {
    expect(ReceiptType).toEqual({ delivered: 1, read: 2 });
    expect(RegistrationMode).toEqual({ closed: 0, invite: 1, open: 2 });
  });

  test("every kind has a golden vector", () => {
    expect(new Set(golden.frames.map((frame) => frame.kind))).toEqual(new Set(kindNames));
    for (const frame of goldenFrames) expect(frame.token).toBe(StanzaKind[frame.kind as StanzaKindName]);
  });

  test("both send payload forms and error with and without device lists are in the vectors", () => {
    const sends = golden.frames.filter((frame) => frame.kind === "send").map((frame) => fromJsonValue(frame.value));
    expect(sends.some((send) => (send as { payload: unknown }).payload instanceof Uint8Array)).toBe(true);
    expect(sends.some((send) => Array.isArray((send as { payload: unknown }).payload))).toBe(true);
    const errors = golden.frames.filter((frame) => frame.kind === "error").map((frame) => frame.value as object);
    expect(errors.some((error) => "missingDevices" in error)).toBe(true);
    expect(errors.some((error) => !("missingDevices" in error))).toBe(true);
  });
});

describe("errors", () => {
  test("errorAction follows the ranges", () => {
    expect(errorAction(100)).toBe("rejected");
    expect(errorAction(199)).toBe("rejected");
    expect(errorAction(200)).toBe("retry");
    expect(errorAction(299)).toBe("retry");
    expect(errorAction(300)).toBe("reconnect");
    expect(errorAction(399)).toBe("reconnect");
    expect(errorAction(400)).toBe("stop");
    expect(errorAction(499)).toBe("stop");
    // Outside every range: reconnect, the cautious default.
    expect(errorAction(0)).toBe("reconnect");
    expect(errorAction(99)).toBe("reconnect");
    expect(errorAction(500)).toBe("reconnect");
  });

  test("every named code lies in the range of its group and is unique", () => {
    const all = errorCodes();
    expect(all.length).toBe(Object.keys(ErrorCode).length);
    expect(new Set(all.map((entry) => entry.code)).size).toBe(all.length);
    for (const { name, code, action } of all) {
      expect(ErrorCode[name]).toBe(code as never);
      expect(errorCodeName(code)).toBe(name);
      expect(action).toBe(errorAction(code));
      expect(code >= 100 && code < 500).toBe(true);
    }
    expect(errorAction(ErrorCode.payloadTooLarge)).toBe("rejected");
    expect(errorAction(ErrorCode.queueFull)).toBe("retry");
    expect(errorAction(ErrorCode.malformedFrame)).toBe("reconnect");
    expect(errorAction(ErrorCode.badCredentials)).toBe("stop");
    expect(errorCodeName(999)).toBe("code999");
  });

  test("ProtocolError carries name, code, action and cause", () => {
    const cause = new Error("inner");
    const error = new ProtocolError(ErrorCode.queueFull, "full", { cause });
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("ProtocolError");
    expect(error.code).toBe(201);
    expect(error.action).toBe("retry");
    expect(error.cause).toBe(cause);
  });
});

describe("stanza fields", () => {
  test.each(goldenFrames.filter((frame) => !frame.compressed).map((frame) => [frame.name, frame] as const))(
    "golden %s: the body is exactly the positional fields",
    (_name, frame) => {
      const stanza = fromJsonValue(frame.value) as Stanza;
      const bytes = hexToBytes(frame.hex);
      const body = bytes.subarray(bytes[0]! < 0x80 ? 2 : 3);
      expect(toJsonValue(decode(body))).toEqual(toJsonValue(stanzaFields(stanza)));
      expect(stanzaKindToken(stanza)).toBe(frame.token);
      expect(toJsonValue(fromFields(stanza.kind, decode(body)))).toEqual(frame.value);
    },
  );

  test("an unknown kind token is unknownKind; a body that is not an array is wrongFieldType", () => {
    for (const token of [0, 32, 63, 1000]) {
      const result = stanzaFromFields(token, [], defaultLimits);
      expect((result as ProtocolError).code).toBe(ErrorCode.unknownKind);
    }
    for (const body of [null, 7, "x", new Uint8Array(2), {}]) expectWrongField(fromFields("ping", body), "array");
  });

  test.each(kindNames)("%s: extra trailing fields are ignored (forward compatibility)", (kind) => {
    const random = new Random(StanzaKind[kind]);
    for (let round = 0; round < 20; round++) {
      let stanza = randomStanza(random, kind, defaultLimits);
      // An error's optional device lists are positions 3 and 4; extras go after them.
      if (stanza.kind === "error") stanza = { ...stanza, missingDevices: [1], extraDevices: [] };
      // welcome's oneTimePreKeysLeft (dictionary 3) is position 4; extras go after it.
      if (stanza.kind === "welcome") stanza = { ...stanza, oneTimePreKeysLeft: stanza.oneTimePreKeysLeft ?? 0 };
      // receipt's groupId (dictionary 4) is position 4; extras go after it.
      if (stanza.kind === "receipt") stanza = { ...stanza, groupId: stanza.groupId ?? 9 };
      // A sender of fields after serverName sends serverName too.
      if ("serverName" in stanza) stanza = { ...stanza, serverName: stanza.serverName ?? "localhost" };
      const fields = [...stanzaFields(stanza), 7, "future", [1, 2], null];
      expect(toJsonValue(fromFields(kind, fields))).toEqual(toJsonValue(stanza));
    }
  });

  test.each(kindNames)("%s: a wrong type in any field is wrongFieldType, never a throw", (kind) => {
    const random = new Random(StanzaKind[kind] * 31);
    const stanza = randomStanza(random, kind, defaultLimits);
    const full = stanza.kind === "error" ? { ...stanza, missingDevices: [2], extraDevices: [3] } : stanza;
    const fields = stanzaFields(full);
    for (let index = 0; index < fields.length; index++) {
      for (const wrong of [true, -1, 1.5, 2 ** 32, "x", new Uint8Array(3), [[]], { a: 1 }, undefined]) {
        // Skip a replacement of the field's own type: a string for a string (or null) field, bytes for bytes.
        if (classOf(fields[index]) === classOf(wrong)) continue;
        // A nil in a field of bytes-or-nil (the group kinds' name, part, devices and devicesHash) takes bytes too.
        if (fields[index] === null && wrong instanceof Uint8Array && kind.startsWith("group")) continue;
        const broken = [...fields];
        broken[index] = wrong;
        expectWrongField(fromFields(kind, broken));
      }
    }
  });

  test.each(kindNames)("%s: a missing required field is wrongFieldType", (kind) => {
    const stanza = randomStanza(new Random(StanzaKind[kind] * 7), kind, defaultLimits);
    const fields = stanzaFields(stanza);
    for (let length = 0; length < requiredFields(stanza); length++) {
      expectWrongField(fromFields(kind, fields.slice(0, length)), "missing");
    }
  });

  test("ids are 1 .. 2^32-1; other uint32 fields also take 0", () => {
    expect(fromFields("serverAck", [0xffff_ffff])).toEqual({ kind: "serverAck", clientId: 0xffff_ffff });
    expectWrongField(fromFields("serverAck", [0]), "must not be 0");
    expectWrongField(fromFields("serverAck", [0x1_0000_0000]));
    expect(fromFields("welcome", [1, 1, 0])).toEqual({ kind: "welcome", account: 1, device: 1, lastClientId: 0 });
    expect(fromFields("goaway", [0, 0, null])).toEqual({ kind: "goaway", code: 0, retryAfterMs: 0, message: null });
    expectWrongField(fromFields("receipt", [1, 1, 1, [0]]), "clientIds[0]");
    expectWrongField(fromFields("lookupResult", [1, 0, []]));
  });

  test("byte fields have exact lengths where the crypto needs them", () => {
    const nonce = new Uint8Array(32);
    expect(fromFields("challenge", [nonce, 0, 0, 0, 0])).toMatchObject({ kind: "challenge" });
    expectWrongField(fromFields("challenge", [new Uint8Array(31), 0, 0, 0]), "nonce must be 32 bytes");
    expectWrongField(fromFields("challenge", [new Uint8Array(33), 0, 0, 0]), "nonce");
    expectWrongField(fromFields("login", [1, 1, new Uint8Array(63)]), "signature must be 64 bytes");
    expectWrongField(fromFields("link", ["c", new Uint8Array(32), new Uint8Array(65)]), "signature");
    expectWrongField(fromFields("register", [null, "h", new Uint8Array(31), new Uint8Array(64)]), "publicKey");
  });

  test("strings are measured in UTF-8 bytes", () => {
    const limits = testLimits; // handleBytesMax 16, stringBytesMax 64
    const key = new Uint8Array(32);
    const signature = new Uint8Array(64);
    expect(fromFields("register", [null, "é".repeat(8), key, signature], limits)).toMatchObject({
      handle: "é".repeat(8),
    });
    expectWrongField(fromFields("register", [null, "é".repeat(9), key, signature], limits), "handle longer than 16");
    expect(fromFields("lookup", [1, "a".repeat(16)], limits)).toMatchObject({ handle: "a".repeat(16) });
    expectWrongField(fromFields("lookup", [1, "a".repeat(17)], limits));
    expect(fromFields("goaway", [1, 1, "😀".repeat(16)], limits)).toMatchObject({ message: "😀".repeat(16) });
    expectWrongField(fromFields("goaway", [1, 1, `${"😀".repeat(16)}a`], limits), "message longer than 64");
  });

  test("nullable fields take null and nothing else that is not their type", () => {
    expect(fromFields("error", [300, null, null])).toEqual({ kind: "error", code: 300, clientId: null, message: null });
    expect(fromFields("lookupResult", [5, null, []])).toEqual({
      kind: "lookupResult",
      clientId: 5,
      account: null,
      devices: [],
    });
    expectWrongField(fromFields("error", [300, undefined, null]));
    expectWrongField(fromFields("login", [null, 1, new Uint8Array(64)]));
  });

  test("error: one trailing field is ignored, two are the device lists", () => {
    expect(fromFields("error", [102, 4, null, [1]])).toEqual({ kind: "error", code: 102, clientId: 4, message: null });
    expect(fromFields("error", [102, 4, null, [1], [2, 3]])).toEqual({
      kind: "error",
      code: 102,
      clientId: 4,
      message: null,
      missingDevices: [1],
      extraDevices: [2, 3],
    });
    expectWrongField(fromFields("error", [102, 4, null, [1], [0]]), "extraDevices[0]");
  });

  test("receipts name 1 .. receiptClientIdsMax client ids and a known type", () => {
    const ids = (count: number) => Array.from({ length: count }, (_, index) => index + 1);
    expectWrongField(fromFields("receipt", [1, 9, 1, []]), "clientIds must not be empty");
    expect(fromFields("receipt", [2, 9, 1, ids(defaultLimits.receiptClientIdsMax)])).toMatchObject({ type: 2 });
    expectWrongField(fromFields("receipt", [1, 9, 1, ids(defaultLimits.receiptClientIdsMax + 1)]));
    expectWrongField(fromFields("receipt", [0, 9, 1, [1]]), "receipt type");
    expectWrongField(fromFields("receipt", [3, 9, 1, [1]]), "receipt type");
    // A deliver-receipt may carry an empty list (the server never sends one, but it is not malformed).
    expect(fromFields("deliverReceipt", [1, 1, 2, 3, 4, [], 5])).toMatchObject({ clientIds: [] });
  });

  test("send: bytes, or device/payload pairs (1 .. devicesPerAccountMax)", () => {
    const pair = (device: number) => [device, new Uint8Array(2)];
    const pairs = (count: number) => Array.from({ length: count }, (_, index) => pair(index + 1)).flat();
    const full = fromFields("send", [1, 2, pairs(defaultLimits.devicesPerAccountMax)]);
    expect((full as SendStanza).payload).toHaveLength(defaultLimits.devicesPerAccountMax);
    expectWrongField(fromFields("send", [1, 2, pairs(defaultLimits.devicesPerAccountMax + 1)]));
    expectWrongField(fromFields("send", [1, 2, []]), "pairs");
    expectWrongField(fromFields("send", [1, 2, [1]]), "pairs");
    expectWrongField(fromFields("send", [1, 2, [0, new Uint8Array(1)]]), "device");
    expectWrongField(fromFields("send", [1, 2, ["x", new Uint8Array(1)]]));
    // A send's payload is bounded by the frame only: the server refuses one over payloadBytesMax with
    // payloadTooLarge (103) and keeps the session. A deliver's payload is held to payloadBytesMax.
    expect(fromFields("send", [1, 2, new Uint8Array(defaultLimits.payloadBytesMax + 1)])).toMatchObject({
      kind: "send",
    });
    expectWrongField(
      fromFields("deliver", [1, 2, 1, 3, 0, new Uint8Array(defaultLimits.payloadBytesMax + 1)]),
      "payload longer",
    );
    expect(fromFields("send", [1, 2, new Uint8Array(0)])).toMatchObject({ payload: new Uint8Array(0) });
  });

  test("deviceList entries are arrays of three numbers", () => {
    expect(fromFields("deviceList", [1, [[2, 3, 4]]])).toEqual({
      kind: "deviceList",
      clientId: 1,
      devices: [{ device: 2, createdAtSeconds: 3, lastSeenAtSeconds: 4 }],
    });
    expectWrongField(fromFields("deviceList", [1, [5]]), "devices[0] must be an array");
    expectWrongField(fromFields("deviceList", [1, [[2, 3]]]), "lastSeenAtSeconds");
    const many = Array.from({ length: defaultLimits.devicesPerAccountMax + 1 }, (_, index) => [index + 1, 0, 0]);
    expectWrongField(fromFields("deviceList", [1, many]));
  });
});
