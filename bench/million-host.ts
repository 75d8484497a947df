// The host side of the million scenario: what this host allows (per-process file limit, the system's file table,
// ephemeral ports, TCP memory, conntrack, memory), how many server workers and load processes that makes, whether
// the size fits in memory (with the numbers when it does not), and the sysctls the run raises (each one said, and
// put back when the run ends).

import { readFileSync, writeFileSync } from "node:fs";
import { parseNofile } from "../server/doctor.ts";

const mebibyte = 1_048_576;
const gibibyte = 1_073_741_824;

/**
 * Memory the run leaves to everything else on the host (other work shares it): a size whose estimate would take
 * MemAvailable below this is refused, and a ramp stops when MemAvailable falls below it.
 */
export const memoryHeadroomBytes = 4 * gibibyte;
/** Descriptors a server worker keeps for itself: the mesh to every other worker, SQLite files, listeners, stdio. */
export const serverWorkerDescriptorReserve = 2_000;
/** Descriptors a load process keeps beyond its sockets: stdio, Bun's own, the probe's. */
export const loadWorkerDescriptorReserve = 1_000;
/**
 * A load process binds one source address and takes each connection's port from the ephemeral range of that address;
 * the kernel's search for a free port slows as the range fills, so a process uses at most this share of it.
 */
export const portRangeShareMax = 0.8;

/**
 * What one connection, one session and one process cost, for the estimate before a run (measured on this host, 2
 * cores and 24 GiB, by this scenario at 200,000 sessions; BENCHMARKS.md, million). The run measures them again.
 */
export const memoryModel = {
  /** Kernel memory of a loopback connection, both ends (socket, TCP and file structures in the slab): 9,892 B. */
  kernelBytesPerConnection: 9_900,
  /** Server PSS growth per idle logged-in session with a dozen workers: 2,697 B (the session and its owner's proxy). */
  serverBytesPerSession: 3_000,
  /** PSS of an empty server, per process (supervisor and 12 workers: 367 MiB). */
  serverBytesPerProcess: 30 * mebibyte,
  /**
   * A load process: per session it holds (socket, slot, key) and empty. Measured as one sum, 3,554 B per session all
   * in over 11 processes holding 139,070 sessions (494 MB); this split of it errs high (538 MB there).
   */
  loadBytesPerSession: 1_800,
  loadBytesPerProcess: 25 * mebibyte,
  /** The bare floor's processes: per socket (481 B) and empty (72 MiB for 12). */
  bareBytesPerSocket: 500,
  bareBytesPerProcess: 6 * mebibyte,
} as const;

export interface HostFacts {
  readonly memTotalBytes: number;
  readonly memAvailableBytes: number;
  readonly nofileSoft: number;
  readonly nofileHard: number;
  /** fs.file-max, and the files open host-wide now (fs.file-nr's first field). */
  readonly fileMax: number;
  readonly filesOpen: number;
  readonly nrOpen: number;
  readonly portRange: readonly [number, number];
  /** net.ipv4.tcp_mem in pages: min, pressure, max. */
  readonly tcpMemPages: readonly [number, number, number];
  readonly somaxconn: number;
  /** nf_conntrack_max, or null when connection tracking is not loaded. */
  readonly conntrackMax: number | null;
  readonly pageBytes: number;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

function integers(path: string): number[] {
  return (readText(path) ?? "").trim().split(/\s+/).map(Number).filter(Number.isFinite);
}

/** Where sysctls are read and written; tests point HostTuning at a directory of their own. */
export const procSysRoot = "/proc/sys";

function sysctlPath(key: string, root = procSysRoot): string {
  return `${root}/${key.replaceAll(".", "/")}`;
}

/** Bytes of a /proc/meminfo field ("MemAvailable"), or null. */
export function meminfoBytes(field: string): number | null {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(readText("/proc/meminfo") ?? "");
  return match === null ? null : Number(match[1]) * 1024;
}

export function readHostFacts(pageBytes: number): HostFacts {
  const nofile = parseNofile(readText("/proc/self/limits") ?? undefined) ?? { soft: 1024, hard: 1024 };
  const tcpMem = integers(sysctlPath("net.ipv4.tcp_mem"));
  const range = integers(sysctlPath("net.ipv4.ip_local_port_range"));
  const conntrack = readText(sysctlPath("net.netfilter.nf_conntrack_max"));
  return {
    memTotalBytes: meminfoBytes("MemTotal") ?? 0,
    memAvailableBytes: meminfoBytes("MemAvailable") ?? 0,
    nofileSoft: nofile.soft,
    nofileHard: nofile.hard,
    fileMax: integers(sysctlPath("fs.file-max"))[0] ?? 0,
    filesOpen: integers("/proc/sys/fs/file-nr")[0] ?? 0,
    nrOpen: integers(sysctlPath("fs.nr_open"))[0] ?? 0,
    portRange: [range[0] ?? 32768, range[1] ?? 60999],
    tcpMemPages: [tcpMem[0] ?? 0, tcpMem[1] ?? 0, tcpMem[2] ?? 0],
    somaxconn: integers(sysctlPath("net.core.somaxconn"))[0] ?? 0,
    conntrackMax: conntrack === null ? null : Number(conntrack.trim()),
    pageBytes,
  };
}

export interface MemoryEstimate {
  /** The switchboard phase (server, load, kernel) and the floor phase (bare servers, load, kernel): the larger one. */
  readonly switchboardBytes: number;
  readonly floorBytes: number;
  readonly peakBytes: number;
  /** MemAvailable minus the headroom. */
  readonly budgetBytes: number;
  readonly fits: boolean;
  /** The largest size that would fit, by the same model. */
  readonly sessionsThatFit: number;
}

export interface MillionSizing {
  readonly sessions: number;
  /** Server workers (`start --workers`), each under the per-process file limit, and partitions (>= workers). */
  readonly serverWorkers: number;
  readonly partitions: number;
  readonly sessionsPerServerWorker: number;
  /** Load processes, one source address each, and the most sessions one holds. */
  readonly loadWorkers: number;
  readonly sessionsPerLoadWorker: number;
  readonly memory: MemoryEstimate;
  /** Why a size cannot run here at all (besides memory): empty when it can. */
  readonly refusals: readonly string[];
}

function processCounts(sessions: number, facts: HostFacts, options: SizingOptions) {
  const perServerWorker = Math.max(1, facts.nofileHard - serverWorkerDescriptorReserve);
  const serverWorkers = options.serverWorkers ?? Math.max(1, Math.ceil(sessions / perServerWorker));
  const ports = facts.portRange[1] - facts.portRange[0] + 1;
  const perLoadWorkerMax = Math.max(
    1,
    Math.min(facts.nofileHard - loadWorkerDescriptorReserve, Math.floor(ports * portRangeShareMax)),
  );
  const sessionsPerLoadWorker = Math.max(
    1,
    Math.min(options.sessionsPerLoadWorker ?? perLoadWorkerMax, perLoadWorkerMax),
  );
  const loadWorkers = Math.max(1, Math.ceil(sessions / sessionsPerLoadWorker));
  return { perServerWorker, serverWorkers, sessionsPerLoadWorker, loadWorkers };
}

function peakBytes(sessions: number, serverWorkers: number, loadWorkers: number) {
  const model = memoryModel;
  const load = loadWorkers * model.loadBytesPerProcess + sessions * model.loadBytesPerSession;
  const kernel = sessions * model.kernelBytesPerConnection;
  const switchboardBytes =
    serverWorkers * model.serverBytesPerProcess + sessions * model.serverBytesPerSession + load + kernel;
  const floorBytes = serverWorkers * model.bareBytesPerProcess + sessions * model.bareBytesPerSocket + load + kernel;
  return { switchboardBytes, floorBytes, peakBytes: Math.max(switchboardBytes, floorBytes) };
}

function estimate(sessions: number, facts: HostFacts, options: SizingOptions): MemoryEstimate {
  const budgetBytes = facts.memAvailableBytes - memoryHeadroomBytes;
  const at = (size: number) => {
    const counts = processCounts(size, facts, options);
    return peakBytes(size, counts.serverWorkers, counts.loadWorkers).peakBytes;
  };
  // The largest size that fits: the estimate grows with the size (and its process counts), so bisect.
  let low = 0;
  let high = Math.max(1, sessions) * 4;
  while (low < high) {
    const middle = Math.ceil((low + high) / 2);
    if (at(middle) <= budgetBytes) low = middle;
    else high = middle - 1;
  }
  const counts = processCounts(sessions, facts, options);
  const peak = peakBytes(sessions, counts.serverWorkers, counts.loadWorkers);
  return { ...peak, budgetBytes, fits: peak.peakBytes <= budgetBytes, sessionsThatFit: low };
}

export interface SizingOptions {
  readonly sessionsPerLoadWorker?: number | null;
  readonly serverWorkers?: number | null;
}

/**
 * Server workers so that each stays under the per-process file limit (the kernel spreads connections over the
 * workers' SO_REUSEPORT listeners by a hash, so a worker gets its share give or take a few hundred); load processes
 * under the same limit and within one source address's ports.
 */
export function sizeMillion(sessions: number, facts: HostFacts, options: SizingOptions = {}): MillionSizing {
  const refusals: string[] = [];
  const counts = processCounts(sessions, facts, options);
  if (facts.nofileHard <= serverWorkerDescriptorReserve) {
    refusals.push(`the per-process file limit (${facts.nofileHard}) leaves no room for sockets`);
  }
  const sessionsPerServerWorker = Math.ceil(sessions / counts.serverWorkers);
  if (sessionsPerServerWorker > counts.perServerWorker) {
    refusals.push(
      `${counts.serverWorkers} server workers would hold ${sessionsPerServerWorker} sessions each, over the ` +
        `${counts.perServerWorker} the file limit of ${facts.nofileHard} leaves`,
    );
  }
  return {
    sessions,
    serverWorkers: counts.serverWorkers,
    partitions: counts.serverWorkers,
    sessionsPerServerWorker,
    loadWorkers: counts.loadWorkers,
    sessionsPerLoadWorker: counts.sessionsPerLoadWorker,
    memory: estimate(sessions, facts, options),
    refusals,
  };
}

export function formatBytes(bytes: number): string {
  return bytes >= gibibyte ? `${(bytes / gibibyte).toFixed(2)} GiB` : `${(bytes / mebibyte).toFixed(0)} MiB`;
}

/** The memory check as one sentence with its numbers. */
export function memoryVerdict(sizing: MillionSizing, facts: HostFacts): string {
  const m = sizing.memory;
  const model = memoryModel;
  return (
    `${sizing.sessions.toLocaleString("en-US")} connections need about ${formatBytes(m.peakBytes)} ` +
    `(kernel ${model.kernelBytesPerConnection} B per connection, server ${model.serverBytesPerSession} B per session ` +
    `+ ${sizing.serverWorkers} x ${formatBytes(model.serverBytesPerProcess)}, load ${model.loadBytesPerSession} B per ` +
    `session + ${sizing.loadWorkers} x ${formatBytes(model.loadBytesPerProcess)}); MemAvailable is ` +
    `${formatBytes(facts.memAvailableBytes)} and ${formatBytes(memoryHeadroomBytes)} stays free for the rest of the ` +
    `host, so ${formatBytes(m.budgetBytes)} may be used: ${m.fits ? "fits" : `does not fit; about ${m.sessionsThatFit.toLocaleString("en-US")} would`}`
  );
}

export interface SysctlChange {
  readonly key: string;
  readonly from: string;
  readonly to: string;
  readonly why: string;
}

/** Sysctls raised for the run, each recorded, and put back by restore(). */
export class HostTuning {
  readonly changes: SysctlChange[] = [];
  /** Limits the run needs but cannot change here (said in the report). */
  readonly fixed: string[] = [];

  constructor(private readonly root = procSysRoot) {}

  /** Sets `key` to `value` when `enough(current)` is false; returns whether it holds afterwards. */
  ensure(key: string, enough: (current: number[]) => boolean, value: string, why: string): boolean {
    const path = sysctlPath(key, this.root);
    const text = readText(path);
    if (text === null) return true;
    const current = text.trim().split(/\s+/).map(Number);
    if (enough(current)) return true;
    try {
      writeFileSync(path, `${value}\n`);
    } catch (error) {
      this.fixed.push(`${key} is ${text.trim()} and could not be raised to ${value}: ${(error as Error).message}`);
      return false;
    }
    this.changes.push({ key, from: text.trim().replace(/\s+/g, " "), to: value, why });
    return true;
  }

  /** Puts every changed sysctl back, last change first. */
  restore(): void {
    for (const change of [...this.changes].reverse()) {
      try {
        writeFileSync(sysctlPath(change.key, this.root), `${change.from}\n`);
      } catch {
        // Best effort: the report lists what was changed.
      }
    }
  }
}

/** Raises what `sizing` needs on this host; the per-process file limit cannot be raised from inside, only read. */
export function tuneHost(sizing: MillionSizing, facts: HostFacts, root = procSysRoot): HostTuning {
  const tuning = new HostTuning(root);
  const sessions = sizing.sessions;
  const processes = sizing.serverWorkers + sizing.loadWorkers;
  // Both ends of every connection are files of this host, plus every process's own files and what is open already.
  const files = facts.filesOpen + 2 * sessions + processes * serverWorkerDescriptorReserve;
  tuning.ensure(
    "fs.file-max",
    ([current]) => (current ?? 0) >= files,
    String(Math.ceil((files * 1.25) / mebibyte) * mebibyte),
    `both ends of ${sessions.toLocaleString("en-US")} connections are open files of this host`,
  );
  const ports = Math.ceil(sizing.sessionsPerLoadWorker / portRangeShareMax);
  tuning.ensure(
    "net.ipv4.ip_local_port_range",
    ([low, high]) => (high ?? 0) - (low ?? 0) + 1 >= ports,
    "10000 65000",
    `each load process binds one source address and takes ${sizing.sessionsPerLoadWorker.toLocaleString("en-US")} of its ports`,
  );
  tuning.ensure(
    "net.core.somaxconn",
    ([current]) => (current ?? 0) >= 4096,
    "4096",
    "accept queues for the ramp (Bun asks for 512 per listener; below that each queue is cut short)",
  );
  // Idle connections hold no buffer pages; the ramp's handshakes and logins queue a few for a moment.
  const tcpPages = Math.ceil((sessions * 4096) / facts.pageBytes);
  tuning.ensure(
    "net.ipv4.tcp_mem",
    ([, pressure]) => (pressure ?? 0) >= tcpPages,
    `${tcpPages} ${Math.ceil(tcpPages * 1.5)} ${tcpPages * 2}`,
    "TCP buffer pages: 4 KiB queued per session must not put TCP under memory pressure (as `switchboard doctor`)",
  );
  if (facts.conntrackMax !== null) {
    tuning.ensure(
      "net.netfilter.nf_conntrack_max",
      ([current]) => (current ?? 0) >= sessions * 1.1,
      String(Math.ceil((sessions * 1.25) / 1024) * 1024),
      "connection tracking is loaded: every loopback connection takes an entry",
    );
  }
  if (facts.nofileHard < sizing.sessionsPerServerWorker + serverWorkerDescriptorReserve) {
    tuning.fixed.push(
      `RLIMIT_NOFILE hard ${facts.nofileHard}: too low for ${sizing.sessionsPerServerWorker} per worker`,
    );
  }
  tuning.fixed.push(
    `RLIMIT_NOFILE ${facts.nofileHard.toLocaleString("en-US")} per process (hard; raising it needs CAP_SYS_RESOURCE, ` +
      `which this host does not give): ${sizing.serverWorkers} server workers of about ` +
      `${sizing.sessionsPerServerWorker.toLocaleString("en-US")} sessions, ${sizing.loadWorkers} load processes of at ` +
      `most ${sizing.sessionsPerLoadWorker.toLocaleString("en-US")}`,
  );
  return tuning;
}
