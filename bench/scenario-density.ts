// density: how many idle devices one server process holds, and at what memory.
//
// Method. First the floor: a bare Bun.listen server (bare-server.ts) in its own process takes N plain sockets from
// the load workers (connected, nothing sent); its RSS growth over N is the runtime's cost of a socket. Then the
// server under test, started on a data directory seeded with N accounts, takes N sessions from the load workers,
// each logged in with a signed challenge; its RSS growth over N, after the same settling time, is the cost of an
// idle session. Both are read from /proc/<pid>/status (VmRSS) of the server process alone, so the load workers'
// memory never counts. Kernel socket memory is the change of /proc/net/sockstat's TCP `mem` (both ends of every
// loopback connection are in this host's kernel). The JS heap is the server's heapUsed from its admin /metrics, as
// scraped (no forced GC: garbage not yet collected counts).
//
// With --transport ws the same is measured over WebSocket: the floor is a bare Bun.serve whose /ws upgrades with
// per-message deflate off and empty handlers, taking N sockets that only did the handshake; the server under test
// gets a --ws-port and the load workers speak WebSocket over their own Bun.connect sockets
// (websocket-client-frames.ts), so they still bind their source addresses.

import { defaultLimits } from "../protocol/limits.ts";
import { sample, sumDelta } from "./admin-metrics.ts";
import { bareWebSocketPath, startBareServer } from "./bare-server.ts";
import { type MeasuredDensity, planCapacity, planFigures, planNotes } from "./capacity-plan.ts";
import { LoadFleet, sumCounters } from "./load-fleet.ts";
import { kernelSlabBytes, type SocketStats, socketStats } from "./proc-stats.ts";
import { ProgressBar } from "./progress-bar.ts";
import { type ScenarioHarness, type ServerSample, settle } from "./scenario-harness.ts";
import type { Figure, ScenarioResult } from "./scenario-result.ts";
import { waitFor } from "./scenario-throughput.ts";
import { type BenchServer, freePort } from "./server-process.ts";
import { round } from "./stats.ts";
import { type ChartMarker, lineChartSvg } from "./svg-chart.ts";
import type { PlainReply } from "./worker-protocol.ts";

const mebibyte = 1024 * 1024;
const settleSampleIntervalMs = 1000;
/** Goal of the issue: per-session RSS at most this times the bare floor. */
const densityRatioGoal = 1.1;
const loginsPerSecondGoal = 15_000;

interface MemoryPoint {
  readonly atS: number;
  readonly rssBytes: number | null;
}

interface KernelPoint {
  readonly sockets: SocketStats;
  readonly slabBytes: number | null;
}

function kernelNow(): KernelPoint {
  return { sockets: socketStats(), slabBytes: kernelSlabBytes() };
}

function kernelDelta(before: KernelPoint, after: KernelPoint) {
  return {
    tcpInUse: after.sockets.tcpInUse - before.sockets.tcpInUse,
    tcpBufferBytes: after.sockets.tcpMemoryBytes - before.sockets.tcpMemoryBytes,
    socketsUsed: after.sockets.socketsUsed - before.sockets.socketsUsed,
    slabBytes: before.slabBytes === null || after.slabBytes === null ? null : after.slabBytes - before.slabBytes,
  };
}

/** Sessions connected before the baseline is read, so one-time costs (JIT, first buffers) do not count per session. */
export function warmupSessions(sessions: number): number {
  return Math.min(1000, Math.max(1, Math.round(sessions * 0.05)));
}

/** The warm-up's share of each worker. */
function warmupSplit(split: readonly number[], sessions: number, warmup: number): number[] {
  const shares = split.map((count) => Math.floor((warmup * count) / sessions));
  let left = warmup - shares.reduce((sum, share) => sum + share, 0);
  for (let index = 0; left > 0; index = (index + 1) % shares.length) {
    if (shares[index]! < split[index]!) {
      shares[index]!++;
      left--;
    }
  }
  return shares;
}

function range(count: number): number[] {
  return Array.from({ length: count }, (_, index) => index);
}

/** (after - before) / count, or null when a reading is missing. */
function perUnit(before: number | null, after: number | null, count: number): number | null {
  return before === null || after === null || count <= 0 ? null : (after - before) / count;
}

async function measureBare(harness: ScenarioHarness, sessions: number, warmup: number) {
  const { options } = harness;
  // Noise is measured against the plain socket floor: what the layer costs is part of the session.
  const bare = await startBareServer(options.transport === "ws" ? "ws" : "tcp");
  const split = LoadFleet.split(sessions, options.sessionsPerWorker);
  const warmSplit = warmupSplit(split, sessions, warmup);
  const fleet = await LoadFleet.start({
    host: "127.0.0.1",
    port: bare.port,
    runSeed: harness.runSeed,
    sessionsPerWorker: split.map(() => 0),
    keyFirst: 0,
    accounts: [],
    connectTimeoutMs: 15_000,
    randomSeed: options.seed,
  });
  const plain = (counts: readonly number[]) =>
    fleet.all<PlainReply>(
      (worker) => ({
        cmd: "plain",
        host: "127.0.0.1",
        port: bare.port,
        count: counts[worker.index]!,
        concurrency: options.concurrency,
        wsPath: options.transport === "ws" ? bareWebSocketPath : null,
        deadlineMs: 120_000,
      }),
      150_000,
    );
  try {
    await Bun.sleep(500);
    const rssEmpty = bare.rssBytes();
    const kernelBefore = kernelNow();
    const warmReplies = await plain(warmSplit);
    const warmOpen = warmReplies.reduce((sum, reply) => sum + reply.open, 0);
    await Bun.sleep(Math.min(2000, options.settleS * 1000));
    const rssWarm = bare.rssBytes();
    const bar = new ProgressBar("bare sockets", sessions, options.progress);
    const samples: ServerSample[] = [{ atS: 0, sessions: 0, rssBytes: rssEmpty }];
    const started = performance.now();
    samples.push({ atS: 0, sessions: warmOpen, rssBytes: rssWarm });
    const sampler = setInterval(() => {
      const open = fleet.plainOpen;
      samples.push({ atS: (performance.now() - started) / 1000, sessions: open, rssBytes: bare.rssBytes() });
      bar.update(open, "plain sockets");
    }, 250);
    let replies: PlainReply[];
    try {
      replies = await plain(split.map((count, index) => count - warmSplit[index]!));
    } finally {
      clearInterval(sampler);
    }
    const open = warmOpen + replies.reduce((sum, reply) => sum + reply.open, 0);
    bar.finish(open, "plain sockets");
    const settled = await settle<MemoryPoint>(options.settleS, settleSampleIntervalMs, async () => ({
      atS: (performance.now() - started) / 1000,
      rssBytes: bare.rssBytes(),
    }));
    const rssAfter = settled[settled.length - 1]!.rssBytes;
    samples.push({ atS: (performance.now() - started) / 1000, sessions: open, rssBytes: rssAfter });
    const kernel = kernelDelta(kernelBefore, kernelNow());
    await fleet.all({ cmd: "closePlain" }, 30_000);
    return {
      open,
      warmup: warmOpen,
      failed: warmReplies.concat(replies).reduce((sum, reply) => sum + reply.failed, 0),
      rssEmptyBytes: rssEmpty,
      rssWarmBytes: rssWarm,
      rssAfterBytes: rssAfter,
      /** Marginal: growth from the warm-up to N, over the sockets added. */
      rssPerSocketBytes: perUnit(rssWarm, rssAfter, open - warmOpen),
      rssPerSocketTotalBytes: perUnit(rssEmpty, rssAfter, open),
      kernel,
      samples,
      settled,
    };
  } finally {
    await fleet.stop();
    await bare.stop();
  }
}

export async function runDensity(harness: ScenarioHarness): Promise<ScenarioResult> {
  const { options } = harness;
  const sessions = options.sessions;
  const warmup = warmupSessions(sessions);
  const bareResult = await measureBare(harness, sessions, warmup);

  const ws = options.transport === "ws";
  const serverFlags: Record<string, string> = ws
    ? { "ws-host": "127.0.0.1", "ws-port": String(freePort()) }
    : options.transport === "noise"
      ? { "tcp-encryption": "noise" }
      : {};
  const { server, accounts } = await harness.server(serverFlags, sessions);
  const split = LoadFleet.split(sessions, options.sessionsPerWorker);
  const warmSplit = warmupSplit(split, sessions, warmup);
  const fleet = await harness.fleet(server, accounts, 0, split, options.transport);
  await Bun.sleep(1000);
  const rssEmpty = await server.rssBytes();
  const heapEmpty = await server.heapUsedBytes();
  const kernelBefore = kernelNow();
  const warm = await harness.ramp(fleet, null, "warm-up", {
    slotsOf: (index) => range(warmSplit[index]!),
    total: warmup,
  });
  await Bun.sleep(Math.min(2000, options.settleS * 1000));
  const rssWarm = await server.rssBytes();
  const heapWarm = await server.heapUsedBytes();
  const metricsBefore = await server.metrics();

  const ramp = await harness.ramp(fleet, server, "logging in");
  const settled = await settle<MemoryPoint>(options.settleS, settleSampleIntervalMs, async () => ({
    atS: ramp.elapsedMs / 1000,
    rssBytes: await server.rssBytes(),
  }));
  const rssAfter = settled[settled.length - 1]!.rssBytes;
  const heapAfter = await server.heapUsedBytes();
  const metricsAfter = await server.metrics();
  const kernel = kernelDelta(kernelBefore, kernelNow());
  const counters = await fleet.report();
  const unexpectedCloses = counters.reduce((sum, report) => sum + report.unexpectedCloses, 0);
  const readyAtEnd = counters.reduce((sum, report) => sum + report.ready, 0);
  const loggedIn = warm.ready + ramp.ready;
  const failed = warm.failed + ramp.failed;

  const activity = options.activity && !ws ? await afterActivity(fleet, server, split, options.settleS) : null;
  const rssPerSession = perUnit(rssWarm, rssAfter, ramp.ready);
  const rssPerSessionTotal = perUnit(rssEmpty, rssAfter, loggedIn);
  const heapPerSession = perUnit(heapWarm, heapAfter, ramp.ready);
  const slabPerConnection = perUnit(0, kernel.slabBytes, loggedIn);
  const ratio =
    rssPerSession === null || bareResult.rssPerSocketBytes === null || bareResult.rssPerSocketBytes <= 0
      ? null
      : rssPerSession / bareResult.rssPerSocketBytes;

  const toPoints = (samples: readonly ServerSample[], offset: number) =>
    samples
      .filter((point) => point.rssBytes !== null)
      .map((point) => [point.sessions + offset, point.rssBytes! / mebibyte] as const);
  const switchboardPoints = [
    ...(rssEmpty === null ? [] : [[0, rssEmpty / mebibyte] as const]),
    ...(rssWarm === null ? [] : [[warm.ready, rssWarm / mebibyte] as const]),
    ...toPoints(ramp.samples, warm.ready),
  ];
  if (rssAfter !== null) switchboardPoints.push([loggedIn, rssAfter / mebibyte]);
  const barePoints = toPoints(bareResult.samples, 0);
  const perSessionLabel = (bytesPer: number | null, what: string) =>
    bytesPer === null ? undefined : `${Math.round(bytesPer).toLocaleString("en-US")} B/${what} (settled)`;
  const markers: ChartMarker[] = [];
  if (rssAfter !== null) {
    markers.push({ x: loggedIn, y: rssAfter / mebibyte, label: `settled (${options.settleS} s)`, color: "#1f77b4" });
  }
  if (bareResult.rssAfterBytes !== null) {
    markers.push({ x: bareResult.open, y: bareResult.rssAfterBytes / mebibyte, label: "settled", color: "#ff7f0e" });
  }
  const svg = lineChartSvg({
    title: `Server RSS against connected ${ws ? "WebSocket " : ""}sessions (${sessions.toLocaleString("en-US")})`,
    xLabel: "connected sessions (logged in / plain sockets)",
    yLabel: "RSS (MiB)",
    series: [
      {
        name: ws ? "switchboard (logged-in WebSocket sessions)" : "switchboard (logged-in sessions)",
        color: "#1f77b4",
        points: switchboardPoints,
        endLabel: perSessionLabel(rssPerSession, "session"),
      },
      {
        name: ws ? "bare Bun.serve (idle WebSockets)" : "bare Bun.listen (plain sockets)",
        color: "#ff7f0e",
        points: barePoints,
        endLabel: perSessionLabel(bareResult.rssPerSocketBytes, "socket"),
      },
    ],
    markers,
  });

  const bytes = (value: number | null) => (value === null ? null : round(value, 0));
  const figures: Figure[] = [
    {
      name: "sessions logged in",
      value: loggedIn,
      unit: `of ${sessions}`,
      goal: `= ${sessions}`,
      met: loggedIn === sessions,
    },
    { name: "login failures", value: failed, unit: "", goal: "0", met: failed === 0 },
    {
      name: ws ? "server RSS per WebSocket session (settled)" : "server RSS per session (settled)",
      value: bytes(rssPerSession),
      unit: "B",
    },
    {
      name: ws ? "bare Bun WebSocket floor per socket" : "bare Bun floor per socket",
      value: bytes(bareResult.rssPerSocketBytes),
      unit: "B",
    },
    {
      name: "ratio to bare floor",
      value: ratio === null ? null : round(ratio, 2),
      unit: "x",
      goal: `<= ${densityRatioGoal}`,
      met: ratio === null ? null : ratio <= densityRatioGoal,
      fullSize: true,
    },
    { name: "RSS per session incl. one-time costs", value: bytes(rssPerSessionTotal), unit: "B" },
    { name: "JS heap per session (heapUsed)", value: bytes(heapPerSession), unit: "B" },
    { name: "kernel slab per connection", value: bytes(slabPerConnection), unit: "B (both ends)" },
    { name: "kernel TCP buffer change (sockstat mem)", value: kernel.tcpBufferBytes, unit: "B in all (idle: ~0)" },
    {
      name: "logins/s while ramping",
      value: ramp.loginsPerSecond,
      unit: "/s",
      goal: `>= ${loginsPerSecondGoal.toLocaleString("en-US")}`,
      met: ramp.loginsPerSecond >= loginsPerSecondGoal,
      fullSize: true,
    },
    { name: "logins/s, best 1 s window", value: ramp.peakLoginsPerSecond, unit: "/s" },
    { name: "server CPU per login", value: ramp.serverCpuMicrosecondsPerLogin, unit: "µs" },
    { name: "server CPU while ramping", value: ramp.serverCpuUtilisation, unit: "cores" },
    {
      name: "login time p50 / p99",
      value: `${round(ramp.loginMs.p50, 1)} / ${round(ramp.loginMs.p99, 1)}`,
      unit: "ms",
    },
    { name: "accept-queue overflows (ramp)", value: ramp.listen.listenOverflows, unit: "" },
    {
      name: "server RSS empty / warm / after",
      value: `${mib(rssEmpty)} / ${mib(rssWarm)} / ${mib(rssAfter)}`,
      unit: "MiB",
    },
  ];
  if (activity !== null) {
    const heapDelta = perUnit(heapAfter, activity.heapUsedBytes, loggedIn);
    figures.push(
      {
        name: "messages exchanged (one per sender), all delivered and receipted",
        value: `${activity.delivered} of ${activity.sent}`,
        unit: "",
        goal: "all",
        met: activity.settled && activity.delivered === activity.sent,
      },
      {
        name: "JS heap per session after activity, minus idle",
        value: bytes(heapDelta),
        unit: "B",
        goal: `<= ${activityHeapSlackBytes}`,
        met: heapDelta === null ? null : heapDelta <= activityHeapSlackBytes,
        fullSize: true,
      },
      {
        name: "RSS per session after activity, minus idle",
        value: bytes(perUnit(rssAfter, activity.rssBytes, loggedIn)),
        unit: "B",
      },
    );
  }
  const measured: MeasuredDensity = {
    sessions,
    rssFloorBytes: rssEmpty,
    rssPerSessionBytes: rssPerSession,
    heapPerSessionBytes: heapPerSession,
    kernelSlabPerConnectionBytes: slabPerConnection,
  };
  const plan = options.plan === null ? null : planCapacity(measured, options.plan);
  if (plan !== null) figures.push(...planFigures(plan));
  const sane = loggedIn === sessions && failed === 0 && bareResult.open === sessions && unexpectedCloses === 0;
  return {
    scenario: "density",
    title: ws
      ? `density over WebSocket: ${sessions.toLocaleString("en-US")} idle logged-in WebSocket sessions vs a bare Bun.serve WebSocket floor`
      : options.transport === "noise"
        ? `density over Noise: ${sessions.toLocaleString("en-US")} idle logged-in Noise sessions vs a bare Bun.listen floor`
        : `density: ${sessions.toLocaleString("en-US")} idle logged-in sessions vs a bare Bun.listen floor`,
    figures,
    raw: {
      transport: options.transport,
      sessions,
      warmup,
      seedingMs: harness.seedingMs,
      switchboard: {
        rssEmptyBytes: rssEmpty,
        rssWarmBytes: rssWarm,
        rssAfterBytes: rssAfter,
        rssPerSessionBytes: rssPerSession,
        rssPerSessionTotalBytes: rssPerSessionTotal,
        heapUsedEmptyBytes: heapEmpty,
        heapUsedWarmBytes: heapWarm,
        heapUsedAfterBytes: heapAfter,
        heapPerSessionBytes: heapPerSession,
        kernel,
        kernelSlabBytesPerConnection: slabPerConnection,
        settled,
        readyAtEnd,
        unexpectedCloses,
        serverReadyGauge: sample(metricsAfter, 'switchboard_sessions{state="ready"}'),
        serverLogins: sumDelta(metricsBefore, metricsAfter, "switchboard_logins_total"),
        serverLoginFailures: sumDelta(metricsBefore, metricsAfter, "switchboard_login_failures_total"),
        warm,
        ramp,
      },
      bare: bareResult,
      ratio,
      activity,
      loadWorkers: split.length,
      plan,
    },
    server: { flags: server.flags, target: options.target },
    notes: [
      `Per-session figures are marginal: growth from a warm-up of ${warmup} sessions (sockets) to ${sessions}, over the ${sessions - warmup} added, after ${options.settleS} s of settling; "incl. one-time costs" divides the growth from an empty process by all ${sessions}.`,
      "RSS is the server process's VmRSS alone; the load workers run in their own processes.",
      ...(ws
        ? [
            `Transport: WebSocket (binary messages at /ws, no per-message deflate); the floor is a bare Bun.serve upgrading ${bareWebSocketPath} with empty handlers, each socket only upgraded, then idle.`,
          ]
        : []),
      "The load workers share the host's 2 cores with the server, which handles logins on one thread: logins/s is what this host reaches with both on it.",
      "Kernel figures count both ends of each loopback connection (client and server sockets are in this kernel); slab is host-wide, so other activity adds noise.",
      "JS heap is heapUsed as scraped, without a forced GC.",
      "Accept-queue overflows come from /proc/net/netstat (ListenOverflows) for the whole network namespace; Bun's listen backlog is 512.",
      ...(plan === null ? [] : planNotes(plan, measured)),
    ],
    charts: [{ name: "rss", svg }],
    sane,
  };
}

/**
 * A session that exchanged messages and went quiet should cost what an idle one does (issue: the hot path): its
 * device state is released after deviceStateIdleReleaseMs. The heap is read without a forced collection, so it
 * carries some garbage either way: this much per session is noise, not state.
 */
const activityHeapSlackBytes = 64;
const activityTimeoutMs = 60_000;

/**
 * Every load worker's first half of sessions sends one message to its second half (the full ack chain: deliver,
 * ack, delivered receipt, its ack); then everyone is quiet for deviceStateIdleReleaseMs and the settle time, and the
 * server's memory is read again.
 */
async function afterActivity(
  fleet: LoadFleet,
  server: BenchServer,
  split: readonly number[],
  settleS: number,
): Promise<{
  sent: number;
  delivered: number;
  settled: boolean;
  rssBytes: number | null;
  heapUsedBytes: number | null;
}> {
  const start = sumCounters(await fleet.report());
  await fleet.all((worker) => {
    const half = Math.floor(split[worker.index]! / 2);
    return {
      cmd: "traffic",
      pairs: Array.from({ length: half }, (_, index) => [index, half + index] as const),
      window: 1,
      payloadBytes: 20,
      messagesPerSender: 1,
    };
  }, 10_000);
  const expected = split.reduce((sum, count) => sum + Math.floor(count / 2), 0);
  const done = await waitFor(
    fleet,
    (counters) =>
      counters.delivered - start.delivered >= expected &&
      counters.receiptClientIds - start.receiptClientIds >= expected,
    activityTimeoutMs,
  );
  await fleet.all({ cmd: "stopTraffic" }, 10_000);
  await Bun.sleep(defaultLimits.deviceStateIdleReleaseMs + settleS * 1000);
  return {
    sent: done.counters.sent - start.sent,
    delivered: done.counters.delivered - start.delivered,
    settled: done.settled,
    rssBytes: await server.rssBytes(),
    heapUsedBytes: await server.heapUsedBytes(),
  };
}

function mib(bytes: number | null): string {
  return bytes === null ? "n/a" : (bytes / mebibyte).toFixed(1);
}
