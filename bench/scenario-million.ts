// million: N idle, logged-in (Ed25519-signed) connections to one `switchboard start --workers W` on this host, held,
// and the bare Bun floor measured the same way.
//
// Method. The host is read first (million-host.ts): the per-process file limit fixes W (each worker under it) and the
// load processes (each under it and within one source address's ephemeral ports); the memory model says whether N
// fits in MemAvailable with 4 GiB to spare, and the run refuses, with the numbers, when it does not. The sysctls it
// needs are raised (and put back at the end). Then:
//   1. switchboard: N + 2 accounts are seeded, the server starts with W workers and W partitions; its empty PSS
//      (summed over the supervisor and workers) is read; a probe pair (a load process of its own) measures the round
//      trip of a message and its echo with no other session; the load processes (one source address each,
//      127.<run>.<i>.1) log N sessions in, in steps (stepped-ramp.ts), each step bounded by the time left and
//      stopped short when memory or time runs out; after settling, PSS, the host's slab and sockstat are read again,
//      and the probe runs again with everything connected.
//   2. the floor: W bare Bun.listen processes share one port (SO_REUSEPORT, as the workers do) and take as many plain
//      sockets as the server held sessions, from fresh load processes on fresh addresses, measured the same way.
// Per session: the server's PSS after settling over the sessions, split into the per-process baselines (its PSS
// empty), the bare floor (the floor's PSS growth per socket) and the session state (the rest).

import { type BareServerGroup, startBareServerGroup } from "./bare-server.ts";
import { LoadFleet } from "./load-fleet.ts";
import {
  formatBytes,
  type HostFacts,
  type HostTuning,
  type MillionSizing,
  meminfoBytes,
  memoryHeadroomBytes,
  memoryModel,
  memoryVerdict,
  readHostFacts,
  sizeMillion,
  tuneHost,
} from "./million-host.ts";
import { ProbePair, type ProbeSummary, summarise } from "./probe-pair.ts";
import {
  kernelSlabBytes,
  pageBytes,
  processPssBytes,
  processTreePssBytes,
  type SocketStats,
  socketStats,
} from "./proc-stats.ts";
import type { ScenarioHarness } from "./scenario-harness.ts";
import type { Figure, ScenarioResult } from "./scenario-result.ts";
import { freePort } from "./server-process.ts";
import { distribution, round } from "./stats.ts";
import { type SteppedRampResult, steppedRamp } from "./stepped-ramp.ts";
import { lineChartSvg } from "./svg-chart.ts";

const mebibyte = 1_048_576;
const gibibyte = 1_073_741_824;
/** Goals of the issue. */
const ratioGoal = 1.1;
const probeRatioGoal = 1.5;
const totalPssGoalBytes = 2 * gibibyte;
const goalSessions = 1_000_000;
/** Steps of a ramp: enough that a stop for memory or time comes early, few enough that each step's tail is short. */
const rampSteps = 20;
/**
 * Logins in flight over all load processes at once. The server's login deadline is 10 s and this host logs in a few
 * hundred a second: 53 processes x 128 (--concurrency's default) would queue every attempt past it (the 200,000 run
 * with 11 x 128 already lost 1,124 to the client's connect timeout), so each process gets its share of this instead.
 */
const loginsInFlightMax = 768;
/** A step is at least this many connections (a small run is one step: each boundary costs a round of reads). */
const stepSessionsMin = 1000;
/** The share of the time left (after the server is up) the switchboard phase may use; the floor gets the rest. */
const switchboardShareOfTime = 0.7;
/** After the ramp: quiet time before memory is read comes from --settle-s; the server start bound is this. */
const serverStartTimeoutMs = 600_000;

interface PhaseMeasure {
  readonly pssEmptyBytes: number | null;
  readonly pssAfterBytes: number | null;
  readonly slabBeforeBytes: number | null;
  readonly slabAfterBytes: number | null;
  readonly socketsBefore: SocketStats;
  readonly socketsAfter: SocketStats;
  readonly ramp: SteppedRampResult;
}

function stepsFor(connections: number): number {
  return Math.max(1, Math.min(rampSteps, Math.ceil(connections / stepSessionsMin)));
}

function perUnit(before: number | null, after: number | null, count: number): number | null {
  return before === null || after === null || count <= 0 ? null : (after - before) / count;
}

function count(value: number): string {
  return value.toLocaleString("en-US");
}

/** Refused before anything starts: the table says why, with the numbers. */
function refused(sizing: MillionSizing, facts: HostFacts, reasons: string[]): ScenarioResult {
  return {
    scenario: "million",
    title: `million: ${count(sizing.sessions)} idle logged-in sessions: refused on this host`,
    figures: [
      { name: "sessions requested", value: sizing.sessions, unit: "" },
      { name: "memory needed (estimate)", value: formatBytes(sizing.memory.peakBytes), unit: "" },
      { name: "memory that may be used", value: formatBytes(sizing.memory.budgetBytes), unit: "MemAvailable - 4 GiB" },
      { name: "largest size that fits (same model)", value: sizing.memory.sessionsThatFit, unit: "sessions" },
      { name: "server workers / load processes", value: `${sizing.serverWorkers} / ${sizing.loadWorkers}`, unit: "" },
    ],
    raw: { sizing, facts, reasons },
    server: null,
    notes: reasons,
    charts: [],
    sane: false,
  };
}

/** PSS summed over a fleet's load processes (for the memory model: they share the host with the server). */
async function fleetPssBytes(fleet: LoadFleet): Promise<number | null> {
  let total = 0;
  for (const worker of fleet.workers) {
    const pss = await processPssBytes(worker.pid);
    if (pss === null) return null;
    total += pss;
  }
  return total;
}

async function measureSettled(settleS: number, pss: () => Promise<number | null>) {
  await Bun.sleep(settleS * 1000);
  return { pss: await pss(), slab: kernelSlabBytes(), sockets: socketStats() };
}

export async function runMillion(harness: ScenarioHarness): Promise<ScenarioResult> {
  const { options } = harness;
  const runStartedMs = Date.now();
  const deadlineAtMs = runStartedMs + options.deadlineS * 1000;
  const sessions = options.sessions;
  const facts = readHostFacts(pageBytes);
  const workersFlag = options.serverFlags.workers;
  const sizing = sizeMillion(sessions, facts, {
    sessionsPerLoadWorker: options.sessionsPerWorker,
    serverWorkers: workersFlag === undefined ? null : Number(workersFlag),
  });
  const verdict = memoryVerdict(sizing, facts);
  process.stderr.write(`million: ${verdict}\n`);
  if (sizing.refusals.length > 0 || !sizing.memory.fits) {
    return refused(sizing, facts, [...sizing.refusals, ...(sizing.memory.fits ? [] : [verdict])]);
  }
  const tuning: HostTuning = tuneHost(sizing, facts);
  harness.defer(async () => tuning.restore());
  for (const change of tuning.changes) {
    process.stderr.write(`million: tuned ${change.key} ${change.from} -> ${change.to} (${change.why})\n`);
  }
  for (const line of tuning.fixed) process.stderr.write(`million: ${line}\n`);

  // ---- 1. switchboard ----------------------------------------------------------------------------------------------
  const seedStarted = performance.now();
  let seedLast = 0;
  const { server, accounts } = await harness.server(
    { workers: String(sizing.serverWorkers), partitions: String(sizing.partitions) },
    sessions + 2,
    {
      onSeeded: (written) => {
        if (options.progress && performance.now() - seedLast > 5000) {
          seedLast = performance.now();
          process.stderr.write(`million: seeded ${count(written)} of ${count(sessions + 2)} accounts\n`);
        }
      },
      startTimeoutMs: Math.min(serverStartTimeoutMs, Math.max(30_000, deadlineAtMs - Date.now())),
    },
  );
  const serverReadyMs = performance.now() - seedStarted - (harness.seedingMs ?? 0);
  process.stderr.write(
    `million: server ready with ${sizing.serverWorkers} workers in ${(serverReadyMs / 1000).toFixed(1)} s ` +
      `(seeding took ${((harness.seedingMs ?? 0) / 1000).toFixed(1)} s)\n`,
  );
  const serverPid = server.pid!;
  const serverPss = () => processTreePssBytes(serverPid);
  await Bun.sleep(2000);
  const probe = await ProbePair.start(harness, server, accounts, sessions);
  const probeNone = await probe.run(options.durationS);
  const split = LoadFleet.split(sessions, sizing.sessionsPerLoadWorker);
  const loginConcurrency = Math.max(1, Math.min(options.concurrency, Math.ceil(loginsInFlightMax / split.length)));
  const fleet = await harness.fleet(server, accounts, 0, split);
  // Each load process binds one source address: its prefix and the first generation (see load-fleet.ts).
  const sourceAddresses = fleet.workers.map((worker) => `${worker.localAddressPrefix ?? "default."}1`);
  const pssEmpty = await serverPss();
  const slabBefore = kernelSlabBytes();
  const socketsBefore = socketStats();
  const switchboardDeadline = Date.now() + (deadlineAtMs - Date.now()) * switchboardShareOfTime;
  const expectedPerConnection =
    memoryModel.kernelBytesPerConnection + memoryModel.serverBytesPerSession + memoryModel.loadBytesPerSession;
  const ramp = await steppedRamp({
    label: "logging in",
    fleet,
    kind: "connect",
    perWorker: split,
    steps: stepsFor(sessions),
    concurrency: loginConcurrency,
    deadlineAtMs: switchboardDeadline,
    headroomBytes: memoryHeadroomBytes,
    bytesPerConnection: expectedPerConnection,
    pssBytes: serverPss,
    progress: options.progress,
  });
  const settled = await measureSettled(options.settleS, serverPss);
  const loadPss = await fleetPssBytes(fleet);
  const probeAll = await probe.run(options.durationS);
  const counters = await fleet.report().catch(() => []);
  const unexpectedCloses = counters.reduce((sum, report) => sum + report.unexpectedCloses, 0);
  const switchboard: PhaseMeasure = {
    pssEmptyBytes: pssEmpty,
    pssAfterBytes: settled.pss,
    slabBeforeBytes: slabBefore,
    slabAfterBytes: settled.slab,
    socketsBefore,
    socketsAfter: settled.sockets,
    ramp,
  };
  const serverLog = server.logTail().slice(-20);
  await fleet.stop();
  await server.stop();

  // ---- 2. the bare floor, as many processes, as many sockets ----------------------------------------------------------
  let floor: PhaseMeasure | null = null;
  let floorError: string | null = null;
  const reached = ramp.connected;
  if (reached > 0 && Date.now() < deadlineAtMs - 10_000) {
    let group: BareServerGroup | null = null;
    let floorFleet: LoadFleet | null = null;
    try {
      group = await startBareServerGroup(sizing.serverWorkers, freePort());
      const floorSplit = LoadFleet.split(reached, sizing.sessionsPerLoadWorker);
      floorFleet = await LoadFleet.start({
        host: "127.0.0.1",
        port: group.port,
        runSeed: harness.runSeed,
        sessionsPerWorker: floorSplit.map(() => 0),
        keyFirst: 0,
        accounts: [],
        connectTimeoutMs: 15_000,
        randomSeed: options.seed,
      });
      await Bun.sleep(1000);
      const bare = group;
      const barePss = () => bare.pssBytes();
      const floorPssEmpty = await barePss();
      const floorSlabBefore = kernelSlabBytes();
      const floorSocketsBefore = socketStats();
      const floorRamp = await steppedRamp({
        label: "bare sockets",
        fleet: floorFleet,
        kind: "plain",
        plainTarget: { host: "127.0.0.1", port: group.port },
        perWorker: floorSplit,
        steps: stepsFor(reached),
        concurrency: options.concurrency,
        deadlineAtMs: deadlineAtMs - 5_000,
        headroomBytes: memoryHeadroomBytes,
        bytesPerConnection:
          memoryModel.kernelBytesPerConnection + memoryModel.bareBytesPerSocket + memoryModel.loadBytesPerSession,
        pssBytes: barePss,
        progress: options.progress,
      });
      const floorSettled = await measureSettled(options.settleS, barePss);
      floor = {
        pssEmptyBytes: floorPssEmpty,
        pssAfterBytes: floorSettled.pss,
        slabBeforeBytes: floorSlabBefore,
        slabAfterBytes: floorSettled.slab,
        socketsBefore: floorSocketsBefore,
        socketsAfter: floorSettled.sockets,
        ramp: floorRamp,
      };
    } catch (error) {
      floorError = String(error);
    } finally {
      await floorFleet?.stop();
      await group?.stop();
    }
  } else {
    floorError = reached === 0 ? "no session logged in" : "no time left for the floor";
  }
  return report({
    sessions,
    sizing,
    facts,
    verdict,
    tuning,
    switchboard,
    floor,
    floorError,
    probeNone: summarise(probeNone.samples, probeNone.lost),
    probeAll: summarise(probeAll.samples, probeAll.lost),
    unexpectedCloses,
    loadPss,
    sourceAddresses,
    loginConcurrency,
    serverReadyMs,
    seedingMs: harness.seedingMs,
    serverFlags: server.flags,
    serverLog,
    settleS: options.settleS,
    elapsedS: (Date.now() - runStartedMs) / 1000,
  });
}

interface ReportInput {
  readonly sessions: number;
  readonly sizing: MillionSizing;
  readonly facts: HostFacts;
  readonly verdict: string;
  readonly tuning: HostTuning;
  readonly switchboard: PhaseMeasure;
  readonly floor: PhaseMeasure | null;
  readonly floorError: string | null;
  readonly probeNone: ProbeSummary;
  readonly probeAll: ProbeSummary;
  readonly unexpectedCloses: number;
  readonly loadPss: number | null;
  readonly sourceAddresses: readonly string[];
  readonly loginConcurrency: number;
  readonly serverReadyMs: number;
  readonly seedingMs: number | null;
  readonly serverFlags: Readonly<Record<string, string>>;
  readonly serverLog: readonly string[];
  readonly settleS: number;
  readonly elapsedS: number;
}

function report(input: ReportInput): ScenarioResult {
  const { sessions, sizing, switchboard, floor } = input;
  const ramp = switchboard.ramp;
  const reached = ramp.connected;
  const floorReached = floor?.ramp.connected ?? 0;
  const pssPerSession = perUnit(0, switchboard.pssAfterBytes, reached);
  const baselinePerSession = perUnit(0, switchboard.pssEmptyBytes, reached);
  const marginal = perUnit(switchboard.pssEmptyBytes, switchboard.pssAfterBytes, reached);
  const floorPerSocket = floor === null ? null : perUnit(floor.pssEmptyBytes, floor.pssAfterBytes, floorReached);
  const sessionState = marginal === null || floorPerSocket === null ? null : marginal - floorPerSocket;
  const ratio = marginal === null || floorPerSocket === null || floorPerSocket <= 0 ? null : marginal / floorPerSocket;
  const kernelPerConnection = perUnit(switchboard.slabBeforeBytes, switchboard.slabAfterBytes, reached);
  const floorKernelPerConnection =
    floor === null ? null : perUnit(floor.slabBeforeBytes, floor.slabAfterBytes, floorReached);
  const tcpBufferBytes = switchboard.socketsAfter.tcpMemoryBytes - switchboard.socketsBefore.tcpMemoryBytes;
  const tcpSockets = switchboard.socketsAfter.tcpInUse - switchboard.socketsBefore.tcpInUse;
  const p99None = input.probeNone.rttMs.p99;
  const p99All = input.probeAll.rttMs.p99;
  const probeRatio = p99None > 0 ? p99All / p99None : null;
  const loginMs = distribution([...ramp.loginMs]);
  const bytes = (value: number | null) => (value === null ? null : round(value, 0));
  const mib = (value: number | null) => (value === null ? "n/a" : (value / mebibyte).toFixed(0));
  const full = sessions >= goalSessions;
  const sane = reached === sessions && ramp.failed === 0 && input.unexpectedCloses === 0 && floor !== null;

  const figures: Figure[] = [
    {
      name: "sessions logged in and held",
      value: reached,
      unit: `of ${count(sessions)}`,
      goal: `= ${count(sessions)}`,
      met: reached === sessions,
    },
    { name: "login failures", value: ramp.failed, unit: "", goal: "0", met: ramp.failed === 0 },
    ...(ramp.stoppedBy === null ? [] : [{ name: "ramp stopped by", value: ramp.stoppedBy, unit: "" }]),
    {
      name: "server workers / partitions / load processes (source addresses)",
      value: `${sizing.serverWorkers} / ${sizing.partitions} / ${sizing.loadWorkers}`,
      unit: "",
    },
    { name: "logins in flight per load process", value: input.loginConcurrency, unit: "" },
    { name: "time to reach the target (ramp)", value: round(ramp.elapsedMs / 1000, 1), unit: "s" },
    { name: "logins/s while ramping (first connect to last welcome)", value: ramp.perSecond, unit: "/s" },
    { name: "logins/s, best 1 s window", value: ramp.bestSecondPerSecond, unit: "/s" },
    { name: "login time p50 / p99", value: `${round(loginMs.p50, 1)} / ${round(loginMs.p99, 1)}`, unit: "ms" },
    {
      name: "server PSS empty / with the sessions (settled)",
      value: `${mib(switchboard.pssEmptyBytes)} / ${mib(switchboard.pssAfterBytes)}`,
      unit: "MiB",
    },
    {
      name: `server PSS in all for ${count(reached)} sessions`,
      value: switchboard.pssAfterBytes === null ? null : formatBytes(switchboard.pssAfterBytes),
      unit: "",
      goal: `<= 2 GiB at ${count(goalSessions)}`,
      met: !full || switchboard.pssAfterBytes === null ? null : switchboard.pssAfterBytes <= totalPssGoalBytes,
      fullSize: true,
    },
    { name: "server PSS per session, all in", value: bytes(pssPerSession), unit: "B" },
    { name: "  of which per-process baselines (empty PSS / sessions)", value: bytes(baselinePerSession), unit: "B" },
    { name: "  of which the bare Bun floor (per socket)", value: bytes(floorPerSocket), unit: "B" },
    { name: "  of which session state (growth - floor)", value: bytes(sessionState), unit: "B" },
    {
      name: "session growth / bare floor",
      value: ratio === null ? null : round(ratio, 2),
      unit: "x",
      goal: `<= ${ratioGoal}`,
      met: ratio === null ? null : ratio <= ratioGoal,
      fullSize: true,
    },
    {
      name: "bare floor: PSS empty / with the sockets",
      value: floor === null ? (input.floorError ?? "n/a") : `${mib(floor.pssEmptyBytes)} / ${mib(floor.pssAfterBytes)}`,
      unit: floor === null ? "" : `MiB (${sizing.serverWorkers} processes, ${count(floorReached)} sockets)`,
    },
    {
      name: "load processes' PSS per session (client side, for sizing)",
      value: bytes(perUnit(0, input.loadPss, reached)),
      unit: `B (${sizing.loadWorkers} processes)`,
    },
    {
      name: "kernel slab per connection (both ends)",
      value: bytes(kernelPerConnection),
      unit: "B (/proc/meminfo Slab)",
    },
    { name: "  the same, bare floor phase", value: bytes(floorKernelPerConnection), unit: "B" },
    { name: "TCP sockets in use added (sockstat)", value: tcpSockets, unit: "(2 per connection)" },
    { name: "TCP buffer memory added (sockstat mem)", value: tcpBufferBytes, unit: "B in all (idle: ~0)" },
    {
      name: "probe p99 with none / with all connected",
      value: `${round(p99None, 2)} / ${round(p99All, 2)}`,
      unit: "ms",
    },
    {
      name: "probe p99 ratio",
      value: probeRatio === null ? null : round(probeRatio, 2),
      unit: "x",
      goal: `<= ${probeRatioGoal}`,
      met: probeRatio === null ? null : probeRatio <= probeRatioGoal,
      fullSize: true,
    },
    { name: "probe lost (none / all)", value: `${input.probeNone.lost} / ${input.probeAll.lost}`, unit: "" },
    {
      name: "unexpected closes while held",
      value: input.unexpectedCloses,
      unit: "",
      goal: "0",
      met: input.unexpectedCloses === 0,
    },
    {
      name: "seeding / server start",
      value: `${round((input.seedingMs ?? 0) / 1000, 1)} / ${round(input.serverReadyMs / 1000, 1)}`,
      unit: "s",
    },
    { name: "whole run", value: round(input.elapsedS, 0), unit: "s" },
  ];

  const toPoints = (phase: PhaseMeasure, value: (point: SteppedRampResult["points"][number]) => number | null) =>
    phase.ramp.points.flatMap((point) => {
      const y = value(point);
      return y === null ? [] : [[point.connected, y / mebibyte] as const];
    });
  const slabFrom = (phase: PhaseMeasure) => (point: SteppedRampResult["points"][number]) =>
    point.slabBytes === null || phase.slabBeforeBytes === null ? null : point.slabBytes - phase.slabBeforeBytes;
  const series = [
    {
      name: `switchboard, ${sizing.serverWorkers} workers (PSS)`,
      color: "#1f77b4",
      points: toPoints(switchboard, (point) => point.pssBytes),
      ...(pssPerSession === null ? {} : { endLabel: `${count(Math.round(pssPerSession))} B/session all in` }),
    },
    {
      name: "kernel slab growth (switchboard phase)",
      color: "#2ca02c",
      points: toPoints(switchboard, slabFrom(switchboard)),
      ...(kernelPerConnection === null ? {} : { endLabel: `${count(Math.round(kernelPerConnection))} B/conn` }),
    },
  ];
  if (floor !== null) {
    series.push({
      name: `bare Bun.listen, ${sizing.serverWorkers} processes (PSS)`,
      color: "#ff7f0e",
      points: toPoints(floor, (point) => point.pssBytes),
      ...(floor.pssAfterBytes === null
        ? {}
        : { endLabel: `${count(Math.round((floor.pssAfterBytes ?? 0) / Math.max(1, floorReached)))} B/socket all in` }),
    });
  }
  const memorySvg = lineChartSvg({
    title: `million: memory against connections (${count(reached)} of ${count(sessions)})`,
    xLabel: "connections (logged-in sessions / plain sockets)",
    yLabel: "MiB",
    series,
  });
  const rampSvg = lineChartSvg({
    title: "million: sessions logged in over time",
    xLabel: "seconds since the ramp started",
    yLabel: "sessions (thousands)",
    series: [
      {
        name: `logged in (${count(Math.round(ramp.perSecond))}/s)`,
        color: "#1f77b4",
        points: ramp.counts.map(([atS, connected]) => [atS, connected / 1000] as const),
      },
      ...(floor === null
        ? []
        : [
            {
              name: `bare sockets (${count(Math.round(floor.ramp.perSecond))}/s)`,
              color: "#ff7f0e",
              points: floor.ramp.counts.map(([atS, connected]) => [atS, connected / 1000] as const),
            },
          ]),
    ],
  });

  return {
    scenario: "million",
    title: `million: ${count(sessions)} idle logged-in sessions to ${sizing.serverWorkers} workers, against a bare Bun.listen floor in as many processes`,
    figures,
    raw: {
      sessions,
      sizing,
      facts: input.facts,
      memoryEstimate: input.verdict,
      memoryModel,
      tuned: input.tuning.changes,
      fixedLimits: input.tuning.fixed,
      switchboard,
      floor,
      floorError: input.floorError,
      probeNone: input.probeNone,
      probeAll: input.probeAll,
      perSession: { pssPerSession, baselinePerSession, marginal, floorPerSocket, sessionState, ratio },
      kernelPerConnection,
      floorKernelPerConnection,
      loadPssBytes: input.loadPss,
      sourceAddresses: input.sourceAddresses,
      memAvailableAtEnd: meminfoBytes("MemAvailable"),
      serverLog: input.serverLog,
    },
    server: { flags: input.serverFlags },
    notes: [
      `Sizing: ${input.verdict}.`,
      ...input.tuning.changes.map(
        (change) => `Tuned ${change.key}: ${change.from} -> ${change.to} (${change.why}); put back at the end.`,
      ),
      ...input.tuning.fixed,
      `PSS is summed over the server's supervisor and workers (/proc/<pid>/smaps_rollup), so the shared Bun binary counts once; the floor is the same sum over ${sizing.serverWorkers} bare Bun.listen processes sharing one port. Read after ${input.settleS} s of settling.`,
      "Per session, all in = PSS with the sessions / sessions; per-process baselines = PSS of the empty server / sessions; the floor = the bare processes' PSS growth / sockets; session state = the server's growth per session - the floor.",
      "Kernel memory is the host's slab growth (/proc/meminfo Slab) over the connections: both ends of each loopback connection are in this kernel, and other work on the host adds noise.",
      "The probe is a pair of devices in a load process of their own: a message and its echo through the server, one at a time, for --duration-s, before the ramp (none connected) and after settling (all connected).",
      "Load processes, server workers and the bench share this host's 2 cores (and other work on the host): logins/s is what the host reaches with all of them on it.",
    ],
    charts: [
      { name: "memory", svg: memorySvg },
      { name: "ramp", svg: rampSvg },
    ],
    sane,
  };
}
