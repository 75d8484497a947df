// The parent's side of the load generator: spawns load workers (bench/load-worker.ts) as child processes, each with
// source addresses of its own (127.x.y.z) and at most sessionsPerWorkerMax sessions, sends them
// commands, and gathers their replies and progress. The file limit (20,000 per process here) and the ephemeral
// ports of one source address (about 28,000) are why the load is spread this way.

import type { Subprocess } from "bun";
import { trackChild } from "./child-processes.ts";
import type { Transport, WorkerCommand, WorkerCounters, WorkerEvent, WorkerInit } from "./worker-protocol.ts";

const workerPath = new URL("./load-worker.ts", import.meta.url).pathname;
/**
 * A worker also holds its stdio, timers and a few files: this many sockets leave 1,000 of 20,000 files for them (the
 * million scenario packs workers this full, so that 53 of them hold a million; the others default to 5,000).
 */
export const sessionsPerWorkerMax = 19_000;
const quitTimeoutMs = 5_000;
/**
 * A worker's init derives the Ed25519 key of every session it holds (~40 µs each here), and all workers do it at
 * once on the host's cores: a million keys over 53 workers took longer than a fixed minute on this shared host.
 */
const initTimeoutBaseMs = 60_000;
const initTimeoutMsPerSession = 0.2;

/**
 * Each worker of this bench process gets source addresses of its own, 127.<run>.<worker>.<generation>: the second
 * octet is random per run, so a run never binds addresses whose ports the previous run left in TIME_WAIT (binding
 * before connecting scans the port range of the address in the kernel, and thousands of TIME_WAIT ports make each
 * connect take milliseconds of system time, which stalls the worker).
 */
const runOctet = 16 + Math.floor(Math.random() * 224);
let workerOctetNext = 1;

export function nextSourceAddressPrefix(targetHost: string): string | null {
  // Binding a 127.x source address only makes sense for a loopback target.
  if (!targetHost.startsWith("127.")) return null;
  if (workerOctetNext > 254) workerOctetNext = 1;
  return `127.${runOctet}.${workerOctetNext++}.`;
}

export interface WorkerProgress {
  ready: number;
  failed: number;
  plainOpen: number;
}

export class LoadWorker {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  readonly progress: WorkerProgress = { ready: 0, failed: 0, plainOpen: 0 };
  onProgress: (() => void) | null = null;

  private constructor(
    readonly index: number,
    readonly localAddressPrefix: string | null,
    private readonly child: Subprocess<"pipe", "pipe", "inherit">,
  ) {
    void this.read();
    void child.exited.then((code) => {
      for (const waiter of this.pending.values()) waiter.reject(new Error(`load worker ${index} exited (${code})`));
      this.pending.clear();
    });
  }

  static spawn(index: number, localAddressPrefix: string | null): LoadWorker {
    const child = Bun.spawn([process.execPath, workerPath], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "inherit",
      env: { ...process.env },
    });
    trackChild(child);
    return new LoadWorker(index, localAddressPrefix, child);
  }

  get pid(): number {
    return this.child.pid;
  }

  private async read(): Promise<void> {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of this.child.stdout) {
      buffered += decoder.decode(chunk, { stream: true });
      let newline = buffered.indexOf("\n");
      while (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        newline = buffered.indexOf("\n");
        if (line.trim() !== "") this.received(line);
      }
    }
  }

  private received(line: string): void {
    let event: WorkerEvent;
    try {
      event = JSON.parse(line) as WorkerEvent;
    } catch {
      process.stderr.write(`load worker ${this.index}: ${line}\n`);
      return;
    }
    if (event.event === "progress") {
      this.progress.ready = event.ready;
      this.progress.failed = event.failed;
      this.progress.plainOpen = event.plainOpen;
      this.onProgress?.();
      return;
    }
    const waiter = this.pending.get(event.id);
    if (waiter === undefined) return;
    this.pending.delete(event.id);
    if (event.ok) waiter.resolve(event.result);
    else waiter.reject(new Error(`load worker ${this.index}: ${event.error}`));
  }

  /** Sends a command and waits for its reply, at most timeoutMs. */
  request<T>(command: WorkerCommand, timeoutMs: number): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`load worker ${this.index}: no reply to ${command.cmd} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.child.stdin.write(`${JSON.stringify({ ...command, id })}\n`);
      this.child.stdin.flush();
    });
  }

  async quit(): Promise<void> {
    if (this.child.exitCode !== null) return;
    try {
      await this.request({ cmd: "quit" }, quitTimeoutMs);
    } catch {
      // Killed below.
    }
    try {
      this.child.stdin.end();
    } catch {
      // Already closed.
    }
    const exited = await Promise.race([this.child.exited, Bun.sleep(quitTimeoutMs).then(() => null)]);
    if (exited === null) {
      this.child.kill("SIGKILL");
      await this.child.exited;
    }
  }
}

export interface FleetOptions {
  readonly host: string;
  readonly port: number;
  readonly runSeed: string;
  /** Sessions of each worker, in key-index order starting at keyFirst. */
  readonly sessionsPerWorker: readonly number[];
  readonly keyFirst: number;
  /** Account of each key index from keyFirst on (seeded), or null to register over the protocol. */
  readonly accounts: readonly number[] | null;
  readonly connectTimeoutMs: number;
  readonly randomSeed: number;
  /** Raw TCP (default), WebSocket at wsPath of host:port, Noise or TLS on raw TCP (worker-protocol.ts). */
  readonly transport?: Transport;
  readonly wsPath?: string;
  /** The CA certificate (PEM) the TLS transport checks the server's against. */
  readonly tlsCa?: string;
}

/** Several load workers driven together. */
export class LoadFleet {
  onProgress: (() => void) | null = null;

  /** Sessions of all workers together. */
  readonly sessions: number;

  private constructor(
    readonly workers: readonly LoadWorker[],
    /** Key index of each worker's first session. */
    readonly keyFirsts: readonly number[],
    readonly sessionsPerWorker: readonly number[],
  ) {
    this.sessions = sessionsPerWorker.reduce((total, count) => total + count, 0);
    for (const worker of workers) worker.onProgress = () => this.onProgress?.();
  }

  /** Splits `sessions` into workers of at most `perWorker` sessions each (as even as possible). */
  static split(sessions: number, perWorker: number): number[] {
    const size = Math.min(perWorker, sessionsPerWorkerMax);
    const workers = Math.max(1, Math.ceil(sessions / size));
    return Array.from(
      { length: workers },
      (_, index) => Math.floor(sessions / workers) + (index < sessions % workers ? 1 : 0),
    );
  }

  static async start(options: FleetOptions): Promise<LoadFleet> {
    const workers: LoadWorker[] = [];
    const keyFirsts: number[] = [];
    let keyFirst = options.keyFirst;
    const sessions = options.sessionsPerWorker.reduce((total, count) => total + count, 0);
    const initTimeoutMs = initTimeoutBaseMs + Math.ceil(sessions * initTimeoutMsPerSession);
    try {
      for (const [index, count] of options.sessionsPerWorker.entries()) {
        if (count > sessionsPerWorkerMax) throw new Error(`a load worker holds at most ${sessionsPerWorkerMax}`);
        const worker = LoadWorker.spawn(index, nextSourceAddressPrefix(options.host));
        workers.push(worker);
        keyFirsts.push(keyFirst);
        keyFirst += count;
      }
      await Promise.all(
        workers.map((worker, index) => {
          const first = keyFirsts[index]!;
          const count = options.sessionsPerWorker[index]!;
          const init: WorkerInit = {
            host: options.host,
            port: options.port,
            localAddressPrefix: worker.localAddressPrefix,
            runSeed: options.runSeed,
            keyFirst: first,
            count,
            accounts:
              options.accounts === null
                ? null
                : options.accounts.slice(first - options.keyFirst, first - options.keyFirst + count),
            connectTimeoutMs: options.connectTimeoutMs,
            randomSeed: options.randomSeed * 1000 + index,
            transport: options.transport ?? "tcp",
            wsPath: options.wsPath ?? "/ws",
            tlsCa: options.tlsCa ?? null,
          };
          return worker.request({ cmd: "init", ...init }, initTimeoutMs);
        }),
      );
    } catch (error) {
      await Promise.all(workers.map((worker) => worker.quit()));
      throw error;
    }
    return new LoadFleet(workers, keyFirsts, options.sessionsPerWorker);
  }

  get ready(): number {
    return this.workers.reduce((total, worker) => total + worker.progress.ready, 0);
  }

  get failed(): number {
    return this.workers.reduce((total, worker) => total + worker.progress.failed, 0);
  }

  get plainOpen(): number {
    return this.workers.reduce((total, worker) => total + worker.progress.plainOpen, 0);
  }

  /** The same command to every worker (or one built per worker), all replies. */
  all<T>(command: WorkerCommand | ((worker: LoadWorker) => WorkerCommand), timeoutMs: number): Promise<T[]> {
    return Promise.all(
      this.workers.map((worker) =>
        worker.request<T>(typeof command === "function" ? command(worker) : command, timeoutMs),
      ),
    );
  }

  async report(): Promise<WorkerCounters[]> {
    return this.all<WorkerCounters>({ cmd: "report" }, 10_000);
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.quit()));
  }
}

/** Counters of all workers added up (maps of codes merged). */
export function sumCounters(reports: readonly WorkerCounters[]): WorkerCounters {
  const total: Record<string, unknown> = {};
  for (const report of reports) {
    for (const [key, value] of Object.entries(report)) {
      if (typeof value === "number") {
        if (key === "atMs" || key.endsWith("AtMs")) {
          const current = total[key] as number | undefined;
          const first = key.startsWith("first");
          if (value !== 0 && (current === undefined || current === 0 || (first ? value < current : value > current)))
            total[key] = value;
          else total[key] ??= value;
        } else total[key] = ((total[key] as number | undefined) ?? 0) + value;
      } else {
        const merged = (total[key] as Record<string, number> | undefined) ?? {};
        for (const [code, count] of Object.entries(value as Record<string, number>)) {
          merged[code] = (merged[code] ?? 0) + count;
        }
        total[key] = merged;
      }
    }
  }
  return total as unknown as WorkerCounters;
}
