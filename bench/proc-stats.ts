// What the kernel says about a process and about the host's sockets, read from /proc (Linux only). The bench reads
// these from outside the server so that measuring costs the server nothing and needs no server code.

import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ); 100 on every mainstream Linux. */
export const clockTicksPerSecond = readConfigValue("CLK_TCK", 100);
export const pageBytes = readConfigValue("PAGESIZE", 4096);

function readConfigValue(name: string, fallback: number): number {
  try {
    const result = spawnSync("getconf", [name], { encoding: "utf8", timeout: 2000 });
    const value = Number(result.stdout.trim());
    return Number.isInteger(value) && value > 0 ? value : fallback;
  } catch {
    return fallback;
  }
}

/** Resident set size of a process in bytes (VmRSS), or null when the process is gone. */
export function processRssBytes(pid: number): number | null {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  return match === null ? null : Number(match[1]) * 1024;
}

/** User + system CPU seconds a process has used so far, or null when the process is gone. */
export function processCpuSeconds(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 (utime) and 15 (stime) of the whole line are 12 and 13 after the name.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return (utime + stime) / clockTicksPerSecond;
}

/** Proportional set size of a process in bytes (shared pages split among their users), or null when it is gone. */
export async function processPssBytes(pid: number): Promise<number | null> {
  try {
    const text = await Bun.file(`/proc/${pid}/smaps_rollup`).text();
    const match = /^Pss:\s+(\d+)\s+kB$/m.exec(text);
    return match === null ? null : Number(match[1]) * 1024;
  } catch {
    return null;
  }
}

/** `pid` and its direct children (a supervisor and its workers), from /proc. */
export function processWithChildren(pid: number): number[] {
  const pids = [pid];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // Field 4 (ppid) is the second after the command name's closing parenthesis.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) pids.push(Number(name));
    } catch {
      // Gone while we looked.
    }
  }
  return pids;
}

/** CPU seconds of a process and its children (workers): the sum; null when the process is gone. */
export function processTreeCpuSeconds(pid: number): number | null {
  const own = processCpuSeconds(pid);
  if (own === null) return null;
  let total = own;
  for (const child of processWithChildren(pid).slice(1)) total += processCpuSeconds(child) ?? 0;
  return total;
}

/** PSS summed over a process and its children (RSS would count the shared Bun binary once per process). */
export async function processTreePssBytes(pid: number): Promise<number | null> {
  const own = await processPssBytes(pid);
  if (own === null) return null;
  let total = own;
  for (const child of processWithChildren(pid).slice(1)) total += (await processPssBytes(child)) ?? 0;
  return total;
}

export interface SocketStats {
  /** TCP sockets in use (both ends of a loopback connection count). */
  readonly tcpInUse: number;
  /** TCP sockets allocated, including those in TIME_WAIT and orphans. */
  readonly tcpAllocated: number;
  readonly tcpTimeWait: number;
  /** Kernel memory charged to TCP socket buffers, in bytes (the sockstat `mem` pages times the page size). */
  readonly tcpMemoryBytes: number;
  /** Sockets of every kind in use. */
  readonly socketsUsed: number;
}

/** /proc/net/sockstat of this network namespace. */
export function socketStats(): SocketStats {
  const text = readFileSync("/proc/net/sockstat", "utf8");
  const field = (line: string, name: string): number => {
    const match = new RegExp(`^${line}:.*\\b${name} (\\d+)`, "m").exec(text);
    return match === null ? 0 : Number(match[1]);
  };
  return {
    tcpInUse: field("TCP", "inuse"),
    tcpAllocated: field("TCP", "alloc"),
    tcpTimeWait: field("TCP", "tw"),
    tcpMemoryBytes: field("TCP", "mem") * pageBytes,
    socketsUsed: field("sockets", "used"),
  };
}

export interface ListenStats {
  /** Connections dropped because a listener's accept queue was full (TcpExt ListenOverflows). */
  readonly listenOverflows: number;
  /** SYNs dropped on a listening socket for any reason, overflows included (TcpExt ListenDrops). */
  readonly listenDrops: number;
  /** SYN cookies sent: the SYN queue overflowed (TcpExt SyncookiesSent). */
  readonly syncookiesSent: number;
}

/** Counters of /proc/net/netstat for this network namespace (host-wide within it, not per listener). */
export function listenStats(): ListenStats {
  const lines = readFileSync("/proc/net/netstat", "utf8").split("\n");
  const values = new Map<string, number>();
  for (let index = 0; index + 1 < lines.length; index += 2) {
    const names = lines[index]!.split(" ");
    const numbers = lines[index + 1]!.split(" ");
    if (names[0] !== "TcpExt:") continue;
    for (let column = 1; column < names.length; column++) values.set(names[column]!, Number(numbers[column]));
  }
  return {
    listenOverflows: values.get("ListenOverflows") ?? 0,
    listenDrops: values.get("ListenDrops") ?? 0,
    syncookiesSent: values.get("SyncookiesSent") ?? 0,
  };
}

export function listenStatsDelta(before: ListenStats, after: ListenStats): ListenStats {
  return {
    listenOverflows: after.listenOverflows - before.listenOverflows,
    listenDrops: after.listenDrops - before.listenDrops,
    syncookiesSent: after.syncookiesSent - before.syncookiesSent,
  };
}

/** Kernel slab memory of the host in bytes (/proc/meminfo Slab): socket structures live there, not in sockstat. */
export function kernelSlabBytes(): number | null {
  try {
    const match = /^Slab:\s+(\d+) kB$/m.exec(readFileSync("/proc/meminfo", "utf8"));
    return match === null ? null : Number(match[1]) * 1024;
  } catch {
    return null;
  }
}

export interface HostCpuTimes {
  /** Seconds of all CPUs together since boot: running anything, stolen by the hypervisor, idle (incl. iowait). */
  readonly busySeconds: number;
  readonly stealSeconds: number;
  readonly idleSeconds: number;
}

/** The host's CPU times (/proc/stat, first line). On a VM, steal is time the hypervisor gave to someone else. */
export function hostCpuTimes(): HostCpuTimes {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!;
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  const seconds = (ticks: number | undefined) => (ticks ?? 0) / clockTicksPerSecond;
  return {
    busySeconds: seconds((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0)),
    stealSeconds: seconds(steal),
    idleSeconds: seconds((idle ?? 0) + (iowait ?? 0)),
  };
}

/** Average cores busy, stolen and idle between two readings taken `elapsedS` apart. */
export function hostCpuCores(before: HostCpuTimes, after: HostCpuTimes, elapsedS: number) {
  const cores = (value: number) => Math.round((value / Math.max(elapsedS, 0.001)) * 100) / 100;
  return {
    busyCores: cores(after.busySeconds - before.busySeconds),
    stealCores: cores(after.stealSeconds - before.stealSeconds),
    idleCores: cores(after.idleSeconds - before.idleSeconds),
  };
}
