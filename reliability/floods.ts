// Floods and slowloris against a real server process, with a well-behaved pair (probe-pair.ts) measuring round trips:
//   1. baseline: the pair alone;
//   2. for each inbound frame kind (ping, pong, ack, send, receipt, lookup, garbage bytes) in turn, `rounds` times:
//      the pair alone for one window (this round's baseline), then 4 logged-in flooders write that frame as fast as
//      their sockets take it, and the pair's p99 over a window of the same length is compared with the round's
//      baseline; each flooder's time until the server closed it (and the code) is recorded.
//      Goal: the p99 of the rounds' flood windows pooled within 2x that of their baseline windows pooled, every
//      flooder of every round closed within 1 s;
//   3. slowloris: many sessions (half before login, half after) write all but the last bytes of a large frame, then
//      one byte now and then; when (and whether) each is closed, and the server's memory (PSS, smaps_rollup);
//   4. receipt flood into an offline device's queue (4 accounts pacing themselves just under the rate limit), then
//      a real friend's message to that device: is it still accepted?

import { distribution, round } from "../bench/stats.ts";
import { Random } from "../protocol/fuzz.ts";
import { defaultLimits, encodePreamble, FrameCodec } from "../protocol/index.ts";
import type { FlooderResult, FloodWorkerArguments } from "./flood-worker.ts";
import { ProbePair, registerAccount } from "./probe-pair.ts";
import { RawSession } from "./raw-session.ts";
import {
  processPssBytes,
  removeDataDir,
  type ServerChild,
  startServerChild,
  temporaryDataDir,
  trackChild,
} from "./server-child.ts";

export const floodKinds: readonly string[] = ["ping", "pong", "ack", "send", "receipt", "lookup", "garbage"];

export interface FloodOptions {
  readonly kinds: readonly string[];
  readonly flooders: number;
  readonly baselineMs: number;
  /**
   * Floods of each kind. One round's p99 rests on about 100 round trips (so it is nearly their maximum), and one
   * stray pause of the host moves it: the goal is judged on the rounds pooled, and every round is reported.
   */
  readonly rounds: number;
  /** How long one kind's flood lasts at most (flooders still open then are reported as not closed). */
  readonly floodMs: number;
  readonly slowlorisSessions: number;
  /** Interval between the slowloris' single bytes. */
  readonly slowlorisDripMs: number;
  /** How long to watch the slowloris sessions at most. */
  readonly slowlorisWatchMs: number;
  readonly receiptFlood: boolean;
  readonly receiptFloodMs: number;
  /** Flags of the server (kebab-case); the limits below are read back from them for the deadlines. */
  readonly flags: Readonly<Record<string, string | number>>;
  readonly seed: number;
  readonly log: (line: string) => void;
  /** Goals. */
  readonly closeWithinMs: number;
  readonly p99RatioMax: number;
}

export const defaultFloodOptions: FloodOptions = {
  kinds: floodKinds,
  flooders: 4,
  baselineMs: 3000,
  rounds: 3,
  floodMs: 3000,
  slowlorisSessions: 200,
  slowlorisDripMs: 1000,
  slowlorisWatchMs: 45_000,
  receiptFlood: true,
  receiptFloodMs: 6000,
  flags: {},
  seed: 1,
  log: (line) => console.log(line),
  closeWithinMs: 1000,
  p99RatioMax: 2,
};

/** One round of one kind: the pair alone for a window, then the pair during the flood over a window as long. */
export interface RoundResult {
  /** The round trips themselves (ms), pooled over the rounds for the kind's figures. */
  readonly baselineTrips: readonly number[];
  readonly floodTrips: readonly number[];
  readonly baseline: { readonly count: number; readonly p50Ms: number; readonly p99Ms: number };
  readonly pair: { readonly count: number; readonly p50Ms: number; readonly p99Ms: number; readonly p99Ratio: number };
  readonly flooders: readonly FlooderResult[];
}

export interface KindResult {
  readonly kind: string;
  readonly rounds: readonly RoundResult[];
  /** Every round's flooders. */
  readonly flooders: readonly FlooderResult[];
  /**
   * The round trips of every round's flood window pooled, against every round's baseline window pooled (the goal's
   * figure); `worstP99Ratio` is the highest single round's.
   */
  readonly baseline: { readonly count: number; readonly p50Ms: number; readonly p99Ms: number };
  readonly pair: { readonly count: number; readonly p50Ms: number; readonly p99Ms: number; readonly p99Ratio: number };
  readonly worstP99Ratio: number;
  readonly allClosedWithinGoal: boolean;
  readonly p99WithinGoal: boolean;
}

export interface SlowlorisResult {
  readonly sessions: number;
  readonly stage: "authenticating" | "ready";
  /** The deadline that should close them, from the server's limits. */
  readonly deadlineMs: number;
  readonly closed: number;
  readonly closedWithinDeadline: number;
  readonly closedAfterMs: { readonly min: number | null; readonly max: number | null };
  readonly codes: Readonly<Record<string, number>>;
}

export interface FloodSummary {
  readonly kind: "flood";
  readonly seed: number;
  readonly baseline: { readonly count: number; readonly p50Ms: number; readonly p99Ms: number };
  readonly kinds: readonly KindResult[];
  readonly slowloris: {
    readonly results: readonly SlowlorisResult[];
    readonly pssBytes: { readonly before: number | null; readonly peak: number | null; readonly after: number | null };
  } | null;
  readonly receiptFlood: {
    readonly receiptsWritten: number;
    readonly queueMessagesMax: number;
    readonly friendAccepted: boolean;
    readonly friendAnswer: string;
  } | null;
  readonly probe: { readonly lost: number; readonly disconnects: number };
  readonly ok: boolean;
}

const codec = new FrameCodec({ limits: defaultLimits });
const pairWindowMs = 1000;
/** How long a flood worker may take to say it is ready, and to report after its flood ends. */
const workerAnswerMs = 20_000;
const floodWorkerPath = new URL("./flood-worker.ts", import.meta.url).pathname;

function limitFlag(flags: Readonly<Record<string, string | number>>, name: string, fallback: number): number {
  const value = flags[name];
  return value === undefined ? fallback : Number(value);
}

/** Reads JSON lines from a child's stdout; `next()` waits (bounded) for the next one. */
function jsonLines(stream: ReadableStream<Uint8Array>): { next(timeoutMs: number): Promise<Record<string, unknown>> } {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  // A read that lost the race with the timeout stays pending: the next call awaits it rather than reading past it.
  let reading: ReturnType<typeof reader.read> | null = null;
  return {
    async next(timeoutMs) {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const newline = buffered.indexOf("\n");
        if (newline >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          return JSON.parse(line) as Record<string, unknown>;
        }
        const left = deadline - performance.now();
        if (left <= 0) throw new Error(`flood worker: no answer within ${timeoutMs} ms`);
        reading ??= reader.read();
        const chunk = await Promise.race([reading, Bun.sleep(left).then(() => null)]);
        if (chunk === null) continue;
        reading = null;
        if (chunk.done) throw new Error("flood worker: ended without an answer");
        buffered += decoder.decode(chunk.value, { stream: true });
      }
    },
  };
}

function tripFigures(trips: ReturnType<typeof distribution>): { count: number; p50Ms: number; p99Ms: number } {
  return { count: trips.count, p50Ms: round(trips.p50, 2), p99Ms: round(trips.p99, 2) };
}

async function floodOneKind(
  server: ServerChild,
  kind: string,
  options: FloodOptions,
  probe: ProbePair,
  victim: number,
  serial: { next: number },
): Promise<KindResult> {
  const rounds: RoundResult[] = [];
  for (let index = 0; index < options.rounds; index++) {
    rounds.push(await floodRound(server, kind, options, probe, victim, serial));
    // The server's backlog of the closed flooders is gone before the next round's baseline starts.
    await Bun.sleep(300);
  }
  const baseline = distribution(rounds.flatMap((one) => one.baselineTrips));
  const trips = distribution(rounds.flatMap((one) => one.floodTrips));
  const p99Ratio = trips.count === 0 || baseline.count === 0 ? Number.POSITIVE_INFINITY : trips.p99 / baseline.p99;
  const flooders = rounds.flatMap((one) => one.flooders);
  return {
    kind,
    rounds,
    flooders,
    baseline: tripFigures(baseline),
    pair: { ...tripFigures(trips), p99Ratio: round(p99Ratio, 2) },
    worstP99Ratio: Math.max(...rounds.map((one) => one.pair.p99Ratio)),
    allClosedWithinGoal: flooders.every(
      (flooder) => flooder.closedAfterMs !== null && flooder.closedAfterMs <= options.closeWithinMs,
    ),
    p99WithinGoal: p99Ratio <= options.p99RatioMax,
  };
}

async function floodRound(
  server: ServerChild,
  kind: string,
  options: FloodOptions,
  probe: ProbePair,
  victim: number,
  serial: { next: number },
): Promise<RoundResult> {
  const args: FloodWorkerArguments = {
    port: server.port,
    kind,
    flooders: options.flooders,
    floodMs: options.floodMs,
    victim,
    seed: options.seed + serial.next,
    prefix: `flood${serial.next++}`,
  };
  // At the lowest CPU priority: on a real deployment flooders are other machines and their writing costs the host
  // nothing; here they share its two cores with the server and the pair, and at normal priority the scheduler's
  // slices alone cost the pair milliseconds (a garbage flood, closed in 5 ms, measured 3.8x; niced, 0.9x).
  const worker = Bun.spawn(["nice", "-n", "19", process.execPath, floodWorkerPath, JSON.stringify(args)], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
  });
  trackChild(worker);
  try {
    const lines = jsonLines(worker.stdout);
    // The flooders connect and log in first: their logins are not part of either window.
    await lines.next(workerAnswerMs);
    const baselineStart = performance.now();
    await Bun.sleep(pairWindowMs);
    const baselineTrips = probe.between(baselineStart, performance.now());
    const baseline = distribution(baselineTrips);
    const started = performance.now();
    worker.stdin.write("go\n");
    worker.stdin.flush();
    const result = (await lines.next(options.floodMs + workerAnswerMs)) as unknown as {
      durationMs: number;
      flooders: FlooderResult[];
    };
    // The pair is measured over the flood and at least pairWindowMs from its start (a flood closed at once still
    // leaves its backlog in the server), so that each p99 rests on as many round trips as its baseline's.
    const windowEnd = Math.max(started + result.durationMs, started + pairWindowMs);
    await Bun.sleep(Math.max(0, windowEnd - performance.now()));
    const floodTrips = probe.between(started, windowEnd);
    const trips = distribution(floodTrips);
    const p99Ratio = trips.count === 0 || baseline.count === 0 ? Number.POSITIVE_INFINITY : trips.p99 / baseline.p99;
    return {
      baselineTrips,
      floodTrips,
      baseline: tripFigures(baseline),
      pair: { ...tripFigures(trips), p99Ratio: round(p99Ratio, 2) },
      flooders: result.flooders,
    };
  } finally {
    worker.kill("SIGKILL");
    await Promise.race([worker.exited, Bun.sleep(2000)]);
  }
}

/** Sessions that send all but the last bytes of a large frame, then a byte every dripMs; when are they closed? */
export async function slowloris(
  server: ServerChild,
  options: Pick<FloodOptions, "slowlorisSessions" | "slowlorisDripMs" | "slowlorisWatchMs" | "flags" | "log">,
  serial: { next: number },
): Promise<{
  results: SlowlorisResult[];
  pssBytes: { before: number | null; peak: number | null; after: number | null };
}> {
  const loginTimeoutMs = limitFlag(options.flags, "login-timeout-ms", defaultLimits.loginTimeoutMs);
  const completionMs = limitFlag(
    options.flags,
    "frame-completion-ms",
    (defaultLimits as unknown as Record<string, number>).frameCompletionMs ?? defaultLimits.idleTimeoutMs,
  );
  const tickMs = limitFlag(options.flags, "timer-tick-ms", defaultLimits.timerTickMs);
  const payloadBytes = Math.min(defaultLimits.payloadBytesMax, 60_000);
  const big = codec.encode({ kind: "send", clientId: 1, to: 1, payload: new Uint8Array(payloadBytes).fill(7) });
  const heldBack = 16;
  const before = await processPssBytes(server.pid);
  const half = Math.floor(options.slowlorisSessions / 2);
  const stages: Array<{ stage: "authenticating" | "ready"; sessions: RawSession[]; startedAt: number[] }> = [
    { stage: "authenticating", sessions: [], startedAt: [] },
    { stage: "ready", sessions: [], startedAt: [] },
  ];
  // Logged-in sessions first (registering takes a moment), then the ones that never log in.
  for (let index = 0; index < options.slowlorisSessions - half; index++) {
    const session = await RawSession.registered(server.port, `slow${serial.next++}`);
    stages[1]!.sessions.push(session);
  }
  for (let index = 0; index < half; index++) {
    const session = await RawSession.connect(server.port);
    session.write(encodePreamble());
    stages[0]!.sessions.push(session);
  }
  for (const stage of stages) {
    for (const session of stage.sessions) {
      stage.startedAt.push(performance.now());
      await session.writeAll(big.subarray(0, big.length - heldBack), performance.now() + 2000);
    }
  }
  await Bun.sleep(200);
  const peak = await processPssBytes(server.pid);
  let peakSeen = peak;
  const all = stages.flatMap((stage) => stage.sessions);
  const watchEnd = performance.now() + options.slowlorisWatchMs;
  let dripped = 0;
  while (performance.now() < watchEnd && all.some((session) => !session.closed)) {
    await Bun.sleep(options.slowlorisDripMs);
    dripped++;
    if (dripped < heldBack) {
      const offset = big.length - heldBack + dripped - 1;
      for (const session of all) if (!session.closed) session.write(big.subarray(offset, offset + 1));
    }
    const now = await processPssBytes(server.pid);
    if (now !== null && (peakSeen === null || now > peakSeen)) peakSeen = now;
  }
  const after = await processPssBytes(server.pid);
  const results: SlowlorisResult[] = stages.map(({ stage, sessions, startedAt }) => {
    const deadlineMs = stage === "authenticating" ? Math.min(loginTimeoutMs, completionMs) : completionMs;
    const closedAfter = sessions
      .map((session, index) => (session.closedAtMs === null ? null : session.closedAtMs - startedAt[index]!))
      .filter((value): value is number => value !== null);
    const codes: Record<string, number> = {};
    for (const session of sessions) {
      const code = session.closed ? (session.closeCode ?? "closed") : "open";
      codes[code] = (codes[code] ?? 0) + 1;
    }
    // Slack: two timer ticks and a little scheduling.
    const bound = deadlineMs + 2 * tickMs + 250;
    return {
      sessions: sessions.length,
      stage,
      deadlineMs,
      closed: closedAfter.length,
      closedWithinDeadline: closedAfter.filter((value) => value <= bound).length,
      closedAfterMs: {
        min: closedAfter.length === 0 ? null : Math.round(Math.min(...closedAfter)),
        max: closedAfter.length === 0 ? null : Math.round(Math.max(...closedAfter)),
      },
      codes,
    };
  });
  for (const session of all) session.close();
  return { results, pssBytes: { before, peak: peakSeen, after } };
}

/** Receipts paced just under the rate limit into an offline device's queue; then a friend's message to it. */
async function receiptFlood(
  options: FloodOptions,
  random: Random,
): Promise<{ receiptsWritten: number; queueMessagesMax: number; friendAccepted: boolean; friendAnswer: string }> {
  const queueMessagesMax = 1000;
  const dataDir = temporaryDataDir("switchboard-receipts-");
  const server = await startServerChild({
    dataDir,
    flags: { ...options.flags, "queue-messages-max": queueMessagesMax },
  });
  try {
    const victim = await registerAccount(server.port, "victim");
    const friend = await RawSession.registered(server.port, "friend");
    const flooders: RawSession[] = [];
    for (let index = 0; index < 4; index++) flooders.push(await RawSession.registered(server.port, `rcpt${index}`));
    const rate = limitFlag(options.flags, "rate-stanzas-per-second", defaultLimits.rateStanzasPerSecond);
    const perTickMs = 50;
    const perTick = Math.max(1, Math.floor((rate * 0.9 * perTickMs) / 1000));
    const deadline = performance.now() + options.receiptFloodMs;
    let receiptsWritten = 0;
    let clientId = 1;
    while (performance.now() < deadline && flooders.some((session) => !session.closed)) {
      for (const session of flooders) {
        for (let index = 0; index < perTick; index++) {
          const ids = Array.from({ length: 1 + random.below(4) }, () => clientId++);
          if (
            session.write(codec.encode({ kind: "receipt", type: 2, to: victim.account, toDevice: 1, clientIds: ids })) >
            0
          )
            receiptsWritten++;
        }
      }
      await Bun.sleep(perTickMs);
    }
    await Bun.sleep(200);
    friend.write(codec.encode({ kind: "send", clientId: 1, to: victim.account, payload: random.bytes(20) }));
    const answerDeadline = performance.now() + 5000;
    let friendAnswer = "no answer";
    let friendAccepted = false;
    while (performance.now() < answerDeadline) {
      const answer = friend.received.find(
        (stanza) =>
          (stanza.kind === "serverAck" && stanza.clientId === 1) || (stanza.kind === "error" && stanza.clientId === 1),
      );
      if (answer !== undefined) {
        friendAccepted = answer.kind === "serverAck";
        friendAnswer =
          answer.kind === "serverAck" ? "serverAck" : `error ${answer.kind === "error" ? answer.code : ""}`;
        break;
      }
      await Bun.sleep(10);
    }
    for (const session of [...flooders, friend]) session.close();
    return { receiptsWritten, queueMessagesMax, friendAccepted, friendAnswer };
  } finally {
    await server.kill("SIGKILL");
    removeDataDir(dataDir);
  }
}

export async function runFloods(partial: Partial<FloodOptions> = {}): Promise<{ summary: FloodSummary }> {
  const options: FloodOptions = { ...defaultFloodOptions, ...partial };
  for (const kind of options.kinds) if (!floodKinds.includes(kind)) throw new Error(`unknown flood kind ${kind}`);
  const log = options.log;
  const random = new Random(options.seed);
  const dataDir = temporaryDataDir("switchboard-flood-");
  let server: ServerChild | null = null;
  let probe: ProbePair | null = null;
  try {
    server = await startServerChild({ dataDir, flags: options.flags });
    const port = server.port;
    log(`flood: seed ${options.seed}, server pid ${server.pid}, flags ${JSON.stringify(options.flags)}`);
    probe = await ProbePair.create(() => port, "flood");
    const victim = await registerAccount(port, "flood-victim");
    probe.start(10);
    const baselineStart = performance.now();
    await Bun.sleep(options.baselineMs);
    const baselineTrips = distribution(probe.between(baselineStart, performance.now()));
    const baseline = {
      count: baselineTrips.count,
      p50Ms: round(baselineTrips.p50, 2),
      p99Ms: round(baselineTrips.p99, 2),
    };
    log(`flood: baseline ${baseline.count} round trips, p50 ${baseline.p50Ms} ms, p99 ${baseline.p99Ms} ms`);
    const serial = { next: 1 };
    const kinds: KindResult[] = [];
    for (const kind of options.kinds) {
      const result = await floodOneKind(server, kind, options, probe, victim.account, serial);
      kinds.push(result);
      const closes = result.flooders
        .map(
          (flooder) =>
            `${flooder.closedAfterMs === null ? "open" : `${flooder.closedAfterMs} ms`} ` +
            `(${flooder.code ?? "no code"}${flooder.reset ? ", reset" : ""})`,
        )
        .join(", ");
      const ratios = result.rounds.map((one) => `${one.pair.p99Ratio}x (${one.pair.p99Ms}/${one.baseline.p99Ms} ms)`);
      log(
        `flood ${kind}: ${result.rounds.length} rounds, pair p50 ${result.pair.p50Ms} ms p99 ${result.pair.p99Ms} ms ` +
          `against p50 ${result.baseline.p50Ms} ms p99 ${result.baseline.p99Ms} ms alone (${result.pair.p99Ratio}x, ` +
          `${result.p99WithinGoal ? "ok" : "over goal"}); each round p99/baseline: ${ratios.join(", ")}; ` +
          `flooders closed: ${closes}${result.allClosedWithinGoal ? "" : " -- not all within the goal"}`,
      );
    }
    let slow: FloodSummary["slowloris"] = null;
    if (options.slowlorisSessions > 0) {
      slow = await slowloris(server, options, serial);
      for (const result of slow.results) {
        log(
          `slowloris ${result.stage}: ${result.closed}/${result.sessions} closed (${result.closedWithinDeadline} within ` +
            `the ${result.deadlineMs} ms deadline)` +
            (result.closed === 0 ? "" : `, after ${result.closedAfterMs.min}..${result.closedAfterMs.max} ms`) +
            `, codes ${JSON.stringify(result.codes)}`,
        );
      }
      const mib = (bytes: number | null) => (bytes === null ? "?" : `${round(bytes / 1048576, 1)} MiB`);
      log(
        `slowloris: server PSS before ${mib(slow.pssBytes.before)}, peak ${mib(slow.pssBytes.peak)}, after ${mib(slow.pssBytes.after)}`,
      );
    }
    probe.stopSending();
    const settled = await probe.settle(5000);
    const counts = probe.ledger.counts();
    let receipts: FloodSummary["receiptFlood"] = null;
    if (options.receiptFlood) {
      receipts = await receiptFlood(options, random);
      log(
        `receipt flood: ${receipts.receiptsWritten} receipts into an offline device's queue (queueMessagesMax ` +
          `${receipts.queueMessagesMax}); a friend's message then: ${receipts.friendAnswer}`,
      );
    }
    const summary: FloodSummary = {
      kind: "flood",
      seed: options.seed,
      baseline,
      kinds,
      slowloris: slow,
      receiptFlood: receipts,
      probe: { lost: counts.lost + (settled ? 0 : counts.unsettled), disconnects: probe.disconnects },
      ok:
        kinds.every((result) => result.allClosedWithinGoal && result.p99WithinGoal) &&
        (slow === null || slow.results.every((result) => result.closedWithinDeadline === result.sessions)) &&
        (receipts === null || receipts.friendAccepted) &&
        counts.lost === 0 &&
        settled,
    };
    // The round trips themselves stay out of the printed summary (thousands of numbers); the figures are in it.
    log(JSON.stringify(summary, (key, value) => (key === "baselineTrips" || key === "floodTrips" ? undefined : value)));
    return { summary };
  } finally {
    probe?.stop();
    await server?.kill("SIGKILL");
    removeDataDir(dataDir);
  }
}
