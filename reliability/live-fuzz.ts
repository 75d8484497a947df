// Live fuzz: many connections send mutated frames to a running server (a child process started here), some before
// the preamble, some after the challenge, some after a successful registration, while a probe pair (probe-pair.ts)
// keeps doing send -> deliver -> ack round trips. Checked:
//   - the server process stays up, and the probe never stalls for long (round trips go on throughout);
//   - every fuzz session ends with an error frame or a close from the server: after its mutated inputs each session
//     sends a frame that is certainly bad (reserved header bit), and if the server still waits (a mutated length
//     prefix promised a longer frame), a frame's worth of filler bytes that complete it and then break the framing;
//   - everything the server sends decodes;
//   - no server-acked probe message is lost.
// Inputs are the golden frames and bad inputs (protocol/vectors), fresh valid stanzas of random kinds
// (protocol/fuzz.ts's randomStanza), and stanzas aimed at the probe's accounts, each mutated 0-3 times the way
// protocol/fuzz.ts mutates (its mutation list is not exported; the same operators are written again here).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket } from "bun";
import { distribution, round } from "../bench/stats.ts";
import { Random, randomStanza } from "../protocol/fuzz.ts";
import {
  defaultLimits,
  encodePreamble,
  errorCodeName,
  FrameCodec,
  FrameReader,
  registerMessage,
  type Stanza,
} from "../protocol/index.ts";
import { hexToBytes, loadBadInputs, loadGolden } from "../protocol/vectors/generate.ts";
import { newDeviceKey, signWith } from "../server/test-kit.ts";
import { ProbePair } from "./probe-pair.ts";
import { loopbackServerName } from "./raw-device.ts";
import { processPssBytes, type ServerChild, startServerChild } from "./server-child.ts";

export interface LiveFuzzOptions {
  readonly seconds: number;
  readonly seed: number;
  /** Fuzz connections open at once. */
  readonly connections: number;
  /** Server flags (kebab-case). loginTimeoutMs bounds how long a session that never logs in may wait. */
  readonly flags: Readonly<Record<string, string | number>>;
  /** How long a session may take to be closed after its last bad input. */
  readonly closeWaitMs: number;
  /** The probe may go this long without a completed round trip. */
  readonly probeStallMsMax: number;
  readonly log: (line: string) => void;
}

export const defaultLiveFuzzOptions: LiveFuzzOptions = {
  seconds: 30,
  seed: 1,
  connections: 24,
  flags: { "login-timeout-ms": 2000 },
  closeWaitMs: 4000,
  probeStallMsMax: 2000,
  log: (line) => console.log(line),
};

export interface LiveFuzzSummary {
  readonly kind: "fuzz";
  readonly seed: number;
  readonly seconds: number;
  readonly sessions: number;
  readonly sessionsByStage: Readonly<Record<string, number>>;
  readonly inputs: number;
  readonly inputBytes: number;
  /** How sessions ended: the server's error or goaway code by name, or "closed" without one. */
  readonly endings: Readonly<Record<string, number>>;
  /** Sessions the server neither answered with an error nor closed in time: must be 0. */
  readonly unanswered: number;
  /** Frames from the server that did not decode: must be 0. */
  readonly badServerFrames: number;
  readonly serverAlive: boolean;
  readonly probe: {
    readonly acked: number;
    readonly lost: number;
    readonly duplicates: number;
    readonly order: number;
    readonly seqReused: number;
    readonly unsettled: number;
    readonly disconnects: number;
    readonly longestStallMs: number;
    readonly p50Ms: number;
    readonly p99Ms: number;
  };
  readonly serverPssBytes: { readonly before: number | null; readonly after: number | null };
  readonly unansweredExamples: readonly string[];
  readonly ok: boolean;
}

type Stage = "preamble" | "authenticating" | "ready";
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
const certainlyBad = Uint8Array.of(0x02, 0x4e, 0x90);

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
function mutate(random: Random, input: Uint8Array, corpus: readonly Uint8Array[]): Uint8Array {
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

interface SessionResult {
  readonly stage: Stage;
  readonly inputs: number;
  readonly bytes: number;
  /** The server's error or goaway code by name, "closed" (no code) or "unanswered". */
  readonly ending: string;
  readonly badServerFrames: number;
  readonly detail: string;
}

/** One fuzz connection, start to end; every wait bounded. */
async function fuzzSession(
  port: number,
  random: Random,
  corpus: readonly Uint8Array[],
  codec: FrameCodec,
  stage: Stage,
  handle: string,
  targets: { readonly account: number },
  closeWaitMs: number,
): Promise<SessionResult> {
  const reader = new FrameReader(codec);
  const received: Stanza[] = [];
  let badServerFrames = 0;
  let closed = false;
  let socket: Socket<undefined>;
  try {
    socket = await Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port,
      data: undefined,
      socket: {
        binaryType: "uint8array",
        data: (_socket, chunk) => {
          reader.push(chunk);
          for (let frames = 0; frames < 10_000; frames++) {
            const result = reader.next();
            if (result.status === "more") break;
            if (result.status === "error") {
              badServerFrames++;
              break;
            }
            received.push(result.stanza);
          }
        },
        close: () => {
          closed = true;
        },
        end: () => {
          closed = true;
        },
        error: () => {
          closed = true;
        },
        connectError: () => {},
      },
    });
  } catch (error) {
    return { stage, inputs: 0, bytes: 0, ending: "connectFailed", badServerFrames, detail: String(error) };
  }
  const waitFor = async (predicate: () => boolean, timeoutMs: number) => {
    const deadline = performance.now() + timeoutMs;
    while (!predicate() && !closed && performance.now() < deadline) await Bun.sleep(2);
    return predicate();
  };
  let bytes = 0;
  const writeAll = async (data: Uint8Array) => {
    // Random chunks with short pauses: the server must handle any split.
    for (const chunk of random.chunks(data, random.pick([1, 7, 64, 4096]))) {
      let rest = chunk;
      for (let tries = 0; rest.length > 0 && tries < 1000 && !closed; tries++) {
        const written = Math.max(0, socket.write(rest));
        bytes += written;
        rest = rest.subarray(written);
        if (rest.length > 0) await Bun.sleep(1);
      }
      if (closed) return;
      if (random.below(8) === 0) await Bun.sleep(random.below(3));
    }
  };
  const codeOf = () => {
    for (const stanza of received) {
      if (stanza.kind === "error" || stanza.kind === "goaway") {
        if (stanza.kind === "error" && stanza.code < 300) continue; // refusals keep the session open
        return errorCodeName(stanza.code);
      }
    }
    return null;
  };
  let inputs = 0;
  let detail = "";
  try {
    if (stage === "preamble") {
      const preamble = random.below(2) === 0 ? mutate(random, encodePreamble(), corpus) : random.bytes(4);
      await writeAll(preamble);
      inputs++;
    } else {
      await writeAll(encodePreamble());
      if (!(await waitFor(() => received.some((stanza) => stanza.kind === "challenge"), 3000))) {
        detail = "no challenge";
      }
      if (stage === "ready" && !closed) {
        const challenge = received.find((stanza) => stanza.kind === "challenge");
        if (challenge !== undefined && challenge.kind === "challenge") {
          const key = newDeviceKey();
          const signature = signWith(key, registerMessage(challenge.nonce, loopbackServerName, handle));
          await writeAll(
            codec.encode({
              kind: "register",
              invite: null,
              handle,
              publicKey: key.publicKey,
              signature,
              serverName: loopbackServerName,
            }),
          );
          if (!(await waitFor(() => received.some((stanza) => stanza.kind === "welcome"), 3000))) {
            detail = `no welcome (${received.map((stanza) => stanza.kind).join(",")})`;
          }
        }
      }
    }
    const count = random.between(1, 8);
    for (let index = 0; index < count && !closed; index++) {
      let input: Uint8Array;
      const choice = random.below(10);
      if (choice < 3) input = random.pick(corpus);
      else if (choice < 6) input = codec.encode(randomStanza(random, random.pick(clientKinds), codec.limits));
      else if (choice < 7) input = codec.encode(randomStanza(random, random.pick(serverKinds), codec.limits));
      else input = codec.encode(aimed(random, targets.account));
      for (let rounds = random.below(4); rounds > 0; rounds--) input = mutate(random, input, corpus);
      await writeAll(input);
      inputs++;
    }
    if (!closed) await writeAll(certainlyBad);
    await waitFor(() => false, Math.min(1000, closeWaitMs));
    // Still open: a mutated length prefix may be waiting for bytes. A frame's worth of zeros completes any frame
    // and then is itself malformed (a zero length).
    if (!closed) await writeAll(new Uint8Array(codec.limits.frameBytesMax + 4));
    await waitFor(() => false, closeWaitMs);
  } finally {
    if (!closed) socket.terminate();
  }
  const code = codeOf();
  const ending = code ?? (closed ? "closed" : "unanswered");
  return {
    stage,
    inputs,
    bytes,
    ending: closed ? ending : "unanswered",
    badServerFrames,
    detail: closed ? detail : `${detail} received ${received.map((stanza) => stanza.kind).join(",")}`,
  };
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

export async function runLiveFuzz(
  partial: Partial<LiveFuzzOptions> = {},
): Promise<{ summary: LiveFuzzSummary; server: ServerChild | null }> {
  const options: LiveFuzzOptions = { ...defaultLiveFuzzOptions, ...partial };
  const log = options.log;
  const dataDir = mkdtempSync(join(tmpdir(), "switchboard-fuzz-"));
  let server: ServerChild | null = null;
  let probe: ProbePair | null = null;
  try {
    server = await startServerChild({ dataDir, flags: options.flags });
    const port = server.port;
    log(
      `fuzz: seed ${options.seed}, ${options.seconds} s, ${options.connections} connections, server pid ${server.pid}`,
    );
    const golden = await loadGolden();
    const badInputs = await loadBadInputs();
    const corpus = [
      ...golden.frames.map((frame) => hexToBytes(frame.hex)),
      ...badInputs.inputs.filter((input) => input.hex.length < 8192).map((input) => hexToBytes(input.hex)),
    ];
    const codec = new FrameCodec({ limits: defaultLimits });
    probe = await ProbePair.create(() => port, "fuzz");
    const pssBefore = await processPssBytes(server.pid);
    probe.start(20);

    const results: SessionResult[] = [];
    const deadline = performance.now() + options.seconds * 1000;
    let sessionNumber = 0;
    const stages: Stage[] = ["preamble", "authenticating", "ready", "ready"];
    const worker = async (workerIndex: number) => {
      const workerRandom = new Random((options.seed * 7919 + workerIndex) >>> 0);
      while (performance.now() < deadline) {
        const number = ++sessionNumber;
        const result = await fuzzSession(
          port,
          workerRandom,
          corpus,
          codec,
          workerRandom.pick(stages),
          `fz${number}`,
          { account: probe!.receiverAccountId },
          options.closeWaitMs,
        );
        results.push(result);
      }
    };
    let lastReport = performance.now();
    const progress = setInterval(() => {
      const now = performance.now();
      if (now - lastReport < 5000) return;
      lastReport = now;
      log(
        `fuzz: ${results.length} sessions, ${results.reduce((total, result) => total + result.inputs, 0)} inputs, ` +
          `probe ${probe!.roundTrips.length} round trips, longest stall ${Math.round(probe!.longestStallMs)} ms`,
      );
    }, 1000);
    try {
      await Promise.all(Array.from({ length: options.connections }, (_, index) => worker(index)));
    } finally {
      clearInterval(progress);
    }
    probe.stopSending();
    const settled = await probe.settle(5000);
    const serverAlive = (await Promise.race([
      server.exited.then(() => false),
      Bun.sleep(10).then(() => true),
    ])) as boolean;
    const pssAfter = await processPssBytes(server.pid);
    const counts = probe.ledger.counts();
    const trips = distribution(probe.roundTrips.map((trip) => trip.roundTripMs));
    const endings: Record<string, number> = {};
    const sessionsByStage: Record<string, number> = {};
    for (const result of results) {
      endings[result.ending] = (endings[result.ending] ?? 0) + 1;
      sessionsByStage[result.stage] = (sessionsByStage[result.stage] ?? 0) + 1;
    }
    const unanswered = results.filter((result) => result.ending === "unanswered");
    const badServerFrames = results.reduce((total, result) => total + result.badServerFrames, 0);
    const summary: LiveFuzzSummary = {
      kind: "fuzz",
      seed: options.seed,
      seconds: options.seconds,
      sessions: results.length,
      sessionsByStage,
      inputs: results.reduce((total, result) => total + result.inputs, 0),
      inputBytes: results.reduce((total, result) => total + result.bytes, 0),
      endings,
      unanswered: unanswered.length,
      badServerFrames,
      serverAlive,
      probe: {
        acked: counts.acked,
        lost: counts.lost,
        duplicates: counts.duplicates,
        order: counts.order,
        seqReused: counts.seqReused,
        unsettled: settled ? counts.unsettled : Math.max(1, counts.unsettled),
        disconnects: probe.disconnects,
        longestStallMs: Math.round(probe.longestStallMs),
        p50Ms: round(trips.p50, 2),
        p99Ms: round(trips.p99, 2),
      },
      serverPssBytes: { before: pssBefore, after: pssAfter },
      unansweredExamples: unanswered.slice(0, 5).map((result) => `${result.stage}: ${result.detail}`),
      ok:
        serverAlive &&
        unanswered.length === 0 &&
        badServerFrames === 0 &&
        counts.lost === 0 &&
        counts.duplicates === 0 &&
        counts.order === 0 &&
        counts.seqReused === 0 &&
        settled &&
        probe.longestStallMs <= options.probeStallMsMax,
    };
    log(JSON.stringify(summary));
    return { summary, server };
  } finally {
    probe?.stop();
    await server?.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  }
}
