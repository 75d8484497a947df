// groups: what a group send costs (PROTOCOL.md section 18), against a one-to-one send in the same run.
//
// Method. One server (seeded accounts: a sender and 1,023 members, one device each), every member logged in through
// the SDK in this process (the SDK acks each entry after its listeners, so the full ack chain runs: groupSend ->
// serverAck; groupDeliver -> ack; gathered groupReceipt -> the sender's ack). For each group size (10, 100, 1,024
// members, the sender included) the sender creates the group and sends K messages with the SDK's window of sends in
// flight; a phase ends when the sender has every serverAck, every member every message, and the sender receipts
// naming every reader. Server CPU (its process, /proc) per delivered message is compared with a phase of 1:1 sends
// from the sender to one member in the same run. The worst event-loop delay during each phase comes from the
// server's histogram, with the probe every 10 ms (--event-loop-probe-ms 10: every stall over 10 ms is seen); the
// server's main thread's wait for a core over the phase (/proc schedstat) tells a stall of its own work from one of
// a busy host. A probe pair (two more devices in a load worker of its own, at normal priority) exchanges one
// message at a time all along: its round trips during each phase against those of an idle stretch before the first
// phase are what another session sees of a burst. A phase starts once every member has the group's creation event
// (so it measures the sends, not the creation's 1,024 events). Bytes stored: the members log out, the sender sends
// one message to each group, and the partition files are read: rows, and copies of the shared payload (once per
// partition holding recipients).

import { Database } from "bun:sqlite";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { setPriority, tmpdir } from "node:os";
import { join } from "node:path";
import { type SwitchboardClient as Client, importKeyPairPkcs8, SwitchboardClient } from "../client/index.ts";
import { defaultLimits } from "../protocol/index.ts";
import { worstBoundBetween } from "./admin-metrics.ts";
import { deviceKeySeed, devicePrivateKey, rawPublicKey } from "./device-keys.ts";
import { ProbePair, type ProbeSummary, summarise } from "./probe-pair.ts";
import { hostCpuCores, hostCpuTimes } from "./proc-stats.ts";
import type { ScenarioHarness } from "./scenario-harness.ts";
import type { Figure, ScenarioResult } from "./scenario-result.ts";
import { seedAccounts } from "./seed-accounts.ts";
import { startBenchServer } from "./server-process.ts";
import { round } from "./stats.ts";

const sizesFull = [10, 100, 1024];
const sizesQuick = [10, 100];
/** Messages sent to each group size (fewer to larger groups: the deliveries are what costs). */
const messagesFull: Record<number, number> = { 10: 400, 100: 100, 1024: 20 };
const messagesQuick: Record<number, number> = { 10: 50, 100: 20 };
const oneToOneMessages = 400;
const payloadBytes = 100;
/** Logins in flight while the members connect. */
const connectConcurrency = 32;
/** The bound on one phase (a phase that does not finish is reported, not waited for forever). */
const phaseMsMax = 120_000;
const lagName = "switchboard_event_loop_delay_seconds";
const busyName = "switchboard_event_loop_busy_seconds";
/** The server's lag probe interval in this bench: every stall over it is seen (OPERATIONS.md, eventLoopProbeMs). */
const lagProbeMs = 10;
/** The probe pair's idle stretch before the first phase (its baseline round trips). */
const probeBaselineMs = 3_000;
/** The pkcs8 DER prefix of an Ed25519 private key (RFC 8410), as bench/device-keys.ts builds it. */
const pkcs8Ed25519Prefix = Uint8Array.from(Buffer.from("302e020100300506032b657004220420", "hex"));

interface Member {
  readonly client: Client;
  readonly account: number;
  received: number;
  /** Groups whose events reached this member. */
  readonly groupEvents: Set<number>;
}

interface Phase {
  readonly name: string;
  readonly members: number;
  readonly messages: number;
  readonly delivered: number;
  readonly elapsedMs: number;
  readonly serverCpuSeconds: number | null;
  readonly worstLagMs: number;
  /** The worst busy part of a probe's delay: the server's own longest turn, give or take a probe interval. */
  readonly worstBusyMs: number;
  readonly worstCommitMs: number;
  /** How long the server's main thread was runnable but waited for a core, over the phase (null: no /proc). */
  readonly serverWaitMs: number | null;
  /** The probe pair's round trips during the phase. */
  readonly probe: ProbeSummary;
  /** The host's cores busy over the phase (the server, the members' SDKs in this process, and anything else). */
  readonly hostBusyCores: number;
  readonly finished: boolean;
}

async function waitUntil(predicate: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) return false;
    await Bun.sleep(5);
  }
  return true;
}

export async function runGroups(harness: ScenarioHarness): Promise<ScenarioResult> {
  const { options } = harness;
  if (options.target !== null) throw new Error("groups: runs against a server it starts (no --target)");
  const sizes = options.quick ? sizesQuick : sizesFull;
  const messagesPer = options.quick ? messagesQuick : messagesFull;
  const largest = Math.max(...sizes);
  const dataDir = mkdtempSync(join(tmpdir(), "switchboard-bench-groups-"));
  // The members, then the probe pair's two devices (key indexes largest and largest + 1).
  const seeded = await seedAccounts({ dataDir, runSeed: harness.runSeed, count: largest + 2 });
  const server = await startBenchServer({
    dataDir,
    // Every member is one session of this process: the rate limit is per session, the sender's is what binds.
    flags: {
      "rate-stanzas-per-second": "20000",
      "rate-burst-stanzas": "20000",
      "event-loop-probe-ms": String(lagProbeMs),
      ...options.serverFlags,
    },
    profileDir: options.profile ? `${harness.artefactBase}-profile` : null,
    removeDataDir: true,
  });
  harness.defer(async () => void (await server.stop()));
  // Started before this process lowers its priority: the probe's worker keeps the normal one, as the server does.
  const probe = await ProbePair.start(harness, server, [...seeded.accounts], largest);
  // The members' SDKs run in this process: at the lowest priority (the server keeps its own), so that the server's
  // event-loop delay shows the server's work rather than the load generator taking its core.
  setPriority(19);

  const clients: Member[] = [];
  harness.defer(async () => {
    for (const member of clients) await member.client.close();
  });
  const connect = async (index: number): Promise<Member> => {
    const seed = deviceKeySeed(harness.runSeed, index);
    const pkcs8 = new Uint8Array([...pkcs8Ed25519Prefix, ...seed]);
    const keyPair = await importKeyPairPkcs8(pkcs8, rawPublicKey(devicePrivateKey(harness.runSeed, index)));
    const client = new SwitchboardClient({
      host: server.host,
      port: server.port,
      credentials: { account: seeded.accounts[index]!, device: 1, keyPair },
      limits: defaultLimits,
      clientLimits: { sendsInFlightMax: 64 },
    });
    const member: Member = { client, account: seeded.accounts[index]!, received: 0, groupEvents: new Set() };
    client.on("groupMessage", () => void member.received++);
    client.on("groupEvent", (event) => void member.groupEvents.add(event.groupId));
    client.on("message", () => void member.received++);
    client.on("error", () => {});
    await client.connect();
    return member;
  };
  for (let start = 0; start < largest; start += connectConcurrency) {
    const batch: Array<Promise<Member>> = [];
    for (let index = start; index < Math.min(largest, start + connectConcurrency); index++) batch.push(connect(index));
    clients.push(...(await Promise.all(batch)));
  }
  const sender = clients[0]!;
  const readersOf = new Map<number, number>();
  sender.client.on("groupReceipt", (receipt) => {
    readersOf.set(receipt.clientId, (readersOf.get(receipt.clientId) ?? 0) + receipt.readers.length);
  });
  let oneToOneReceipts = 0;
  sender.client.on("receipt", (receipt) => {
    oneToOneReceipts += receipt.clientIds.length;
  });
  const payload = new Uint8Array(payloadBytes).fill(0x5a);

  const phases: Phase[] = [];
  const measure = async (
    name: string,
    members: number,
    messages: number,
    delivered: number,
    run: () => Promise<boolean>,
  ) => {
    const before = await server.metrics();
    const hostBefore = hostCpuTimes();
    const cpuBefore = server.cpuSeconds();
    const waitBefore = mainThreadWaitMs(server.pid);
    await probe.begin(phaseMsMax + 60_000);
    const started = performance.now();
    const finished = await run();
    const elapsedMs = performance.now() - started;
    const probed = await probe.end();
    const waitAfter = mainThreadWaitMs(server.pid);
    const cpuAfter = server.cpuSeconds();
    const after = await server.metrics();
    const worstLagMs = worstBoundBetween(before, after, lagName) * 1000;
    const worstBusyMs = worstBoundBetween(before, after, busyName) * 1000;
    const worstCommitMs = worstBoundBetween(before, after, "switchboard_commit_duration_seconds") * 1000;
    const host = hostCpuCores(hostBefore, hostCpuTimes(), elapsedMs / 1000);
    phases.push({
      name,
      members,
      messages,
      delivered,
      elapsedMs,
      serverCpuSeconds: cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore,
      worstLagMs,
      worstBusyMs,
      worstCommitMs,
      serverWaitMs: waitBefore === null || waitAfter === null ? null : waitAfter - waitBefore,
      probe: summarise(probed.samples, probed.lost),
      hostBusyCores: host.busyCores,
      finished,
    });
  };

  // The probe pair alone (nothing else runs): the baseline of its round trips.
  await probe.begin(probeBaselineMs + 60_000);
  await Bun.sleep(probeBaselineMs);
  const idleProbe = await probe.end();
  const probeBaseline = summarise(idleProbe.samples, idleProbe.lost);

  // 1:1 baseline: the sender to one member, the same payload, with the same ack chain (deliverReceipt per message).
  const peer = clients[1]!;
  await measure("1:1", 2, oneToOneMessages, oneToOneMessages, async () => {
    const receivedBefore = peer.received;
    const sends: Array<Promise<unknown>> = [];
    for (let index = 0; index < oneToOneMessages; index++) sends.push(sender.client.send(peer.account, payload));
    await Promise.all(sends);
    return waitUntil(
      () => peer.received - receivedBefore >= oneToOneMessages && oneToOneReceipts >= oneToOneMessages,
      phaseMsMax,
    );
  });

  const groups = new Map<number, Awaited<ReturnType<Client["createGroup"]>>>();
  for (const size of sizes) {
    const members = clients.slice(1, size).map((member) => member.account);
    const info = await sender.client.createGroup(new TextEncoder().encode(`bench ${size}`), members);
    groups.set(size, info);
    const recipients = clients.slice(1, size);
    await waitUntil(() => recipients.every((member) => member.groupEvents.has(info.groupId)), phaseMsMax);
    const messages = messagesPer[size]!;
    await measure(`group of ${size}`, size, messages, messages * (size - 1), async () => {
      const before = recipients.map((member) => member.received);
      const sends: Array<Promise<{ clientId: number }>> = [];
      for (let index = 0; index < messages; index++)
        sends.push(sender.client.sendToGroup(info.groupId, payload, { view: info }));
      const ids = (await Promise.all(sends)).map((sent) => sent.clientId);
      return waitUntil(
        () =>
          recipients.every((member, index) => member.received - before[index]! >= messages) &&
          ids.every((id) => (readersOf.get(id) ?? 0) >= size - 1),
        phaseMsMax,
      );
    });
  }

  // Bytes stored: nobody but the sender online, one message to each group, then the partition files.
  for (const member of clients.slice(1)) await member.client.close();
  const stored: Array<{ size: number; rows: number; payloadCopies: number; payloadBytesStored: number }> = [];
  const probeIds = new Map<number, number>();
  for (const size of sizes) {
    const info = groups.get(size)!;
    probeIds.set(size, (await sender.client.sendToGroup(info.groupId, payload, { view: info })).clientId);
  }
  await Bun.sleep(200);
  const partitionsDir = join(dataDir, "partitions");
  for (const size of sizes) {
    const clientId = probeIds.get(size)!;
    let rows = 0;
    let payloadCopies = 0;
    for (const file of readdirSync(partitionsDir).filter((name) => name.endsWith(".sqlite"))) {
      const database = new Database(join(partitionsDir, file), { readonly: true });
      try {
        const found = database
          .query(
            `select count(*) as rows, count(distinct message_id) as shared, sum(payload is not null) as inline
             from queue where kind = 2 and peer_account = ? and client_id = ?`,
          )
          .get(sender.account, clientId) as { rows: number; shared: number; inline: number | null };
        rows += found.rows;
        payloadCopies += found.shared + (found.inline ?? 0);
      } finally {
        database.close();
      }
    }
    stored.push({ size, rows, payloadCopies, payloadBytesStored: payloadCopies * payloadBytes });
  }

  const baseline = phases[0]!;
  const cpuPer = (phase: Phase) =>
    phase.serverCpuSeconds === null || phase.delivered === 0 ? null : (phase.serverCpuSeconds * 1e6) / phase.delivered;
  const baselineCpu = cpuPer(baseline);
  const figures: Figure[] = [
    {
      name: "probe pair alone: round trip p50 / p99 / max",
      value: `${probeBaseline.rttMs.p50} / ${probeBaseline.rttMs.p99} / ${probeBaseline.rttMs.max}`,
      unit: "ms",
    },
  ];
  for (const phase of phases) {
    const seconds = phase.elapsedMs / 1000;
    const cpu = cpuPer(phase);
    figures.push({
      name: `${phase.name}: sends/s, delivered/s`,
      value: `${round(phase.messages / seconds, 1)} / ${round(phase.delivered / seconds, 0)}`,
      unit: "/s",
    });
    figures.push({
      name: `${phase.name}: server CPU per delivered message${phase === baseline ? "" : " (vs 1:1)"}`,
      value:
        cpu === null
          ? null
          : phase === baseline || baselineCpu === null
            ? round(cpu, 1)
            : `${round(cpu, 1)} (${round(cpu / baselineCpu, 2)}x)`,
      unit: "µs",
    });
    figures.push({
      name: `${phase.name}: worst event-loop delay / its busy part / worst commit (bounds)`,
      value: `${round(phase.worstLagMs, 1)} / ${round(phase.worstBusyMs, 1)} / ${round(phase.worstCommitMs, 1)}`,
      unit: "ms",
    });
    figures.push({
      name: `${phase.name}: server main thread waiting for a core`,
      value:
        phase.serverWaitMs === null
          ? null
          : `${round(phase.serverWaitMs, 0)} (${round((100 * phase.serverWaitMs) / phase.elapsedMs, 0)}%)`,
      unit: "ms",
    });
    figures.push({
      name: `${phase.name}: probe pair round trip p50 / p99 / max (p99 vs idle)`,
      value: `${phase.probe.rttMs.p50} / ${phase.probe.rttMs.p99} / ${phase.probe.rttMs.max} (${
        probeBaseline.rttMs.p99 > 0 ? round(phase.probe.rttMs.p99 / probeBaseline.rttMs.p99, 1) : "-"
      }x)`,
      unit: "ms",
    });
    figures.push({ name: `${phase.name}: host cores busy`, value: round(phase.hostBusyCores, 2), unit: "of 2" });
  }
  for (const entry of stored) {
    figures.push({
      name: `group of ${entry.size}: one offline message stored as rows / payload copies`,
      value: `${entry.rows} / ${entry.payloadCopies}`,
      unit: "",
      goal: "copies <= partitions",
      met: entry.payloadCopies <= 64 && entry.rows === entry.size - 1,
    });
    figures.push({
      name: `group of ${entry.size}: payload bytes stored (vs one copy per device)`,
      value: `${entry.payloadBytesStored} (${(entry.size - 1) * payloadBytes})`,
      unit: "B",
    });
  }
  const finished = phases.every((phase) => phase.finished);
  return {
    scenario: "groups",
    title: `groups: sends to groups of ${sizes.join(", ")} members with the full ack chain, against 1:1 in the same run (${payloadBytes}-byte payload)`,
    figures,
    raw: { phases, stored, sizes, messagesPer, payloadBytes, oneToOneMessages, probeBaseline, lagProbeMs },
    server: { flags: server.flags },
    notes: [
      "Every member is an SDK client in the bench process (niced to 19 once the server runs), which shares the host's 2 cores with the server: rates are bounded by both; CPU per delivered message is the server's alone.",
      "A phase ends when the sender has every serverAck, every member every message (acked by the SDK), and the sender receipts naming every reader (gathered groupReceipts; deliverReceipts for 1:1).",
      `Event-loop delay: the server's histogram with a probe every ${lagProbeMs} ms (a bucket bound, buckets 10, 15, 20, 30, 40, 50, 75, 100, 150, 250 ms ...). Its busy part (switchboard_event_loop_busy_seconds): of each probe's delay, what the server's loop thread spent running, i.e. its own longest turn within a probe interval. Waiting for a core: the server's main thread runnable but not running (/proc schedstat), which lengthens every turn on a busy host.`,
      "Probe pair: two more devices in a load worker at normal priority, one message and its echo at a time, all along each phase; p99 against its idle stretch before the first phase.",
      "Bytes stored: members offline, one message per group; the payload is stored once per partition that holds recipients (64 partitions), each row 1 per recipient device.",
    ],
    charts: [],
    sane: finished && stored.every((entry) => entry.rows === entry.size - 1),
  };
}

/** The time (ms) a process's main thread has waited runnable for a core (/proc/<pid>/task/<pid>/schedstat); null without it. */
function mainThreadWaitMs(pid: number | null): number | null {
  if (pid === null) return null;
  try {
    const fields = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, "utf8").trim().split(/\s+/);
    return Number(fields[1]) / 1e6;
  } catch {
    return null;
  }
}
