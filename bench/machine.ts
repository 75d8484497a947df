// The machine a result was measured on, written into every result file: figures from different hosts are only
// comparable with this beside them.

import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { arch, cpus, loadavg, platform, release, totalmem } from "node:os";

export interface MachineDescription {
  readonly os: string;
  readonly platform: string;
  readonly arch: string;
  readonly kernel: string;
  readonly cpuModel: string;
  readonly cpus: number;
  readonly memoryBytes: number;
  readonly bunVersion: string;
  readonly bunRevision: string;
  /** Soft and hard RLIMIT_NOFILE of this process (children inherit them). */
  readonly openFilesLimit: { readonly soft: number | null; readonly hard: number | null };
  readonly somaxconn: number | null;
  readonly tcpTwReuse: number | null;
  readonly localPortRange: string | null;
  /** 1, 5 and 15 minute load averages when the run started: a busy host skews every figure. */
  readonly loadAverage: readonly number[];
}

function readTrimmed(path: string): string | null {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return null;
  }
}

function readNumber(path: string): number | null {
  const text = readTrimmed(path);
  return text === null || !Number.isFinite(Number(text)) ? null : Number(text);
}

function osName(): string {
  const text = readTrimmed("/etc/os-release");
  const match = text === null ? null : /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(text);
  return match?.[1] ?? `${platform()} ${release()}`;
}

function openFilesLimit(): MachineDescription["openFilesLimit"] {
  const text = readTrimmed("/proc/self/limits");
  const match = text === null ? null : /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  const parse = (value: string | undefined) => (value === undefined || value === "unlimited" ? null : Number(value));
  return { soft: parse(match?.[1]), hard: parse(match?.[2]) };
}

export function describeMachine(): MachineDescription {
  const processors = cpus();
  return {
    os: osName(),
    platform: platform(),
    arch: arch(),
    kernel: release(),
    cpuModel: processors[0]?.model ?? "unknown",
    cpus: processors.length,
    memoryBytes: totalmem(),
    bunVersion: Bun.version,
    bunRevision: Bun.revision,
    openFilesLimit: openFilesLimit(),
    somaxconn: readNumber("/proc/sys/net/core/somaxconn"),
    tcpTwReuse: readNumber("/proc/sys/net/ipv4/tcp_tw_reuse"),
    localPortRange: readTrimmed("/proc/sys/net/ipv4/ip_local_port_range")?.replace(/\s+/, "-") ?? null,
    loadAverage: loadavg().map((value) => Math.round(value * 100) / 100),
  };
}

/** One line for the head of a table. */
export function machineLine(machine: MachineDescription): string {
  const gib = (machine.memoryBytes / 2 ** 30).toFixed(0);
  return `${machine.os}, kernel ${machine.kernel}, ${machine.cpus} x ${machine.cpuModel}, ${gib} GiB, Bun ${machine.bunVersion}`;
}

export interface SourceDescription {
  /** The commit of the repository the bench ran from, and whether server/, protocol/, storage/ differed from it. */
  readonly commit: string | null;
  readonly dirty: boolean | null;
}

export function describeSource(): SourceDescription {
  const root = new URL("..", import.meta.url).pathname;
  const git = (...args: string[]) => spawnSync("git", ["-C", root, ...args], { encoding: "utf8", timeout: 5000 });
  const head = git("rev-parse", "HEAD");
  if (head.status !== 0) return { commit: null, dirty: null };
  const status = git("status", "--porcelain", "--", "server", "protocol", "storage");
  return { commit: head.stdout.trim(), dirty: status.status === 0 ? status.stdout.trim() !== "" : null };
}
