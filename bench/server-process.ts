// The server under test: a real `switchboard start` child process on loopback with a temporary data directory (or
// an existing server named by --target). The bench picks free ports itself and waits for the admin /readyz, so the
// server can run at --log-level warn (its server_started line is logged at info). Memory and CPU are read from
// /proc/<pid>; a --target server is measured through its admin /metrics instead (and /proc when --server-pid names
// it).

import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { type MetricSamples, sample, scrapeMetrics } from "./admin-metrics.ts";
import { trackChild } from "./child-processes.ts";
import { processCpuSeconds, processRssBytes, processTreeCpuSeconds, processTreePssBytes } from "./proc-stats.ts";

const cliPath = new URL("../server/cli.ts", import.meta.url).pathname;
const startTimeoutMs = 20_000;
const stopTimeoutMs = 20_000;
const logLinesKept = 200;

export interface BenchServer {
  readonly host: string;
  readonly port: number;
  /** host:port of the admin HTTP listener, or null when unknown (a --target without --admin). */
  readonly admin: string | null;
  /** The server's process id when it is on this host and known. */
  readonly pid: number | null;
  /** The flags it was started with (empty for a --target). */
  readonly flags: Readonly<Record<string, string>>;
  /** True when the bench started it (and so owns its data directory). */
  readonly owned: boolean;
  rssBytes(): Promise<number | null>;
  heapUsedBytes(): Promise<number | null>;
  cpuSeconds(): number | null;
  /**
   * Asks the server for a full garbage collection (the admin API's POST /admin/gc, with the token of the data
   * directory) and returns what it reads after it; null when the bench cannot ask (a --target server).
   */
  collectGarbage(): Promise<CollectedHeap | null>;
  metrics(): Promise<MetricSamples | null>;
  /** warn and error lines the server logged, and its stderr tail (for a failed run). */
  logTail(): string[];
  stop(): Promise<{ exitCode: number | null; profileDir: string | null }>;
}

/** A free TCP port on 127.0.0.1 (there is a small race between closing it and the server binding it). */
export function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/** The server's own figures right after a full collection (server/admin-api.ts). */
export interface CollectedHeap {
  readonly rssBytes: number;
  readonly heapBytes: number;
  readonly heapObjects: number;
  readonly arrayBufferBytes: number;
  readonly objectTypeCounts: Readonly<Record<string, number>>;
  readonly sessions: number;
  readonly collectMs: number;
}

const collectTimeoutMs = 30_000;

async function askCollect(admin: string, dataDir: string): Promise<CollectedHeap> {
  const token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
  const response = await fetch(`http://${admin}/admin/gc?types=1`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(collectTimeoutMs),
  });
  if (!response.ok) throw new Error(`POST /admin/gc: ${response.status} ${await response.text()}`);
  return (await response.json()) as CollectedHeap;
}

export interface StartServerOptions {
  readonly dataDir: string;
  /** Extra flags, kebab-case without dashes: { "rate-stanzas-per-second": "100000" }. */
  readonly flags: Readonly<Record<string, string>>;
  /** Write a CPU profile (markdown and .cpuprofile) of the server into this directory when it stops. */
  readonly profileDir?: string | null;
  /** Remove the data directory when the server stops. */
  readonly removeDataDir?: boolean;
  /** How long to wait for /readyz (default startTimeoutMs; dozens of workers on 2 cores take longer). */
  readonly startTimeoutMs?: number;
}

async function waitReady(admin: string, child: Subprocess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with code ${child.exitCode} before it was ready`);
    if (Date.now() > deadline) throw new Error(`server not ready after ${timeoutMs} ms`);
    try {
      const response = await fetch(`http://${admin}/readyz`, { signal: AbortSignal.timeout(1000) });
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await Bun.sleep(25);
  }
}

function keepLines(stream: ReadableStream<Uint8Array>, into: string[], keep: (line: string) => boolean): void {
  const decoder = new TextDecoder();
  let buffered = "";
  void (async () => {
    for await (const chunk of stream) {
      buffered += decoder.decode(chunk, { stream: true });
      let newline = buffered.indexOf("\n");
      while (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        newline = buffered.indexOf("\n");
        if (!keep(line)) continue;
        into.push(line);
        if (into.length > logLinesKept) into.shift();
      }
    }
  })().catch(() => {});
}

export async function startBenchServer(options: StartServerOptions): Promise<BenchServer> {
  const port = freePort();
  const adminPort = freePort();
  const flags: Record<string, string> = {
    host: "127.0.0.1",
    port: String(port),
    "data-dir": options.dataDir,
    registration: "open",
    "admin-host": "127.0.0.1",
    "admin-port": String(adminPort),
    "log-level": "warn",
    // The bench stops its servers itself: no lame duck for a load balancer to notice.
    "lame-duck-ms": "0",
    // One process unless a run asks for workers (--server-flag workers=N): the figures compare with earlier runs.
    workers: "1",
    ...options.flags,
  };
  const argv = [process.execPath];
  const profileDir = options.profileDir ?? null;
  if (profileDir !== null) argv.push("--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${profileDir}`);
  argv.push(cliPath, "start");
  for (const [name, value] of Object.entries(flags)) argv.push(`--${name}`, value);
  const child = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env } });
  trackChild(child);
  const lines: string[] = [];
  keepLines(child.stdout, lines, (line) => !line.includes('"level":"info"') && !line.includes('"level":"debug"'));
  keepLines(child.stderr, lines, () => true);
  const admin = `127.0.0.1:${adminPort}`;
  try {
    await waitReady(admin, child, options.startTimeoutMs ?? startTimeoutMs);
  } catch (error) {
    child.kill("SIGKILL");
    await child.exited;
    throw new Error(`${(error as Error).message}\n${lines.join("\n")}`);
  }
  let stopped: Promise<{ exitCode: number | null; profileDir: string | null }> | null = null;
  return {
    host: "127.0.0.1",
    port,
    admin,
    pid: child.pid,
    flags,
    owned: true,
    // With workers (--server-flag workers=N) the memory is PSS summed over the supervisor and its workers.
    rssBytes: async () =>
      flags.workers !== undefined && flags.workers !== "1"
        ? processTreePssBytes(child.pid)
        : processRssBytes(child.pid),
    heapUsedBytes: async () => {
      const samples = await scrapeMetrics(admin);
      return samples === null ? null : sample(samples, "switchboard_heap_used_bytes");
    },
    cpuSeconds: () => processTreeCpuSeconds(child.pid),
    // One process: with workers the supervisor's admin API has no such route (each worker would need asking).
    collectGarbage: async () => (flags.workers === "1" ? askCollect(admin, options.dataDir) : null),
    metrics: () => scrapeMetrics(admin),
    logTail: () => [...lines],
    stop() {
      stopped ??= (async () => {
        if (child.exitCode === null) child.kill("SIGTERM");
        const exited = await Promise.race([child.exited, Bun.sleep(stopTimeoutMs).then(() => null)]);
        if (exited === null) {
          child.kill("SIGKILL");
          await child.exited;
        }
        if (options.removeDataDir === true) rmSync(options.dataDir, { recursive: true, force: true });
        return { exitCode: child.exitCode, profileDir };
      })();
      return stopped;
    },
  };
}

/** An existing server: nothing is started or stopped; memory and CPU come from its admin metrics or /proc/<pid>. */
export function targetServer(options: { target: string; admin: string | null; pid: number | null }): BenchServer {
  const colon = options.target.lastIndexOf(":");
  const host = options.target.slice(0, colon);
  const port = Number(options.target.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port <= 0) throw new Error(`--target ${options.target}: host:port`);
  const { admin, pid } = options;
  return {
    host,
    port,
    admin,
    pid,
    flags: {},
    owned: false,
    rssBytes: async () => {
      if (pid !== null) return processRssBytes(pid);
      if (admin === null) return null;
      const samples = await scrapeMetrics(admin);
      return samples === null ? null : sample(samples, "switchboard_resident_memory_bytes");
    },
    heapUsedBytes: async () => {
      if (admin === null) return null;
      const samples = await scrapeMetrics(admin);
      return samples === null ? null : sample(samples, "switchboard_heap_used_bytes");
    },
    cpuSeconds: () => (pid === null ? null : processCpuSeconds(pid)),
    collectGarbage: async () => null,
    metrics: async () => (admin === null ? null : scrapeMetrics(admin)),
    logTail: () => [],
    stop: async () => ({ exitCode: null, profileDir: null }),
  };
}
