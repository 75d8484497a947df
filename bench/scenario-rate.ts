// rate: latency under a steady load, open loop.
//
// Method. K sender/receiver pairs log in. For each rate R of --rates in turn, every sender sends R/K messages a
// second on a fixed schedule (staggered across senders), whatever the server answers: the full ack chain runs (the
// receiver acks each read, the sender acks its receipts), and each payload carries its scheduled send time. The
// receiver, in the same load process and so on the same clock, records delivery time minus scheduled time in a
// log-linear histogram (1 % buckets, bench/latency-histogram.ts). Because the time is the schedule's, not the
// moment the load worker got round to sending, a stall of the server (or of the load worker) counts in full for
// every message it held up: no coordinated omission. After --warmup-s at the rate, --duration-s is recorded; then
// sending stops and the chain drains before the next rate. Beside each rate: the server's CPU and the worst
// event-loop delay its own histogram saw over the recording (switchboard_event_loop_delay_seconds, a bucket bound).

import { worstBoundBetween } from "./admin-metrics.ts";
import { LatencyHistogram } from "./latency-histogram.ts";
import type { LoadFleet } from "./load-fleet.ts";
import { hostCpuCores, hostCpuTimes } from "./proc-stats.ts";
import type { ScenarioHarness } from "./scenario-harness.ts";
import type { Figure, ScenarioResult } from "./scenario-result.ts";
import { pairedFleet, snapshot, waitFor } from "./scenario-throughput.ts";
import { round } from "./stats.ts";
import type { LatencyReply } from "./worker-protocol.ts";

/** The goals (p99 at a rate); rates without one are reported only. */
const p99GoalsMs: ReadonlyMap<number, number> = new Map([
  [5_000, 2],
  [20_000, 5],
]);
/** The worst event-loop delay the issue allows during a run. */
const eventLoopDelayGoalMs = 2;
/** Once sending stops, the chain completes within milliseconds; this bounds the wait when it does not. */
const settleTimeoutMs = 20_000;
const unthrottledRate = "1000000";
const lagName = "switchboard_event_loop_delay_seconds";

export interface RateResult {
  readonly rate: number;
  readonly recordedS: number;
  readonly delivered: number;
  readonly deliveredPerSecond: number;
  readonly latencyMs: { p50: number; p99: number; p999: number; max: number; count: number };
  readonly skipped: number;
  readonly lateSends: number;
  readonly serverCpuCores: number | null;
  readonly serverCpuUsPerMessage: number | null;
  readonly loadCpuCores: number;
  readonly host: ReturnType<typeof hostCpuCores>;
  readonly worstEventLoopDelayMs: number;
  readonly settled: boolean;
}

async function collectLatency(fleet: LoadFleet): Promise<{ histogram: LatencyHistogram; replies: LatencyReply[] }> {
  const replies = (await fleet.all({ cmd: "latency" }, 10_000)) as LatencyReply[];
  const histogram = new LatencyHistogram();
  for (const reply of replies) histogram.add(reply.histogram);
  return { histogram, replies };
}

export async function runRate(harness: ScenarioHarness): Promise<ScenarioResult> {
  const { options } = harness;
  const flags: Record<string, string> = {
    "rate-stanzas-per-second": unthrottledRate,
    "rate-burst-stanzas": unthrottledRate,
    synchronous: options.synchronous,
  };
  const { server, fleet, ramp, pairs, workerCount, pairsOf } = await pairedFleet(harness, flags);

  const results: RateResult[] = [];
  for (const rate of options.rates) {
    await fleet.all(
      (worker) => ({
        cmd: "traffic",
        pairs: pairsOf(worker.index),
        window: 0,
        payloadBytes: options.payloadBytes,
        messagesPerSender: null,
        ratePerSender: rate / pairs,
      }),
      10_000,
    );
    await Bun.sleep(options.warmupS * 1000);
    await collectLatency(fleet); // drops the warm-up's samples
    const start = await snapshot(fleet, server);
    const hostBefore = hostCpuTimes();
    await Bun.sleep(options.durationS * 1000);
    const { histogram, replies } = await collectLatency(fleet);
    const end = await snapshot(fleet, server);
    const recordedS = (end.atMs - start.atMs) / 1000;
    const host = hostCpuCores(hostBefore, hostCpuTimes(), recordedS);
    await fleet.all({ cmd: "stopTraffic" }, 10_000);
    const settled = await waitFor(
      fleet,
      (counters) =>
        counters.serverAcked + counters.sendRefused >= counters.sent &&
        counters.delivered >= counters.serverAcked &&
        counters.receiptClientIds >= counters.serverAcked,
      settleTimeoutMs,
    );
    const delivered = end.counters.delivered - start.counters.delivered;
    const serverCpu =
      start.serverCpuSeconds === null || end.serverCpuSeconds === null
        ? null
        : end.serverCpuSeconds - start.serverCpuSeconds;
    results.push({
      rate,
      recordedS: round(recordedS, 2),
      delivered,
      deliveredPerSecond: Math.round(delivered / recordedS),
      latencyMs: {
        p50: round(histogram.percentile(0.5), 3),
        p99: round(histogram.percentile(0.99), 3),
        p999: round(histogram.percentile(0.999), 3),
        max: round(histogram.maxMs, 3),
        count: histogram.count,
      },
      skipped: replies.reduce((sum, reply) => sum + reply.skipped, 0),
      lateSends: replies.reduce((sum, reply) => sum + reply.lateSends, 0),
      serverCpuCores: serverCpu === null ? null : round(serverCpu / recordedS, 2),
      serverCpuUsPerMessage: serverCpu === null || delivered === 0 ? null : round((serverCpu / delivered) * 1e6, 1),
      loadCpuCores: round((end.counters.cpuSeconds - start.counters.cpuSeconds) / recordedS, 2),
      host,
      worstEventLoopDelayMs: round(worstBoundBetween(start.metrics, end.metrics, lagName) * 1000, 1),
      settled: settled.settled,
    });
  }

  const finalCounters = (await snapshot(fleet, server)).counters;
  const errorCount = Object.values(finalCounters.errorCodes).reduce((sum, count) => sum + count, 0);
  const figures: Figure[] = [{ name: "pairs", value: pairs, unit: "" }];
  for (const result of results) {
    const goal = p99GoalsMs.get(result.rate);
    const label = `${result.rate.toLocaleString("en-US")} msgs/s`;
    figures.push(
      {
        name: `${label}: delivered/s, server CPU cores, us/msg`,
        value: `${result.deliveredPerSecond} / ${result.serverCpuCores} / ${result.serverCpuUsPerMessage}`,
        unit: "",
      },
      {
        name: `${label}: latency p50 / p999 / max`,
        value: `${result.latencyMs.p50} / ${result.latencyMs.p999} / ${result.latencyMs.max}`,
        unit: "ms",
      },
      {
        name: `${label}: latency p99`,
        value: result.latencyMs.p99,
        unit: "ms",
        ...(goal === undefined ? {} : { goal: `<= ${goal}`, met: result.latencyMs.p99 <= goal, fullSize: true }),
      },
      {
        name: `${label}: worst event-loop delay (histogram bound)`,
        value: result.worstEventLoopDelayMs,
        unit: "ms",
        goal: `<= ${eventLoopDelayGoalMs}`,
        met: result.worstEventLoopDelayMs <= eventLoopDelayGoalMs,
        fullSize: true,
      },
      {
        name: `${label}: sends skipped (overload) / written late by the load worker`,
        value: `${result.skipped} / ${result.lateSends}`,
        unit: "",
      },
    );
  }
  figures.push({ name: "error frames received", value: errorCount, unit: "", goal: "0", met: errorCount === 0 });
  return {
    scenario: "rate",
    title: `rate: ${pairs} sender/receiver pairs, open loop at ${options.rates.map((rate) => rate.toLocaleString("en-US")).join(", ")} msgs/s, ${options.payloadBytes}-byte payloads`,
    figures,
    raw: {
      pairs,
      workers: workerCount,
      payloadBytes: options.payloadBytes,
      ramp,
      rates: results,
      errors: finalCounters.errorCodes,
    },
    server: { flags: server.flags, target: options.target, synchronous: options.synchronous },
    notes: [
      "Latency is delivery time at the receiver minus the send's scheduled time (open loop: a late send still counts from its schedule), recorded in 1 % log buckets; the full ack chain runs behind every message.",
      `The load generator (${workerCount} worker process${workerCount === 1 ? "" : "es"}) shares the host's 2 cores with the server; 'written late' counts sends the load worker itself wrote more than 5 ms after their schedule (its delay is in the latency too).`,
      "Event-loop delay is the server's own histogram (switchboard_event_loop_delay_seconds) between two scrapes: the bound of the highest bucket reached.",
    ],
    charts: [],
    sane:
      ramp.failed === 0 &&
      errorCount === 0 &&
      results.every((result) => result.settled && result.skipped === 0 && result.latencyMs.count > 0),
  };
}
