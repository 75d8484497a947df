// `switchboard doctor`: compares the host's limits (open files, socket queues, TCP memory, connection tracking) with
// what the configured capacity needs, and prints for every shortfall the exact line that fixes it.
//
// The host is read through a HostReader, so tests feed fake hosts; the real reader reads /proc. Capacity is
// config.limits.sessionsMax, or another number with --sessions for planning (more than sessionsMax is planned for
// and said, not capped). With a DeploymentReader it also checks what this installation needs: that the config
// loads, the data directory's modes (0700, files 0600), free disk under it, and that the ports can be bound. Linux
// only: on other systems the checks report that they could not read the values (FreeBSD equivalents are in
// OPERATIONS.md).

import { existsSync, readdirSync, readFileSync, statfsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { type Config, ConfigError, loadConfig } from "./config.ts";
import { configFromValues, configOptions } from "./config-flags.ts";
import { dataDirectoryMode, lockFileName } from "./data-directory.ts";
import { versionInfo, versionLine } from "./version.ts";

/** Where doctor reads the host. Methods return undefined for what does not exist (a non-Linux host, no conntrack). */
export interface HostReader {
  /** Text of /proc/sys/<path>, path as "fs/nr_open". */
  readSysctl(path: string): string | undefined;
  /** Text of /proc/self/limits, or of the inspected process's limits. */
  readLimits(): string | undefined;
  /** Text of /proc/meminfo (MemTotal); when absent, memory is not checked (fake hosts). */
  readMeminfo?(): string | undefined;
  /** Bytes per memory page (tcp_mem counts pages); 4096 when unknown. */
  pageBytes?(): number;
  /** Whose limits readLimits returns, for the report: "this process", "pid 1234". */
  readonly limitsOf?: string;
}

export type CheckStatus = "ok" | "warn" | "fail";

export interface DoctorCheck {
  /** The limit, named as an operator searches for it: "fs.nr_open", "RLIMIT_NOFILE (hard)". */
  readonly name: string;
  readonly status: CheckStatus;
  /** What was found and what is needed, as text for the table ("4,096 (soft 1,024)", ">= 1,001,024"). */
  readonly found: string;
  readonly needed: string;
  /** The same as numbers, for --json and monitoring: null when not a number (unreadable, "unlimited"). */
  readonly value: number | readonly number[] | null;
  readonly minimum: number | null;
  /** One sentence: why the server needs it, or why the finding is fine. */
  readonly note: string;
  /** Exact lines that fix it (empty when ok): a command for now, and the persistent line with where it goes. */
  readonly fix: readonly string[];
}

export interface DoctorReport {
  /** Sessions planned for one server (all its workers). */
  readonly sessions: number;
  /** Worker processes of one server (`start --workers`), and each one's share of the sessions. */
  readonly workers: number;
  readonly sessionsPerWorker: number;
  /** Where that number came from: "limits.sessionsMax" or "--sessions". */
  readonly sessionsFrom: string;
  /** The config's sessionsMax (a plan above it needs sessionsMax raised too). */
  readonly sessionsMax: number;
  readonly processes: number;
  /** Descriptors one process (a worker) needs: a socket per session of its share plus headroom. */
  readonly descriptorsNeeded: number;
  readonly checks: readonly DoctorCheck[];
  /** The worst status of all checks. */
  readonly status: CheckStatus;
}

export interface DoctorOptions {
  readonly config: Config;
  readonly read?: HostReader;
  /** Plan for this many sessions per server; default config.limits.sessionsMax. */
  readonly sessions?: number;
  /** Worker processes per server (default 1): each gets its own RLIMIT_NOFILE and an equal share of the sessions. */
  readonly workers?: number;
  /** Switchboard processes on this host (they share fs.file-max, tcp_mem and the conntrack table). */
  readonly processes?: number;
  /** Checks of this installation (config, data directory, disk, ports); left out when absent (fake hosts). */
  readonly deployment?: DeploymentReader;
}

/** Where doctor reads the installation: the config's outcome, the data directory, the disk and the ports. */
export interface DeploymentReader {
  /** Where the config came from, and the error that stopped it loading (doctor then checks the defaults). */
  readonly configSource: string;
  readonly configError?: string;
  /** The data directory: undefined when it does not exist; `error` when it cannot be read. */
  dataDirectory(path: string): DataDirectoryState | undefined;
  /** Free and total bytes of the file system holding path (or its nearest existing parent). */
  disk(path: string): { freeBytes: number; totalBytes: number; path: string } | undefined;
  /** Whether host:port can be bound now. */
  bind(host: string, port: number): BindOutcome;
  /** The PID in the data directory's lock file, when a server holds it. */
  serverPid(dataDir: string): number | undefined;
}

export interface DataDirectoryState {
  readonly isDirectory: boolean;
  readonly mode: number;
  /** Files in it with a mode other than 0600. */
  readonly looseFiles: ReadonlyArray<{ name: string; mode: number }>;
  readonly files: number;
  /** Set when the directory could not be listed (permission). */
  readonly error?: string;
}

export type BindOutcome = "free" | "in use" | "not on this host" | "denied" | "unknown";

/** Descriptors beyond one per session: SQLite and its WAL, listeners, the admin port, the journal, Bun itself. */
export const descriptorHeadroom = 1024;
/** Accept queue that rides out a reconnect storm; 4096 is also the kernel's default since 5.4. */
export const somaxconnStormMin = 4096;
/** Bun's listen() backlog, fixed per listener: a somaxconn below it truncates every accept queue. */
export const bunListenBacklog = 512;
/** Kernel buffer memory an idle-but-not-quite session may hold at once (a few small frames queued). */
export const socketBufferBytesPerSession = 4096;
/**
 * Memory of a server process before any session, and per idle logged-in session: the processes' memory and the
 * kernel's socket slab (the server's end of the connection). BENCHMARKS.md, million (200,000 sessions, 12 workers,
 * PSS summed over the supervisor and workers): 28 MiB per empty process, 2,697 B per session, 9.9 KB of slab per
 * loopback connection (both ends, so 4.95 KB on the server's side). A single process (density) has a larger floor
 * (57.6 MiB RSS) and a smaller session (1,090 B): a worker's sessions also hold a proxy at the worker owning the
 * device; the larger of each is planned.
 */
export const processBaselineBytes = 57.6 * 1_048_576;
export const sessionMemoryBytes = 2_700 + 4_950;
/** Planned memory above this share of MemTotal warns (the page cache and SQLite need the rest). */
const memoryShareWarn = 0.8;
/** Below this free space a commit may fail (the process exits 70); below the warning, plan for more. */
export const diskFreeBytesFailMin = 256 * 1_048_576;
export const diskFreeBytesWarnMin = 2 * 1_073_741_824;
const dataFileMode = 0o600;

const sysctlFile = "/etc/sysctl.d/99-switchboard.conf";
const mebi = 1_048_576;
/** The values shipped in systemd/ (switchboard.service, 99-switchboard.conf); recommendations never go below them. */
const shippedDescriptors = 2_097_152;
const shippedFileMax = 4_194_304;
const shippedSomaxconn = 65_535;
/** tcp_mem is recommended in steps of 1 GiB of 4 KiB pages. */
const tcpMemStepPages = 262_144;

const rank: Record<CheckStatus, number> = { ok: 0, warn: 1, fail: 2 };

function roundUp(value: number, step: number): number {
  return Math.ceil(value / step) * step;
}

function count(value: number): string {
  return value.toLocaleString("en-US");
}

function parseIntegers(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  const numbers = text.trim().split(/\s+/).map(Number);
  return numbers.length > 0 && numbers.every(Number.isFinite) ? numbers : undefined;
}

/** Soft and hard RLIMIT_NOFILE from the text of /proc/<pid>/limits ("unlimited" reads as Infinity). */
export function parseNofile(limits: string | undefined): { soft: number; hard: number } | undefined {
  const line = limits?.split("\n").find((entry) => entry.startsWith("Max open files"));
  const match = line?.match(/^Max open files\s+(\S+)\s+(\S+)/);
  if (match === undefined || match === null) return undefined;
  const value = (text: string) => (text === "unlimited" ? Number.POSITIVE_INFINITY : Number(text));
  const soft = value(match[1]!);
  const hard = value(match[2]!);
  return Number.isNaN(soft) || Number.isNaN(hard) ? undefined : { soft, hard };
}

/** Ports named by ip_local_reserved_ports ("7420-7421,8080"). */
function parsePortList(text: string | undefined): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  for (const part of (text ?? "").trim().split(",")) {
    if (part === "") continue;
    const [low, high] = part.split("-").map(Number);
    if (low !== undefined && Number.isInteger(low))
      ranges.push([low, high !== undefined && Number.isInteger(high) ? high : low]);
  }
  return ranges;
}

function unreadable(name: string, path: string, needed: string, minimum: number | null = null): DoctorCheck {
  return {
    name,
    status: "warn",
    found: "unreadable",
    needed,
    value: null,
    minimum,
    note: `could not read ${path} (not Linux, or /proc is hidden); check it by hand`,
    fix: [],
  };
}

/** A sysctl check: the live value against a minimum, with the command and the persistent line that raise it. */
function sysctlAtLeast(
  read: HostReader,
  key: string,
  needed: number,
  recommended: number,
  note: string,
  status: CheckStatus = "fail",
): DoctorCheck {
  const path = key.replaceAll(".", "/");
  const value = parseIntegers(read.readSysctl(path))?.[0];
  if (value === undefined) return unreadable(key, `/proc/sys/${path}`, `>= ${count(needed)}`, needed);
  const ok = value >= needed;
  return {
    name: key,
    status: ok ? "ok" : status,
    found: count(value),
    needed: `>= ${count(needed)}`,
    value,
    minimum: needed,
    note,
    fix: ok ? [] : [`sysctl -w ${key}=${recommended}`, `${key} = ${recommended}   # in ${sysctlFile}`],
  };
}

export function runDoctor(options: DoctorOptions): DoctorReport {
  const { config } = options;
  const read = options.read ?? procHostReader();
  const sessions = options.sessions ?? config.limits.sessionsMax;
  const processes = options.processes ?? 1;
  const workers = options.workers ?? 1;
  const sessionsPerWorker = Math.ceil(sessions / workers);
  const descriptorsNeeded = sessionsPerWorker + descriptorHeadroom;
  const descriptorsRecommended = Math.max(shippedDescriptors, roundUp(descriptorsNeeded, mebi));
  const checks: DoctorCheck[] = [];

  // RLIMIT_NOFILE of the inspected process. Bun raises its soft limit to the hard one at start, so the hard limit
  // decides; under systemd it is the unit's LimitNOFILE=.
  const nofile = parseNofile(read.readLimits());
  if (nofile === undefined) {
    checks.push(
      unreadable("RLIMIT_NOFILE (hard)", "/proc/self/limits", `>= ${count(descriptorsNeeded)}`, descriptorsNeeded),
    );
  } else {
    const ok = nofile.hard >= descriptorsNeeded;
    const finite = (limit: number) => (Number.isFinite(limit) ? limit : null);
    checks.push({
      name: "RLIMIT_NOFILE (hard)",
      status: ok ? "ok" : "fail",
      found: `${count(nofile.hard)} (soft ${count(nofile.soft)})`,
      needed: `>= ${count(descriptorsNeeded)}`,
      value: finite(nofile.hard),
      minimum: descriptorsNeeded,
      note:
        `limits of ${read.limitsOf ?? "this process"}: one descriptor per session plus headroom (Bun raises the soft ` +
        "limit to the hard one). The service gets LimitNOFILE= from its unit: check it with --pid <server pid>",
      fix: ok
        ? []
        : [
            `LimitNOFILE=${descriptorsRecommended}   # [Service] in switchboard.service (systemctl edit switchboard)`,
            `switchboard hard nofile ${descriptorsRecommended}   # in /etc/security/limits.d/switchboard.conf (no systemd)`,
            `ulimit -Hn ${descriptorsRecommended} && ulimit -n ${descriptorsRecommended}   # this shell, as root`,
          ],
    });
  }

  checks.push(
    sysctlAtLeast(
      read,
      "fs.nr_open",
      descriptorsNeeded,
      descriptorsRecommended,
      "ceiling of any process's RLIMIT_NOFILE: LimitNOFILE= above it is lowered to what the kernel allows",
    ),
  );
  checks.push(
    sysctlAtLeast(
      read,
      "fs.file-max",
      descriptorsNeeded * processes * workers,
      Math.max(shippedFileMax, roundUp(2 * descriptorsNeeded * processes * workers, mebi)),
      `open files of the whole host: every Switchboard process (${processes * workers}) at capacity`,
    ),
  );
  checks.push(somaxconnCheck(read));
  checks.push(portRangeCheck(read, config));
  checks.push(tcpMemoryCheck(read, sessions * processes));
  checks.push(conntrackCheck(read, sessions * processes, config.port));
  if (options.deployment !== undefined) checks.push(...deploymentChecks(options.deployment, config, sessions));
  if (read.readMeminfo !== undefined) checks.push(memoryCheck(read, sessions * processes, workers * processes));

  const status = checks.reduce<CheckStatus>(
    (worst, check) => (rank[check.status] > rank[worst] ? check.status : worst),
    "ok",
  );
  return {
    sessions,
    sessionsFrom: options.sessions === undefined ? "limits.sessionsMax" : "--sessions",
    workers,
    sessionsPerWorker,
    sessionsMax: config.limits.sessionsMax,
    processes,
    descriptorsNeeded,
    checks,
    status,
  };
}

function somaxconnCheck(read: HostReader): DoctorCheck {
  const key = "net.core.somaxconn";
  const value = parseIntegers(read.readSysctl("net/core/somaxconn"))?.[0];
  if (value === undefined) {
    return unreadable(key, "/proc/sys/net/core/somaxconn", `>= ${somaxconnStormMin}`, somaxconnStormMin);
  }
  const status: CheckStatus = value < bunListenBacklog ? "fail" : value < somaxconnStormMin ? "warn" : "ok";
  return {
    name: key,
    status,
    found: count(value),
    needed: `>= ${count(somaxconnStormMin)}`,
    value,
    minimum: somaxconnStormMin,
    note:
      status === "fail"
        ? `below Bun's backlog of ${bunListenBacklog}: every accept queue is cut short and reconnect storms drop SYNs`
        : "caps each listener's accept queue; a reconnect storm after an outage fills a short one",
    fix:
      status === "ok"
        ? []
        : [`sysctl -w ${key}=${shippedSomaxconn}`, `${key} = ${shippedSomaxconn}   # in ${sysctlFile}`],
  };
}

/** The server's own ports must not be handed out as ephemeral ports, or a restart can fail to bind them. */
function portRangeCheck(read: HostReader, config: Config): DoctorCheck {
  const key = "net.ipv4.ip_local_port_range";
  const range = parseIntegers(read.readSysctl("net/ipv4/ip_local_port_range"));
  if (range === undefined || range.length < 2) return unreadable(key, "/proc/sys/net/ipv4/ip_local_port_range", "");
  const [low, high] = range as [number, number];
  const reserved = parsePortList(read.readSysctl("net/ipv4/ip_local_reserved_ports"));
  const ports = [config.port, config.adminPort].filter((port) => port > 0);
  const exposed = ports.filter(
    (port) => port >= low && port <= high && !reserved.some(([from, to]) => port >= from && port <= to),
  );
  const list = exposed.join(",");
  return {
    name: key,
    status: exposed.length === 0 ? "ok" : "warn",
    found: `${low}-${high} (${count(high - low + 1)} ports)`,
    needed: `ports ${ports.join(", ") || "(none)"} outside it or reserved`,
    value: [low, high],
    minimum: null,
    note:
      exposed.length === 0
        ? "the server only accepts; load generators need a wide range (one port per connection to one address)"
        : `port ${list} can be taken by an outgoing connection, and then the server cannot bind it after a restart`,
    fix:
      exposed.length === 0
        ? []
        : [
            `sysctl -w net.ipv4.ip_local_reserved_ports=${list}`,
            `net.ipv4.ip_local_reserved_ports = ${list}   # in ${sysctlFile}`,
          ],
  };
}

/** tcp_mem (pages) must hold a few KiB of queued data for every session without entering memory pressure. */
function tcpMemoryCheck(read: HostReader, sessions: number): DoctorCheck {
  const key = "net.ipv4.tcp_mem";
  const pageBytes = read.pageBytes?.() ?? 4096;
  const neededPages = Math.ceil((sessions * socketBufferBytesPerSession) / pageBytes);
  const values = parseIntegers(read.readSysctl("net/ipv4/tcp_mem"));
  if (values === undefined || values.length < 3) {
    return unreadable(key, "/proc/sys/net/ipv4/tcp_mem", `pressure >= ${count(neededPages)} pages`, neededPages);
  }
  const [, pressure, max] = values as [number, number, number];
  const status: CheckStatus = pressure >= neededPages ? "ok" : max >= neededPages ? "warn" : "fail";
  const low = roundUp(neededPages, tcpMemStepPages);
  const recommended = `${low} ${Math.ceil(low * 1.5)} ${low * 2}`;
  const gibibytes = (pages: number) => `${((pages * pageBytes) / 2 ** 30).toFixed(1)} GiB`;
  return {
    name: key,
    status,
    found: values.join(" "),
    needed: `pressure >= ${neededPages}`,
    value: values,
    minimum: neededPages,
    note:
      `pages: ${count(sessions)} sessions with ${socketBufferBytesPerSession / 1024} KiB queued each need ` +
      `${gibibytes(neededPages)}; pressure is at ${gibibytes(pressure)}, max at ${gibibytes(max)}. ` +
      (status === "warn"
        ? "Past pressure the kernel shrinks every socket buffer: busy sessions slow down"
        : "Past max the kernel drops TCP data (senders retransmit): busy sessions stall"),
    fix: status === "ok" ? [] : [`sysctl -w ${key}="${recommended}"`, `${key} = ${recommended}   # in ${sysctlFile}`],
  };
}

/** Every process's baseline plus every session's memory must fit in the host's RAM, with room for the page cache. */
function memoryCheck(read: HostReader, sessions: number, processes: number): DoctorCheck {
  const name = "memory (MemTotal)";
  const needed = Math.ceil(processes * processBaselineBytes + sessions * sessionMemoryBytes);
  const total = Number(/^MemTotal:\s+(\d+)\s+kB/m.exec(read.readMeminfo?.() ?? "")?.[1]) * 1024;
  if (!Number.isFinite(total) || total <= 0)
    return unreadable(name, "/proc/meminfo", `>= ${mebibytes(needed)}`, needed);
  const status: CheckStatus = needed > total ? "fail" : needed > total * memoryShareWarn ? "warn" : "ok";
  return {
    name,
    status,
    found: mebibytes(total),
    needed: `>= ${mebibytes(needed)}`,
    value: total,
    minimum: needed,
    note:
      `${processes} process(es) x ${mebibytes(processBaselineBytes)} + ${count(sessions)} sessions x ` +
      `${count(sessionMemoryBytes)} B (process and kernel socket memory of an idle session, BENCHMARKS.md)`,
    fix: status === "ok" ? [] : ["plan fewer sessions or workers on this host, or add memory"],
  };
}

/** When conntrack is loaded, every session takes an entry; a full table drops new connections. */
function conntrackCheck(read: HostReader, sessions: number, port: number): DoctorCheck {
  const key = "net.netfilter.nf_conntrack_max";
  const text = read.readSysctl("net/netfilter/nf_conntrack_max");
  const needed = sessions + descriptorHeadroom;
  if (text === undefined) {
    return {
      name: key,
      status: "ok",
      found: "not loaded",
      needed: `>= ${count(needed)} if loaded`,
      value: null,
      minimum: needed,
      note: "no connection tracking on this host: nothing to fill",
      fix: [],
    };
  }
  const value = parseIntegers(text)?.[0] ?? 0;
  const ok = value >= needed;
  const recommended = Math.max(shippedDescriptors, roundUp(needed, mebi));
  return {
    name: key,
    status: ok ? "ok" : "fail",
    found: count(value),
    needed: `>= ${count(needed)}`,
    value,
    minimum: needed,
    note: "conntrack is loaded: every session takes an entry, and a full table drops new connections",
    fix: ok
      ? []
      : [
          `sysctl -w ${key}=${recommended}`,
          `-${key} = ${recommended}   # in ${sysctlFile}`,
          `or exempt the port from tracking: ${notrackCommand(port)}`,
        ],
  };
}

// ---- the installation: config, data directory, disk, ports -------------------------------------------------------

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8)}`;
}

function deploymentChecks(deployment: DeploymentReader, config: Config, sessions: number): DoctorCheck[] {
  const checks: DoctorCheck[] = [];
  checks.push({
    name: "config",
    status: deployment.configError === undefined ? "ok" : "fail",
    found: deployment.configError === undefined ? "loads" : "does not load",
    needed: "loads",
    value: null,
    minimum: null,
    note:
      deployment.configError === undefined
        ? `from ${deployment.configSource}: sessionsMax ${count(config.limits.sessionsMax)}, data in ${config.dataDir}`
        : `${deployment.configError}; the other checks use the defaults`,
    fix:
      deployment.configError === undefined
        ? []
        : ["switchboard check-config   # every problem, with where it came from"],
  });
  checks.push(dataDirectoryCheck(deployment, config));
  checks.push(diskCheck(deployment, config, sessions));
  const serverPid = deployment.serverPid(config.dataDir);
  const ports: Array<[string, string, number]> = [
    ["port", config.host, config.port],
    ["adminPort", config.adminHost, config.adminPort],
    ["wsPort", config.wsHost, config.wsPort],
  ];
  for (const [key, host, port] of ports) {
    if (port !== 0) checks.push(portCheck(deployment, key, host, port, serverPid));
  }
  return checks;
}

function dataDirectoryCheck(deployment: DeploymentReader, config: Config): DoctorCheck {
  const name = "data directory";
  const path = config.dataDir;
  const base = {
    name,
    needed: `${octal(dataDirectoryMode)}, files ${octal(dataFileMode)}`,
    value: null,
    minimum: null,
  };
  const state = deployment.dataDirectory(path);
  if (state === undefined) {
    return {
      ...base,
      status: "warn",
      found: `${path} missing`,
      note: "`switchboard start` creates it (0700); store commands need the database it creates",
      fix: [`install -d -m 0700 -o switchboard -g switchboard ${path}   # or start the server once`],
    };
  }
  if (!state.isDirectory) {
    return {
      ...base,
      status: "fail",
      found: `${path} is not a directory`,
      note: "dataDir must be a directory",
      fix: [],
    };
  }
  const problems: string[] = [];
  const fix: string[] = [];
  if ((state.mode & 0o777) !== dataDirectoryMode) {
    problems.push(`${path} is ${octal(state.mode)}`);
    fix.push(`chmod 0700 ${path}`);
  }
  if (state.looseFiles.length > 0) {
    problems.push(state.looseFiles.map((file) => `${file.name} ${octal(file.mode)}`).join(", "));
    fix.push(`chmod 0600 ${state.looseFiles.map((file) => join(path, file.name)).join(" ")}`);
  }
  if (state.error !== undefined) {
    return {
      ...base,
      status: "warn",
      found: `${octal(state.mode)}, files unreadable`,
      note: `${state.error}: run doctor as the service user or root to check the files`,
      fix,
    };
  }
  return {
    ...base,
    status: problems.length === 0 ? "ok" : "fail",
    found: problems.length === 0 ? `${octal(state.mode)}, ${state.files} files 0600` : problems.join("; "),
    note: "queued messages and the code-hash key: only the service user may read them",
    fix,
  };
}

function diskCheck(deployment: DeploymentReader, config: Config, sessions: number): DoctorCheck {
  const name = "free disk";
  const disk = deployment.disk(config.dataDir);
  const needed = `>= ${mebibytes(diskFreeBytesWarnMin)}`;
  if (disk === undefined) return unreadable(name, config.dataDir, needed, diskFreeBytesWarnMin);
  const status: CheckStatus =
    disk.freeBytes < diskFreeBytesFailMin ? "fail" : disk.freeBytes < diskFreeBytesWarnMin ? "warn" : "ok";
  return {
    name,
    status,
    found: `${mebibytes(disk.freeBytes)} of ${mebibytes(disk.totalBytes)} (${disk.path})`,
    needed,
    value: disk.freeBytes,
    minimum: diskFreeBytesWarnMin,
    note:
      `a failed commit stops the server (exit 70); queues for offline devices grow with ${count(sessions)} sessions ` +
      `(at most queueBytesMax ${mebibytes(config.limits.queueBytesMax)} per device)`,
    fix: status === "ok" ? [] : [`free space on the file system of ${disk.path}, or move dataDir`],
  };
}

function mebibytes(bytes: number): string {
  return `${count(Math.floor(bytes / 1_048_576))} MiB`;
}

function portCheck(
  deployment: DeploymentReader,
  key: string,
  host: string,
  port: number,
  serverPid: number | undefined,
): DoctorCheck {
  const outcome = deployment.bind(host, port);
  const base = { name: `${key} ${host}:${port}`, needed: "free, or held by this server", value: port, minimum: null };
  if (outcome === "free") {
    return { ...base, status: "ok", found: "free", note: "the server can bind it", fix: [] };
  }
  if (outcome === "in use") {
    return serverPid !== undefined
      ? { ...base, status: "ok", found: `in use (server pid ${serverPid} runs)`, note: "", fix: [] }
      : {
          ...base,
          status: "fail",
          found: "in use by another process",
          note: "no server holds this data directory, so another program has the port: start would fail",
          fix: [`ss -ltnp 'sport = :${port}'   # who holds it`],
        };
  }
  if (outcome === "denied") {
    return {
      ...base,
      status: "warn",
      found: "needs privilege",
      note: "a port below 1024 needs CAP_NET_BIND_SERVICE",
      fix: ["install systemd/switchboard-low-port.conf as the unit's drop-in (OPERATIONS.md)"],
    };
  }
  if (outcome === "not on this host") {
    return {
      ...base,
      status: "fail",
      found: `${host} is not an address of this host`,
      note: "start would fail to bind it",
      fix: [`set ${key === "port" ? "host" : key.replace("Port", "Host")} to an address of this host`],
    };
  }
  return {
    ...base,
    status: "warn",
    found: "could not test",
    note: "binding failed for another reason",
    fix: [`ss -ltnp 'sport = :${port}'   # look by hand`],
  };
}

/** Reads this installation for real: stat and statfs, a bind attempt per port, the data directory's lock file. */
export function procDeploymentReader(configSource: string, configError?: string): DeploymentReader {
  return {
    configSource,
    ...(configError === undefined ? {} : { configError }),
    dataDirectory(path) {
      if (!existsSync(path)) return undefined;
      const stat = statSync(path);
      if (!stat.isDirectory()) return { isDirectory: false, mode: stat.mode, looseFiles: [], files: 0 };
      let names: string[];
      try {
        names = readdirSync(path);
      } catch (error) {
        return { isDirectory: true, mode: stat.mode, looseFiles: [], files: 0, error: String(error) };
      }
      const looseFiles: Array<{ name: string; mode: number }> = [];
      let files = 0;
      for (const name of names) {
        const file = statSync(join(path, name), { throwIfNoEntry: false });
        if (file === undefined || !file.isFile()) continue;
        files++;
        if ((file.mode & 0o777) !== dataFileMode) looseFiles.push({ name, mode: file.mode });
      }
      return { isDirectory: true, mode: stat.mode, looseFiles, files };
    },
    disk(path) {
      let existing = path;
      while (!existsSync(existing) && dirname(existing) !== existing) existing = dirname(existing);
      try {
        const stats = statfsSync(existing);
        return { freeBytes: stats.bavail * stats.bsize, totalBytes: stats.blocks * stats.bsize, path: existing };
      } catch {
        return undefined;
      }
    },
    bind(host, port) {
      try {
        const listener = Bun.listen({ hostname: host, port, socket: { data() {} } });
        listener.stop(true);
        return "free";
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? String(error);
        if (code.includes("EADDRINUSE")) return "in use";
        if (code.includes("EACCES") || code.includes("EPERM")) return "denied";
        if (code.includes("EADDRNOTAVAIL")) return "not on this host";
        return "unknown";
      }
    },
    serverPid(dataDir) {
      try {
        const pid = Number(readFileSync(join(dataDir, lockFileName), "utf8").trim());
        return Number.isInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`) ? pid : undefined;
      } catch {
        return undefined;
      }
    },
  };
}

/** nftables commands that stop connection tracking for the Switchboard port (persistent form: 99-switchboard.conf). */
export function notrackCommand(port: number): string {
  const table = "inet switchboard_notrack";
  return (
    `nft 'add table ${table}; ` +
    `add chain ${table} prerouting { type filter hook prerouting priority raw; }; ` +
    `add rule ${table} prerouting tcp dport ${port} notrack; ` +
    `add chain ${table} output { type filter hook output priority raw; }; ` +
    `add rule ${table} output tcp sport ${port} notrack'`
  );
}

/** Reads the real host. With a pid, RLIMIT_NOFILE comes from that process (the running server). */
export function procHostReader(pid?: number): HostReader {
  const readText = (path: string): string | undefined => {
    try {
      return readFileSync(path, "utf8");
    } catch {
      return undefined;
    }
  };
  return {
    limitsOf: pid === undefined ? `this process (pid ${process.pid})` : `pid ${pid}`,
    readSysctl: (path) => readText(`/proc/sys/${path}`),
    readLimits: () => readText(`/proc/${pid ?? "self"}/limits`),
    readMeminfo: () => readText("/proc/meminfo"),
    pageBytes: () => {
      const result = Bun.spawnSync(["getconf", "PAGESIZE"], { stdout: "pipe", stderr: "ignore" });
      const value = Number(result.stdout.toString().trim());
      return result.success && Number.isInteger(value) && value > 0 ? value : 4096;
    },
  };
}

/** The report as a table: one row per check, the fix lines under each check that is not ok. */
export function formatDoctorReport(report: DoctorReport): string {
  const header = ["status", "check", "found", "needed"];
  const rows = report.checks.map((check) => [check.status, check.name, check.found, check.needed]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column]!)))
      .join("  ")
      .trimEnd();
  const out = [
    versionLine(),
    `switchboard doctor: ${count(report.sessions)} sessions (${report.sessionsFrom}) in ${report.processes} ` +
      (report.workers > 1
        ? `server(s) of ${report.workers} workers (${count(report.sessionsPerWorker)} sessions each), `
        : "process(es), ") +
      `${count(report.descriptorsNeeded)} descriptors per process`,
  ];
  if (report.sessions > report.sessionsMax) {
    out.push(
      `note: the config accepts at most ${count(report.sessionsMax)} sessions (limits.sessionsMax): raise it too ` +
        `to serve ${count(report.sessions)}`,
    );
  }
  out.push("", line(header));
  report.checks.forEach((check, index) => {
    out.push(line(rows[index]!));
    if (check.status === "ok") return;
    out.push(`        ${check.note}`);
    for (const fix of check.fix) out.push(`        fix: ${fix}`);
  });
  const tally = (status: CheckStatus) => report.checks.filter((check) => check.status === status).length;
  out.push("", `${tally("fail")} fail, ${tally("warn")} warn, ${tally("ok")} ok`);
  return `${out.join("\n")}\n`;
}

const usage = `switchboard doctor [--sessions N] [--processes N] [--pid PID] [--json] [--config file.toml] [config flags]

Compares this host's limits with what the configured capacity (limits.sessionsMax) needs and prints the line that
fixes each shortfall; checks the config, the data directory (0700, files 0600), free disk and the ports too. Exit 0
when nothing fails, 1 when a check fails, 2 on a usage error.

  --sessions N    plan for N sessions per server (default: limits.sessionsMax of the config)
  --workers N     the server's worker processes, each with its share of the sessions and its own file limit
                  (the config key; without it doctor plans for one process, the most any one process needs)
  --processes N   Switchboard servers sharing this host (default 1)
  --pid PID       read RLIMIT_NOFILE of the running server instead of this process
  --json          print the report as JSON (numbers in value and minimum)`;

const ownOptions = {
  sessions: { type: "string" },
  processes: { type: "string" },
  pid: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

function positiveInteger(name: string, value: string | boolean | undefined): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(String(value).replaceAll("_", ""));
  if (!Number.isSafeInteger(number) || number < 1) throw new ConfigError(`--${name}: a positive integer`);
  return number;
}

/** `switchboard doctor`: prints the report; 0 when no check fails, 1 when one does, 2 on a usage or config error. */
export async function runDoctorCommand(
  argv: string[],
  read?: HostReader,
  deployment?: DeploymentReader,
): Promise<number> {
  try {
    let parsed: ReturnType<typeof parseArgs<{ options: typeof ownOptions; strict: true; allowPositionals: false }>>;
    try {
      parsed = parseArgs({
        args: argv,
        options: { ...configOptions(), ...ownOptions },
        strict: true,
        allowPositionals: false,
      });
    } catch (error) {
      console.error(`switchboard doctor: ${(error as Error).message}\n\n${usage}`);
      return 2;
    }
    const values = parsed.values as Record<string, string | boolean | undefined>;
    if (values.help === true) {
      console.log(usage);
      return 0;
    }
    const sessions = positiveInteger("sessions", values.sessions);
    const processes = positiveInteger("processes", values.processes);
    const pid = positiveInteger("pid", values.pid);
    if (pid !== undefined && read === undefined && !existsSync(`/proc/${pid}`)) {
      console.error(`switchboard doctor: --pid ${pid}: no such process`);
      return 2;
    }
    // A config that does not load is a failed check, not the end: the host checks still run, on the defaults.
    let config: Config;
    let source: string;
    let configError: string | undefined;
    try {
      const loaded = configFromValues(values, Object.keys(ownOptions));
      config = loaded.config;
      source = loaded.source;
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      configError = error.message;
      source = "unloadable";
      config = loadConfig({});
    }
    const report = runDoctor({
      config,
      read: read ?? procHostReader(pid),
      sessions,
      processes,
      // An explicit worker count is planned as given. The default (one per core) is planned as one process: the
      // most descriptors any one process could need, and a plan that holds on a host with fewer cores too.
      workers: config.workers > 0 ? config.workers : 1,
      deployment: deployment ?? procDeploymentReader(source, configError),
    });
    if (values.json === true) console.log(JSON.stringify({ version: versionInfo(), ...report }, null, 2));
    else process.stdout.write(formatDoctorReport(report));
    return report.status === "fail" ? 1 : 0;
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`switchboard doctor: ${error.message}`);
      return 2;
    }
    throw error;
  }
}

if (import.meta.main) process.exit(await runDoctorCommand(process.argv.slice(2)));
