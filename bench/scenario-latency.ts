// latency: does a crowd of idle sockets slow the active ones?
//
// Method. A probe pair (probe-pair.ts) measures message round trips for --duration-s with no other session on the
// server; then N idle sessions log in (each with a signed challenge) and, after settling, the same probe runs again
// for as long. Both runs are in the same server process, after an unrecorded warm-up run of the probe, so the ratio
// of the p99s is what the crowd costs.

import { worstBoundBetween } from "./admin-metrics.ts";
import { LoadFleet } from "./load-fleet.ts";
import { ProbePair, summarise } from "./probe-pair.ts";
import { hostCpuCores, hostCpuTimes } from "./proc-stats.ts";
import type { ScenarioHarness } from "./scenario-harness.ts";
import type { Figure, ScenarioResult } from "./scenario-result.ts";
import { round } from "./stats.ts";

const p99RatioGoal = 1.5;
/** The probe sends up to 2 x 1000/intervalMs stanzas a second per device; keep the server's rate limit out of it. */
const probeRateFlags = { "rate-stanzas-per-second": "5000", "rate-burst-stanzas": "5000" };

export async function runLatency(harness: ScenarioHarness): Promise<ScenarioResult> {
  const { options } = harness;
  const sessions = options.sessions;
  const { server, accounts } = await harness.server(probeRateFlags, sessions + 2);
  const probe = await ProbePair.start(harness, server, accounts, sessions);
  // A first run that is not recorded, so that JIT warm-up of the server and the probe does not land in "alone".
  await probe.run(Math.max(1, options.warmupS * 2));

  // Event-loop delay from the server's histogram between two scrapes (a bound on the worst delay of the phase).
  const lagName = "switchboard_event_loop_delay_seconds";
  const beforeAlone = await server.metrics();
  let hostBefore = hostCpuTimes();
  const alone = await probe.run(options.durationS);
  const hostAlone = hostCpuCores(hostBefore, hostCpuTimes(), options.durationS);
  const lagAlone = worstBoundBetween(beforeAlone, await server.metrics(), lagName);

  const fleet = await harness.fleet(server, accounts, 0, LoadFleet.split(sessions, options.sessionsPerWorker));
  const ramp = await harness.ramp(fleet, server, "idle crowd");
  await Bun.sleep(options.settleS * 1000);
  const beforeCrowd = await server.metrics();
  hostBefore = hostCpuTimes();
  const crowded = await probe.run(options.durationS);
  const hostCrowd = hostCpuCores(hostBefore, hostCpuTimes(), options.durationS);
  const metrics = await server.metrics();
  const lagCrowded = worstBoundBetween(beforeCrowd, metrics, lagName);
  const reports = await fleet.report();
  const unexpectedCloses = reports.reduce((sum, report) => sum + report.unexpectedCloses, 0);
  const rssBytes = await server.rssBytes();

  const without = summarise(alone.samples, alone.lost);
  const withCrowd = summarise(crowded.samples, crowded.lost);
  const ratio = without.rttMs.p99 > 0 ? withCrowd.rttMs.p99 / without.rttMs.p99 : null;
  const triple = (summary: typeof without) => `${summary.rttMs.p50} / ${summary.rttMs.p99} / ${summary.rttMs.max}`;
  const figures: Figure[] = [
    {
      name: "idle sessions logged in",
      value: ramp.ready,
      unit: `of ${sessions}`,
      goal: `= ${sessions}`,
      met: ramp.ready === sessions,
    },
    { name: "round trip p50 / p99 / max, alone", value: triple(without), unit: "ms" },
    { name: `round trip p50 / p99 / max, ${sessions} idle`, value: triple(withCrowd), unit: "ms" },
    {
      name: "p99 ratio (crowd / alone)",
      value: ratio === null ? null : round(ratio, 2),
      unit: "x",
      goal: `<= ${p99RatioGoal}`,
      met: ratio === null ? null : ratio <= p99RatioGoal,
      fullSize: true,
    },
    { name: "probes alone / with crowd", value: `${without.rttMs.count} / ${withCrowd.rttMs.count}`, unit: "" },
    {
      name: "probes lost (5 s timeout)",
      value: without.lost + withCrowd.lost,
      unit: "",
      goal: "0",
      met: without.lost + withCrowd.lost === 0,
    },
    {
      name: "worst event-loop delay alone / crowd (histogram bound)",
      value: `${round(lagAlone * 1000, 1)} / ${round(lagCrowded * 1000, 1)}`,
      unit: "ms",
    },
    { name: "crowd logins/s while ramping", value: ramp.loginsPerSecond, unit: "/s" },
    {
      name: "host CPU stolen alone / crowd",
      value: `${hostAlone.stealCores} / ${hostCrowd.stealCores}`,
      unit: "cores",
    },
  ];
  return {
    scenario: "latency",
    title: `latency: probe round trips alone and with ${sessions.toLocaleString("en-US")} idle sessions (one probe every ${options.intervalMs} ms, ${options.durationS} s each)`,
    figures,
    raw: {
      sessions,
      intervalMs: options.intervalMs,
      durationS: options.durationS,
      alone: without,
      crowd: withCrowd,
      ratio,
      eventLoopLagSeconds: { alone: lagAlone, crowd: lagCrowded },
      host: { alone: hostAlone, crowd: hostCrowd },
      ramp,
      unexpectedCloses,
      serverRssBytes: rssBytes,
      samples: { alone: alone.samples, crowd: crowded.samples },
    },
    server: { flags: server.flags, target: options.target },
    notes: [
      "Round trip: A sends to B, B echoes the bytes back on delivery, A receives the echo (two sends, two deliveries, with their acks and receipts).",
      "The probe runs in a worker process of its own; the idle crowd's workers do nothing while it runs. Client and server share the host's 2 cores.",
      `The server's rate limit is raised for the probe (${probeRateFlags["rate-stanzas-per-second"]}/s); idle sessions send nothing.`,
    ],
    charts: [],
    sane: ramp.ready === sessions && ramp.failed === 0 && unexpectedCloses === 0 && without.rttMs.count > 0,
  };
}
