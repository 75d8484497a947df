// The short version of the adversarial suite (RELIABILITY.md has the long one): a few crash trials across commit
// delays, a few seconds of live fuzz, one flood kind and a slowloris check with small limits. Real server processes
// on 127.0.0.1; about 40 s in all. The assertions are the contract; a failure prints the per-trial lines.

import { describe, expect, test } from "bun:test";
import { runCrashTrials } from "./crash-trials.ts";
import { runFloods } from "./floods.ts";
import { runLiveFuzz } from "./live-fuzz.ts";

const lines: string[] = [];
const log = (line: string) => {
  lines.push(line);
  if (process.env.RELIABILITY_VERBOSE === "1") console.log(line);
};
const seed = Number(process.env.RELIABILITY_SEED ?? 20261129);

/** Every trial ran, and none lost, duplicated, reordered or reused anything (the failing trials' lines if not). */
function expectContractKept(
  summary: Awaited<ReturnType<typeof runCrashTrials>>["summary"],
  results: Awaited<ReturnType<typeof runCrashTrials>>["results"],
): void {
  if (!summary.ok) console.log(lines.filter((line) => line.startsWith("trial") || line.startsWith("  ")).join("\n"));
  expect(results.map((result) => result.error)).toEqual(results.map(() => null));
  expect(summary.acked).toBeGreaterThan(0);
  expect({
    lost: summary.lost,
    duplicates: summary.duplicates,
    order: summary.order,
    seqReused: summary.seqReused,
    unsettled: summary.unsettled,
  }).toEqual({ lost: 0, duplicates: 0, order: 0, seqReused: 0, unsettled: 0 });
}

describe("reliability (short)", () => {
  test("crash trials: SIGKILL under load loses, duplicates, reorders and reuses nothing", async () => {
    const { summary, results } = await runCrashTrials({
      trials: 4,
      seed,
      commitDelaysMs: [0, 5, 100, 1000],
      loadMs: 1000,
      settleMs: 15_000,
      log,
    });
    expectContractKept(summary, results);
  }, 60_000);

  test("crash trials with 2 workers: SIGKILL of one worker under load loses, duplicates, reorders and reuses nothing", async () => {
    const { summary, results } = await runCrashTrials({
      trials: 3,
      seed: seed + 1,
      commitDelaysMs: [0, 5, 100],
      loadMs: 1000,
      settleMs: 15_000,
      log,
      workers: 2,
    });
    expectContractKept(summary, results);
  }, 60_000);

  test("live fuzz: the server stays up, every bad session is closed, no probe message is lost", async () => {
    const { summary } = await runLiveFuzz({ seconds: 4, seed, connections: 12, closeWaitMs: 3000, log });
    if (!summary.ok) console.log(JSON.stringify(summary, null, 2));
    expect(summary.serverAlive).toBe(true);
    expect(summary.sessions).toBeGreaterThan(0);
    expect(summary.unanswered).toBe(0);
    expect(summary.badServerFrames).toBe(0);
    expect(summary.probe.acked).toBeGreaterThan(0);
    expect(summary.probe).toMatchObject({ lost: 0, duplicates: 0, order: 0, seqReused: 0, unsettled: 0 });
    expect(summary.probe.longestStallMs).toBeLessThanOrEqual(2000);
  }, 30_000);

  test("an ack flood is closed within 1 s; slowloris sessions are closed within the login and frame deadlines", async () => {
    const { summary } = await runFloods({
      kinds: ["ack"],
      rounds: 1,
      baselineMs: 1000,
      floodMs: 2000,
      slowlorisSessions: 8,
      slowlorisDripMs: 200,
      slowlorisWatchMs: 5000,
      receiptFlood: false,
      flags: { "login-timeout-ms": 1000, "frame-completion-ms": 1000, "timer-tick-ms": 50 },
      seed,
      log,
    });
    const ack = summary.kinds[0]!;
    if (!ack.allClosedWithinGoal) console.log(JSON.stringify(ack, null, 2));
    expect(ack.flooders.map((flooder) => flooder.closedAfterMs !== null && flooder.closedAfterMs <= 1000)).toEqual(
      ack.flooders.map(() => true),
    );
    const slowloris = summary.slowloris!;
    for (const result of slowloris.results) {
      expect({ stage: result.stage, closedWithinDeadline: result.closedWithinDeadline }).toEqual({
        stage: result.stage,
        closedWithinDeadline: result.sessions,
      });
    }
    expect(summary.probe).toEqual({ lost: 0, disconnects: 0 });
  }, 30_000);
});
