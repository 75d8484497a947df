// `switchboard start` with more than one worker: this process (the supervisor) holds the data directory lock, creates
// the run directory, spawns N worker processes (server/worker-main.ts) that share host:port with SO_REUSEPORT,
// restarts a worker that exits unexpectedly (with backoff), forwards SIGHUP and SIGTERM to them, and answers the
// admin HTTP port for all of them (supervisor-admin.ts). It serves no client itself and keeps no database open: it
// only brings the shared directory file to this build's migrations, once, before the workers start.
//
// How a worker gets its config: the supervisor passes on its own command line (the same --config and config flags)
// and its environment, and the worker loads them as `start` does. So a SIGHUP, forwarded to every worker, makes
// each re-read the same sources as a single process would. Passing the resolved config as JSON was rejected: a
// reload would then need the supervisor to re-read the config and hand it over a channel the workers do not have.

import { chmodSync, mkdirSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { workersMax } from "../protocol/limits.ts";
import { migrateSqliteFile } from "../storage/index.ts";
import { WalCheckpointer } from "../storage/wal-checkpointer.ts";
import { writeAdminToken } from "./admin-api.ts";
import type { AdminHttp } from "./admin-http.ts";
import { type Config, databasePath } from "./config.ts";
import { type DataDirectoryLock, lockDataDirectory, prepareDataDirectory } from "./data-directory.ts";
import type { Logger } from "./log.ts";
import { Counter, Gauge, renderMetrics, walCheckpointMetrics, walCheckpointObserver } from "./metrics.ts";
import { migrateToPartitions } from "./partition-migration.ts";
import { ensurePartitionCount, partitionFilePath } from "./partitions.ts";
import { asDataDirectoryError, asListenError, type ListenerName } from "./start-errors.ts";
import { listenSupervisorAdmin } from "./supervisor-admin.ts";
import { versionInfo } from "./version.ts";

/** The workers' entry point, spawned as `bun <workerEntry> <the start arguments> --worker-index i ...`. */
export const workerEntry = new URL("./worker-main.ts", import.meta.url).pathname;
/** Mode of `<dataDir>/run`, where the workers' admin sockets are: only the service user may connect to them. */
export const runDirectoryMode = 0o700;
/** After the stop timeout, how much longer workers get before SIGKILL (the drain's last commit and close). */
export const workerStopMarginMs = 5_000;
/** How long a SIGKILLed worker gets to be reaped before the supervisor gives up waiting for it. */
const workerKillWaitMs = 2_000;

export interface RestartBackoff {
  /** The first restart's delay; each quick exit after it doubles the delay... */
  readonly delayMsMin: number;
  /** ...up to this. */
  readonly delayMsMax: number;
  /** A worker that stayed up this long restarts after delayMsMin again. */
  readonly stableMs: number;
}

export const restartBackoffDefault: RestartBackoff = Object.freeze({
  delayMsMin: 100,
  delayMsMax: 10_000,
  stableMs: 30_000,
});

/** The delay before restarting a worker that ran `uptimeMs`, given the delay before its previous restart. */
export function restartDelayMs(backoff: RestartBackoff, previousDelayMs: number | undefined, uptimeMs: number): number {
  if (previousDelayMs === undefined || uptimeMs >= backoff.stableMs) return backoff.delayMsMin;
  return Math.min(previousDelayMs * 2, backoff.delayMsMax);
}

/**
 * How many workers `start` runs: the workers key, or with 0 one per core (at most workersMax). Port 0 means one
 * process: each worker would bind a port of its own (the config refuses workers > 1 with port 0).
 */
export function workerCount(config: Pick<Config, "workers" | "port">, cores = availableParallelism()): number {
  if (config.workers > 0) return config.workers;
  if (config.port === 0) return 1;
  return Math.max(1, Math.min(cores, workersMax));
}

/** The path of worker `index`'s admin socket (the worker binds it; the supervisor connects to it). */
export function workerSocketPath(runDir: string, index: number): string {
  return join(runDir, `admin-${index}.sock`);
}

export interface WorkerStatus {
  readonly index: number;
  /** The running process's PID, undefined between an exit and its restart. */
  readonly pid: number | undefined;
  readonly restarts: number;
}

export interface WorkersOptions {
  readonly count: number;
  /** The script each worker runs (workerEntry; a fake worker in tests). */
  readonly entry: string;
  /** Arguments every worker gets before its own --worker-index, --worker-count, --run-dir, --supervisor-pid. */
  readonly arguments: readonly string[];
  readonly runDir: string;
  readonly log: Logger;
  readonly env?: Record<string, string | undefined>;
  readonly backoff?: RestartBackoff;
  /** After the first SIGTERM of a stop, how long workers get to exit before SIGKILL. */
  readonly stopTimeoutMs: number;
  /**
   * A worker exited 2 (restarting cannot fix it: a bad config, a port it may not bind), or its first start failed
   * (exit 1: a port in use), as `start` itself would: it is not restarted, and the supervisor exits with that code.
   */
  readonly onFatal?: (index: number, exitCode: number) => void;
}

interface WorkerSlot {
  readonly index: number;
  process: Subprocess<"ignore", "inherit", "inherit"> | undefined;
  startedAtMs: number;
  previousDelayMs: number | undefined;
  restartTimer: ReturnType<typeof setTimeout> | undefined;
  restarts: number;
  /** The worker said it serves (the IPC message workerStartedMessage, after startServer resolved). */
  served: boolean;
}

/** What a worker sends its supervisor over the IPC channel once it serves. */
export const workerStartedMessage = "worker_serving";

/**
 * N worker processes kept running: spawned by start(), restarted after an unexpected exit, signalled together,
 * stopped together. Its metrics (restarts, workers up) are the supervisor's own series.
 */
export class Workers {
  readonly count: number;
  readonly restarts: Counter;
  readonly up: Gauge;
  private readonly slots: WorkerSlot[];
  private readonly backoff: RestartBackoff;
  private stopping: Promise<void> | null = null;

  constructor(private readonly options: WorkersOptions) {
    this.count = options.count;
    this.backoff = options.backoff ?? restartBackoffDefault;
    this.slots = Array.from({ length: options.count }, (_, index) => ({
      index,
      process: undefined,
      startedAtMs: 0,
      previousDelayMs: undefined,
      restartTimer: undefined,
      restarts: 0,
      served: false,
    }));
    const indexes = this.slots.map((slot) => String(slot.index));
    this.restarts = new Counter(
      "switchboard_worker_restarts_total",
      "Worker processes restarted after an unexpected exit",
      "worker",
      indexes,
    );
    this.up = new Gauge("switchboard_workers_up", "Worker processes running", () => this.upCount);
  }

  get upCount(): number {
    return this.slots.filter((slot) => slot.process !== undefined).length;
  }

  get stopped(): boolean {
    return this.stopping !== null;
  }

  statuses(): WorkerStatus[] {
    return this.slots.map((slot) => ({ index: slot.index, pid: slot.process?.pid, restarts: slot.restarts }));
  }

  socketPath(index: number): string {
    return workerSocketPath(this.options.runDir, index);
  }

  /** The supervisor's own series, in the text format. */
  metricsText(): string {
    return renderMetrics([this.restarts, this.up]);
  }

  start(): void {
    for (const slot of this.slots) this.spawn(slot);
  }

  /** Sends `signal` to every running worker. */
  signal(signal: NodeJS.Signals): void {
    for (const slot of this.slots) slot.process?.kill(signal);
  }

  /**
   * SIGTERM to every worker, no more restarts; resolves when all exited (those still running after stopTimeoutMs
   * get SIGKILL). A second call sends SIGTERM again (a worker in its lame duck goes on to the drain) and returns the
   * same promise.
   */
  stop(): Promise<void> {
    if (this.stopping !== null) {
      this.signal("SIGTERM");
      return this.stopping;
    }
    for (const slot of this.slots) clearTimeout(slot.restartTimer);
    this.signal("SIGTERM");
    this.stopping = (async () => {
      const running = () => this.slots.flatMap((slot) => (slot.process === undefined ? [] : [slot.process]));
      const exited = (processes: Subprocess[], ms: number) =>
        Promise.race([Promise.all(processes.map((child) => child.exited)), Bun.sleep(ms)]);
      await exited(running(), this.options.stopTimeoutMs);
      const late = running();
      if (late.length === 0) return;
      this.options.log.warn("workers_killed", {
        pids: late.map((child) => child.pid),
        afterMs: this.options.stopTimeoutMs,
      });
      for (const child of late) child.kill("SIGKILL");
      await exited(late, workerKillWaitMs);
    })();
    return this.stopping;
  }

  private spawn(slot: WorkerSlot): void {
    const { options } = this;
    const argv = [
      process.execPath,
      options.entry,
      ...options.arguments,
      "--worker-index",
      String(slot.index),
      "--worker-count",
      String(options.count),
      "--run-dir",
      options.runDir,
      "--supervisor-pid",
      String(process.pid),
    ];
    const child = Bun.spawn(argv, {
      stdio: ["ignore", "inherit", "inherit"],
      env: options.env ?? process.env,
      ipc: (message) => {
        if (message === workerStartedMessage) slot.served = true;
      },
    });
    slot.process = child;
    slot.startedAtMs = performance.now();
    options.log.notice("worker_started", { worker: slot.index, pid: child.pid, restarts: slot.restarts });
    void child.exited.then(() => this.exited(slot, child));
  }

  private exited(slot: WorkerSlot, child: Subprocess): void {
    if (slot.process === child) slot.process = undefined;
    const uptimeMs = Math.round(performance.now() - slot.startedAtMs);
    const fields = { worker: slot.index, pid: child.pid, code: child.exitCode, signal: child.signalCode, uptimeMs };
    if (this.stopping !== null) {
      this.options.log.info("worker_exited", fields);
      return;
    }
    // A first start that failed fails the supervisor as it would fail `start`: a supervisor that restarted a worker
    // forever on a port another program holds would hide it from systemd.
    const firstStartFailed = !slot.served && slot.restarts === 0;
    if (child.exitCode === 2 || firstStartFailed) {
      this.options.log.error("worker_exited", { ...fields, restart: false });
      this.options.onFatal?.(slot.index, child.exitCode ?? 1);
      return;
    }
    const delayMs = restartDelayMs(this.backoff, slot.previousDelayMs, uptimeMs);
    slot.previousDelayMs = delayMs;
    this.options.log.warn("worker_exited", { ...fields, restartInMs: delayMs });
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (this.stopping !== null) return;
      slot.restarts++;
      this.restarts.incLabel(String(slot.index));
      this.spawn(slot);
    }, delayMs);
  }
}

export interface SupervisorOptions {
  readonly count: number;
  /** The command line `start` was given (the config file and flags): every worker loads its config from it. */
  readonly arguments: readonly string[];
  readonly log: Logger;
  /** The worker script (default workerEntry; tests pass a fake). */
  readonly entry?: string;
  readonly env?: Record<string, string | undefined>;
  readonly backoff?: RestartBackoff;
  /** How long a worker's graceful stop may take before SIGKILL: lame duck + close timeout + margin by default. */
  readonly stopTimeoutMs?: number;
}

export interface RunningSupervisor {
  readonly workers: Workers;
  /** The admin port (0 when adminPort is 0). */
  readonly adminPort: number;
  /** The graceful stop; a second call forwards SIGTERM again. */
  stop(): Promise<void>;
  /** Resolves with the exit code once stopped: 0, or a worker's code when it could not start (1, 2). */
  readonly finished: Promise<number>;
}

/** The close timeout of a worker's graceful stop (stopTimeoutMsDefault of server.ts, not imported to keep it light). */
const workerCloseTimeoutMs = 10_000;

/**
 * Starts the supervisor: data directory lock, run directory, admin token, admin listener, workers. Throws as
 * startServer does on a start that cannot proceed (DataDirectoryLockedError, a StartError) before any worker runs.
 * Installs no signal handlers: installSupervisorSignals does.
 */
export async function startSupervisor(config: Config, options: SupervisorOptions): Promise<RunningSupervisor> {
  let lock: DataDirectoryLock | null = null;
  const runDir = join(config.dataDir, "run");
  let token: string;
  try {
    prepareDataDirectory(config.dataDir);
    lock = lockDataDirectory(config.dataDir);
    mkdirSync(runDir, { recursive: true, mode: runDirectoryMode });
    chmodSync(runDir, runDirectoryMode);
    // Written once for all workers, which read it (they must not write their own: the file holds one token).
    token = writeAdminToken(config.dataDir);
    // Before any worker opens a partition: a single-file data directory moves into partitions here, once, under
    // the lock, and the partition count is fixed (workers would otherwise race to write it).
    await migrateToPartitions({ dataDir: config.dataDir, count: config.partitions, synchronous: config.synchronous });
    ensurePartitionCount(config.dataDir, config.partitions);
    // The directory file at this build's migrations before any worker opens it (storage/database-sqlite.ts,
    // migrateSqliteFile): every worker opens it, and N of them finding it new would queue for its write lock. (A
    // partition has one owner, which migrates it alone.)
    await migrateSqliteFile({ path: databasePath(config), synchronous: config.synchronous });
  } catch (error) {
    lock?.release();
    throw asDataDirectoryError(config.dataDir, error);
  }
  try {
    probePorts(config);
  } catch (error) {
    lock.release();
    throw error;
  }
  const heldLock: DataDirectoryLock = lock;
  let finish: (code: number) => void = () => {};
  const finished = new Promise<number>((resolve) => {
    finish = resolve;
  });
  let exitCode = 0;
  const workers = new Workers({
    count: options.count,
    entry: options.entry ?? workerEntry,
    arguments: options.arguments,
    runDir,
    log: options.log,
    env: options.env,
    backoff: options.backoff,
    stopTimeoutMs: options.stopTimeoutMs ?? config.lameDuckMs + workerCloseTimeoutMs + workerStopMarginMs,
    onFatal: (_index, code) => {
      if (exitCode === 0) exitCode = code === 0 ? 1 : code;
      void stop();
    },
  });
  // The one checkpoint thread of all workers (storage/wal-checkpointer.ts): a thread per worker would cost each
  // worker ~14 MiB of PSS. Workers open their files with checkpoints "elsewhere".
  const checkpointSet = walCheckpointMetrics();
  const checkpointer = new WalCheckpointer(
    walCheckpointObserver(checkpointSet, (path, error) => options.log.warn("checkpoint_failed", { path, error })),
  );
  const partitionCount = ensurePartitionCount(config.dataDir, config.partitions);
  for (const path of [
    databasePath(config),
    ...Array.from({ length: partitionCount }, (_, partition) => partitionFilePath(config.dataDir, partition)),
  ]) {
    checkpointer.watch(path, config.synchronous);
  }
  let admin: AdminHttp | null = null;
  try {
    if (config.adminPort !== 0) {
      admin = listenSupervisorAdmin({
        config,
        token,
        workers,
        extraMetrics: () => renderMetrics([checkpointSet.checkpoints, checkpointSet.seconds, checkpointSet.failures]),
        drain: () => void stop(),
        log: options.log,
      });
    }
  } catch (error) {
    await checkpointer.close();
    heldLock.release();
    throw asListenError("admin", config.adminHost, config.adminPort, error);
  }
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    if (stopping !== null) {
      void workers.stop();
      return stopping;
    }
    options.log.notice("supervisor_stopping", { workers: workers.upCount });
    stopping = (async () => {
      await workers.stop();
      admin?.stop();
      // After the workers: the thread's connections are then the last, and their close checkpoints every log whole
      // and removes it, as a single process's clean stop does.
      await checkpointer.close();
      heldLock.release();
      options.log.notice("supervisor_stopped", { exitCode });
      finish(exitCode);
    })();
    return stopping;
  };
  workers.start();
  options.log.notice("supervisor_started", {
    version: versionInfo().version,
    pid: process.pid,
    workers: options.count,
    host: config.host,
    port: config.port,
    adminPort: admin?.port ?? 0,
    dataDir: config.dataDir,
    runDir,
  });
  return { workers, adminPort: admin?.port ?? 0, stop, finished };
}

/**
 * Binds and closes the client ports once, without SO_REUSEPORT, before any worker starts: a port in use (or one this
 * user may not bind) fails the start with one line, as a single server's does, instead of once per worker.
 */
function probePorts(config: Config): void {
  const probes: Array<[ListenerName, string, number]> = [["tcp", config.host, config.port]];
  if (config.wsPort !== 0) probes.push(["websocket", config.wsHost, config.wsPort]);
  if (config.mediaPort !== 0) probes.push(["media", config.mediaHost, config.mediaPort]);
  for (const [name, host, port] of probes) {
    try {
      Bun.listen({ hostname: host, port, socket: { data() {} } }).stop(true);
    } catch (error) {
      throw asListenError(name, host, port, error);
    }
  }
}

/** SIGTERM and SIGINT stop (a second one forwards SIGTERM again, ending the lame duck); SIGHUP is forwarded. */
export function installSupervisorSignals(supervisor: RunningSupervisor, log: Logger): void {
  const stop = (signal: string) => {
    log.info("signal", { signal });
    void supervisor.stop();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGHUP", () => {
    log.info("signal", { signal: "SIGHUP", forwardedTo: supervisor.workers.upCount });
    supervisor.workers.signal("SIGHUP");
  });
}
