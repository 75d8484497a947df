// worker-start: how long `switchboard start --workers N` takes until /readyz answers 200, and where each worker's
// start went. Not a scenario of bench/cli.ts (no sessions, no load processes): `bun bench/worker-start.ts N [P]`.
//
// Method. A temporary data directory on loopback; the server starts twice on it: "fresh" (every file is created and
// migrated) and "restart" (the files exist, as after any earlier start, or after the bench's seeding and the
// supervisor's move into partitions). For each: the wall time from spawn until the supervisor's /readyz answers 200;
// the CPU (user + system, /proc/<pid>/stat) every worker and the supervisor had spent by then, which load from other
// work on the host disturbs far less than the wall time does; and each worker's server_started `startMs` steps
// (server/start-marks.ts) as p50 / max over the workers. Then SIGTERM, and the time until the supervisor exits.
// Prints one JSON line per start.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./server-process.ts";

const cliPath = new URL("../server/cli.ts", import.meta.url).pathname;
/** Bound of one start (56 workers on a loaded 2-core host took up to 155 s). */
const readyTimeoutMs = 600_000;
const stopTimeoutMs = 60_000;
/** Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on Linux). */
const ticksPerSecond = 100;

function cpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond;
  } catch {
    return 0;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function spread(values: number[]): { p50: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: sorted[Math.floor(sorted.length / 2)] ?? 0, max: sorted.at(-1) ?? 0 };
}

async function startOnce(workers: number, dataDir: string, partitions: string | undefined, phase: string) {
  const adminPort = freePort();
  const argv = [process.execPath, cliPath, "start", "--host", "127.0.0.1", "--port", String(freePort())];
  argv.push("--data-dir", dataDir, "--admin-host", "127.0.0.1", "--admin-port", String(adminPort));
  argv.push("--workers", String(workers), "--lame-duck-ms", "0", "--log-level", "info");
  if (partitions !== undefined) argv.push("--partitions", partitions);
  const started = performance.now();
  const child = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
  const starts: Array<Record<string, number>> = [];
  const reading = (async () => {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of child.stdout) {
      buffered += decoder.decode(chunk, { stream: true });
      for (let newline = buffered.indexOf("\n"); newline >= 0; newline = buffered.indexOf("\n")) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.includes('"server_started"')) starts.push(JSON.parse(line).startMs ?? {});
      }
    }
  })();
  let readyMs: number | null = null;
  const deadline = Date.now() + readyTimeoutMs;
  while (readyMs === null && child.exitCode === null && Date.now() < deadline) {
    try {
      const response = await fetch(`http://127.0.0.1:${adminPort}/readyz`, { signal: AbortSignal.timeout(1000) });
      if (response.ok) readyMs = Math.round(performance.now() - started);
    } catch {
      // Not listening yet.
    }
    if (readyMs === null) await Bun.sleep(50);
  }
  const workerCpu = childrenOf(child.pid).map(cpuMs);
  const supervisorCpuMs = cpuMs(child.pid);
  await Bun.sleep(300); // the last server_started lines
  const steps: Record<string, { p50: number; max: number }> = {};
  for (const step of new Set(starts.flatMap((marks) => Object.keys(marks)))) {
    steps[step] = spread(starts.map((marks) => marks[step] ?? 0));
  }
  child.kill("SIGTERM");
  const stopping = performance.now();
  await Promise.race([child.exited, Bun.sleep(stopTimeoutMs)]);
  if (child.exitCode === null) child.kill("SIGKILL");
  await reading.catch(() => {});
  return {
    phase,
    workers,
    readyMs,
    workerCpuMsMean: Math.round(workerCpu.reduce((sum, value) => sum + value, 0) / Math.max(1, workerCpu.length)),
    workerCpuMsSum: Math.round(workerCpu.reduce((sum, value) => sum + value, 0)),
    supervisorCpuMs,
    workersStarted: starts.length,
    startMs: steps,
    stopMs: Math.round(performance.now() - stopping),
    exitCode: child.exitCode,
    loadAverage: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "),
  };
}

if (import.meta.main) {
  const workers = Number(process.argv[2]);
  const partitions = process.argv[3];
  if (!Number.isInteger(workers) || workers < 1) {
    process.stderr.write("usage: bun bench/worker-start.ts WORKERS [PARTITIONS]\n");
    process.exit(2);
  }
  const dataDir = mkdtempSync(join(tmpdir(), "switchboard-worker-start-"));
  try {
    for (const phase of ["fresh", "restart"]) {
      console.log(JSON.stringify(await startOnce(workers, dataDir, partitions, phase)));
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}
