// The standard process_* series, under the names every Prometheus client library uses, so that stock dashboards and
// alerts work: open and maximum file descriptors (this server's capacity numbers: one per session), resident and
// virtual memory, CPU seconds and start time. Read from /proc/self on Linux; elsewhere only what the process API
// gives (CPU, resident memory, start time) is written.

import { readFileSync, statSync } from "node:fs";
import { readdir } from "node:fs/promises";
import type { Metrics } from "./metrics.ts";

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ): 100 on every Linux architecture Bun runs on. */
const clockTicksPerSecond = 100;

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

/**
 * The fields of /proc/self/stat after the command name (which may hold spaces and parentheses, hence the last ")"):
 * index 0 is field 3 (state) of proc(5).
 */
function statFields(procRoot: string): string[] | null {
  const text = readText(`${procRoot}/self/stat`);
  if (text === null) return null;
  return text
    .slice(text.lastIndexOf(")") + 2)
    .trim()
    .split(" ");
}

/** The soft open-file limit from /proc/self/limits (null when unreadable; Infinity for "unlimited"). */
export function maxOpenFiles(procRoot = "/proc"): number | null {
  const text = readText(`${procRoot}/self/limits`);
  const line = text?.split("\n").find((entry) => entry.startsWith("Max open files"));
  if (line === undefined) return null;
  const soft = line.slice("Max open files".length).trim().split(/\s+/)[0];
  if (soft === "unlimited") return Number.POSITIVE_INFINITY;
  const value = Number(soft);
  return Number.isFinite(value) ? value : null;
}

/** Start time from /proc (boot time + the process's start tick), else from the runtime's time origin. */
function startTimeSeconds(procRoot: string): number {
  const fields = statFields(procRoot);
  const bootLine = readText(`${procRoot}/stat`)
    ?.split("\n")
    .find((line) => line.startsWith("btime "));
  const startTicks = Number(fields?.[22 - 3]);
  const bootSeconds = Number(bootLine?.slice("btime ".length));
  if (Number.isFinite(startTicks) && Number.isFinite(bootSeconds))
    return bootSeconds + startTicks / clockTicksPerSecond;
  return performance.timeOrigin / 1000;
}

/** Adds the process_* series to `metrics`. */
export function registerProcessMetrics(metrics: Metrics, procRoot = "/proc"): void {
  const linux = readText(`${procRoot}/self/stat`) !== null;
  const started = startTimeSeconds(procRoot);
  metrics.counter("process_cpu_seconds_total", "User and system CPU time spent, in seconds", () => {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1e6;
  });
  metrics.gauge("process_resident_memory_bytes", "Resident memory size in bytes", () => process.memoryUsage().rss);
  metrics.gauge(
    "process_start_time_seconds",
    "Start time of the process since the Unix epoch, in seconds",
    () => started,
  );
  if (!linux) return;
  metrics.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes", () => {
    const size = Number(statFields(procRoot)?.[23 - 3]);
    return Number.isFinite(size) ? size : 0;
  });
  metrics.gauge("process_max_fds", "Maximum number of open file descriptors (the soft limit)", () => {
    const max = maxOpenFiles(procRoot);
    return max === null ? 0 : max;
  });
  // Linux 6.2 and later give the number of open descriptors as the size of /proc/self/fd (counted from the kernel's
  // bitmap: microseconds, even at a million). Older kernels give 0: then the directory is listed, on the thread pool
  // (fs/promises), which costs about 1.5 ms per thousand descriptors there and the names' allocation on the loop.
  const fdPath = `${procRoot}/self/fd`;
  let openFds = 0;
  metrics.refreshBeforeRender(async () => {
    try {
      const size = statSync(fdPath).size;
      openFds = size > 0 ? size : (await readdir(fdPath)).length;
    } catch {
      openFds = 0;
    }
  });
  metrics.gauge("process_open_fds", "Number of open file descriptors", () => openFds);
}
