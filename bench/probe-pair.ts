// The latency probe: two logged-in devices in a load worker of their own (so a busy crowd worker never delays
// them). A sends a message to B; B sends the same bytes back the moment it is delivered; the round trip is from
// A's send to A's delivery of the echo: two sends, two deliveries and their acks through the server. One probe is
// in flight at a time, the next one `intervalMs` after the previous was sent.

import type { LoadFleet } from "./load-fleet.ts";
import type { ScenarioHarness } from "./scenario-harness.ts";
import type { BenchServer } from "./server-process.ts";
import { type Distribution, distribution, round } from "./stats.ts";
import type { ConnectReply, ProbeReply } from "./worker-protocol.ts";

const probeTimeoutMs = 5_000;
const probePayloadBytes = 20;

export interface ProbeSummary {
  readonly rttMs: Distribution;
  readonly lost: number;
}

export function summarise(samples: ReadonlyArray<readonly [number, number]>, lost: number): ProbeSummary {
  const rtt = distribution(samples.map(([, rttMs]) => rttMs));
  return {
    rttMs: {
      count: rtt.count,
      min: round(rtt.min),
      p50: round(rtt.p50),
      p90: round(rtt.p90),
      p99: round(rtt.p99),
      max: round(rtt.max),
      mean: round(rtt.mean),
    },
    lost,
  };
}

export class ProbePair {
  private constructor(
    private readonly fleet: LoadFleet,
    private readonly intervalMs: number,
  ) {}

  /** Starts the probe's worker with key indexes keyFirst and keyFirst + 1, and logs both devices in. */
  static async start(
    harness: ScenarioHarness,
    server: BenchServer,
    accounts: number[] | null,
    keyFirst: number,
  ): Promise<ProbePair> {
    const fleet = await harness.fleet(server, accounts, keyFirst, [2]);
    const [reply] = await fleet.all<ConnectReply>(
      { cmd: "connect", slots: null, concurrency: 2, deadlineMs: 30_000 },
      40_000,
    );
    if (reply === undefined || reply.ready !== 2)
      throw new Error(`probe pair did not log in: ${JSON.stringify(reply)}`);
    return new ProbePair(fleet, harness.options.intervalMs);
  }

  async begin(maxDurationMs: number): Promise<void> {
    await this.fleet.workers[0]!.request(
      {
        cmd: "probeStart",
        a: 0,
        b: 1,
        intervalMs: this.intervalMs,
        timeoutMs: probeTimeoutMs,
        maxDurationMs,
        payloadBytes: probePayloadBytes,
      },
      10_000,
    );
  }

  async end(): Promise<ProbeReply> {
    return this.fleet.workers[0]!.request<ProbeReply>({ cmd: "probeStop" }, 30_000);
  }

  /** Probes for `seconds` and returns the samples. */
  async run(seconds: number): Promise<ProbeReply> {
    await this.begin(seconds * 1000 + 60_000);
    await Bun.sleep(seconds * 1000);
    return this.end();
  }
}
