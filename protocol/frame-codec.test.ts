import { describe, expect, test } from "bun:test";
import { presetDictionary } from "./compression.ts";
import { ErrorCode, errorCodeName, errorCodes, ProtocolError } from "./errors.ts";
import { type DecodeResult, FrameCodec, headerCompressedBit, headerKindMask } from "./frame-codec.ts";
import { FrameReader } from "./frame-reader.ts";
import { Random, randomStanza } from "./fuzz.ts";
import { assertLimits, defaultLimits, frameLengthVarintBytesMax, type Limits, testLimits } from "./limits.ts";
import { isWellFormedUtf8 } from "./msgpack-scan.ts";
import type { SendStanza, Stanza } from "./stanzas.ts";
import { StanzaKind, type StanzaKindName } from "./tokens.ts";
import {
  buildBadInputs,
  buildGolden,
  bytesToHex,
  fromJsonValue,
  hexToBytes,
  loadBadInputs,
  loadGolden,
  serialize,
  toJsonValue,
} from "./vectors/generate.ts";

const golden = await loadGolden();
const badInputs = await loadBadInputs();
const goldenFrames = [...golden.frames, ...golden.budgets];
const kindNames = Object.keys(StanzaKind) as StanzaKindName[];
// The vector files say which limits they were made with; the tests decode with the same.
const codec = new FrameCodec({ limits: golden.limits === "default" ? defaultLimits : testLimits });
const testCodec = new FrameCodec({ limits: testLimits });

/** The seed of the random tests: FUZZ_SEED when set, else fixed, so that a failure is replayable. */
const seed = Number(process.env.FUZZ_SEED ?? 20_251_122);

function expectFrame(result: DecodeResult): Extract<DecodeResult, { status: "frame" }> {
  if (result.status !== "frame") throw new Error(`expected a frame, got ${JSON.stringify(toJsonValue(result))}`);
  return result;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

/** Feeds `chunks` to a reader and drains it after each one; returns the decoded stanzas and the final result. */
function readAll(chunks: readonly Uint8Array[], limits: Limits = defaultLimits) {
  const reader = new FrameReader(new FrameCodec({ limits }));
  const stanzas: Stanza[] = [];
  let last: DecodeResult = { status: "more", needed: 1 };
  for (const chunk of chunks) {
    reader.push(chunk);
    for (;;) {
      last = reader.next();
      if (last.status === "frame") stanzas.push(last.stanza);
      else break;
    }
    if (last.status === "error") break;
    expect(reader.bufferedBytes).toBeLessThan(limits.frameBytesMax);
  }
  return { stanzas, last, reader };
}

describe("golden vectors", () => {
  test("the committed files are what generate.ts makes from this codec (a wire change shows up here)", () => {
    expect(JSON.parse(serialize(buildGolden()))).toEqual(golden);
    expect(JSON.parse(serialize(buildBadInputs()))).toEqual(badInputs);
  });

  test("are made with the limits they state", () => {
    expect(golden.limits).toBe("default");
    expect(badInputs.limits).toBe("default");
  });

  test.each(goldenFrames.map((vector) => [vector.name, vector] as const))("%s", (_name, vector) => {
    const frame = hexToBytes(vector.hex);
    const stanza = fromJsonValue(vector.value) as Stanza;
    // Encodes to the hex (compressed frames with the same deflate implementation and level).
    expect(bytesToHex(codec.encode(stanza, { compress: vector.compressed }))).toBe(vector.hex);
    // Decodes to the value, consuming the whole frame.
    const decoded = expectFrame(codec.decode(frame));
    expect(decoded.consumed).toBe(frame.length);
    expect(decoded.compressed).toBe(vector.compressed);
    expect(toJsonValue(decoded.stanza)).toEqual(vector.value);
    // The header byte carries the kind token and the compressed bit.
    const header = frame[frame[0]! < 0x80 ? 1 : 2]!;
    expect(header & headerKindMask).toBe(vector.token);
    expect((header & headerCompressedBit) !== 0).toBe(vector.compressed);
  });

  test("every strict prefix of every golden frame asks for more, with the right count once the length is known", () => {
    for (const vector of goldenFrames) {
      const frame = hexToBytes(vector.hex);
      const prefixBytes = frame[0]! < 0x80 ? 1 : 2;
      for (let cut = 0; cut < frame.length; cut++) {
        const result = codec.decode(frame.subarray(0, cut));
        expect(result.status).toBe("more");
        if (result.status === "more" && cut >= prefixBytes) expect(result.needed).toBe(frame.length - cut);
      }
    }
  });

  test("a frame decodes at any offset in a larger buffer", () => {
    for (const vector of goldenFrames) {
      const frame = hexToBytes(vector.hex);
      const placed = concat([hexToBytes("ffffff"), frame, hexToBytes("c1c1")]);
      const decoded = expectFrame(codec.decode(placed, 3));
      expect(decoded.consumed).toBe(frame.length);
      expect(toJsonValue(decoded.stanza)).toEqual(vector.value);
    }
  });

  test("payload fields are views into the source buffer, not copies", () => {
    for (const vector of goldenFrames.filter((frame) => frame.kind === "send" || frame.kind === "deliver")) {
      const source = concat([hexToBytes("0000"), hexToBytes(vector.hex)]);
      const stanza = expectFrame(codec.decode(source, 2)).stanza as SendStanza;
      const payloads =
        stanza.payload instanceof Uint8Array ? [stanza.payload] : stanza.payload.map((entry) => entry.payload);
      for (const payload of payloads) {
        expect(payload.buffer).toBe(source.buffer);
        // Writing through the source shows in the payload: the same memory.
        const before = payload[0];
        source[payload.byteOffset] = (before! + 1) & 0xff;
        expect(payload[0]).toBe((before! + 1) & 0xff);
        expect(payload.byteOffset).toBeGreaterThan(2);
      }
    }
  });

  test("encode returns a fresh buffer each time (the encoder's scratch buffer never leaks out)", () => {
    const first = codec.encode({ kind: "ack", seq: 1 });
    const firstHex = bytesToHex(first);
    const second = codec.encode({ kind: "ack", seq: 2 });
    expect(bytesToHex(first)).toBe(firstHex);
    expect(first.buffer).not.toBe(second.buffer);
    expect(first.byteOffset).toBe(0);
    expect(first.buffer.byteLength).toBe(first.length);
  });
});

describe("bad inputs", () => {
  test("cover every frame-level error code the decoder can return", () => {
    const codes = new Set(badInputs.inputs.map((input) => input.codeName));
    for (const name of [
      "malformedFrame",
      "frameTooLarge",
      "unknownKind",
      "malformedBody",
      "wrongFieldType",
      "nestingTooDeep",
      "inflateTooLarge",
      "badCompression",
    ]) {
      expect(codes.has(name)).toBe(true);
    }
  });

  test.each(badInputs.inputs.map((input) => [input.name, input] as const))("%s", (_name, input) => {
    expect(input.code).toBe(ErrorCode[input.codeName as keyof typeof ErrorCode]);
    let result: DecodeResult | undefined;
    expect(() => {
      result = codec.decode(hexToBytes(input.hex));
    }).not.toThrow();
    expect(result!.status).toBe("error");
    if (result!.status !== "error") return;
    expect(result!.error).toBeInstanceOf(ProtocolError);
    expect(errorCodeName(result!.error.code)).toBe(input.codeName);
    // Every frame-level failure closes the session.
    expect(result!.error.action).toBe("reconnect");
  });

  test("the codec keeps working after an error (no state is left behind)", () => {
    const good = hexToBytes(golden.frames[0]!.hex);
    for (const input of badInputs.inputs) {
      codec.decode(hexToBytes(input.hex));
      expect(toJsonValue(expectFrame(codec.decode(good)).stanza)).toEqual(golden.frames[0]!.value);
    }
  });

  test("a declared length past the limit is refused before its bytes arrive", () => {
    const limit = testLimits.frameBytesMax;
    // Declared 1022 + 2 prefix bytes = 1024: allowed, so the decoder waits.
    const atLimit = codec.decode(hexToBytes("fe07"));
    expect(atLimit.status).toBe("more");
    const atTestLimit = testCodec.decode(hexToBytes("fe07"));
    expect(atTestLimit).toEqual({ status: "more", needed: limit - 2 });
    const pastLimit = testCodec.decode(hexToBytes("ff07"));
    expect(pastLimit.status === "error" && pastLimit.error.code === ErrorCode.frameTooLarge).toBe(true);
  });
});

describe("FrameReader", () => {
  const stream = concat(goldenFrames.map((vector) => hexToBytes(vector.hex)));
  const values = goldenFrames.map((vector) => vector.value);

  test("all golden frames back to back, in one chunk", () => {
    const { stanzas, last, reader } = readAll([stream]);
    expect(stanzas.map(toJsonValue)).toEqual(values);
    expect(last.status).toBe("more");
    expect(reader.bufferedBytes).toBe(0);
  });

  test("all golden frames back to back, byte by byte", () => {
    const bytes = Array.from(stream, (_, index) => stream.subarray(index, index + 1));
    const { stanzas, reader } = readAll(bytes);
    expect(stanzas.map(toJsonValue)).toEqual(values);
    expect(reader.bufferedBytes).toBe(0);
  });

  test(`all golden frames back to back, in seeded random chunks (seed ${seed})`, () => {
    const random = new Random(seed);
    for (const sizeMax of [2, 7, 64, 500, 5000]) {
      const { stanzas, reader } = readAll(random.chunks(stream, sizeMax));
      expect(stanzas.map(toJsonValue)).toEqual(values);
      expect(reader.bufferedBytes).toBe(0);
    }
  });

  test("a partial frame is held until it completes, then the reader is empty", () => {
    const frame = hexToBytes(golden.frames.find((vector) => vector.kind === "deliver")!.hex);
    const reader = new FrameReader(codec);
    reader.push(frame.subarray(0, 10));
    expect(reader.next().status).toBe("more");
    expect(reader.bufferedBytes).toBe(10);
    reader.push(frame.subarray(10));
    expect(reader.next().status).toBe("frame");
    expect(reader.bufferedBytes).toBe(0);
    expect(reader.next()).toEqual({ status: "more", needed: 1 });
  });

  test.each(badInputs.inputs.filter((input) => input.hex.length < 4096).map((input) => [input.name, input] as const))(
    "after good frames, in random chunks: %s",
    (_name, input) => {
      const random = new Random(seed ^ input.hex.length);
      const good = hexToBytes(golden.frames[5]!.hex);
      const bytes = concat([good, good, hexToBytes(input.hex), good]);
      const { stanzas, last } = readAll(random.chunks(bytes, 9));
      expect(stanzas).toHaveLength(2);
      expect(last.status === "error" && last.error.code === input.code).toBe(true);
    },
  );

  test("payloads handed out stay intact while later chunks arrive (appends never overwrite them)", () => {
    const random = new Random(seed);
    const sends = Array.from({ length: 30 }, (_, index): Stanza => {
      const payload = new Uint8Array(random.between(0, 300)).fill(index + 1);
      return { kind: "send", clientId: index + 1, to: 9, payload };
    });
    const bytes = concat(sends.map((send) => codec.encode(send)));
    for (const sizeMax of [1, 5, 40, 333]) {
      const { stanzas } = readAll(random.chunks(bytes, sizeMax));
      expect(stanzas.map(toJsonValue)).toEqual(sends.map(toJsonValue));
    }
  });

  test("a large frame arriving a byte at a time costs linear time, not quadratic", () => {
    const frame = codec.encode({ kind: "send", clientId: 1, to: 2, payload: new Uint8Array(60_000) });
    const reader = new FrameReader(codec);
    const started = performance.now();
    let frames = 0;
    for (let round = 0; round < 4; round++) {
      for (let index = 0; index < frame.length; index++) {
        reader.push(frame.subarray(index, index + 1));
        if (reader.next().status === "frame") frames++;
      }
    }
    expect(frames).toBe(4);
    // Copying the partial frame on every byte took about 450 ms per frame; appending in place takes about 40.
    expect(performance.now() - started).toBeLessThan(1000);
  });

  test("payloads read through a reader are views of a chunk or of the joined partial frame", () => {
    const frame = hexToBytes(golden.budgets[0]!.hex);
    const whole = new FrameReader(codec);
    whole.push(frame);
    const stanza = expectFrame(whole.next()).stanza as SendStanza;
    expect((stanza.payload as Uint8Array).buffer).toBe(frame.buffer);
    const split = new FrameReader(codec);
    split.push(frame.slice(0, 5));
    expect(split.next().status).toBe("more");
    split.push(frame.slice(5));
    const joined = expectFrame(split.next()).stanza as SendStanza;
    expect(bytesToHex(joined.payload as Uint8Array)).toBe(bytesToHex(stanza.payload as Uint8Array));
  });
});

describe("round trips", () => {
  test.each(kindNames)(
    `%s: seeded random stanzas (seed ${seed}) survive encode and decode, plain and compressed`,
    (kind) => {
      const random = new Random(seed + StanzaKind[kind]);
      for (const limits of [defaultLimits, testLimits]) {
        const roundCodec = new FrameCodec({ limits });
        for (let round = 0; round < 40; round++) {
          const stanza = randomStanza(random, kind, limits);
          for (const compress of [false, true]) {
            const frame = roundCodec.encode(stanza, { compress });
            expect(frame.length).toBeLessThanOrEqual(limits.frameBytesMax);
            const decoded = expectFrame(roundCodec.decode(frame));
            expect(decoded.consumed).toBe(frame.length);
            expect(toJsonValue(decoded.stanza)).toEqual(toJsonValue(stanza));
          }
        }
      }
    },
  );

  test("encode throws (a bug, not a peer's fault) on a stanza whose frame passes frameBytesMax", () => {
    const send: Stanza = { kind: "send", clientId: 1, to: 2, payload: new Uint8Array(testLimits.frameBytesMax) };
    expect(() => testCodec.encode(send)).toThrow(/frameBytesMax/);
  });
});

describe("wire budgets", () => {
  test.each(golden.budgets.map((vector) => [vector.name, vector] as const))("%s", (_name, vector) => {
    expect(vector.hex.length / 2).toBe(vector.bytes);
    expect(vector.bytes).toBeLessThanOrEqual(vector.budgetBytesMax);
  });

  // Ids near 2^32 take 5 bytes each; device numbers are per account (small); times are 5 bytes until 2106.
  const high = 0xffff_ffff;
  const payload = new Uint8Array(20).fill(0xee);
  const budgets: ReadonlyArray<readonly [string, Stanza, number]> = [
    ["send", { kind: "send", clientId: high, to: high, payload }, 36],
    [
      "deliver",
      { kind: "deliver", seq: high, from: high, fromDevice: 127, clientId: high, timeSeconds: high, payload },
      48,
    ],
    ["serverAck", { kind: "serverAck", clientId: high }, 8],
    ["ack", { kind: "ack", seq: high }, 8],
    ["receipt", { kind: "receipt", type: 2, to: high, toDevice: 127, clientIds: [high] }, 16],
  ];
  test.each(budgets)("%s with a 20-byte payload and ids at 2^32-1 fits its budget", (_name, stanza, budget) => {
    expect(codec.encode(stanza).length).toBeLessThanOrEqual(budget);
    expect(codec.encode(stanza, { compress: true }).length).toBeLessThanOrEqual(budget);
  });
});

describe("limits", () => {
  test("the default and test sets hold every relation and are frozen", () => {
    expect(assertLimits(defaultLimits)).toBe(defaultLimits);
    expect(assertLimits(testLimits)).toBe(testLimits);
    expect(Object.isFrozen(defaultLimits)).toBe(true);
    expect(Object.isFrozen(testLimits)).toBe(true);
    expect(defaultLimits.frameBytesMax).toBeLessThan(2 ** (7 * frameLengthVarintBytesMax));
  });

  const broken: ReadonlyArray<readonly [string, Partial<Limits>]> = [
    ["frameBytesMax < 2^21", { frameBytesMax: 2 ** 21, inboundBytesMax: 2 ** 21, outboundBytesMax: 2 ** 21 }],
    ["payloadBytesMax + 64 <= frameBytesMax", { payloadBytesMax: defaultLimits.frameBytesMax - 63 }],
    ["handleBytesMax <= stringBytesMax", { handleBytesMax: defaultLimits.stringBytesMax + 1 }],
    ["devicesPerAccountMax * 2 <= arrayItemsMax", { devicesPerAccountMax: defaultLimits.arrayItemsMax / 2 + 1 }],
    ["receiptClientIdsMax <= arrayItemsMax", { receiptClientIdsMax: defaultLimits.arrayItemsMax + 1 }],
    ["nestingDepthMax >= 3", { nestingDepthMax: 2 }],
    ["inboundBytesMax >= frameBytesMax", { inboundBytesMax: defaultLimits.frameBytesMax - 1 }],
    ["loginTimeoutMs <= idleTimeoutMs", { loginTimeoutMs: defaultLimits.idleTimeoutMs + 1 }],
    ["> 0 (integer)", { payloadBytesMax: 0 }],
    ["> 0 (integer)", { timerTickMs: 1.5 }],
  ];
  test.each(broken)("throws when %s is broken", (relation, change) => {
    expect(() => assertLimits({ ...defaultLimits, ...change })).toThrow(relation);
  });

  test("decoding uses the limits it was given", () => {
    const send = hexToBytes(golden.frames.find((vector) => vector.name.startsWith("send, one payload per"))!.hex);
    expect(codec.decode(send).status).toBe("frame");
    const tight = new FrameCodec({ limits: { ...testLimits, devicesPerAccountMax: 1 } });
    const refused = tight.decode(send);
    expect(refused.status === "error" && refused.error.code === ErrorCode.wrongFieldType).toBe(true);
  });
});

/** A lookup frame (client id 45) whose handle is the raw `bytes`, as a str 8 (so any length up to 255). */
function lookupWithRawHandle(bytes: readonly number[]): Uint8Array {
  return hexToBytes(
    frameOf(
      StanzaKind.lookup,
      `922dd9${bytes.length.toString(16).padStart(2, "0")}${bytesToHex(Uint8Array.from(bytes))}`,
    ),
  );
}

/** A whole frame (canonical length varint, header byte, body) around a body given in hex. */
function frameOf(header: number, bodyHex: string): string {
  const length = 1 + bodyHex.length / 2;
  const prefix = length < 0x80 ? [length] : [(length & 0x7f) | 0x80, length >> 7];
  return bytesToHex(Uint8Array.from([...prefix, header])) + bodyHex;
}

function errorCodeOf(result: DecodeResult): number | string {
  return result.status === "error" ? result.error.code : result.status;
}

describe("strings are well-formed UTF-8 (RFC 3629)", () => {
  // Every edge of the encoding that is allowed: the last and first code point of each length, the ones around the
  // surrogates, and the last code point of Unicode.
  const wellFormed: ReadonlyArray<readonly [string, number[]]> = [
    ["U+007F", [0x7f]],
    ["U+0080", [0xc2, 0x80]],
    ["U+07FF", [0xdf, 0xbf]],
    ["U+0800", [0xe0, 0xa0, 0x80]],
    ["U+D7FF", [0xed, 0x9f, 0xbf]],
    ["U+E000", [0xee, 0x80, 0x80]],
    ["U+FFFF", [0xef, 0xbf, 0xbf]],
    ["U+10000", [0xf0, 0x90, 0x80, 0x80]],
    ["U+10FFFF", [0xf4, 0x8f, 0xbf, 0xbf]],
  ];
  const illFormed: ReadonlyArray<readonly [string, number[]]> = [
    ["a lone continuation byte", [0x80]],
    ["0xff", [0xff]],
    ["0xfe", [0xfe]],
    ["overlong NUL (c0 80)", [0xc0, 0x80]],
    ["overlong '/' (c0 af)", [0xc0, 0xaf]],
    ["overlong 2-byte lead c1", [0xc1, 0xbf]],
    ["overlong 3-byte form (e0 9f bf)", [0xe0, 0x9f, 0xbf]],
    ["overlong 4-byte form (f0 8f bf bf)", [0xf0, 0x8f, 0xbf, 0xbf]],
    ["high surrogate U+D800 (ed a0 80)", [0xed, 0xa0, 0x80]],
    ["low surrogate U+DFFF (ed bf bf)", [0xed, 0xbf, 0xbf]],
    ["U+110000 (f4 90 80 80)", [0xf4, 0x90, 0x80, 0x80]],
    ["lead f5", [0xf5, 0x80, 0x80, 0x80]],
    ["a 2-byte character cut short", [0x61, 0xc3]],
    ["a 3-byte character cut short", [0xe2, 0x82]],
    ["a 4-byte character cut short", [0xf0, 0x9f, 0x98]],
    ["a lead byte followed by ASCII (c3 28)", [0xc3, 0x28]],
    ["a third byte that is not a continuation", [0xe2, 0x82, 0x41]],
  ];

  test.each(wellFormed)("%s is accepted and decodes to that code point", (name, bytes) => {
    const decoded = expectFrame(codec.decode(lookupWithRawHandle(bytes)));
    const handle = (decoded.stanza as { handle: string }).handle;
    expect(handle.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")).toBe(name.slice(2));
    expect([...new TextEncoder().encode(handle)]).toEqual(bytes);
  });

  test.each(illFormed)(
    "%s is malformedBody, short or long (the two decoding paths of the MessagePack library)",
    (_name, bytes) => {
      expect(isWellFormedUtf8(Uint8Array.from(bytes), 0, bytes.length)).toBe(false);
      expect(errorCodeOf(codec.decode(lookupWithRawHandle(bytes)))).toBe(ErrorCode.malformedBody);
      // Past 200 bytes @msgpack/msgpack decodes with TextDecoder (which would substitute U+FFFD) instead of its own
      // code (which would decode some of these as other characters): refused all the same, in an error's message.
      const long = [...new Array(220).fill(0x61), ...bytes];
      const error = frameOf(
        StanzaKind.error,
        `93ccc9c0d9${long.length.toString(16)}${bytesToHex(Uint8Array.from(long))}`,
      );
      expect(errorCodeOf(codec.decode(hexToBytes(error)))).toBe(ErrorCode.malformedBody);
    },
  );

  test("isWellFormedUtf8 agrees with a fatal TextDecoder on random byte strings", () => {
    const random = new Random(seed);
    const strict = new TextDecoder("utf-8", { fatal: true });
    // Bytes drawn mostly from the lead and continuation ranges, so that near-valid sequences are common.
    const pool = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xef];
    pool.push(0xf0, 0xf4, 0xf5, 0xff);
    let wellFormedSeen = 0;
    for (let round = 0; round < 20_000; round++) {
      const bytes = Uint8Array.from({ length: random.below(7) }, () =>
        random.below(4) === 0 ? random.below(256) : random.pick(pool),
      );
      let expected = true;
      try {
        strict.decode(bytes);
      } catch {
        expected = false;
      }
      if (expected) wellFormedSeen++;
      expect([bytesToHex(bytes), isWellFormedUtf8(bytes, 0, bytes.length)]).toEqual([bytesToHex(bytes), expected]);
    }
    expect(wellFormedSeen).toBeGreaterThan(1000);
  });
});

describe("when two errors hold, the first check in decoding order gives the code", () => {
  // The order of PROTOCOL.md section 4: length prefix, header byte, inflate, structure (one scan in byte order, then
  // the MessagePack limits), fields. Each row breaks two stages at once; the earlier stage must win.
  const cases: ReadonlyArray<readonly [string, string, keyof typeof ErrorCode]> = [
    ["overlong length varint, reserved header bit", "82004e90", "malformedFrame"],
    ["declared length past frameBytesMax, reserved header bit", "feff034e", "frameTooLarge"],
    ["reserved header bit, unknown kind 0", frameOf(0x40, "90"), "malformedFrame"],
    ["reserved header bit, invalid deflate", frameOf(0x40 | 0x80 | StanzaKind.ping, "07"), "malformedFrame"],
    ["unknown kind, invalid deflate", frameOf(0x80 | 63, "07"), "unknownKind"],
    ["unknown kind, body not MessagePack", frameOf(63, "c1"), "unknownKind"],
    ["invalid deflate, nothing else checkable", frameOf(0x80 | StanzaKind.ack, "07"), "badCompression"],
    ["nesting too deep, then trailing bytes", frameOf(StanzaKind.deviceList, "922f9191919000"), "nestingTooDeep"],
    ["invalid byte c1, then nesting too deep", frameOf(StanzaKind.deviceList, "92c191919190"), "malformedBody"],
    ["nesting too deep, then invalid byte c1", frameOf(StanzaKind.deviceList, "929191919190c1"), "nestingTooDeep"],
    ["ill-formed UTF-8, then nesting too deep", frameOf(StanzaKind.deviceList, "93a1ff91919190"), "malformedBody"],
    [
      "string over stringBytesMax, then nesting too deep",
      frameOf(StanzaKind.goaway, `94cd013900da0101${"61".repeat(257)}91919190`),
      "nestingTooDeep",
    ],
    [
      "a map (refused by the limits), then nesting too deep",
      frameOf(StanzaKind.ping, "9281a16101919191c0"),
      "nestingTooDeep",
    ],
    [
      "string where an id is expected, then trailing bytes",
      frameOf(StanzaKind.serverAck, "91a2343200"),
      "malformedBody",
    ],
    ["ill-formed UTF-8 where an id is expected", frameOf(StanzaKind.serverAck, "91a1ff"), "malformedBody"],
    [
      "an array over arrayItemsMax of wrong types",
      frameOf(StanzaKind.ack, `dc0101${"c0".repeat(257)}`),
      "malformedBody",
    ],
    [
      "two wrong fields: the code is the same, the message names the first",
      frameOf(StanzaKind.ack, "91c0"),
      "wrongFieldType",
    ],
  ];

  test.each(cases)("%s", (_name, hex, codeName) => {
    expect(errorCodeOf(codec.decode(hexToBytes(hex)))).toBe(ErrorCode[codeName]);
  });

  test("the header is checked only once the whole frame is there; a too-large length at once", () => {
    const reservedBit = hexToBytes(frameOf(0x40 | StanzaKind.ping, "90"));
    expect(codec.decode(reservedBit.subarray(0, 2)).status).toBe("more");
    expect(errorCodeOf(codec.decode(reservedBit))).toBe(ErrorCode.malformedFrame);
    expect(errorCodeOf(codec.decode(hexToBytes("feff03")))).toBe(ErrorCode.frameTooLarge);
  });

  test("of several wrong fields, the message names the first in field order", () => {
    const result = codec.decode(hexToBytes(frameOf(StanzaKind.deviceRemove, "92c0c0")));
    expect(result.status === "error" && result.error.message).toBe(
      "deviceRemove: clientId must be an unsigned 32-bit integer",
    );
  });
});

describe("PROTOCOL.md stays in line with the code", async () => {
  const spec = await Bun.file(new URL("../PROTOCOL.md", import.meta.url)).text();

  test("the error table lists every code with its name and action, and nothing else", () => {
    const rows = [...spec.matchAll(/^\| (\d{3}) \| `(\w+)` \| (\w+) \|/gm)].map(([, code, name, action]) => ({
      code: Number(code),
      name,
      action,
    }));
    expect(rows).toEqual(errorCodes().map(({ code, name, action }) => ({ code, name, action })));
  });

  test("the limits table gives the default of every limit it names", () => {
    const section = spec.slice(spec.indexOf("## 13. Limits"), spec.indexOf("## 14. "));
    const rows = [...section.matchAll(/^\| `(\w+)` \| [^|]+ \| (\d+) \|/gm)];
    expect(rows.length).toBeGreaterThanOrEqual(20);
    for (const [, name, value] of rows) {
      expect([name, defaultLimits[name as keyof Limits]]).toEqual([name, Number(value)]);
    }
  });

  test("the preset dictionary is written out byte for byte", () => {
    const hex = bytesToHex(presetDictionary);
    const lines = Array.from({ length: Math.ceil(hex.length / 64) }, (_, index) =>
      hex.slice(index * 64, index * 64 + 64),
    );
    expect(spec).toContain(lines.join("\n"));
    expect(spec).toContain(`is ${presetDictionary.length} bytes`);
  });

  test("every stanza kind has a section, and every golden frame is shown with its hex", () => {
    const missingKinds = kindNames.filter((kind) => !spec.includes(`### ${StanzaKind[kind]} ${kind}\n`));
    expect(missingKinds).toEqual([]);
    const missingFrames = goldenFrames.filter((vector) => !spec.includes(vector.hex)).map((vector) => vector.name);
    expect(missingFrames).toEqual([]);
  });

  test("the budget table matches the budget vectors", () => {
    for (const vector of golden.budgets) {
      expect(spec).toContain(`| \`${vector.kind}\` | ${vector.bytes} | ${vector.budgetBytesMax} |`);
    }
  });

  test("the vector files' section names every field of both files and of their entries", () => {
    const section = spec.slice(spec.indexOf("### The test vector files"), spec.indexOf("## 2. Transport"));
    expect(section.length).toBeGreaterThan(1000);
    const entries = (list: unknown): Record<string, unknown>[] => (Array.isArray(list) ? list : []);
    const fields = new Set<string>([...Object.keys(golden), ...Object.keys(badInputs)]);
    for (const list of Object.values(golden).concat([badInputs.inputs])) {
      for (const entry of entries(list)) for (const key of Object.keys(entry)) fields.add(key);
    }
    const missing = [...fields].filter((field) => !section.includes(`\`${field}\``));
    expect(missing).toEqual([]);
  });
});

describe("error messages are cut to what the peer may decode", () => {
  test("an error or goaway message over stringBytesMax is truncated on a character boundary, never malformed", () => {
    const small = new FrameCodec({ limits: testLimits });
    const long = `${"é".repeat(40)}tail`; // 84 UTF-8 bytes, over the test limit of 64
    for (const stanza of [
      { kind: "error", code: 100, clientId: null, message: long },
      { kind: "goaway", code: 313, retryAfterMs: 5, message: long },
    ] as const) {
      const result = small.decode(small.encode(stanza));
      expect(result.status).toBe("frame");
      if (result.status !== "frame" || !("message" in result.stanza)) throw new Error("not decoded");
      const message = result.stanza.message!;
      expect(new TextEncoder().encode(message).length).toBeLessThanOrEqual(testLimits.stringBytesMax);
      expect(long.startsWith(message)).toBe(true);
      expect(message.length).toBe(32);
    }
  });
});
