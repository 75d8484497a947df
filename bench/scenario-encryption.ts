// encryption: what transport encryption costs the server, plaintext, Noise and TLS side by side in one run.
//
// Method. For each mode in turn (none, noise, tls) a fresh server process (same flags but tcpEncryption) takes N
// idle logged-in sessions from SDK clients in this process (registered with open registration, so the login is the
// real one: for Noise the v3 signature over the handshake hash). The accounts are seeded into the store before the
// server starts (bench/seed-accounts.ts). In a full-size run a first wave of N sessions logs in and out (what logins
// leave behind once, and the allocator's high-water mark of a handshake's short-lived native objects, are then paid
// alike for every mode); the server's RSS growth from before the measured wave's first login to after its last one
// and a settling time, over N, is the memory of an idle logged-in session of that mode, read from
// /proc/<pid>/status of the server alone (the clients' memory never counts). Then P sender/receiver pairs among them
// exchange M messages (8 in flight per pair, deliveries acked by the SDK), and the server's CPU time
// (utime + stime from /proc) over M is the server CPU per relayed message. The ratios are against the plaintext
// figures of the same run. TLS certificates are made for the run with openssl.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { importKeyPairPkcs8, SwitchboardClient } from "../client/index.ts";
import { noiseTransport } from "../client/transport-noise.ts";
import { tcpTransport } from "../client/transport-tcp.ts";
import { defaultLimits } from "../protocol/limits.ts";
import { nodeAead } from "../protocol/noise-aead-node.ts";
import { nodeDh } from "../protocol/noise-dh-node.ts";
import { makeTestCertificate } from "../server/tls-test-certificate.ts";
import { devicePrivateKey, rawPublicKey } from "./device-keys.ts";
import type { ScenarioHarness } from "./scenario-harness.ts";
import type { Figure, ScenarioResult } from "./scenario-result.ts";
import { seedAccounts } from "./seed-accounts.ts";
import { type BenchServer, type CollectedHeap, startBenchServer } from "./server-process.ts";
import { round } from "./stats.ts";

type Mode = "none" | "noise" | "tls";
const modes: readonly Mode[] = ["none", "noise", "tls"];
/** Goals of the issue: an idle Noise session at most 1.2x a plaintext one; server CPU per message at most 1.5x. */
const idleRatioGoal = 1.2;
const cpuRatioGoal = 1.5;
/** Logins in flight while connecting the crowd. */
const connectConcurrency = 50;
const settleMs = 3000;
const settlePollMs = 2000;
/** Longer than the default deviceStateIdleReleaseMs (10 s) plus a last-seen flush (5 s). */
const settleMaxMs = 30_000;
const settledObjectsPerSession = 0.02;
const pairsMax = 50;
/** Sends in flight per pair while relaying. */
const sendWindow = 8;
const bufferedBytesMax = 1 << 20;

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
async function settledHeap(server: BenchServer, sessions: number): Promise<CollectedHeap | null> {
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

/** Runs `task` for 0..count-1, connectConcurrency at a time. */
async function inBatches(count: number, task: (index: number) => Promise<void>): Promise<void> {
  for (let index = 0; index < count; index += connectConcurrency) {
    const batch: Promise<void>[] = [];
    for (let member = index; member < Math.min(count, index + connectConcurrency); member++) batch.push(task(member));
    await Promise.all(batch);
  }
}

async function measureMode(
  mode: Mode,
  sessions: number,
  messages: number,
  warmWave: boolean,
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
    flags: {
      "tcp-encryption": mode,
      ...(mode === "tls" ? { "tls-cert-file": certificate.certFile, "tls-key-file": certificate.keyFile } : {}),
      "rate-stanzas-per-second": "100000",
      "rate-burst-stanzas": "100000",
      "sessions-max": String(sessions + 100),
    },
  });
  const clients: SwitchboardClient[] = [];
  try {
    const transport = () => {
      const tcp = tcpTransport({
        host: "127.0.0.1",
        port: server.port,
        bufferedBytesMax,
        ...(mode === "tls" ? { tls: { ca: certificate.cert } } : {}),
      });
      return mode === "noise" ? noiseTransport(tcp, `127.0.0.1:${server.port}`, { aead: nodeAead, dh: nodeDh }) : tcp;
    };
    const credentials = await Promise.all(
      accounts.map(async (account, index) => {
        const privateKey = devicePrivateKey(runSeed, index);
        const pkcs8 = new Uint8Array(privateKey.export({ format: "der", type: "pkcs8" }));
        const keyPair = await importKeyPairPkcs8(pkcs8, rawPublicKey(privateKey));
        return { account, device: 1, keyPair };
      }),
    );
    const wave = (into: SwitchboardClient[]) =>
      inBatches(sessions, async (member) => {
        const client = new SwitchboardClient({
          credentials: credentials[member]!,
          transport: transport(),
          limits: defaultLimits,
          pingIntervalMs: 600_000,
        });
        into[member] = client;
        await client.connect();
      });
    // A first wave logs in and leaves: what logins leave behind once (code, caches, the allocator's high-water mark
    // of a handshake's short-lived native objects) is then paid before the measured wave, the same for every mode.
    if (warmWave) {
      const first: SwitchboardClient[] = [];
      await wave(first);
      await Promise.all(first.map((client) => client.close()));
    }
    await Bun.sleep(settleMs);
    const collectedBefore = await server.collectGarbage();
    const rssBefore = collectedBefore?.rssBytes ?? null;
    const connectStartedAt = performance.now();
    await wave(clients);
    const connectSeconds = (performance.now() - connectStartedAt) / 1000;
    await Bun.sleep(settleMs);
    const rssNoGc = await server.rssBytes();
    const collectedAfter = await settledHeap(server, sessions);
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

    // Relay: pairs send in turn, each message awaited to its server-ack, and every delivery awaited.
    const pairs = Math.min(pairsMax, Math.floor(sessions / 2));
    let delivered = 0;
    for (let pair = 0; pair < pairs; pair++) clients[pairs + pair]!.on("message", () => void delivered++);
    const payload = new Uint8Array(20).fill(7);
    const perPair = Math.ceil(messages / pairs);
    const cpuBefore = server.cpuSeconds();
    await Promise.all(
      Array.from({ length: pairs }, async (_, pair) => {
        const sender = clients[pair]!;
        const receiver = clients[pairs + pair]!.credentials!.account;
        // sendWindow sends in flight per pair: frames of one turn share a write (and, encrypted, a record).
        let next = 0;
        await Promise.all(
          Array.from({ length: sendWindow }, async () => {
            while (next < perPair) {
              next++;
              await sender.send(receiver, payload);
            }
          }),
        );
      }),
    );
    const total = perPair * pairs;
    const deadline = Date.now() + 60_000;
    while (delivered < total && Date.now() < deadline) await Bun.sleep(20);
    // Let the receivers' acks reach the server (their CPU is part of relaying a message).
    await Bun.sleep(500);
    const cpuAfter = server.cpuSeconds();
    if (delivered < total) throw new Error(`${mode}: ${delivered} of ${total} messages delivered within 60 s`);
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
    await Promise.all(clients.map((client) => client.close()));
    await server.stop();
  }
}

export async function runEncryption(harness: ScenarioHarness): Promise<ScenarioResult> {
  const { options } = harness;
  const sessions = options.quick ? 300 : Math.min(options.sessions, 3000);
  const messages = options.quick ? 2000 : Math.max(options.messages, 10_000);
  const certificate = makeTestCertificate();
  harness.defer(async () => rmSync(certificate.directory, { recursive: true, force: true }));
  const measured: ModeFigures[] = [];
  for (const mode of modes) {
    if (options.progress) process.stderr.write(`encryption: ${mode}, ${sessions} sessions, ${messages} messages\n`);
    measured.push(await measureMode(mode, sessions, messages, !options.quick, certificate));
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
      "Clients are SDK clients in the bench process (they share the host's cores with the server); only the server process is measured.",
      "Each message is a 20-byte payload; 8 are in flight per pair, so a record often carries a few frames.",
      "Full-size runs log a first wave of N sessions in and out before the measured wave (see the method in the file).",
    ],
    charts: [],
    sane: measured.every((mode) => mode.messages > 0),
  };
}
