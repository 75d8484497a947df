// `switchboard start --workers N` for tests: a real supervisor process on freshly picked loopback ports, its JSON log
// lines collected, its admin API at hand, and everything it started removed after each test. Used by the tests of
// workers, of media with workers and of groups with workers (they had a copy each; only one retried a port taken
// between the pick and the bind).

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { forEachLine, freePort, waitFor } from "./test-kit.ts";

const cli = join(import.meta.dir, "cli.ts");
/** Bounds of the kit's waits: all workers serving, and one admin answer. */
export const supervisorStartMs = 15_000;
const adminAnswerMs = 5_000;
/** How often a supervisor that finds a picked port taken before serving is started again. */
const portRetries = 3;

export interface SupervisorOptions {
  readonly workers: number;
  /** An existing data directory (a restart on the same data); a temporary one, removed at cleanup, when absent. */
  readonly dataDir?: string;
  readonly partitions?: number;
  /** Serve the media listener too, on a port of its own. */
  readonly media?: boolean;
  /** More `switchboard start` flags. */
  readonly flags?: readonly string[];
}

export interface Supervised {
  readonly port: number;
  readonly adminPort: number;
  /** 0 without `media`. */
  readonly mediaPort: number;
  readonly dataDir: string;
  readonly child: Subprocess;
  /** Log lines (JSON) seen so far, from stdout and stderr. */
  readonly lines: Array<Record<string, unknown>>;
  /** Worker index -> pid, from the worker_started lines. */
  pids(): Map<number, number>;
  /** A request to the supervisor's admin API with its token; the JSON answer. */
  admin(path: string, init?: RequestInit): Promise<Record<string, unknown>>;
}

/** The supervisors a test file starts, and their temporary data directories: cleanup() after each test. */
export class SupervisorKit {
  private readonly children: Subprocess[] = [];
  private readonly directories: string[] = [];

  /** Kills every supervisor (SIGKILL: the tests that stop one gracefully do it themselves) and removes the data. */
  cleanup(): void {
    for (const child of this.children.splice(0)) child.kill("SIGKILL");
    for (const directory of this.directories.splice(0)) rmSync(directory, { recursive: true, force: true });
  }

  /** Starts a supervisor and waits until every worker serves. */
  async start(options: SupervisorOptions): Promise<Supervised> {
    let dataDir = options.dataDir;
    if (dataDir === undefined) {
      dataDir = mkdtempSync(join(tmpdir(), "sb-w-"));
      this.directories.push(dataDir);
    }
    for (let attempt = 1; ; attempt++) {
      const started = await this.startOnce(options, dataDir);
      if (started !== "port taken") return started;
      if (attempt === portRetries) throw new Error(`the supervisor found its port taken ${portRetries} times`);
    }
  }

  /**
   * One supervisor on freshly picked ports. A port picked free can be taken before the supervisor binds it (other
   * processes of the run connect from the same ephemeral range): the supervisor then exits with `start_failed`
   * EADDRINUSE before any worker serves, and start() tries other ports rather than waiting out the start bound.
   */
  private async startOnce(options: SupervisorOptions, dataDir: string): Promise<Supervised | "port taken"> {
    const { workers } = options;
    const taken = new Set<number>();
    // Each probe closes its port, so the kernel may hand out the same one twice.
    const pick = () => {
      let port = freePort();
      for (let again = 0; again < 10 && taken.has(port); again++) port = freePort();
      taken.add(port);
      return port;
    };
    const port = pick();
    const adminPort = pick();
    const mediaPort = options.media === true ? pick() : 0;
    const child = Bun.spawn(
      [
        process.execPath,
        cli,
        "start",
        `--workers=${workers}`,
        `--port=${port}`,
        `--admin-port=${adminPort}`,
        ...(mediaPort === 0 ? [] : [`--media-port=${mediaPort}`]),
        `--data-dir=${dataDir}`,
        "--registration=open",
        `--partitions=${options.partitions ?? 8}`,
        "--lame-duck-ms=0",
        "--log-level=info",
        ...(options.flags ?? []),
      ],
      { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    this.children.push(child);
    const lines: Array<Record<string, unknown>> = [];
    // info lines come on stdout, warn and error (a worker's exit) on stderr.
    for (const stream of [child.stdout, child.stderr]) readLines(stream, lines);
    let exitCode: number | null = null;
    void child.exited.then((code) => {
      exitCode = code;
    });
    const serving = () => lines.filter((line) => line.event === "server_started").length >= workers;
    try {
      await waitFor(() => serving() || exitCode !== null, supervisorStartMs, `${workers} workers serving`);
    } catch (error) {
      throw new Error(`${(error as Error).message}; the supervisor said: ${JSON.stringify(lines.slice(-10))}`);
    }
    if (!serving()) {
      // Give the pipes a moment to hand over the last lines, for the message.
      await Bun.sleep(50);
      if (lines.some((line) => line.event === "start_failed" && line.code === "EADDRINUSE")) return "port taken";
      throw new Error(`the supervisor exited ${exitCode} before serving: ${JSON.stringify(lines.slice(-10))}`);
    }
    const token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
    return {
      port,
      adminPort,
      mediaPort,
      dataDir,
      child,
      lines,
      pids() {
        const pids = new Map<number, number>();
        for (const line of lines)
          if (line.event === "worker_started") pids.set(line.worker as number, line.pid as number);
        return pids;
      },
      async admin(path, init = {}) {
        const response = await fetch(`http://127.0.0.1:${adminPort}${path}`, {
          ...init,
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          signal: AbortSignal.timeout(adminAnswerMs),
        });
        return (await response.json()) as Record<string, unknown>;
      },
    };
  }
}

/** Collects the JSON lines of a stream (anything else is not a log line and is skipped). */
function readLines(stream: ReadableStream<Uint8Array>, into: Array<Record<string, unknown>>): void {
  forEachLine(stream, (line) => {
    try {
      into.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  }).catch(() => {});
}
