// throughput: what a message costs, online and offline.
//
// Method. K sender/receiver pairs log in (accounts seeded). Online phase: every sender keeps `window` sends written
// and not yet server-acked, to its receiver; the receiver acks what it got after each read, the server queues a
// delivered receipt back to the sender, which acks it too: the full chain send, serverAck, deliver, ack, receipt,
// its ack. After a warm-up, delivered messages per second and server CPU seconds (/proc/<pid>/stat utime+stime)
// per million delivered are taken over --duration-s; then sending stops and the bench waits until every send is
// server-acked, delivered and its receipt back. Offline phase: the receivers disconnect, the senders send M
// messages in all (durable: each server-ack waits for the group commit to SQLite), then the receivers log in and
// drain their queues: enqueue rate = M / time to the last server-ack, drain rate = M / time from the logins to the
// last delivery.

import { delta, type MetricSamples, sample } from "./admin-metrics.ts";
import type { LoadFleet } from "./load-fleet.ts";
import { sumCounters } from "./load-fleet.ts";
import { hostCpuCores, hostCpuTimes } from "./proc-stats.ts";
import { ProgressBar } from "./progress-bar.ts";
import type { ScenarioHarness } from "./scenario-harness.ts";
import type { Figure, ScenarioResult } from "./scenario-result.ts";
import type { BenchServer } from "./server-process.ts";
import { round } from "./stats.ts";
import type { WorkerCounters } from "./worker-protocol.ts";

const messagesPerSecondGoal = 150_000;
const cpuSecondsPerMillionGoal = 6;
/** Once sending stops, the chain completes within milliseconds; this bounds the wait when it does not. */
const settleTimeoutMs = 20_000;
const pollIntervalMs = 50;
/** Generous enough for any rate; the server's own defaults (200/s per session) would throttle the senders. */
const unthrottledRate = "1000000";

export interface Snapshot {
  readonly atMs: number;
  readonly counters: WorkerCounters;
  readonly serverCpuSeconds: number | null;
  readonly metrics: MetricSamples | null;
}

export async function snapshot(fleet: LoadFleet, server: BenchServer): Promise<Snapshot> {
  const [reports, metrics] = await Promise.all([fleet.report(), server.metrics()]);
  return {
    atMs: performance.timeOrigin + performance.now(),
    counters: sumCounters(reports),
    serverCpuSeconds: server.cpuSeconds(),
    metrics,
  };
}

/** Polls the workers until `done` holds for the summed counters, at most timeoutMs; returns the last counters. */
export async function waitFor(
  fleet: LoadFleet,
  done: (counters: WorkerCounters) => boolean,
  timeoutMs: number,
): Promise<{ counters: WorkerCounters; settled: boolean }> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const counters = sumCounters(await fleet.report());
    if (done(counters)) return { counters, settled: true };
    if (performance.now() > deadline) return { counters, settled: false };
    await Bun.sleep(pollIntervalMs);
  }
}

function commitStats(before: MetricSamples | null, after: MetricSamples | null) {
  const commits = delta(before, after, "switchboard_commit_rows_count");
  const rows = delta(before, after, "switchboard_commit_rows_sum");
  const seconds = delta(before, after, "switchboard_commit_duration_seconds_sum");
  return {
    commits,
    rows,
    rowsPerCommit: commits === 0 ? 0 : round(rows / commits, 1),
    commitSeconds: round(seconds, 4),
    messagesAccepted: delta(before, after, "switchboard_messages_accepted_total"),
    entriesCancelled: delta(before, after, "switchboard_entries_cancelled_total"),
    bytesIn: delta(before, after, "switchboard_bytes_in_total"),
    bytesOut: delta(before, after, "switchboard_bytes_out_total"),
    socketWrites: delta(before, after, "switchboard_socket_writes_total"),
  };
}

export function splitPairs(pairs: number, workers: number): number[] {
  return Array.from({ length: workers }, (_, index) => Math.floor(pairs / workers) + (index < pairs % workers ? 1 : 0));
}

/**
 * A server with `flags`, and --pairs sender/receiver pairs logged in over --workers load workers: within each worker,
 * slots 0..p-1 send to slots p..2p-1 (`pairsOf`).
 */
export async function pairedFleet(harness: ScenarioHarness, flags: Record<string, string>) {
  const { options } = harness;
  const workerCount = Math.min(options.workers ?? 1, options.pairs);
  const pairsPerWorker = splitPairs(options.pairs, workerCount);
  const pairs = pairsPerWorker.reduce((sum, count) => sum + count, 0);
  // --transport noise: the server encrypts its TCP listener and the workers speak Noise (worker-noise.ts).
  const noise = options.transport === "noise";
  const { server, accounts } = await harness.server(noise ? { ...flags, "tcp-encryption": "noise" } : flags, 2 * pairs);
  const fleet = await harness.fleet(
    server,
    accounts,
    0,
    pairsPerWorker.map((count) => 2 * count),
    noise ? "noise" : "tcp",
  );
  const ramp = await harness.ramp(fleet, server, "logging in pairs");
  const pairsOf = (workerIndex: number) => {
    const count = pairsPerWorker[workerIndex]!;
    return Array.from({ length: count }, (_, index) => [index, count + index] as const);
  };
  return { server, fleet, ramp, pairs, workerCount, pairsPerWorker, pairsOf };
}

export async function runThroughput(harness: ScenarioHarness): Promise<ScenarioResult> {
  const { options } = harness;
  const pairs = splitPairs(options.pairs, Math.min(options.workers ?? 1, options.pairs)).reduce((a, b) => a + b, 0);
  const perSender = Math.ceil(options.messages / pairs);
  const offlineMessages = perSender * pairs;
  // Enqueueing and draining are bounded too: at least 40 s, or as long as 5,000 messages a second would take.
  const offlineBoundMs = Math.max(40_000, offlineMessages / 5);
  const flags: Record<string, string> = {
    "rate-stanzas-per-second": unthrottledRate,
    "rate-burst-stanzas": unthrottledRate,
    synchronous: options.synchronous,
    "queue-messages-max": String(Math.max(10_000, perSender + 1_000)),
  };
  const { server, fleet, ramp, workerCount, pairsOf } = await pairedFleet(harness, flags);
  const receiversOf = (workerIndex: number) => pairsOf(workerIndex).map(([, receiver]) => receiver);

  // ---- online: the full ack chain ------------------------------------------------------------------------------
  const onlineStart = await snapshot(fleet, server);
  await fleet.all(
    (worker) => ({
      cmd: "traffic",
      pairs: pairsOf(worker.index),
      window: options.window,
      payloadBytes: options.payloadBytes,
      messagesPerSender: null,
    }),
    10_000,
  );
  await Bun.sleep(options.warmupS * 1000);
  const windowStart = await snapshot(fleet, server);
  const hostBefore = hostCpuTimes();
  const bar = new ProgressBar("online traffic", Math.round(options.durationS), options.progress);
  const measureUntil = performance.now() + options.durationS * 1000;
  while (performance.now() < measureUntil) {
    await Bun.sleep(Math.min(1000, measureUntil - performance.now()));
    const counters = sumCounters(await fleet.report());
    const elapsedS = (counters.atMs - windowStart.atMs) / 1000;
    const rate = elapsedS > 0 ? (counters.delivered - windowStart.counters.delivered) / elapsedS : 0;
    bar.update(Math.round(elapsedS), `s, ${Math.round(rate).toLocaleString("en-US")} delivered/s`);
  }
  const windowEnd = await snapshot(fleet, server);
  const host = hostCpuCores(hostBefore, hostCpuTimes(), (windowEnd.atMs - windowStart.atMs) / 1000);
  bar.finish(Math.round(options.durationS), "s");
  await fleet.all({ cmd: "stopTraffic" }, 10_000);
  const online = await waitFor(
    fleet,
    (counters) =>
      counters.serverAcked + counters.sendRefused >= counters.sent &&
      counters.delivered >= counters.serverAcked &&
      counters.receiptClientIds >= counters.serverAcked,
    settleTimeoutMs,
  );
  const onlineEnd = await snapshot(fleet, server);

  const windowS = (windowEnd.atMs - windowStart.atMs) / 1000;
  const deliveredInWindow = windowEnd.counters.delivered - windowStart.counters.delivered;
  const deliveredPerSecond = deliveredInWindow / windowS;
  const serverCpu =
    windowStart.serverCpuSeconds === null || windowEnd.serverCpuSeconds === null
      ? null
      : windowEnd.serverCpuSeconds - windowStart.serverCpuSeconds;
  const cpuPerMillion = serverCpu === null || deliveredInWindow === 0 ? null : (serverCpu / deliveredInWindow) * 1e6;
  const loadCpu = windowEnd.counters.cpuSeconds - windowStart.counters.cpuSeconds;
  const onlineTotals = {
    sent: online.counters.sent - onlineStart.counters.sent,
    serverAcked: online.counters.serverAcked - onlineStart.counters.serverAcked,
    refused: online.counters.sendRefused - onlineStart.counters.sendRefused,
    delivered: online.counters.delivered - onlineStart.counters.delivered,
    duplicates: online.counters.duplicates - onlineStart.counters.duplicates,
    receiptClientIds: online.counters.receiptClientIds - onlineStart.counters.receiptClientIds,
    receiptFrames: online.counters.receiptFrames - onlineStart.counters.receiptFrames,
    acksSent: online.counters.acksSent - onlineStart.counters.acksSent,
    settled: online.settled,
  };

  // ---- offline: queue for disconnected devices, then drain ---------------------------------------------------
  await fleet.all((worker) => ({ cmd: "drop", slots: receiversOf(worker.index), abort: false }), 10_000);
  await waitReadySessions(server, pairs);
  const offlineStart = await snapshot(fleet, server);
  const enqueueStartedAtMs = performance.timeOrigin + performance.now();
  await fleet.all(
    (worker) => ({
      cmd: "traffic",
      pairs: pairsOf(worker.index),
      window: options.window,
      payloadBytes: options.payloadBytes,
      messagesPerSender: perSender,
    }),
    10_000,
  );
  const enqueued = await waitFor(
    fleet,
    (counters) =>
      counters.serverAcked +
        counters.sendRefused -
        offlineStart.counters.serverAcked -
        offlineStart.counters.sendRefused >=
      offlineMessages,
    offlineBoundMs,
  );
  const offlineAcked = enqueued.counters.serverAcked - offlineStart.counters.serverAcked;
  const enqueueEnd = await snapshot(fleet, server);
  const enqueueS = (enqueued.counters.lastServerAckAtMs - enqueueStartedAtMs) / 1000;
  const queueRowsBeforeDrain = sample(enqueueEnd.metrics, "switchboard_queue_rows");

  const drainStartedAtMs = performance.timeOrigin + performance.now();
  await fleet.all(
    (worker) => ({
      cmd: "connect",
      slots: receiversOf(worker.index),
      concurrency: options.concurrency,
      deadlineMs: 60_000,
    }),
    90_000,
  );
  const drained = await waitFor(
    fleet,
    (counters) =>
      counters.delivered - offlineStart.counters.delivered >= offlineAcked &&
      counters.receiptClientIds - offlineStart.counters.receiptClientIds >= offlineAcked,
    offlineBoundMs,
  );
  await Bun.sleep(500);
  const drainEnd = await snapshot(fleet, server);
  const drainS = (drained.counters.lastDeliverAtMs - drainStartedAtMs) / 1000;
  // Rates only from phases that completed: a partial phase has no meaningful end time.
  const enqueueRate = enqueued.settled && offlineAcked > 0 && enqueueS > 0 ? offlineAcked / enqueueS : null;
  const drainRate = drained.settled && offlineAcked > 0 && drainS > 0 ? offlineAcked / drainS : null;
  const offlineTotals = {
    messages: offlineMessages,
    serverAcked: drained.counters.serverAcked - offlineStart.counters.serverAcked,
    refused: drained.counters.sendRefused - offlineStart.counters.sendRefused,
    delivered: drained.counters.delivered - offlineStart.counters.delivered,
    duplicates: drained.counters.duplicates - offlineStart.counters.duplicates,
    receiptClientIds: drained.counters.receiptClientIds - offlineStart.counters.receiptClientIds,
    enqueueSettled: enqueued.settled,
    drainSettled: drained.settled,
  };
  const enqueueCpu =
    offlineStart.serverCpuSeconds === null || enqueueEnd.serverCpuSeconds === null
      ? null
      : enqueueEnd.serverCpuSeconds - offlineStart.serverCpuSeconds;
  const drainCpu =
    enqueueEnd.serverCpuSeconds === null || drainEnd.serverCpuSeconds === null
      ? null
      : drainEnd.serverCpuSeconds - enqueueEnd.serverCpuSeconds;
  const errors = drainEnd.counters.errorCodes;
  const errorCount = Object.values(errors).reduce((sum, count) => sum + count, 0);

  const onlineSane =
    online.settled &&
    onlineTotals.delivered === onlineTotals.sent &&
    onlineTotals.serverAcked === onlineTotals.sent &&
    onlineTotals.receiptClientIds === onlineTotals.sent;
  const offlineSane =
    enqueued.settled &&
    drained.settled &&
    offlineTotals.delivered === offlineMessages &&
    offlineTotals.serverAcked === offlineMessages;
  const perMillion = (cpu: number | null, count: number) =>
    cpu === null || count === 0 ? null : round((cpu / count) * 1e6, 2);
  const durability = {
    synchronous: server.owned ? options.synchronous : "as configured on the target",
    journal: "WAL",
    serverAck: "after the group commit to SQLite, or once every recipient device acked (then never written)",
  };
  const figures: Figure[] = [
    { name: "pairs online", value: pairs, unit: "" },
    {
      name: "delivered msgs/s (full ack chain)",
      value: Math.round(deliveredPerSecond),
      unit: "/s",
      goal: `>= ${messagesPerSecondGoal.toLocaleString("en-US")}`,
      met: deliveredPerSecond >= messagesPerSecondGoal,
      fullSize: true,
    },
    {
      name: "server CPU per million delivered",
      value: cpuPerMillion === null ? null : round(cpuPerMillion, 2),
      unit: "s",
      goal: `<= ${cpuSecondsPerMillionGoal}`,
      met: cpuPerMillion === null ? null : cpuPerMillion <= cpuSecondsPerMillionGoal,
      fullSize: true,
    },
    {
      name: "server CPU while sending",
      value: serverCpu === null ? null : round(serverCpu / windowS, 2),
      unit: "cores",
    },
    { name: "load generator CPU while sending", value: round(loadCpu / windowS, 2), unit: "cores" },
    {
      name: "host CPU busy / stolen / idle",
      value: `${host.busyCores} / ${host.stealCores} / ${host.idleCores}`,
      unit: "cores",
    },
    {
      name: "online: sent / delivered / receipts",
      value: `${onlineTotals.sent} / ${onlineTotals.delivered} / ${onlineTotals.receiptClientIds}`,
      unit: "",
      goal: "all equal",
      met: onlineSane,
    },
    {
      name: "online rows never written (acked first)",
      value: round(
        (100 * delta(onlineStart.metrics, onlineEnd.metrics, "switchboard_entries_cancelled_total")) /
          Math.max(1, delta(onlineStart.metrics, onlineEnd.metrics, "switchboard_messages_accepted_total")),
        1,
      ),
      unit: "% of sends",
    },
    { name: "offline messages queued", value: offlineMessages, unit: "" },
    { name: "enqueue rate (durable)", value: enqueueRate === null ? null : Math.round(enqueueRate), unit: "msgs/s" },
    { name: "drain rate", value: drainRate === null ? null : Math.round(drainRate), unit: "msgs/s" },
    { name: "server CPU per million enqueued", value: perMillion(enqueueCpu, offlineMessages), unit: "s" },
    { name: "server CPU per million drained", value: perMillion(drainCpu, offlineMessages), unit: "s" },
    {
      name: "offline: queued / delivered",
      value: `${offlineMessages} / ${offlineTotals.delivered}`,
      unit: "",
      goal: "equal",
      met: offlineSane,
    },
    {
      name: "sends refused (rate limit, queue full)",
      value: onlineTotals.refused + offlineTotals.refused,
      unit: "",
      goal: "0",
      met: onlineTotals.refused + offlineTotals.refused === 0,
    },
    { name: "error frames received", value: errorCount, unit: "", goal: "0", met: errorCount === 0 },
    { name: "durability", value: `synchronous=${durability.synchronous}, ${durability.journal}`, unit: "" },
  ];
  return {
    scenario: "throughput",
    title: `throughput: ${pairs} sender/receiver pairs, window ${options.window}, ${options.payloadBytes}-byte payloads; then ${offlineMessages.toLocaleString("en-US")} messages offline`,
    figures,
    raw: {
      pairs,
      workers: workerCount,
      window: options.window,
      payloadBytes: options.payloadBytes,
      durability,
      ramp,
      online: {
        warmupS: options.warmupS,
        windowS,
        deliveredInWindow,
        deliveredPerSecond,
        serverCpuSeconds: serverCpu,
        serverCpuSecondsPerMillion: cpuPerMillion,
        loadCpuSeconds: loadCpu,
        host,
        totals: onlineTotals,
        server: commitStats(windowStart.metrics, windowEnd.metrics),
        serverWholePhase: commitStats(onlineStart.metrics, onlineEnd.metrics),
        windowStart: windowStart.counters,
        windowEnd: windowEnd.counters,
      },
      offline: {
        perSender,
        enqueueS,
        drainS,
        enqueueRate,
        drainRate,
        enqueueServerCpuSeconds: enqueueCpu,
        drainServerCpuSeconds: drainCpu,
        queueRowsBeforeDrain,
        queueRowsAfterDrain: sample(drainEnd.metrics, "switchboard_queue_rows"),
        totals: offlineTotals,
        enqueueServer: commitStats(offlineStart.metrics, enqueueEnd.metrics),
        drainServer: commitStats(enqueueEnd.metrics, drainEnd.metrics),
      },
      errors,
      goaways: drainEnd.counters.goawayCodes,
    },
    server: { flags: server.flags, target: options.target, durability },
    notes: [
      `The load generator (${workerCount} worker process${workerCount === 1 ? "" : "es"}) shares the host's 2 cores with the server; its CPU is shown beside the server's. The server's hot path is one thread.`,
      "Server CPU is utime+stime of the server process from /proc/<pid>/stat over the measuring window; per million = that / delivered messages in the window.",
      "Durability: a server-ack waits for the group commit to SQLite (WAL) unless every recipient device acked first; rows acked before their batch commits are never written ('online rows never written' gives their share).",
      options.target === null
        ? `Rate limits are raised for this scenario (--rate-stanzas-per-second ${unthrottledRate}); everything else is the server's default.`
        : "Against a --target its own limits apply: start it with a high --rate-stanzas-per-second and --rate-burst-stanzas, or sends are refused (rateLimited) and sessions closed (flood).",
    ],
    charts: [],
    sane: ramp.failed === 0 && onlineSane && offlineSane && errorCount === 0,
  };
}

/** Waits until the server counts `ready` logged-in sessions (the receivers' closes were handled), at most 5 s. */
async function waitReadySessions(server: BenchServer, ready: number): Promise<void> {
  const deadline = performance.now() + 5_000;
  while (performance.now() < deadline) {
    const metrics = await server.metrics();
    if (metrics === null || sample(metrics, 'switchboard_sessions{state="ready"}') <= ready) return;
    await Bun.sleep(pollIntervalMs);
  }
}
