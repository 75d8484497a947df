// A ramp in steps, for sizes where one unbroken ramp would be unsafe: each step connects the next share of every load
// worker's sessions (logins, or plain sockets for the floor), then the memory and the clock are read before the next
// one starts. A step is bounded by the time left; between steps the ramp stops when the host's available memory would
// fall below the headroom or the time is spent, and says which. While a step runs, a sampler draws the progress bar
// and pulls the emergency brake (every load worker quits, closing its sockets) if memory falls to half the headroom.

import type { LoadFleet } from "./load-fleet.ts";
import { meminfoBytes } from "./million-host.ts";
import { kernelSlabBytes } from "./proc-stats.ts";
import { ProgressBar } from "./progress-bar.ts";
import { bestWindowRate } from "./scenario-harness.ts";
import { round } from "./stats.ts";
import type { ConnectReply, PlainReply, WorkerCommand } from "./worker-protocol.ts";

const samplerIntervalMs = 500;
/** The slowest a step may be, as a share of the time left: the rest is kept for settling, probing and stopping. */
const stepShareOfTimeLeft = 0.9;

export interface RampPoint {
  /** Seconds since the ramp started. */
  readonly atS: number;
  readonly connected: number;
  /** The measured processes' PSS (the server's, or the bare floor's), bytes. */
  readonly pssBytes: number | null;
  readonly slabBytes: number | null;
  readonly memAvailableBytes: number | null;
}

export interface SteppedRampResult {
  readonly requested: number;
  readonly connected: number;
  readonly failed: number;
  readonly elapsedMs: number;
  /** From the first connect to the last success, over all steps. */
  readonly connectSpanMs: number;
  readonly perSecond: number;
  readonly bestSecondPerSecond: number;
  /** Why the ramp ended short of `requested` (memory, time, failures), or null. */
  readonly stoppedBy: string | null;
  readonly failures: Record<string, number>;
  /** Connect-to-welcome times (logins only; a bounded sample per worker and step). */
  readonly loginMs: readonly number[];
  /** One point per step boundary. */
  readonly points: readonly RampPoint[];
  /** [seconds, connected] every sampler tick, for the rate. */
  readonly counts: ReadonlyArray<readonly [number, number]>;
}

export interface SteppedRampOptions {
  readonly label: string;
  readonly fleet: LoadFleet;
  /** "connect": log the fleet's sessions in; "plain": open plain sockets to host:port (the floor). */
  readonly kind: "connect" | "plain";
  readonly plainTarget?: { readonly host: string; readonly port: number };
  /** Sessions of each worker to bring up (its first ones). */
  readonly perWorker: readonly number[];
  readonly steps: number;
  readonly concurrency: number;
  /** Epoch ms by which the ramp must have ended. */
  readonly deadlineAtMs: number;
  /** Memory left free for everything else; and what one more connection is expected to take. */
  readonly headroomBytes: number;
  readonly bytesPerConnection: number;
  readonly pssBytes: () => Promise<number | null>;
  readonly progress: boolean;
}

function replyCount(reply: ConnectReply | PlainReply): number {
  return "ready" in reply ? reply.ready : reply.open;
}

export async function steppedRamp(options: SteppedRampOptions): Promise<SteppedRampResult> {
  const { fleet } = options;
  const requested = options.perWorker.reduce((sum, count) => sum + count, 0);
  const bar = new ProgressBar(options.label, requested, options.progress);
  const started = performance.now();
  const atS = () => (performance.now() - started) / 1000;
  const connectedNow = () => (options.kind === "connect" ? fleet.ready : fleet.plainOpen);
  const base = connectedNow();
  const points: RampPoint[] = [
    {
      atS: 0,
      connected: 0,
      pssBytes: await options.pssBytes(),
      slabBytes: kernelSlabBytes(),
      memAvailableBytes: meminfoBytes("MemAvailable"),
    },
  ];
  const counts: Array<readonly [number, number]> = [[0, 0]];
  const failures: Record<string, number> = {};
  const loginMs: number[] = [];
  const done = options.perWorker.map(() => 0);
  let connected = 0;
  let failed = 0;
  let firstStartMs = Number.POSITIVE_INFINITY;
  let lastDoneMs = 0;
  let stoppedBy: string | null = null;
  let braked = false;

  const sampler = setInterval(() => {
    const now = connectedNow() - base;
    counts.push([atS(), now]);
    const available = meminfoBytes("MemAvailable");
    const rate = atS() > 0 ? Math.round(now / atS()) : 0;
    const free = available === null ? "" : `, ${(available / 2 ** 30).toFixed(1)} GiB available`;
    bar.update(now, `${rate.toLocaleString("en-US")}/s, ${fleet.failed} failed${free}`);
    if (!braked && available !== null && available < options.headroomBytes / 2) {
      braked = true;
      stoppedBy =
        `memory: MemAvailable fell to ${(available / 2 ** 30).toFixed(2)} GiB at ${now.toLocaleString("en-US")} ` +
        "connections, half the headroom: every load worker was told to quit";
      void fleet.stop();
    }
  }, samplerIntervalMs);

  try {
    for (let step = 0; step < options.steps && stoppedBy === null; step++) {
      const shares = options.perWorker.map(
        (count, index) => Math.min(count, Math.round((count * (step + 1)) / options.steps)) - done[index]!,
      );
      const stepTotal = shares.reduce((sum, share) => sum + share, 0);
      if (stepTotal === 0) continue;
      const available = meminfoBytes("MemAvailable");
      if (available !== null && available - stepTotal * options.bytesPerConnection < options.headroomBytes) {
        stoppedBy =
          `memory: MemAvailable ${(available / 2 ** 30).toFixed(2)} GiB at ${connected.toLocaleString("en-US")} ` +
          `connections; the next ${stepTotal.toLocaleString("en-US")} need about ` +
          `${((stepTotal * options.bytesPerConnection) / 2 ** 30).toFixed(2)} GiB and ` +
          `${(options.headroomBytes / 2 ** 30).toFixed(0)} GiB must stay free`;
        break;
      }
      const timeLeftMs = options.deadlineAtMs - Date.now();
      if (timeLeftMs < 1000) {
        stoppedBy = `time: the run's bound was reached at ${connected.toLocaleString("en-US")} connections`;
        break;
      }
      const stepDeadlineMs = Math.max(1000, Math.floor(timeLeftMs * stepShareOfTimeLeft));
      const command = (index: number): WorkerCommand =>
        options.kind === "connect"
          ? {
              cmd: "connect",
              slots: Array.from({ length: shares[index]! }, (_, offset) => done[index]! + offset),
              concurrency: options.concurrency,
              deadlineMs: stepDeadlineMs,
            }
          : {
              cmd: "plain",
              host: options.plainTarget!.host,
              port: options.plainTarget!.port,
              count: shares[index]!,
              concurrency: options.concurrency,
              wsPath: null,
              deadlineMs: stepDeadlineMs,
            };
      let replies: Array<ConnectReply | PlainReply>;
      try {
        replies = await fleet.all<ConnectReply | PlainReply>(
          (worker) => command(worker.index),
          stepDeadlineMs + 30_000,
        );
      } catch (error) {
        stoppedBy = braked ? stoppedBy : `load workers: ${(error as Error).message}`;
        break;
      }
      for (const [index, reply] of replies.entries()) {
        done[index]! += shares[index]!;
        const count = replyCount(reply);
        connected += count;
        const stepFailed = reply.failed;
        failed += stepFailed;
        firstStartMs = Math.min(firstStartMs, reply.startedAtMs);
        const last = "lastReadyAtMs" in reply ? reply.lastReadyAtMs : reply.lastOpenAtMs;
        if (count > 0) lastDoneMs = Math.max(lastDoneMs, last);
        if ("failures" in reply) {
          for (const [reason, n] of Object.entries(reply.failures)) failures[reason] = (failures[reason] ?? 0) + n;
          for (const ms of reply.loginMs) if (loginMs.length < 100_000) loginMs.push(ms);
        } else if (stepFailed > 0) {
          failures.plainFailed = (failures.plainFailed ?? 0) + stepFailed;
        }
      }
      points.push({
        atS: atS(),
        connected,
        pssBytes: await options.pssBytes(),
        slabBytes: kernelSlabBytes(),
        memAvailableBytes: meminfoBytes("MemAvailable"),
      });
      if (Date.now() >= options.deadlineAtMs && done.some((count, index) => count < options.perWorker[index]!)) {
        stoppedBy = `time: the run's bound was reached at ${connected.toLocaleString("en-US")} connections`;
      }
    }
  } finally {
    clearInterval(sampler);
  }
  if (stoppedBy === null && connected < requested) {
    stoppedBy = `failures: ${(requested - connected).toLocaleString("en-US")} did not connect (${JSON.stringify(failures)})`;
  }
  const elapsedMs = performance.now() - started;
  counts.push([elapsedMs / 1000, connected]);
  bar.finish(
    connected,
    `in ${(elapsedMs / 1000).toFixed(1)} s, ${failed} failed${stoppedBy === null ? "" : `; stopped: ${stoppedBy}`}`,
  );
  const connectSpanMs =
    Number.isFinite(firstStartMs) && lastDoneMs > firstStartMs ? lastDoneMs - firstStartMs : elapsedMs;
  return {
    requested,
    connected,
    failed,
    elapsedMs: round(elapsedMs),
    connectSpanMs: round(connectSpanMs),
    perSecond: round(connected / Math.max(0.001, connectSpanMs / 1000), 1),
    bestSecondPerSecond: round(bestWindowRate(counts, 1), 1),
    stoppedBy,
    failures,
    loginMs,
    points,
    counts,
  };
}
