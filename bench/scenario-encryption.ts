// encryption: what transport encryption costs the server, plaintext, Noise and TLS side by side in one run.
//
// Method. For each mode in turn (none, noise, tls) a fresh server process (same flags but tcpEncryption) takes N
// idle logged-in sessions from the load workers (bench/load-worker.ts, in their own processes: the clients' memory
// never counts), over plain TCP, Noise (bench/worker-noise.ts: an XX handshake, the login's v3 signature over the
// handshake hash) or TLS (Bun's TLS client). The accounts are seeded into the store before the server starts
// (bench/seed-accounts.ts). In a full-size run a first wave of N sessions logs in and out (what logins leave behind
// once, and the allocator's high-water mark of a handshake's short-lived native objects, are then paid alike for
// every mode). Memory is read by the server itself right after a full garbage collection (the admin API's
// POST /admin/gc): before the measured wave, and after it once the heap stopped shrinking (idle devices release
// their delivery state after deviceStateIdleReleaseMs); RSS, heap bytes and heap objects grown, over N, are what an
// idle logged-in session of that mode holds. The RSS read without a GC is reported beside it (garbage counts there).
// Then P sender/receiver pairs exchange M messages (8 in flight per pair, deliveries acked by the workers), and the
// server's CPU time (utime + stime from /proc) over M is the server CPU per relayed message. The ratios are against
// the plaintext figures of the same run. TLS certificates are made for the run with openssl.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeTestCertificate } from "../server/tls-test-certificate.ts";
import { LoadFleet, sumCounters } from "./load-fleet.ts";
import type { ScenarioHarness } from "./scenario-harness.ts";
import type { Figure, ScenarioResult } from "./scenario-result.ts";
import { seedAccounts } from "./seed-accounts.ts";
import { type BenchServer, type CollectedHeap, startBenchServer } from "./server-process.ts";
import { round } from "./stats.ts";
import type { ConnectReply } from "./worker-protocol.ts";

type Mode = "none" | "noise" | "tls";
const modes: readonly Mode[] = ["none", "noise", "tls"];
/** Goals of the issue: an idle Noise session at most 1.2x a plaintext one; server CPU per message at most 1.5x. */
const idleRatioGoal = 1.2;
const cpuRatioGoal = 1.5;
/** Logins in flight per load worker while connecting the crowd. */
const connectConcurrency = 64;
const connectTimeoutMs = 15_000;
const connectDeadlineMs = 120_000;
const relayTimeoutMs = 60_000;
const serverStartTimeoutMs = 90_000;
const payloadBytes = 20;
/**
 * Waits around the measured wave: settleMs past idleReleaseMs, then a GC every settlePollMs until the heap's object
 * count holds still. --quick only checks that the figures come out, so it waits little.
 */
interface SettleTimes {
  readonly settleMs: number;
  readonly settlePollMs: number;
  readonly settleMaxMs: number;
}
const fullSettle: SettleTimes = { settleMs: 3000, settlePollMs: 2000, settleMaxMs: 30_000 };
const quickSettle: SettleTimes = { settleMs: 1500, settlePollMs: 300, settleMaxMs: 3000 };
/** The server's deviceStateIdleReleaseMs and lastSeenFlushMs in this scenario: below settleMs. */
const idleReleaseMs = 1000;
const settledObjectsPerSession = 0.02;
const pairsMax = 50;
/**
 * Sessions per mode at most (--sessions, default the bench's 15,000). The allocator's noise is a few MiB per reading
 * either way, so more sessions resolve smaller per-session differences.
 */
const sessionsMax = 30_000;
/** Sends in flight per pair while relaying. */
const sendWindow = 8;

interface ModeFigures {
  readonly mode: Mode;
  readonly sessions: number;
  /** The server's RSS growth per session, both ends read right after a full GC in the server. */
  readonly idleBytesPerSession: number | null;
  /** The server's JS heap growth per session, after a full GC (what the sessions hold, not their logins' garbage). */
  readonly heapBytesPerSession: number | null;
  /** Heap objects (cells) per session, after a full GC. */
  readonly heapObjectsPerSession: number | null;
  /** Heap object types that grew by 0.1 or more per session, after a full GC (what to look at). */
  readonly grownTypes: Readonly<Record<string, number>>;
  /** The RSS growth per session read without a GC (the figure this scenario reported before: garbage counts). */
  readonly idleBytesNoGcPerSession: number | null;
  readonly messages: number;
  readonly cpuMicrosecondsPerMessage: number | null;
  readonly connectSeconds: number;
}

/**
 * The server's heap after a full GC, once idle sessions stopped releasing what they held after their login (a
 * device's delivery state goes after deviceStateIdleReleaseMs of quiet, 10 s by default; its last-seen note at the
 * next flush): collected every settlePollMs until the object count moves by less than settledObjectsPerSession per
 * session, for at most settleMaxMs.
 */
async function settledHeap(
  server: BenchServer,
  sessions: number,
  { settlePollMs, settleMaxMs }: SettleTimes,
): Promise<CollectedHeap | null> {
  const deadline = Date.now() + settleMaxMs;
  let previous = await server.collectGarbage();
  while (previous !== null && Date.now() < deadline) {
    await Bun.sleep(settlePollMs);
    const next = await server.collectGarbage();
    if (next === null) return previous;
    const moved = Math.abs(next.heapObjects - previous.heapObjects) / sessions;
    previous = next;
    if (moved < settledObjectsPerSession) break;
  }
  return previous;
}

async function measureMode(
  harness: ScenarioHarness,
  mode: Mode,
  sessions: number,
  messages: number,
  warmWave: boolean,
  settle: SettleTimes,
  certificate: { certFile: string; keyFile: string; cert: string },
): Promise<ModeFigures> {
  const dataDir = mkdtempSync(join(tmpdir(), "switchboard-bench-encryption-"));
  // Accounts are seeded into the store before the server starts (as the density scenario does): registration's
  // own garbage would otherwise swamp the growth of the sessions.
  const runSeed = `enc${mode}`;
  const { accounts } = await seedAccounts({ dataDir, runSeed, count: sessions });
  const server = await startBenchServer({
    dataDir,
    removeDataDir: true,
    // A loaded host takes longer than the default 20 s to open 64 partitions beside tens of thousands of accounts.
    startTimeoutMs: serverStartTimeoutMs,
    flags: {
      "tcp-encryption": mode,
      ...(mode === "tls" ? { "tls-cert-file": certificate.certFile, "tls-key-file": certificate.keyFile } : {}),
      "rate-stanzas-per-second": "100000",
      "rate-burst-stanzas": "100000",
      "sessions-max": String(sessions + 100),
      // Idle within the settle time: a device's delivery state is released after 1 s of quiet (default 10 s) and
      // last-seen notes are flushed every second (default 5 s), the same for every mode. Otherwise the sessions
      // logged in last still hold both when memory is read, and how many do depends on the host's speed.
      "device-state-idle-release-ms": String(idleReleaseMs),
      "last-seen-flush-ms": String(idleReleaseMs),
      // --quick (the smoke test): 4 partitions start in a fraction of the default 64's time; the per-session
      // figures do not depend on them.
      ...(settle === quickSettle ? { partitions: "4" } : {}),
    },
  });
  let fleet: LoadFleet | null = null;
  try {
    fleet = await LoadFleet.start({
      host: server.host,
      port: server.port,
      runSeed,
      sessionsPerWorker: LoadFleet.split(sessions, harness.options.sessionsPerWorker),
      keyFirst: 0,
      accounts: [...accounts],
      connectTimeoutMs: connectTimeoutMs,
      randomSeed: harness.options.seed,
      transport: mode === "none" ? "tcp" : mode,
      tlsCa: certificate.cert,
    });
    const crowd = fleet;
    const connectAll = async () => {
      const replies = await crowd.all<ConnectReply>(
        { cmd: "connect", slots: null, concurrency: connectConcurrency, deadlineMs: connectDeadlineMs },
        connectDeadlineMs + 30_000,
      );
      const failed = replies.reduce((sum, reply) => sum + reply.failed, 0);
      if (failed > 0) {
        const failures = replies.map((reply) => reply.failures);
        throw new Error(`${mode}: ${failed} of ${sessions} logins failed: ${JSON.stringify(failures)}`);
      }
    };
    // A first wave logs in and leaves: what logins leave behind once (code, caches, the allocator's high-water mark
    // of a handshake's short-lived native objects) is then paid before the measured wave, the same for every mode.
    if (warmWave) {
      await connectAll();
      await crowd.all({ cmd: "drop", slots: null, abort: false }, 30_000);
      const deadline = Date.now() + 30_000;
      while ((await server.collectGarbage())?.sessions !== 0 && Date.now() < deadline) await Bun.sleep(200);
    }
    await Bun.sleep(settle.settleMs);
    // Settled too: the first wave's last-seen notes and closed sessions' leftovers go before the baseline is read.
    const collectedBefore = await settledHeap(server, sessions, settle);
    const rssBefore = collectedBefore?.rssBytes ?? null;
    const connectStartedAt = performance.now();
    await connectAll();
    const connectSeconds = (performance.now() - connectStartedAt) / 1000;
    await Bun.sleep(settle.settleMs);
    const rssNoGc = await server.rssBytes();
    const collectedAfter = await settledHeap(server, sessions, settle);
    const perSession = (after: number | undefined, before: number | undefined, digits = 0) =>
      after === undefined || before === undefined ? null : round((after - before) / sessions, digits);
    const idleBytesPerSession = perSession(collectedAfter?.rssBytes, collectedBefore?.rssBytes);
    const heapBytesPerSession = perSession(collectedAfter?.heapBytes, collectedBefore?.heapBytes);
    const heapObjectsPerSession = perSession(collectedAfter?.heapObjects, collectedBefore?.heapObjects, 2);
    const idleBytesNoGcPerSession = perSession(rssNoGc ?? undefined, rssBefore ?? undefined);
    const grownTypes: Record<string, number> = {};
    for (const [type, count] of Object.entries(collectedAfter?.objectTypeCounts ?? {})) {
      const grown = perSession(count, collectedBefore?.objectTypeCounts[type] ?? 0, 2);
      if (grown !== null && grown >= 0.1) grownTypes[type] = grown;
    }

    // Relay: in each worker, slot p sends to slot pairs + p, sendWindow sends in flight (the worker acks what it
    // receives); the server's CPU over the whole exchange, acks and receipts included, per message.
    const pairsPerWorker = crowd.sessionsPerWorker.map((count) => Math.floor(Math.min(count, 2 * pairsMax) / 2));
    const pairs = pairsPerWorker.reduce((sum, count) => sum + count, 0);
    const perPair = Math.ceil(messages / pairs);
    const total = perPair * pairs;
    const before = sumCounters(await crowd.report());
    const cpuBefore = server.cpuSeconds();
    await crowd.all((worker) => {
      const count = pairsPerWorker[worker.index]!;
      return {
        cmd: "traffic",
        pairs: Array.from({ length: count }, (_, index) => [index, count + index] as const),
        window: sendWindow,
        payloadBytes,
        messagesPerSender: perPair,
      };
    }, 10_000);
    const deadline = Date.now() + relayTimeoutMs;
    let counters = before;
    while (Date.now() < deadline) {
      counters = sumCounters(await crowd.report());
      if (
        counters.delivered - before.delivered >= total &&
        counters.receiptClientIds - before.receiptClientIds >= total
      )
        break;
      await Bun.sleep(20);
    }
    // Let the receivers' last acks reach the server (their CPU is part of relaying a message).
    await Bun.sleep(500);
    const cpuAfter = server.cpuSeconds();
    await crowd.all({ cmd: "stopTraffic" }, 10_000);
    const delivered = counters.delivered - before.delivered;
    if (delivered < total) {
      throw new Error(`${mode}: ${delivered} of ${total} messages delivered within ${relayTimeoutMs / 1000} s`);
    }
    return {
      mode,
      sessions,
      idleBytesPerSession,
      heapBytesPerSession,
      heapObjectsPerSession,
      grownTypes,
      idleBytesNoGcPerSession,
      messages: total,
      cpuMicrosecondsPerMessage:
        cpuBefore === null || cpuAfter === null ? null : round(((cpuAfter - cpuBefore) * 1e6) / total, 1),
      connectSeconds: round(connectSeconds, 2),
    };
  } finally {
    await fleet?.stop();
    await server.stop();
  }
}

export async function runEncryption(harness: ScenarioHarness): Promise<ScenarioResult> {
  const { options } = harness;
  // --quick: at most 300 sessions and 2,000 messages (fewer when asked: the smoke test in bench.test.ts).
  const sessions = options.quick ? Math.min(options.sessions, 300) : Math.min(options.sessions, sessionsMax);
  const settle = options.quick ? quickSettle : fullSettle;
  const messages = options.quick ? Math.min(options.messages, 2000) : Math.max(options.messages, 10_000);
  const certificate = makeTestCertificate();
  harness.defer(async () => rmSync(certificate.directory, { recursive: true, force: true }));
  const measured: ModeFigures[] = [];
  for (const mode of modes) {
    if (options.progress) process.stderr.write(`encryption: ${mode}, ${sessions} sessions, ${messages} messages\n`);
    measured.push(await measureMode(harness, mode, sessions, messages, !options.quick, settle, certificate));
  }
  const [plain, noise, tls] = measured as [ModeFigures, ModeFigures, ModeFigures];
  const ratio = (value: number | null, base: number | null) =>
    value === null || base === null || base <= 0 ? null : round(value / base, 2);
  const idleNoise = ratio(noise.idleBytesPerSession, plain.idleBytesPerSession);
  const cpuNoise = ratio(noise.cpuMicrosecondsPerMessage, plain.cpuMicrosecondsPerMessage);
  const figures: Figure[] = [];
  for (const mode of measured) {
    figures.push({ name: `idle session, ${mode.mode}`, value: mode.idleBytesPerSession, unit: "B RSS" });
    figures.push({ name: `idle session heap, ${mode.mode}`, value: mode.heapBytesPerSession, unit: "B heap" });
    figures.push({ name: `idle session heap objects, ${mode.mode}`, value: mode.heapObjectsPerSession, unit: "" });
    figures.push({ name: `idle session, no GC, ${mode.mode}`, value: mode.idleBytesNoGcPerSession, unit: "B RSS" });
    figures.push({ name: `server CPU per message, ${mode.mode}`, value: mode.cpuMicrosecondsPerMessage, unit: "us" });
  }
  figures.push({
    name: "idle session, noise / none",
    value: idleNoise,
    unit: "x",
    goal: `<= ${idleRatioGoal}x`,
    met: idleNoise === null ? null : idleNoise <= idleRatioGoal,
    fullSize: true,
  });
  figures.push({
    name: "idle session heap, noise / none",
    value: ratio(noise.heapBytesPerSession, plain.heapBytesPerSession),
    unit: "x",
  });
  figures.push({
    name: "server CPU per message, noise / none",
    value: cpuNoise,
    unit: "x",
    goal: `<= ${cpuRatioGoal}x`,
    met: cpuNoise === null ? null : cpuNoise <= cpuRatioGoal,
    fullSize: true,
  });
  figures.push({
    name: "idle session, tls / none",
    value: ratio(tls.idleBytesPerSession, plain.idleBytesPerSession),
    unit: "x",
  });
  figures.push({
    name: "server CPU per message, tls / none",
    value: ratio(tls.cpuMicrosecondsPerMessage, plain.cpuMicrosecondsPerMessage),
    unit: "x",
  });
  return {
    scenario: "encryption",
    title: `transport encryption: ${sessions} idle sessions and ${messages} relayed messages per mode`,
    figures,
    raw: { modes: measured },
    server: { flags: "tcpEncryption none | noise | tls, otherwise the bench defaults" },
    notes: [
      ...measured.map((mode) => `heap object types grown per ${mode.mode} session: ${JSON.stringify(mode.grownTypes)}`),
      "Clients are load workers in their own processes (they share the host's cores with the server); only the server process is measured.",
      "Memory figures are read by the server right after a full GC (POST /admin/gc); the no-GC RSS counts garbage too.",
      "Each message is a 20-byte payload; 8 are in flight per pair, so a record often carries a few frames.",
      "Full-size runs log a first wave of N sessions in and out before the measured wave (see the method in the file).",
    ],
    charts: [],
    sane: measured.every((mode) => mode.messages > 0),
  };
}
