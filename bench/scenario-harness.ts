// What every scenario does around its measurement: start the server (seeding its accounts first) or attach to a
// --target, start load fleets, ramp sessions with a progress bar while sampling the server's memory, and stop
// everything it started, in reverse order, whatever happens.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultClientLimits } from "../client/index.ts";
import type { BenchOptions } from "./bench-options.ts";
import { type FleetOptions, LoadFleet } from "./load-fleet.ts";
import { hostCpuCores, hostCpuTimes, type ListenStats, listenStats, listenStatsDelta } from "./proc-stats.ts";
import { ProgressBar } from "./progress-bar.ts";
import { seedAccounts } from "./seed-accounts.ts";
import { type BenchServer, startBenchServer, targetServer } from "./server-process.ts";
import { distribution, round } from "./stats.ts";
import type { ConnectReply, Transport } from "./worker-protocol.ts";

const rampSampleIntervalMs = 250;

export interface ServerSample {
  /** Seconds since the ramp started. */
  readonly atS: number;
  readonly sessions: number;
  readonly rssBytes: number | null;
}

export interface RampResult {
  readonly requested: number;
  readonly ready: number;
  readonly failed: number;
  readonly elapsedMs: number;
  /** Sessions logged in per second: all of them over the time from the first connect to the last welcome. */
  readonly loginsPerSecond: number;
  /** Server CPU seconds over the ramp, per login (µs), and as a share of one core; null without a pid. */
  readonly serverCpuSeconds: number | null;
  readonly serverCpuMicrosecondsPerLogin: number | null;
  readonly serverCpuUtilisation: number | null;
  /** CPU seconds the load workers used over the ramp (they share the cores with the server). */
  readonly loadCpuSeconds: number;
  /** The host's cores busy, stolen by the hypervisor and idle over the ramp. */
  readonly host: ReturnType<typeof hostCpuCores>;
  /** The best 1-second window of the ramp. */
  readonly peakLoginsPerSecond: number;
  readonly loginMs: ReturnType<typeof distribution>;
  readonly failures: Record<string, number>;
  readonly listen: ListenStats;
  readonly samples: readonly ServerSample[];
}

export class ScenarioHarness {
  private readonly cleanups: Array<() => Promise<void>> = [];
  /** Keys and handles derive from it: the seed alone against our own fresh server; unique against a --target. */
  readonly runSeed: string;
  seedingMs: number | null = null;

  constructor(
    readonly options: BenchOptions,
    /** Where artefacts of this run go (a CPU profile directory), without extension. */
    readonly artefactBase: string,
  ) {
    this.runSeed =
      options.target === null ? String(options.seed) : `${options.seed}${Math.random().toString(36).slice(2, 7)}`;
  }

  /** Runs `cleanup` when the scenario ends (last registered, first run). */
  defer(cleanup: () => Promise<void>): void {
    this.cleanups.push(cleanup);
  }

  async close(): Promise<void> {
    while (this.cleanups.length > 0) {
      const cleanup = this.cleanups.pop()!;
      try {
        await cleanup();
      } catch (error) {
        process.stderr.write(`bench: cleanup failed: ${String(error)}\n`);
      }
    }
  }

  /**
   * The server under test with `accounts` accounts: seeded into a fresh data directory before a server of our own
   * starts (accounts returned), or none for a --target (workers then register over the protocol).
   */
  async server(
    flags: Record<string, string>,
    accounts: number,
    /** Seeding progress, and how long the server may take to be ready (dozens of workers take long on 2 cores). */
    start: { onSeeded?: (written: number) => void; startTimeoutMs?: number } = {},
  ): Promise<{ server: BenchServer; accounts: number[] | null }> {
    const { options } = this;
    if (options.target !== null) {
      return {
        server: targetServer({ target: options.target, admin: options.admin, pid: options.serverPid }),
        accounts: null,
      };
    }
    const dataDir = mkdtempSync(join(tmpdir(), `switchboard-bench-${options.scenario}-`));
    const seeded = await seedAccounts({
      dataDir,
      runSeed: this.runSeed,
      count: accounts,
      ...(start.onSeeded === undefined ? {} : { onProgress: start.onSeeded }),
    });
    this.seedingMs = seeded.elapsedMs;
    const server = await startBenchServer({
      dataDir,
      flags: { ...flags, ...options.serverFlags },
      profileDir: options.profile ? `${this.artefactBase}-profile` : null,
      removeDataDir: true,
      ...(start.startTimeoutMs === undefined ? {} : { startTimeoutMs: start.startTimeoutMs }),
    });
    this.defer(async () => {
      const stopped = await server.stop();
      if (stopped.exitCode !== 0) {
        process.stderr.write(`bench: server exited with ${stopped.exitCode}\n${server.logTail().join("\n")}\n`);
      }
    });
    return { server, accounts: [...seeded.accounts] };
  }

  /**
   * Load workers for key indexes keyFirst .. keyFirst + sessions - 1, split by --sessions-per-worker. Over
   * WebSocket they connect to the server's --ws-port (a --target is then its WebSocket host:port), path /ws.
   */
  async fleet(
    server: BenchServer,
    accounts: number[] | null,
    keyFirst: number,
    sessionsPerWorker: readonly number[],
    transport: Transport = "tcp",
  ): Promise<LoadFleet> {
    const wsPort = server.flags["ws-port"];
    const fleetOptions: FleetOptions = {
      host: server.host,
      port: transport === "ws" && wsPort !== undefined ? Number(wsPort) : server.port,
      transport,
      wsPath: server.flags["ws-path"] ?? "/ws",
      runSeed: this.runSeed,
      sessionsPerWorker,
      keyFirst,
      accounts: accounts === null ? null : accounts.slice(keyFirst),
      connectTimeoutMs: defaultClientLimits.connectTimeoutMs,
      randomSeed: this.options.seed * 7 + keyFirst,
    };
    const fleet = await LoadFleet.start(fleetOptions);
    this.defer(() => fleet.stop());
    return fleet;
  }

  /**
   * Connects and logs in every idle session of `fleet` (at most --concurrency attempts in flight per worker),
   * drawing a progress bar and sampling the server's RSS against sessions.
   */
  async ramp(
    fleet: LoadFleet,
    server: BenchServer | null,
    label: string,
    part: { slotsOf: (workerIndex: number) => number[] | null; total: number } | null = null,
    deadlineMs = 300_000,
  ): Promise<RampResult> {
    const total = part?.total ?? fleet.sessions;
    const readyBefore = fleet.ready;
    const bar = new ProgressBar(label, total, this.options.progress);
    const cpuBefore = server?.cpuSeconds() ?? null;
    const hostBefore = hostCpuTimes();
    const workerCpuBefore = (await fleet.report()).reduce((sum, report) => sum + report.cpuSeconds, 0);
    const samples: ServerSample[] = [];
    const started = performance.now();
    const listenBefore = listenStats();
    const counts: Array<readonly [number, number]> = [[0, 0]];
    const sampler = setInterval(() => {
      const atS = (performance.now() - started) / 1000;
      const sessions = fleet.ready - readyBefore;
      counts.push([atS, sessions]);
      void (server?.rssBytes() ?? Promise.resolve(null)).then((rssBytes) => {
        samples.push({ atS, sessions, rssBytes });
      });
      const rate = atS > 0 ? Math.round(sessions / atS) : 0;
      bar.update(sessions, `sessions, ${rate.toLocaleString("en-US")} logins/s, ${fleet.failed} failed`);
    }, rampSampleIntervalMs);
    let replies: ConnectReply[];
    try {
      replies = await fleet.all<ConnectReply>(
        (worker) => ({
          cmd: "connect",
          slots: part === null ? null : part.slotsOf(worker.index),
          concurrency: this.options.concurrency,
          deadlineMs,
        }),
        deadlineMs + 30_000,
      );
    } finally {
      clearInterval(sampler);
    }
    const elapsedMs = performance.now() - started;
    const cpuAfter = server?.cpuSeconds() ?? null;
    const host = hostCpuCores(hostBefore, hostCpuTimes(), elapsedMs / 1000);
    const workerCpuAfter = (await fleet.report()).reduce((sum, report) => sum + report.cpuSeconds, 0);
    const ready = replies.reduce((sum, reply) => sum + reply.ready, 0);
    const failed = replies.reduce((sum, reply) => sum + reply.failed, 0);
    const firstStart = Math.min(...replies.map((reply) => reply.startedAtMs));
    const lastReady = Math.max(...replies.map((reply) => reply.lastReadyAtMs));
    const failures: Record<string, number> = {};
    for (const reply of replies) {
      for (const [reason, count] of Object.entries(reply.failures)) failures[reason] = (failures[reason] ?? 0) + count;
    }
    const rssBytes = await (server?.rssBytes() ?? Promise.resolve(null));
    samples.push({ atS: elapsedMs / 1000, sessions: ready, rssBytes });
    bar.finish(ready, `sessions in ${(elapsedMs / 1000).toFixed(1)} s, ${failed} failed`);
    const loginSpanS = Math.max(0.001, (lastReady - firstStart) / 1000);
    const serverCpuSeconds = cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore;
    return {
      requested: replies.reduce((sum, reply) => sum + reply.requested, 0),
      ready,
      failed,
      elapsedMs: round(elapsedMs),
      loginsPerSecond: round(ready / loginSpanS, 1),
      serverCpuSeconds,
      serverCpuMicrosecondsPerLogin:
        serverCpuSeconds === null || ready === 0 ? null : round((serverCpuSeconds / ready) * 1e6, 1),
      serverCpuUtilisation: serverCpuSeconds === null ? null : round(serverCpuSeconds / (elapsedMs / 1000), 2),
      loadCpuSeconds: round(workerCpuAfter - workerCpuBefore),
      host,
      peakLoginsPerSecond: round(bestWindowRate([...counts, [elapsedMs / 1000, ready]], 1), 1),
      loginMs: distribution(replies.flatMap((reply) => reply.loginMs)),
      failures,
      listen: listenStatsDelta(listenBefore, listenStats()),
      samples: samples.sort((left, right) => left.atS - right.atS),
    };
  }
}

/** The best rate of growth over any stretch of at least `windowS` seconds between (time s, count) samples. */
export function bestWindowRate(points: ReadonlyArray<readonly [number, number]>, windowS: number): number {
  let best = 0;
  let start = 0;
  for (let end = 1; end < points.length; end++) {
    const [endS, endCount] = points[end]!;
    while (start + 1 < end && endS - points[start + 1]![0] >= windowS) start++;
    const [startS, startCount] = points[start]!;
    if (endS - startS >= windowS) best = Math.max(best, (endCount - startCount) / (endS - startS));
  }
  // A ramp shorter than the window: its overall rate.
  const first = points[0];
  const last = points[points.length - 1];
  if (best === 0 && first !== undefined && last !== undefined && last[0] > first[0]) {
    return (last[1] - first[1]) / (last[0] - first[0]);
  }
  return best;
}

/** Sleeps `seconds`, sampling `sample` every `intervalMs`; returns the samples. */
export async function settle<T>(seconds: number, intervalMs: number, sample: () => Promise<T>): Promise<T[]> {
  const samples: T[] = [];
  const until = performance.now() + seconds * 1000;
  do {
    samples.push(await sample());
    const left = until - performance.now();
    if (left <= 0) break;
    await Bun.sleep(Math.min(intervalMs, left));
  } while (performance.now() < until);
  samples.push(await sample());
  return samples;
}
