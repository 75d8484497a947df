// storm: how fast does a host recover when every device reconnects at once?
//
// Method. N sessions log in, then a probe pair starts (probe-pair.ts). After --baseline-s, the load workers close
// all N sockets at once; each session reconnects after a jittered exponential backoff with the SDK's parameters
// (client/index.ts defaultReconnect: first delay 250-500 ms, doubling up to 30 s; a goaway's retry-after is a
// floor) and logs in again with a fresh signed challenge. A failed attempt (refused, timed out after the SDK's
// 15 s connect timeout, closed before welcome) is retried the same way; a session counts as failed when a stop-range
// code refuses it or it is not back by --deadline-s. Reported: time from the drop until all are back, the reconnect
// rate, failures (must be 0), retries, accept-queue overflows, and the probe's round trips during the storm against
// before it.

import { defaultReconnect, type ReconnectOptions } from "../client/index.ts";
import { sumDelta } from "./admin-metrics.ts";
import { LoadFleet, sumCounters } from "./load-fleet.ts";
import { ProbePair, summarise } from "./probe-pair.ts";
import { hostCpuCores, hostCpuTimes, listenStats, listenStatsDelta } from "./proc-stats.ts";
import { ProgressBar } from "./progress-bar.ts";
import type { ScenarioHarness } from "./scenario-harness.ts";
import type { Figure, ScenarioResult } from "./scenario-result.ts";
import { round } from "./stats.ts";
import type { DropReply, ReconnectReply } from "./worker-protocol.ts";

const loginsPerSecondGoal = 15_000;
const probeRateFlags = { "rate-stanzas-per-second": "5000", "rate-burst-stanzas": "5000" };
/** The probe keeps running this long after everyone is back. */
const afterStormS = 1;

export async function runStorm(harness: ScenarioHarness): Promise<ScenarioResult> {
  const { options } = harness;
  const sessions = options.sessions;
  const backoff: ReconnectOptions = {
    ...defaultReconnect,
    ...(options.backoffInitialMs === null
      ? {}
      : { initialMs: options.backoffInitialMs, maxMs: Math.max(defaultReconnect.maxMs, options.backoffInitialMs) }),
  };
  const { server, accounts } = await harness.server(probeRateFlags, sessions + 2);
  const probe = await ProbePair.start(harness, server, accounts, sessions);
  const fleet = await harness.fleet(server, accounts, 0, LoadFleet.split(sessions, options.sessionsPerWorker));
  const ramp = await harness.ramp(fleet, server, "logging in");
  await Bun.sleep(options.settleS * 1000);

  const probeStartedAtMs = performance.timeOrigin + performance.now();
  await probe.begin((options.baselineS + options.deadlineS + afterStormS + 30) * 1000);
  await Bun.sleep(options.baselineS * 1000);
  const metricsBefore = await server.metrics();
  const listenBefore = listenStats();
  const cpuBefore = server.cpuSeconds();
  const hostBefore = hostCpuTimes();
  const loadCpuBefore = sumCounters(await fleet.report()).cpuSeconds;

  const drops = await fleet.all<DropReply>({ cmd: "drop", slots: null, abort: options.dropAbort }, 30_000);
  const droppedAtMs = Math.min(...drops.map((drop) => drop.atMs));
  const dropped = drops.reduce((sum, drop) => sum + drop.dropped, 0);
  const bar = new ProgressBar("reconnecting", dropped, options.progress);
  const progress = setInterval(() => bar.update(fleet.ready, `back, ${fleet.failed} failed`), 250);
  let replies: ReconnectReply[];
  try {
    replies = await fleet.all<ReconnectReply>(
      { cmd: "reconnect", slots: null, backoff, deadlineMs: options.deadlineS * 1000 },
      options.deadlineS * 1000 + 30_000,
    );
  } finally {
    clearInterval(progress);
  }
  const back = replies.reduce((sum, reply) => sum + reply.back, 0);
  const failed = replies.reduce((sum, reply) => sum + reply.failed, 0);
  bar.finish(back, `back, ${failed} failed`);
  const cpuAfter = server.cpuSeconds();
  const hostAfter = hostCpuTimes();
  const stormEndedAtMs = performance.timeOrigin + performance.now();
  const loadCpuAfter = sumCounters(await fleet.report()).cpuSeconds;
  const listen = listenStatsDelta(listenBefore, listenStats());
  const metricsAfter = await server.metrics();
  await Bun.sleep(afterStormS * 1000);
  const probeReply = await probe.end();

  const allBackAtMs = Math.max(...replies.map((reply) => reply.lastBackAtMs));
  const firstAttemptAtMs = Math.min(...replies.map((reply) => reply.firstAttemptAtMs).filter((at) => at > 0));
  const recoveryS = (allBackAtMs - droppedAtMs) / 1000;
  const reconnectSpanS = Math.max(0.001, (allBackAtMs - firstAttemptAtMs) / 1000);
  const reconnectRate = back / reconnectSpanS;
  const attempts = replies.reduce((sum, reply) => sum + reply.attempts, 0);
  const retried = replies.reduce((sum, reply) => sum + reply.retried, 0);
  const failures: Record<string, number> = {};
  for (const reply of replies) {
    for (const [reason, count] of Object.entries(reply.failures)) failures[reason] = (failures[reason] ?? 0) + count;
  }
  const before = summarise(
    probeReply.samples.filter(([at]) => at >= probeStartedAtMs && at < droppedAtMs),
    0,
  );
  const during = summarise(
    probeReply.samples.filter(([at]) => at >= droppedAtMs && at <= allBackAtMs),
    probeReply.lost,
  );
  const counters = sumCounters(await fleet.report());
  const serverCpu = cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore;
  const host = hostCpuCores(hostBefore, hostAfter, Math.max(0.001, (stormEndedAtMs - droppedAtMs) / 1000));

  const figures: Figure[] = [
    {
      name: "sessions dropped at once",
      value: dropped,
      unit: `of ${sessions}`,
      goal: `= ${sessions}`,
      met: dropped === sessions,
    },
    { name: "back", value: back, unit: "", goal: `= ${dropped}`, met: back === dropped },
    { name: "failures", value: failed, unit: "", goal: "0", met: failed === 0 },
    { name: "time until all are back (from the drop)", value: round(recoveryS, 2), unit: "s" },
    {
      name: "reconnect logins/s (first attempt to last)",
      value: Math.round(reconnectRate),
      unit: "/s",
      goal: `>= ${loginsPerSecondGoal.toLocaleString("en-US")}`,
      met: reconnectRate >= loginsPerSecondGoal,
      fullSize: true,
    },
    { name: "attempts / retried", value: `${attempts} / ${retried}`, unit: "" },
    { name: "accept-queue overflows (storm)", value: listen.listenOverflows, unit: "" },
    {
      name: "server CPU during the storm",
      value: serverCpu === null ? null : round(serverCpu / recoveryS, 2),
      unit: "cores",
    },
    {
      name: "load generator CPU during the storm",
      value: round((loadCpuAfter - loadCpuBefore) / recoveryS, 2),
      unit: "cores",
    },
    {
      name: "host CPU busy / stolen / idle",
      value: `${host.busyCores} / ${host.stealCores} / ${host.idleCores}`,
      unit: "cores",
    },
    {
      name: "probe p50 / p99 / max before",
      value: `${before.rttMs.p50} / ${before.rttMs.p99} / ${before.rttMs.max}`,
      unit: "ms",
    },
    {
      name: "probe p50 / p99 / max during",
      value: `${during.rttMs.p50} / ${during.rttMs.p99} / ${during.rttMs.max}`,
      unit: "ms",
    },
    { name: "probes during the storm / lost", value: `${during.rttMs.count} / ${probeReply.lost}`, unit: "" },
    { name: "initial ramp logins/s", value: ramp.loginsPerSecond, unit: "/s" },
  ];
  return {
    scenario: "storm",
    title: `storm: ${sessions.toLocaleString("en-US")} sessions drop at once (${options.dropAbort ? "RST" : "FIN"}) and reconnect (backoff ${backoff.initialMs} ms initial, x2 up to ${backoff.maxMs} ms, jitter ${backoff.jitter})`,
    figures,
    raw: {
      sessions,
      drop: options.dropAbort ? "rst" : "fin",
      backoff,
      backoffSource: "the SDK's Backoff (client/index.ts) with its defaultReconnect parameters",
      ramp,
      dropped,
      droppedAtMs,
      firstAttemptAtMs,
      allBackAtMs,
      recoveryS,
      reconnectRate,
      back,
      failed,
      attempts,
      retried,
      failures,
      listen,
      serverCpuSeconds: serverCpu,
      loadCpuSeconds: loadCpuAfter - loadCpuBefore,
      host,
      serverLogins: sumDelta(metricsBefore, metricsAfter, "switchboard_logins_total"),
      serverLoginFailures: sumDelta(metricsBefore, metricsAfter, "switchboard_login_failures_total"),
      goawayCodes: counters.goawayCodes,
      errorCodes: counters.errorCodes,
      probe: { before, during, lost: probeReply.lost, samples: probeReply.samples },
      replies,
    },
    server: { flags: server.flags, target: options.target },
    notes: [
      "The reconnect rate is bounded by the backoff's spread as well as by the server: with the SDK's defaults the first attempts come 250-500 ms after the drop.",
      "The load workers (signing) and the server (verifying) share the host's 2 cores.",
      "Accept-queue overflows come from /proc/net/netstat (ListenOverflows) for the whole network namespace; Bun's listen backlog is 512 per listener (--server-flag listeners=N adds SO_REUSEPORT listeners).",
      "The backoff is the SDK's own (Backoff and defaultReconnect from client/index.ts).",
    ],
    charts: [],
    sane: ramp.failed === 0 && dropped === sessions && back === dropped && failed === 0,
  };
}
