// Smoke test of the bench runner: every scenario runs through the real code path (the CLI as a child process, a
// real server process, load workers over loopback) at small sizes, and its JSON result must hold sane figures.
// This checks that the bench works, not how fast anything is.

import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OptionsError, parseBenchArguments } from "./bench-options.ts";

const cliPath = new URL("./cli.ts", import.meta.url).pathname;
const directory = mkdtempSync(join(tmpdir(), "switchboard-bench-test-"));
const scenarioTimeoutMs = 45_000;

afterAll(() => rmSync(directory, { recursive: true, force: true }));

interface Result {
  readonly scenario: string;
  readonly sane: boolean;
  readonly machine: { readonly cpus: number; readonly bunVersion: string; readonly kernel: string };
  // biome-ignore lint/suspicious/noExplicitAny: parsed JSON of every scenario's shape, checked by the expectations.
  readonly raw: Record<string, any>;
  readonly charts: readonly string[];
  readonly title: string;
  readonly figures: ReadonlyArray<{ readonly name: string; readonly value: unknown }>;
  /** What the run printed on stdout (added here, not in the file). */
  stdout: string;
  stderr: string;
}

async function runBench(scenario: string, ...flags: string[]): Promise<Result> {
  const out = join(directory, `${scenario}.json`);
  const child = Bun.spawn(
    // micro keeps its progress (a line per task on stderr), which its test checks.
    [
      process.execPath,
      cliPath,
      scenario,
      "--quick",
      ...(scenario === "micro" ? [] : ["--no-progress"]),
      "--out",
      out,
      "--seed",
      "7",
      ...flags,
    ],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  const timer = setTimeout(() => child.kill("SIGKILL"), scenarioTimeoutMs - 2_000);
  const [code, stdout, stderr] = await Promise.all([
    child.exited,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  clearTimeout(timer);
  if (code !== 0) throw new Error(`bench ${scenario} exited ${code}\n${stdout}\n${stderr}`);
  expect(stdout).toContain("| figure");
  // A --quick run judges no goal that is set for full-size runs: no NO in the table of a sane run.
  expect(stdout).not.toMatch(/\| NO +\|/);
  const result = JSON.parse(readFileSync(out, "utf8")) as Result;
  result.stdout = stdout;
  result.stderr = stderr;
  expect(result.scenario).toBe(scenario);
  expect(result.sane).toBe(true);
  expect(result.machine.cpus).toBeGreaterThan(0);
  expect(result.machine.bunVersion).toBe(Bun.version);
  return result;
}

describe("bench runner (quick sizes, real processes on loopback)", () => {
  test(
    "density: every session logs in, memory per session and the bare floor are measured, the chart is written",
    async () => {
      const result = await runBench("density", "--sessions", "300", "--settle-s", "0.5", "--plan", "1000000");
      const { switchboard, bare } = result.raw;
      expect(switchboard.ramp.ready + switchboard.warm.ready).toBe(300);
      expect(switchboard.ramp.failed + switchboard.warm.failed).toBe(0);
      expect(switchboard.unexpectedCloses).toBe(0);
      expect(switchboard.rssAfterBytes).toBeGreaterThan(switchboard.rssEmptyBytes);
      expect(bare.open).toBe(300);
      expect(Number.isFinite(result.raw.ratio)).toBe(true);
      expect(switchboard.ramp.loginsPerSecond).toBeGreaterThan(0);
      expect(result.charts).toHaveLength(1);
      const svg = readFileSync(result.charts[0]!, "utf8");
      expect(svg).toStartWith("<svg");
      // Each line says its bytes per session (per socket for the floor), and the settled points are marked.
      const perSession = Math.round(switchboard.rssPerSessionBytes).toLocaleString("en-US");
      expect(svg).toContain(`>${perSession} B/session (settled)</text>`);
      expect(svg).toContain(" B/socket (settled)</text>");
      expect(svg.match(/<circle /g)).toHaveLength(2);
      expect(svg).toContain(">settled (0.5 s)</text>");
      // --plan: memory and limits for a million sessions, from the measured figures.
      const plan = result.raw.plan;
      expect(plan.sessions).toBe(1_000_000);
      expect(plan.rssBytes).toBe(switchboard.rssEmptyBytes + Math.round(switchboard.rssPerSessionBytes * 1_000_000));
      expect(plan.descriptors).toBe(1_000_000 + 1024);
      expect(result.stdout).toContain("| plan 1,000,000: server RSS");
      expect(result.stdout).toContain("switchboard doctor --sessions 1000000");
      expect(result.stdout).toMatch(/\| ratio to bare floor .*\| (yes|quick) \|/);
    },
    scenarioTimeoutMs,
  );

  test(
    "density --transport ws: every WebSocket session logs in, the ratio to the bare WebSocket floor is measured",
    async () => {
      const result = await runBench("density", "--transport", "ws", "--sessions", "200", "--settle-s", "0.3");
      const { switchboard, bare } = result.raw;
      expect(result.raw.transport).toBe("ws");
      expect(result.title).toContain("WebSocket");
      expect(switchboard.ramp.ready + switchboard.warm.ready).toBe(200);
      expect(switchboard.ramp.failed + switchboard.warm.failed).toBe(0);
      expect(switchboard.unexpectedCloses).toBe(0);
      expect(switchboard.serverLogins).toBe(switchboard.ramp.ready);
      expect(bare.open).toBe(200);
      expect(bare.failed).toBe(0);
      // Sane: positive and finite (small sizes are noisy, so no bound on the value itself).
      expect(Number.isFinite(result.raw.ratio)).toBe(true);
      expect(result.raw.ratio).toBeGreaterThan(0);
      const ratio = result.figures.find((figure) => figure.name === "ratio to bare floor");
      expect(ratio?.value).toBeGreaterThan(0);
      expect(result.figures.some((figure) => figure.name === "server RSS per WebSocket session (settled)")).toBe(true);
    },
    scenarioTimeoutMs,
  );

  test(
    "throughput: every send is server-acked, delivered once and its receipt comes back; the offline queue drains",
    async () => {
      const result = await runBench("throughput", "--pairs", "10", "--duration-s", "1", "--messages", "2000");
      const { online, offline } = result.raw;
      expect(online.totals.sent).toBeGreaterThan(0);
      expect(online.totals.delivered).toBe(online.totals.sent);
      expect(online.totals.serverAcked).toBe(online.totals.sent);
      expect(online.totals.receiptClientIds).toBe(online.totals.sent);
      expect(online.totals.duplicates).toBe(0);
      expect(online.deliveredPerSecond).toBeGreaterThan(0);
      expect(online.serverCpuSecondsPerMillion).toBeGreaterThan(0);
      expect(offline.totals.delivered).toBe(offline.totals.messages);
      expect(offline.totals.serverAcked).toBe(offline.totals.messages);
      expect(offline.queueRowsBeforeDrain).toBeGreaterThanOrEqual(offline.totals.messages);
      expect(offline.enqueueRate).toBeGreaterThan(0);
      expect(offline.drainRate).toBeGreaterThan(0);
      expect(Object.keys(result.raw.errors)).toHaveLength(0);
    },
    scenarioTimeoutMs,
  );

  test(
    "rate: each open-loop rate is sent on schedule, every message delivered, its latency recorded",
    async () => {
      const result = await runBench(
        "rate",
        "--pairs",
        "10",
        "--rates",
        "200,1000",
        "--duration-s",
        "1",
        "--warmup-s",
        "0.3",
      );
      const rates = result.raw.rates as Array<{
        rate: number;
        delivered: number;
        recordedS: number;
        latencyMs: { p50: number; p99: number; p999: number; max: number; count: number };
        skipped: number;
        settled: boolean;
      }>;
      expect(rates.map((one) => one.rate)).toEqual([200, 1000]);
      for (const one of rates) {
        expect(one.settled).toBe(true);
        expect(one.skipped).toBe(0);
        // Open loop: what was scheduled over the window was sent and delivered (within a fifth, for timer slack).
        expect(one.delivered).toBeGreaterThan(one.rate * one.recordedS * 0.8);
        expect(one.latencyMs.count).toBeGreaterThan(one.rate * 0.8 * 0.8);
        expect(one.latencyMs.p50).toBeGreaterThan(0);
        expect(one.latencyMs.p50).toBeLessThanOrEqual(one.latencyMs.p99);
        expect(one.latencyMs.p99).toBeLessThanOrEqual(one.latencyMs.max);
      }
      expect(Object.keys(result.raw.errors)).toHaveLength(0);
    },
    scenarioTimeoutMs,
  );

  test(
    "latency: the probe measures round trips with and without the idle crowd",
    async () => {
      const result = await runBench("latency", "--sessions", "300", "--duration-s", "1", "--settle-s", "0.5");
      expect(result.raw.ramp.ready).toBe(300);
      expect(result.raw.alone.rttMs.count).toBeGreaterThan(10);
      expect(result.raw.crowd.rttMs.count).toBeGreaterThan(10);
      expect(result.raw.alone.lost + result.raw.crowd.lost).toBe(0);
      expect(result.raw.ratio).toBeGreaterThan(0);
    },
    scenarioTimeoutMs,
  );

  test(
    "storm: every dropped session comes back with backoff, none fails",
    async () => {
      const result = await runBench("storm", "--sessions", "300", "--baseline-s", "0.5", "--settle-s", "0.5");
      expect(result.raw.dropped).toBe(300);
      expect(result.raw.back).toBe(300);
      expect(result.raw.failed).toBe(0);
      expect(result.raw.recoveryS).toBeGreaterThan(0);
      expect(result.raw.serverLogins).toBeGreaterThanOrEqual(300);
      expect(result.raw.probe.before.rttMs.count).toBeGreaterThan(0);
    },
    scenarioTimeoutMs,
  );

  test(
    "million: every session logs in from its load process's own source address, the floor and kernel are measured",
    async () => {
      const result = await runBench(
        "million",
        "--sessions",
        "300",
        "--sessions-per-worker",
        "150",
        "--server-flag",
        "workers=2",
        "--settle-s",
        "0.3",
        // Long enough for a round trip or two on a busy 2-core host (a probe still in flight when it stops is cut).
        "--duration-s",
        "2",
      );
      const { switchboard, floor, sizing, perSession } = result.raw;
      expect([sizing.serverWorkers, sizing.partitions, sizing.loadWorkers]).toEqual([2, 2, 2]);
      expect(switchboard.ramp.connected).toBe(300);
      expect(switchboard.ramp.failed).toBe(0);
      expect(switchboard.ramp.stoppedBy).toBeNull();
      // Two load processes, two distinct loopback source addresses (not 127.0.0.1).
      const addresses = result.raw.sourceAddresses as string[];
      expect(new Set(addresses).size).toBe(2);
      for (const address of addresses) expect(address).toMatch(/^127\.\d+\.\d+\.1$/);
      expect(floor.ramp.connected).toBe(300);
      // The server grew with its sessions and the bare processes with their sockets; the split adds up.
      expect(switchboard.pssAfterBytes).toBeGreaterThan(switchboard.pssEmptyBytes);
      expect(floor.pssAfterBytes).toBeGreaterThan(floor.pssEmptyBytes);
      expect(perSession.baselinePerSession + perSession.marginal).toBeCloseTo(perSession.pssPerSession, 3);
      expect(perSession.floorPerSocket + perSession.sessionState).toBeCloseTo(perSession.marginal, 3);
      // Both ends of 300 connections, at least (other work on the host may add more).
      expect(switchboard.socketsAfter.tcpInUse - switchboard.socketsBefore.tcpInUse).toBeGreaterThanOrEqual(590);
      expect(result.raw.probeNone.rttMs.count).toBeGreaterThan(0);
      expect(result.raw.probeAll.rttMs.count).toBeGreaterThan(0);
      expect(result.stdout).toContain("| probe p99 ratio");
      expect(result.charts).toHaveLength(2);
      for (const chart of result.charts) expect(readFileSync(chart, "utf8")).toStartWith("<svg");
      expect(result.stderr).toContain("RLIMIT_NOFILE");
    },
    scenarioTimeoutMs,
  );

  test(
    "micro: codec, signature and store rows are all measured",
    async () => {
      const result = await runBench("micro", "--micro-time-ms", "20");
      // Fits 100 columns; progress went to stderr, one line per task (stderr is not a terminal here).
      for (const line of result.stdout.split("\n")) expect([line, [...line].length <= 100]).toEqual([line, true]);
      const progress = result.stderr.split("\n").filter((line) => line.startsWith("micro ["));
      const total = Number(progress.at(-1)?.match(/ \d+\/(\d+) done$/)?.[1]);
      expect(total).toBeGreaterThan(10);
      expect(progress).toHaveLength(total + 1);
      for (const line of progress) expect([...line].length).toBeLessThanOrEqual(100);
      expect(result.raw.codec.length).toBeGreaterThan(0);
      for (const row of result.raw.signatures) expect(row.opsPerSecond).toBeGreaterThan(0);
      for (const row of result.raw.store) expect(row.rowsPerSecond).toBeGreaterThan(0);
      expect(existsSync(join(directory, "micro.json"))).toBe(true);
    },
    scenarioTimeoutMs,
  );
});

describe("bench options (node:util parseArgs, strict)", () => {
  test("unknown options and misplaced ones are refused; --plan and --server-flag are read", () => {
    expect(() => parseBenchArguments(["density", "--sesions", "10"])).toThrow(OptionsError);
    expect(() => parseBenchArguments(["density", "--quick=yes"])).toThrow(OptionsError);
    expect(() => parseBenchArguments(["throughput", "--plan", "1000"])).toThrow("--plan: density only");
    expect(() => parseBenchArguments(["density", "--plan", "0"])).toThrow("--plan");
    const options = parseBenchArguments([
      "density",
      "--quick",
      "--plan",
      "2_000_000",
      "--server-flag",
      "listeners=2",
      "--server-flag=--log-level=warn",
    ]);
    if (options === "help") throw new Error("expected options");
    expect(options.plan).toBe(2_000_000);
    expect(options.quick).toBe(true);
    expect(options.serverFlags).toEqual({ listeners: "2", "log-level": "warn" });
    expect(parseBenchArguments(["--help"])).toBe("help");
    expect(parseBenchArguments(["-h"])).toBe("help");
  });
});
