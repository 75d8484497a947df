// `switchboard doctor`: compares the host's limits (open files, socket queues, TCP memory, connection tracking) with
// what the configured capacity needs, and prints for every shortfall the exact line that fixes it.
//
// The host is read through a HostReader, so tests feed fake hosts; the real reader reads /proc. Capacity is
// config.limits.sessionsMax, or fewer with --sessions for planning. Linux only: on other systems the checks report
// that they could not read the values (FreeBSD equivalents are in systemd/NOTES.md).

import { readFileSync } from "node:fs";
import { type Config, ConfigError, loadConfig } from "./config.ts";
import { versionLine } from "./version.ts";

/** Where doctor reads the host. Methods return undefined for what does not exist (a non-Linux host, no conntrack). */
export interface HostReader {
  /** Text of /proc/sys/<path>, path as "fs/nr_open". */
  readSysctl(path: string): string | undefined;
  /** Text of /proc/self/limits, or of the inspected process's limits. */
  readLimits(): string | undefined;
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
  readonly found: string;
  readonly needed: string;
  /** One sentence: why the server needs it, or why the finding is fine. */
  readonly note: string;
  /** Exact lines that fix it (empty when ok): a command for now, and the persistent line with where it goes. */
  readonly fix: readonly string[];
}

export interface DoctorReport {
  /** Sessions planned for one process. */
  readonly sessions: number;
  readonly processes: number;
  /** Descriptors one process needs: a socket per session plus headroom. */
  readonly descriptorsNeeded: number;
  readonly checks: readonly DoctorCheck[];
  /** The worst status of all checks. */
  readonly status: CheckStatus;
}

export interface DoctorOptions {
  readonly config: Config;
  readonly read?: HostReader;
  /** Plan for this many sessions per process; capped at config.limits.sessionsMax. */
  readonly sessions?: number;
  /** Switchboard processes on this host (they share fs.file-max, tcp_mem and the conntrack table). */
  readonly processes?: number;
}

/** Descriptors beyond one per session: SQLite and its WAL, listeners, the admin port, the journal, Bun itself. */
export const descriptorHeadroom = 1024;
/** Accept queue that rides out a reconnect storm; 4096 is also the kernel's default since 5.4. */
export const somaxconnStormMin = 4096;
/** Bun's listen() backlog, fixed per listener: a somaxconn below it truncates every accept queue. */
export const bunListenBacklog = 512;
/** Kernel buffer memory an idle-but-not-quite session may hold at once (a few small frames queued). */
export const socketBufferBytesPerSession = 4096;

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

function unreadable(name: string, path: string, needed: string): DoctorCheck {
  return {
    name,
    status: "warn",
    found: "unreadable",
    needed,
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
  if (value === undefined) return unreadable(key, `/proc/sys/${path}`, `>= ${count(needed)}`);
  const ok = value >= needed;
  return {
    name: key,
    status: ok ? "ok" : status,
    found: count(value),
    needed: `>= ${count(needed)}`,
    note,
    fix: ok ? [] : [`sysctl -w ${key}=${recommended}`, `${key} = ${recommended}   # in ${sysctlFile}`],
  };
}

export function runDoctor(options: DoctorOptions): DoctorReport {
  const { config } = options;
  const read = options.read ?? procHostReader();
  const sessions = Math.min(options.sessions ?? config.limits.sessionsMax, config.limits.sessionsMax);
  const processes = options.processes ?? 1;
  const descriptorsNeeded = sessions + descriptorHeadroom;
  const descriptorsRecommended = Math.max(shippedDescriptors, roundUp(descriptorsNeeded, mebi));
  const checks: DoctorCheck[] = [];

  // RLIMIT_NOFILE of the inspected process. Bun raises its soft limit to the hard one at start, so the hard limit
  // decides; under systemd it is the unit's LimitNOFILE=.
  const nofile = parseNofile(read.readLimits());
  if (nofile === undefined) {
    checks.push(unreadable("RLIMIT_NOFILE (hard)", "/proc/self/limits", `>= ${count(descriptorsNeeded)}`));
  } else {
    const ok = nofile.hard >= descriptorsNeeded;
    checks.push({
      name: "RLIMIT_NOFILE (hard)",
      status: ok ? "ok" : "fail",
      found: `${count(nofile.hard)} (soft ${count(nofile.soft)})`,
      needed: `>= ${count(descriptorsNeeded)}`,
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
      descriptorsNeeded * processes,
      Math.max(shippedFileMax, roundUp(2 * descriptorsNeeded * processes, mebi)),
      `open files of the whole host: every Switchboard process (${processes}) at capacity`,
    ),
  );
  checks.push(somaxconnCheck(read));
  checks.push(portRangeCheck(read, config));
  checks.push(tcpMemoryCheck(read, sessions * processes));
  checks.push(conntrackCheck(read, sessions * processes, config.port));

  const status = checks.reduce<CheckStatus>(
    (worst, check) => (rank[check.status] > rank[worst] ? check.status : worst),
    "ok",
  );
  return { sessions, processes, descriptorsNeeded, checks, status };
}

function somaxconnCheck(read: HostReader): DoctorCheck {
  const key = "net.core.somaxconn";
  const value = parseIntegers(read.readSysctl("net/core/somaxconn"))?.[0];
  if (value === undefined) return unreadable(key, "/proc/sys/net/core/somaxconn", `>= ${somaxconnStormMin}`);
  const status: CheckStatus = value < bunListenBacklog ? "fail" : value < somaxconnStormMin ? "warn" : "ok";
  return {
    name: key,
    status,
    found: count(value),
    needed: `>= ${count(somaxconnStormMin)}`,
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
    return unreadable(key, "/proc/sys/net/ipv4/tcp_mem", `pressure >= ${count(neededPages)} pages`);
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
    note:
      `pages: ${count(sessions)} sessions with ${socketBufferBytesPerSession / 1024} KiB queued each need ` +
      `${gibibytes(neededPages)}; pressure is at ${gibibytes(pressure)}, max at ${gibibytes(max)}. ` +
      (status === "warn"
        ? "Past pressure the kernel shrinks every socket buffer: busy sessions slow down"
        : "Past max the kernel drops TCP data (senders retransmit): busy sessions stall"),
    fix: status === "ok" ? [] : [`sysctl -w ${key}="${recommended}"`, `${key} = ${recommended}   # in ${sysctlFile}`],
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
    `switchboard doctor: ${count(report.sessions)} sessions in ${report.processes} process(es), ` +
      `${count(report.descriptorsNeeded)} descriptors per process`,
    "",
    line(header),
  ];
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
fixes each shortfall. Exit 0 when nothing fails, 1 when a check fails, 2 on a usage error.

  --sessions N    plan for N sessions per process (at most sessionsMax)
  --processes N   Switchboard processes sharing this host (default 1)
  --pid PID       read RLIMIT_NOFILE of the running server instead of this process
  --json          print the report as JSON`;

const ownFlags = ["sessions", "processes", "pid", "json", "config", "help"];

function positiveInteger(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value.replaceAll("_", ""));
  if (!Number.isInteger(number) || number < 1) throw new ConfigError(`--${name}: a positive integer`);
  return number;
}

/** `switchboard doctor`: prints the report; 0 when no check fails, 1 when one does, 2 on a usage or config error. */
export async function runDoctorCommand(argv: string[], read?: HostReader): Promise<number> {
  const flags: Record<string, string> = {};
  for (let index = 0; index < argv.length; index++) {
    const argument = argv[index]!;
    if (!argument.startsWith("--")) {
      console.error(`switchboard doctor: unexpected argument ${argument}\n\n${usage}`);
      return 2;
    }
    const equals = argument.indexOf("=");
    if (equals > 0) flags[argument.slice(2, equals)] = argument.slice(equals + 1);
    else if (index + 1 < argv.length && !argv[index + 1]!.startsWith("--")) flags[argument.slice(2)] = argv[++index]!;
    else flags[argument.slice(2)] = "true";
  }
  if (flags.help !== undefined) {
    console.log(usage);
    return 0;
  }
  try {
    const configFlags = Object.fromEntries(Object.entries(flags).filter(([name]) => !ownFlags.includes(name)));
    const config = loadConfig({
      file: flags.config ?? process.env.SWITCHBOARD_CONFIG,
      env: process.env,
      flags: configFlags,
    });
    const pid = positiveInteger("pid", flags.pid);
    const report = runDoctor({
      config,
      read: read ?? procHostReader(pid),
      sessions: positiveInteger("sessions", flags.sessions),
      processes: positiveInteger("processes", flags.processes),
    });
    if (flags.json !== undefined) console.log(JSON.stringify(report, null, 2));
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
