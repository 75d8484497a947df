// Live fuzz: many connections send mutated frames to a running server (a child process started here), some before
// the preamble, some after the challenge, some after a successful registration, while a probe pair (probe-pair.ts)
// keeps doing send -> deliver -> ack round trips. Checked:
//   - the server process stays up, and the probe never stalls for long (round trips go on throughout);
//   - every fuzz session ends with an error frame or a close from the server: after its mutated inputs each session
//     sends a frame that is certainly bad (reserved header bit), and if the server still waits (a mutated length
//     prefix promised a longer frame), a frame's worth of filler bytes that complete it and then break the framing;
//   - everything the server sends decodes;
//   - no server-acked probe message is lost.
// The inputs are made in fuzz-inputs.ts.

import { distribution, round } from "../bench/stats.ts";
import { mutate, Random } from "../protocol/fuzz.ts";
import { defaultLimits, encodePreamble, FrameCodec } from "../protocol/index.ts";
import { certainlyBad, loadCorpus, nextInput } from "./fuzz-inputs.ts";
import { ProbePair } from "./probe-pair.ts";
import { RawSession } from "./raw-session.ts";
import {
  processPssBytes,
  removeDataDir,
  type ServerChild,
  startServerChild,
  temporaryDataDir,
} from "./server-child.ts";

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
  readonly bytesWritten: number;
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
  /** What the probe's ledger noted (lost, duplicated, reordered messages, reused seqs), when anything. */
  readonly probeNotes: readonly string[];
  readonly ok: boolean;
}

type Stage = "preamble" | "authenticating" | "ready";

interface SessionResult {
  readonly stage: Stage;
  readonly inputs: number;
  readonly bytes: number;
  /** The server's error (300+) or goaway code by name, "closed" (no code) or "unanswered". */
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
  probeAccount: number,
  closeWaitMs: number,
): Promise<SessionResult> {
  let session: RawSession;
  let detail = "";
  try {
    session = stage === "ready" ? await RawSession.registered(port, handle, 3000) : await RawSession.connect(port);
  } catch (error) {
    return { stage, inputs: 0, bytes: 0, ending: "setupFailed", badServerFrames: 0, detail: String(error) };
  }
  // Random chunks with short pauses: the server must handle any split.
  const writeChunks = async (data: Uint8Array) => {
    for (const chunk of random.chunks(data, random.pick([1, 7, 64, 4096]))) {
      if (!(await session.writeAll(chunk, performance.now() + 2000))) return;
      if (random.below(8) === 0) await Bun.sleep(random.below(3));
    }
  };
  const waitClosed = async (timeoutMs: number) => {
    const deadline = performance.now() + timeoutMs;
    while (!session.closed && performance.now() < deadline) await Bun.sleep(2);
  };
  let inputs = 0;
  try {
    if (stage === "preamble") {
      await writeChunks(random.below(2) === 0 ? mutate(random, encodePreamble(), corpus) : random.bytes(4));
      inputs++;
    } else if (stage === "authenticating") {
      session.write(encodePreamble());
      await session.next("challenge", 3000).catch((error: Error) => {
        detail = error.message;
      });
    }
    const count = random.between(1, 8);
    for (let index = 0; index < count && !session.closed; index++) {
      await writeChunks(nextInput(random, corpus, codec, probeAccount));
      inputs++;
    }
    if (!session.closed) await writeChunks(certainlyBad);
    await waitClosed(Math.min(1000, closeWaitMs));
    // Still open: a mutated length prefix may be waiting for bytes. A frame's worth of zeros completes any frame and
    // then is itself malformed (a zero length).
    if (!session.closed)
      await session.writeAll(new Uint8Array(codec.limits.frameBytesMax + 4), performance.now() + 2000);
    await waitClosed(closeWaitMs);
  } finally {
    session.close();
  }
  const closed = session.closedAtMs !== null && !session.closedByUs;
  return {
    stage,
    inputs,
    bytes: session.bytesWritten,
    ending: closed ? (session.closeCode ?? "closed") : "unanswered",
    badServerFrames: session.badFrames,
    detail: closed ? detail : `${detail} received ${session.received.map((stanza) => stanza.kind).join(",")}`,
  };
}

export async function runLiveFuzz(
  partial: Partial<LiveFuzzOptions> = {},
): Promise<{ summary: LiveFuzzSummary; server: ServerChild | null }> {
  const options: LiveFuzzOptions = { ...defaultLiveFuzzOptions, ...partial };
  const log = options.log;
  const dataDir = temporaryDataDir("switchboard-fuzz-");
  let server: ServerChild | null = null;
  let probe: ProbePair | null = null;
  try {
    server = await startServerChild({ dataDir, flags: options.flags });
    const port = server.port;
    log(
      `fuzz: seed ${options.seed}, ${options.seconds} s, ${options.connections} connections, server pid ${server.pid}`,
    );
    const corpus = await loadCorpus();
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
          probe!.receiverAccountId,
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
      bytesWritten: results.reduce((total, result) => total + result.bytes, 0),
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
      probeNotes: probe.ledger.notes.slice(0, 10),
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
    removeDataDir(dataDir);
  }
}
