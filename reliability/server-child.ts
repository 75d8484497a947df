// The server under test as a real child process: `bun server/cli.ts start` on 127.0.0.1 with a data directory the
// caller owns, its port read from the server_started log line (logged at every level). SIGKILL and a restart on the
// same data directory (and, when the kernel allows, the same port) are what the crash trials do to it. Every child
// is registered so that the runner kills what is left on exit or on SIGINT; every wait is bounded.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { forEachLine } from "../server/test-kit.ts";

const cliPath = new URL("../server/cli.ts", import.meta.url).pathname;
export const serverStartTimeoutMs = 15_000;
/** How long kill() waits for the child to exit after its signal, and stop() by default after SIGTERM and SIGKILL. */
const childExitWaitMs = 5000;
const logLinesKept = 100;

const children = new Set<Subprocess>();
const dataDirs = new Set<string>();
let exitHandlersInstalled = false;

function cleanUp(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
}

function installExitHandlers(): void {
  if (exitHandlersInstalled) return;
  exitHandlersInstalled = true;
  process.on("exit", cleanUp);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      cleanUp();
      process.exit(130);
    });
  }
}

/** Kills every child still running when this process exits or is interrupted. */
export function trackChild(child: Subprocess): void {
  children.add(child);
  void child.exited.then(() => children.delete(child));
  installExitHandlers();
}

/** A temporary data directory, removed by `removeDataDir` or, failing that, when this process exits. */
export function temporaryDataDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dataDirs.add(dir);
  installExitHandlers();
  return dir;
}

export function removeDataDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  dataDirs.delete(dir);
}

export interface ServerChild {
  readonly pid: number;
  readonly port: number;
  /** The last log lines (stdout and stderr), for a failure report. */
  logTail(): string[];
  /** Parsed JSON log lines with this event name seen so far. */
  events(name: string): Array<Record<string, unknown>>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGTERM, then SIGKILL after timeoutMs. */
  stop(timeoutMs?: number): Promise<number | null>;
  readonly exited: Promise<number>;
}

/**
 * Starts `switchboard start` with `flags` (kebab-case names, no dashes) on 127.0.0.1. `port` 0 lets the kernel pick
 * one; a named port that is still taken (a previous process's sockets) is retried until `bindRetryMs` runs out.
 */
export async function startServerChild(options: {
  dataDir: string;
  port?: number;
  flags?: Readonly<Record<string, string | number>>;
  bindRetryMs?: number;
}): Promise<ServerChild> {
  const deadline = Date.now() + (options.bindRetryMs ?? 0);
  for (let attempt = 0; ; attempt++) {
    try {
      return await startOnce(options);
    } catch (error) {
      if (Date.now() > deadline || attempt >= 50) throw error;
      await Bun.sleep(100);
    }
  }
}

async function startOnce(options: {
  dataDir: string;
  port?: number;
  flags?: Readonly<Record<string, string | number>>;
}): Promise<ServerChild> {
  const flags: Record<string, string | number> = {
    host: "127.0.0.1",
    port: options.port ?? 0,
    "data-dir": options.dataDir,
    registration: "open",
    "admin-port": 0,
    "log-level": "warn",
    ...options.flags,
  };
  const argv = [process.execPath, cliPath, "start"];
  for (const [name, value] of Object.entries(flags)) argv.push(`--${name}`, String(value));
  const child = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env } });
  trackChild(child);
  const tail: string[] = [];
  const parsed: Array<Record<string, unknown>> = [];
  let port = 0;
  const keep = (line: string) => {
    tail.push(line);
    if (tail.length > logLinesKept) tail.shift();
  };
  const readLines = (stream: ReadableStream<Uint8Array>, json: boolean) =>
    forEachLine(stream, (line) => {
      keep(line);
      if (!json) return;
      try {
        const record = JSON.parse(line) as Record<string, unknown>;
        if (parsed.length < 10_000) parsed.push(record);
        if (record.event === "server_started") port = Number(record.port);
      } catch {
        // Not a log line: kept in the tail only.
      }
    });
  void readLines(child.stdout, true).catch(() => {});
  void readLines(child.stderr, false).catch(() => {});
  const deadline = Date.now() + serverStartTimeoutMs;
  while (port === 0) {
    if (child.exitCode !== null) {
      await Bun.sleep(20); // let the last lines arrive
      throw new Error(`server exited with ${child.exitCode} before it started:\n${tail.join("\n")}`);
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      await child.exited;
      throw new Error(`server did not start within ${serverStartTimeoutMs} ms:\n${tail.join("\n")}`);
    }
    await Bun.sleep(10);
  }
  return {
    pid: child.pid,
    port,
    logTail: () => [...tail],
    events: (name) => parsed.filter((record) => record.event === name),
    exited: child.exited,
    async kill(signal = "SIGKILL") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await Promise.race([child.exited, Bun.sleep(childExitWaitMs)]);
    },
    async stop(timeoutMs = childExitWaitMs) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const code = await Promise.race([child.exited, Bun.sleep(timeoutMs).then(() => null)]);
      if (code === null) {
        child.kill("SIGKILL");
        await Promise.race([child.exited, Bun.sleep(childExitWaitMs)]);
      }
      return child.exitCode;
    },
  };
}

// The server's memory as PSS (/proc/PID/smaps_rollup): the bench's reading, shared with this suite.
export { processPssBytes } from "../bench/proc-stats.ts";
