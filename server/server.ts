// Composes a running server from its config: storage, codec, directory, router, delivery, handlers, listeners,
// the timer wheel, the retention sweeper and the admin HTTP listener. `stop` is the graceful path (SIGTERM) and
// `reload` the SIGHUP path: new handler code and reloadable config, with every connection kept.

import { join } from "node:path";
import { ErrorCode, FrameCodec } from "../protocol/index.ts";
import { meshPeersWaitMs } from "../protocol/limits.ts";
import { openSqliteStorage, type Storage } from "../storage/index.ts";
import { type CheckpointObserver, WalCheckpointer } from "../storage/wal-checkpointer.ts";
import type { AccountRequests } from "./account-requests.ts";
import { createAdminApi, readAdminToken, writeAdminToken } from "./admin-api.ts";
import { type AdminHttp, listenAdmin } from "./admin-http.ts";
import type { Auth } from "./auth.ts";
import { zlibCompressor } from "./compression-zlib.ts";
import { type Config, databasePath, mergeReload, plaintextExposed } from "./config.ts";
import type { ConnectionHandler } from "./connection.ts";
import type { ServerContext } from "./context.ts";
import { type DataDirectoryLock, lockDataDirectory, prepareDataDirectory } from "./data-directory.ts";
import { Delivery } from "./delivery.ts";
import { Directory } from "./directory.ts";
import { EventLoopLag } from "./event-loop-lag.ts";
import { GroupRequests, localGroupDispatch } from "./group-requests.ts";
import { KeyDirectory } from "./keys-directory.ts";
import { LastSeenRecorder } from "./last-seen.ts";
import { createLogger, type Logger } from "./log.ts";
import { listenMedia, type MediaListener } from "./media-http.ts";
import { MediaRequests } from "./media-requests.ts";
import { type MediaService, openMediaService } from "./media-service.ts";
import { MediaSweeper } from "./media-sweeper.ts";
import type { Mesh } from "./mesh.ts";
import { startUnixMesh } from "./mesh-unix.ts";
import { Metrics, walCheckpointObserver } from "./metrics.ts";
import { migrateToPartitions } from "./partition-migration.ts";
import {
  type ForeignClientIds,
  openPartitions,
  ownerOfPartition,
  type Partitions,
  partitionedStorage,
} from "./partitions.ts";
import { registerProcessMetrics } from "./process-metrics.ts";
import { resyncScheduler } from "./queue-totals.ts";
import { RetentionSweeper } from "./retention-sweeper.ts";
import { LocalRouter } from "./router-local.ts";
import { MeshRouting } from "./routing-mesh.ts";
import { serverNames } from "./server-names.ts";
import { SessionIo } from "./session-io.ts";
import { drainWindowMs, SessionTable } from "./session-table.ts";
import { asDataDirectoryError, asListenError, type ListenerName } from "./start-errors.ts";
import { StartMarks } from "./start-marks.ts";
import { listenTcp, type TcpListeners } from "./tcp-listener.ts";
import { readTlsFiles, type TlsFiles } from "./tls-files.ts";
import type { NoiseServer } from "./transport-noise.ts";
import { versionInfo } from "./version.ts";
import { listenWebSocket, type WsListener } from "./ws-listener.ts";

export interface RunningServer {
  readonly port: number;
  /** The admin HTTP port, or 0 when disabled. */
  readonly adminPort: number;
  /** The WebSocket port, or 0 when disabled. */
  readonly wsPort: number;
  /** The media HTTP port, or 0 when disabled. */
  readonly mediaPort: number;
  /** The media store (index, files, token key), or null when the media listener is off. */
  readonly media: MediaService | null;
  readonly mediaSweeper: MediaSweeper | null;
  readonly context: ServerContext;
  /** The handler of the current code generation (a reload replaces it). */
  readonly connections: ConnectionHandler;
  readonly delivery: Delivery;
  readonly sweeper: RetentionSweeper;
  /** How many times the handler code was loaded (1 at start, +1 per reload). */
  readonly generation: number;
  /**
   * Graceful stop: the lame duck first (/readyz answers 503 for `lameDuckMs` while everything is still served), then
   * stop accepting, commit what is pending, goaway to every session (retry hints jittered over a window sized to the
   * number of sessions: drainWindowMs), wait for the sockets to close (at most `timeoutMs`), commit again, close the
   * store. `lameDuckMs` defaults to the config's, or 0 without an admin listener (nothing could see /readyz).
   * Idempotent; a second call during the lame duck ends it at once.
   */
  stop(options?: { timeoutMs?: number; lameDuckMs?: number }): Promise<void>;
  /**
   * Loads the handler code afresh and applies reloadable config from `nextConfig` (restart-only keys keep their
   * running values). Open sessions stay connected and are answered by the new code.
   */
  reload(nextConfig?: Config): Promise<{ generation: number; applied: string[]; ignored: string[] }>;
}

export interface StartOptions {
  readonly log?: Logger;
  readonly now?: () => number;
  /** An already open store (tests); the server then leaves closing it to the caller. */
  readonly storage?: Storage;
  /**
   * This server is worker `index` of `count` under a supervisor (supervisor.ts): it owns the partitions p with
   * p mod count = index, shares the ports (SO_REUSEPORT), takes no data directory lock (the supervisor holds it),
   * serves its admin HTTP on <runDir>/admin-<index>.sock, and reaches the other workers over the mesh in runDir.
   */
  readonly worker?: WorkerPlacement;
}

export interface WorkerPlacement {
  readonly index: number;
  readonly count: number;
  readonly runDir: string;
}

/** Default bound for a graceful stop: sockets get this long to take their goaway before they are closed anyway. */
export const stopTimeoutMsDefault = 10_000;

interface HandlerModules {
  ConnectionHandler: typeof ConnectionHandler;
  Auth: typeof Auth;
  AccountRequests: typeof AccountRequests;
}

/**
 * Imports the handler modules. A generation above 1 imports them under a new URL, which gives fresh module instances
 * with the code as it is on disk now; the modules they import (delivery, storage, protocol) stay shared, so the state
 * they hold survives.
 */
async function importHandlers(generation: number): Promise<HandlerModules> {
  const suffix = generation === 1 ? "" : `?generation=${generation}`;
  const [connection, auth, requests] = await Promise.all([
    import(`./connection.ts${suffix}`) as Promise<typeof import("./connection.ts")>,
    import(`./auth.ts${suffix}`) as Promise<typeof import("./auth.ts")>,
    import(`./account-requests.ts${suffix}`) as Promise<typeof import("./account-requests.ts")>,
  ]);
  return {
    ConnectionHandler: connection.ConnectionHandler,
    Auth: auth.Auth,
    AccountRequests: requests.AccountRequests,
  };
}

export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  // Where a start's time goes, logged with server_started (OPERATIONS.md, "Start time"): 56 workers on 2 cores took
  // minutes to start, and this says which step to cut. Times are ms since the process started (performance.now()).
  const startMarks = new StartMarks();
  const limits = config.limits;
  let storage = options.storage;
  // Held from before the database opens until after it closes: one server per data directory (data-directory.ts).
  let lock: DataDirectoryLock | null = null;
  const now = options.now ?? Date.now;
  const worker = options.worker;
  let partitions: Partitions | null = null;
  // Set once the context exists; the partitioned store hands it the sender marks other workers own.
  let routing: MeshRouting | null = null;
  const metrics = new Metrics();
  // Failures of the checkpoint thread go to the context's logger once it exists.
  let logCheckpointFailure: (path: string, error: string) => void = () => {};
  const checkpoints: CheckpointObserver = walCheckpointObserver(
    {
      checkpoints: metrics.walCheckpoints,
      seconds: metrics.walCheckpointSeconds,
      failures: metrics.walCheckpointFailures,
    },
    (path, error) => logCheckpointFailure(path, error),
  );
  if (storage === undefined) {
    try {
      prepareDataDirectory(config.dataDir);
      if (worker === undefined) lock = lockDataDirectory(config.dataDir);
      const opened = await openDataDirectory(config, now, worker, checkpoints, (entries) =>
        routing?.clientIdMarks(entries),
      );
      storage = opened.storage;
      partitions = opened.partitions;
      startMarks.mark("storage");
    } catch (error) {
      lock?.release();
      // A path the user may not write, a file where the directory should be: one line and exit 2 (start-errors.ts).
      throw asDataDirectoryError(config.dataDir, error);
    }
  }
  // node:zlib inflates a small frame ~10x faster than fflate here (bench/micro-codec.ts); the bytes are the same.
  const codec = new FrameCodec({ limits, compressor: zlibCompressor });
  const io = new SessionIo(codec, limits, metrics);
  // Every session of the process, as slots: the router indexes them, the handlers and the mesh's proxies use them.
  const table = new SessionTable(limits.timerTickMs, now);
  const base = {
    config,
    limits,
    codec,
    storage,
    directory: new Directory(storage, limits.directoryAccountsMax),
    router: new LocalRouter(table.slots),
    routing: null,
    media: null,
    groups: null,
    io,
    log: countReloadFailures(options.log ?? createLogger(config.logLevel), metrics),
    metrics,
    now,
  };
  // The recorder reads limits and log through the context (both reloadable), so it gets the finished object.
  const context: ServerContext = Object.assign(base, { lastSeen: new LastSeenRecorder(base) });
  logCheckpointFailure = (path, error) => context.log.warn("checkpoint_failed", { path, error });
  const delivery = new Delivery(context);
  // Kept across handler reloads: it holds the fetch budgets (keys-fetch-limiter.ts).
  const keys = new KeyDirectory(context, delivery);
  // Media (issue 17): its own SQLite file and blob files under dataDir/media, opened only when the listener is on.
  let media: MediaService | null = null;
  let mediaSweeper: MediaSweeper | null = null;
  if (config.mediaPort !== 0) {
    media = openMediaService({ dataDir: config.dataDir, url: config.mediaUrl, limits: () => context.limits, now });
    context.media = new MediaRequests(context, media);
    registerMediaMetrics(metrics, media);
    // One sweeper per host: worker 0's, or the single process's.
    if (worker === undefined || worker.index === 0) mediaSweeper = new MediaSweeper(media, () => context.log);
  }
  let mesh: Mesh | null = null;
  if (worker !== undefined && worker.count > 1 && partitions !== null) {
    const meshRouting = new MeshRouting(context, delivery, keys, partitions, worker.index, worker.count, table.slots);
    routing = meshRouting;
    context.routing = meshRouting;
    context.directory.onInvalidate = (account) => meshRouting.directoryChanged(account);
    mesh = await startUnixMesh({
      dir: worker.runDir,
      self: worker.index,
      size: worker.count,
      handlers: meshRouting,
      // Garbage from another worker is a bug: crash, and the supervisor restarts this worker.
      fatal: (reason) => {
        context.log.error("mesh_fault", { reason });
        process.exit(70);
      },
    });
    meshRouting.mesh = mesh;
    startMarks.mark("meshListen");
    await waitForPeers(mesh, meshPeersWaitMs);
    startMarks.mark("meshPeers");
  }
  // Groups (issue 14): their owners hand fan-outs to other workers over the mesh, so they come after it.
  const groupPartitions = partitions;
  context.groups = new GroupRequests(
    context,
    delivery,
    routing?.groupDispatch ?? localGroupDispatch,
    (account) => groupPartitions?.partitionOf(account) ?? 0,
  );
  let generation = 1;
  const build = (modules: HandlerModules): ConnectionHandler => {
    const auth = new modules.Auth(context, delivery);
    const requests = new modules.AccountRequests(context, delivery);
    return new modules.ConnectionHandler(context, delivery, auth, requests, table, keys);
  };
  let connections = build(await importHandlers(generation));
  startMarks.mark("handlers");
  const sweeper = new RetentionSweeper(context, (devices) => delivery.resyncCounters(devices));
  const lag = new EventLoopLag(
    (lagMs) => metrics.eventLoopLag.observe(lagMs / 1000),
    () => performance.now(),
    limits.eventLoopProbeMs,
    (busyMs) => metrics.eventLoopBusy.observe(busyMs / 1000),
  );
  registerGauges(metrics, table, delivery, lag);
  registerProcessMetrics(metrics);
  // Queue totals: read once here, then kept by the commit path (queue-totals.ts).
  const readQueueTotals = () =>
    delivery.commit.between(async () => metrics.queueTotals.set(await storage.queues.totals()));
  await readQueueTotals();
  const queueResync = resyncScheduler(readQueueTotals, (error) =>
    context.log.error("queue_totals_failed", { error: String(error) }),
  );
  metrics.queueTotals.onStale = queueResync.onStale;

  // Noise on the TCP listener: the static key of the data directory, made at first start (noise-static-key.ts).
  let noiseServer: NoiseServer | null = null;
  if (config.tcpEncryption === "noise") {
    try {
      prepareDataDirectory(config.dataDir);
      // Imported only here: a plaintext or TLS server never loads the Noise code and its libraries.
      const { NoiseServer } = await import("./transport-noise.ts");
      const { loadNoiseStaticKey } = await import("./noise-static-key.ts");
      noiseServer = new NoiseServer(loadNoiseStaticKey(config.dataDir));
      table.slots.noiseSockets = noiseServer;
    } catch (error) {
      if (options.storage === undefined) await storage.close();
      lock?.release();
      // A file system error names its cause in one line; a damaged or loose key file says what to do itself.
      throw asDataDirectoryError(config.dataDir, error);
    }
  }

  // TLS listeners: the operator's PEM files, read again on SIGHUP (tls-files.ts).
  const tlsWanted = config.tcpEncryption === "tls" || (config.wsPort !== 0 && config.wsEncryption === "tls");
  let tlsFiles: TlsFiles | null = null;
  if (tlsWanted) {
    try {
      tlsFiles = readTlsFiles(config);
    } catch (error) {
      if (options.storage === undefined) await storage.close();
      lock?.release();
      throw error;
    }
  }

  // A port already in use fails the start: close what was opened before it, so a caller can retry cleanly.
  let listeners: TcpListeners | null = null;
  let webSocket: WsListener | null = null;
  let admin: AdminHttp | null = null;
  let mediaListener: MediaListener | null = null;
  // Which listener is binding, for the one-line error when a bind fails.
  let binding: [ListenerName, string, number] = ["tcp", config.host, config.port];
  try {
    const reusePort = worker !== undefined;
    listeners = listenTcp(
      {
        host: config.host,
        port: config.port,
        listeners: config.listeners,
        reusePort,
        noise: noiseServer,
        tls: config.tcpEncryption === "tls" ? tlsFiles : null,
      },
      connections,
    );
    binding = ["websocket", config.wsHost, config.wsPort];
    if (config.wsPort !== 0) {
      webSocket = listenWebSocket(config, connections, reusePort, config.wsEncryption === "tls" ? tlsFiles : null);
    }
    binding = ["media", config.mediaHost, config.mediaPort];
    if (media !== null) {
      mediaListener = listenMedia(
        { host: config.mediaHost, port: config.mediaPort, reusePort },
        media,
        () => context.log,
      );
    }
    binding = ["admin", config.adminHost, config.adminPort];
    if (worker !== undefined) {
      // The supervisor answers the admin port for all workers and asks each on its socket (supervisor-admin.ts),
      // with the token it wrote. A drain asked of one worker ends it as SIGTERM does.
      const api = createAdminApi({
        context,
        table,
        delivery,
        token: readAdminToken(config.dataDir),
        listenHost: config.adminHost,
        drain: () => void process.kill(process.pid, "SIGTERM"),
      });
      admin = listenAdmin(
        {
          host: config.adminHost,
          port: 0,
          names: serverNames(config),
          unix: join(worker.runDir, `admin-${worker.index}.sock`),
        },
        { metrics: () => metrics.renderFresh(), ready: () => table.ready, api },
      );
    } else if (config.adminPort !== 0) {
      // The operator API's token goes into the data directory this server owns (kept in memory only for a store
      // passed in by a test, whose directory may not exist).
      const api = createAdminApi({
        context,
        table,
        delivery,
        token: options.storage === undefined ? writeAdminToken(config.dataDir) : crypto.randomUUID(),
        listenHost: config.adminHost,
        drain: () => void stop(),
      });
      admin = listenAdmin(
        { host: config.adminHost, port: config.adminPort, names: serverNames(config) },
        { metrics: () => metrics.renderFresh(), ready: () => table.ready, api },
      );
    }
  } catch (error) {
    listeners?.stop();
    webSocket?.stop();
    mediaListener?.stop();
    media?.close();
    admin?.stop();
    mesh?.close();
    if (options.storage === undefined) await storage.close();
    lock?.release();
    throw asListenError(...binding, error);
  }
  const tcp: TcpListeners = listeners;
  const exposed = plaintextExposed(config);
  if (exposed.length > 0) {
    // Allowed by insecure = true (config.ts refuses it otherwise): say so at every start.
    context.log.warn("plaintext_listener", {
      listeners: exposed,
      reason: "insecure = true: client traffic on these listeners is readable and alterable on the network",
    });
  }
  table.wheel.start();
  sweeper.start();
  mediaSweeper?.start();
  context.lastSeen.start();
  lag.start();
  context.log.notice("server_started", {
    version: versionInfo().version,
    host: config.host,
    port: tcp.port,
    adminPort: admin?.port ?? 0,
    wsPort: webSocket?.port ?? 0,
    mediaPort: mediaListener?.port ?? 0,
    listeners: config.listeners,
    ...(worker === undefined ? {} : { worker: worker.index, workers: worker.count }),
    dataDir: config.dataDir,
    synchronous: config.synchronous,
    registration: config.registration,
    tcpEncryption: config.tcpEncryption,
    ...(noiseServer === null ? {} : { noiseKey: Buffer.from(noiseServer.staticKeyPair.publicKey).toString("hex") }),
    startMs: startMarks.done(),
  });

  let stopping: Promise<void> | null = null;
  // Ends the lame duck early: a second stop (a second SIGTERM or SIGINT, Ctrl-C twice) goes on to the drain at once.
  let endLameDuck: (() => void) | null = null;
  const stop = (stopOptions: { timeoutMs?: number; lameDuckMs?: number } = {}): Promise<void> => {
    if (stopping !== null) {
      endLameDuck?.();
      return stopping;
    }
    stopping = (async () => {
      const timeoutMs = stopOptions.timeoutMs ?? stopTimeoutMsDefault;
      // The lame duck: not ready, still serving. New connections are accepted and served as usual: a load
      // balancer needs a few seconds to see the 503, and a client it still sends here is better served than refused
      // (it gets its goaway with everyone else). Without an admin listener nothing can see /readyz: no wait.
      const lameDuckMs = stopOptions.lameDuckMs ?? (admin === null ? 0 : context.config.lameDuckMs);
      table.lameDuck = true;
      if (lameDuckMs > 0) {
        context.log.notice("lame_duck", { ms: lameDuckMs, sessions: table.count });
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((resolve) => {
          endLameDuck = resolve;
          timer = setTimeout(resolve, lameDuckMs);
        });
        clearTimeout(timer);
        endLameDuck = null;
      }
      const retryWindowMs = drainWindowMs(
        table.count,
        context.config.drainReconnectsPerSecond,
        context.limits.goawayRetryAfterMsMax,
      );
      table.beginDrain(retryWindowMs);
      context.log.notice("draining", { sessions: table.count, retryWindowMs });
      tcp.stop();
      webSocket?.stop();
      // Uploads in flight are cut; what they wrote stays for a resume (PROTOCOL.md "Media").
      mediaListener?.stop();
      await mediaSweeper?.stop();
      sweeper.stop();
      await delivery.commit.idle();
      for (const session of [...table.sessions()]) {
        const retryAfterMs = table.retryAfterMs(context.limits.goawayRetryAfterMsMax);
        io.goaway(session, ErrorCode.shuttingDown, retryAfterMs, "server shutting down");
      }
      const deadline = Date.now() + timeoutMs;
      while (table.count > 0 && Date.now() < deadline) await Bun.sleep(10);
      await delivery.commit.idle();
      context.lastSeen.stop();
      // Nothing is served any more: this last write may wait for another worker's lock.
      await context.lastSeen.flush({ wait: true });
      table.wheel.stop();
      lag.stop();
      queueResync.stop();
      admin?.stop();
      mesh?.close();
      if (options.storage === undefined) await storage.close();
      media?.close();
      lock?.release();
      context.log.notice("server_stopped", { sessionsLeft: table.count });
    })();
    return stopping;
  };

  /** A renewed certificate: read the files again; a broken one keeps the running certificate (and says so). */
  const reloadTls = () => {
    let files: TlsFiles;
    try {
      files = readTlsFiles(config);
    } catch (error) {
      context.log.error("tls_reload_failed", { error: String(error), keeping: "the certificate read before" });
      return;
    }
    if (config.tcpEncryption === "tls") tcp.reloadTls(files);
    if (config.wsEncryption === "tls") webSocket?.reloadTls(files);
    context.log.info("tls_reloaded", { certFile: config.tlsCertFile });
  };

  const reload = async (nextConfig: Config = context.config) => {
    let merged: ReturnType<typeof mergeReload>;
    try {
      merged = mergeReload(context.config, nextConfig);
      const modules = await importHandlers(generation + 1);
      generation++;
      context.config = merged.config;
      context.limits = merged.config.limits;
      io.limits = merged.config.limits;
      if (merged.applied.includes("logLevel") && options.log === undefined)
        context.log = countReloadFailures(createLogger(merged.config.logLevel), metrics);
      connections = build(modules);
      tcp.reload(connections);
      webSocket?.reload(connections);
      if (tlsWanted) reloadTls();
      metrics.reloads.inc({ result: "ok" });
      metrics.lastReloadSuccessful = 1;
      // Queues an operator changed with a store command since the last start or reload are counted again.
      metrics.queueTotals.markStale();
      context.log.info("reloaded", { generation, applied: merged.applied, needRestart: merged.ignored });
    } catch (error) {
      // The old code keeps running: a reload that cannot load must not take the server down. (The log line counts
      // the failure: countReloadFailures.)
      context.log.error("reload_failed", { error: String(error) });
      throw error;
    }
    return { generation, applied: merged.applied, ignored: merged.ignored };
  };

  return {
    port: tcp.port,
    adminPort: admin?.port ?? 0,
    wsPort: webSocket?.port ?? 0,
    mediaPort: mediaListener?.port ?? 0,
    media,
    mediaSweeper,
    context,
    get connections() {
      return connections;
    },
    delivery,
    sweeper,
    get generation() {
      return generation;
    },
    stop,
    reload,
  };
}

/** The media listener's counts and the index's sizes on /metrics (OPERATIONS.md "Media"). */
function registerMediaMetrics(metrics: Metrics, media: MediaService): void {
  const { stats } = media;
  metrics.counter("switchboard_media_upload_bytes_total", "Bytes written by media uploads", () => stats.uploadBytes);
  metrics.counter("switchboard_media_uploads_stored_total", "Uploads verified and stored", () => stats.uploadsStored);
  metrics.counter("switchboard_media_download_bytes_total", "Bytes of media answers", () => stats.downloadBytes);
  metrics.counter(
    "switchboard_media_hash_mismatches_total",
    "Uploads refused because their bytes did not hash to their name (460)",
    () => stats.hashMismatches,
  );
  metrics.counter("switchboard_media_refusals_total", "Media HTTP answers of 400 and up", () => stats.refusals);
  // One count query of the shared index per scrape (every worker shows the same host-wide values).
  metrics.gauge("switchboard_media_index_rows", "Rows of the media index, by table", () => {
    const counts = media.index.counts();
    return [
      [{ table: "blobs" }, counts.blobs],
      [{ table: "uploads" }, counts.uploads],
      [{ table: "audience" }, counts.audience],
    ];
  });
}

/** Waits (at most `waitMs`) until every other worker is up, so that the first sessions find their owners. */
async function waitForPeers(mesh: Mesh, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  const allUp = () => {
    for (let peer = 0; peer < mesh.size; peer++) if (peer !== mesh.self && !mesh.isUp(peer)) return false;
    return true;
  };
  while (!allUp() && Date.now() < deadline) await Bun.sleep(10);
}

/**
 * The directory (switchboard.sqlite) and the partitions this process owns (all of them for a single process), as one
 * Storage (server/partitions.ts).
 */
async function openDataDirectory(
  config: Config,
  now: () => number,
  worker: WorkerPlacement | undefined,
  checkpoints: CheckpointObserver,
  foreignClientIds: ForeignClientIds,
): Promise<{ storage: Storage; partitions: Partitions }> {
  // A data directory written by the single-file layout moves its queues into partitions first (crash-safe, once).
  // Workers find it done: their supervisor migrates before it starts them.
  if (worker === undefined) {
    await migrateToPartitions({
      dataDir: config.dataDir,
      count: config.partitions,
      synchronous: config.synchronous,
      now,
    });
  }
  // Every file's checkpoints on one thread, off the event loop (storage/wal-checkpointer.ts): this process's own, or
  // in worker mode the supervisor's one for all workers (a thread costs ~14 MiB of PSS per process).
  const checkpointer = worker === undefined ? new WalCheckpointer(checkpoints) : "elsewhere";
  let directory: Storage | null = null;
  try {
    directory = await openSqliteStorage({
      path: databasePath(config),
      synchronous: config.synchronous,
      checkpointer,
    });
    const partitions = await openPartitions({
      dataDir: config.dataDir,
      synchronous: config.synchronous,
      owned: (partition) => worker === undefined || ownerOfPartition(partition, worker.count) === worker.index,
      countForNew: config.partitions,
      checkpointer,
    });
    const storage = partitionedStorage(directory, partitions, now, foreignClientIds);
    return {
      storage: {
        ...storage,
        async close() {
          await storage.close();
          if (checkpointer !== "elsewhere") await checkpointer.close();
        },
      },
      partitions,
    };
  } catch (error) {
    await directory?.close();
    if (checkpointer !== "elsewhere") await checkpointer.close();
    throw error;
  }
}

/**
 * The context's logger, with every `reload_failed` line counted in switchboard_reloads_total{result="failed"} and
 * switchboard_config_last_reload_successful set to 0: cli.ts reads the config itself on SIGHUP and logs one that does
 * not load without calling reload(), and the metrics must see that failure as well as reload()'s own.
 */
function countReloadFailures(log: Logger, metrics: Metrics): Logger {
  return {
    ...log,
    error(event, fields) {
      if (event === "reload_failed") {
        metrics.reloads.incLabel("failed");
        metrics.lastReloadSuccessful = 0;
      }
      log.error(event, fields);
    },
  };
}

function registerGauges(metrics: Metrics, table: SessionTable, delivery: Delivery, lag: EventLoopLag): void {
  const stateNames = ["preamble", "authenticating", "ready", "closed"] as const;
  metrics.gauge("switchboard_sessions", "Open sessions by state", () => {
    const counts = [0, 0, 0, 0];
    for (const session of table.sessions()) counts[session.state]!++;
    return stateNames.map((name, index) => [{ state: name }, counts[index]!] as [Record<string, string>, number]);
  });
  metrics.gauge("switchboard_device_states", "Devices with delivery state in memory", () => delivery.deviceStates);
  const totals = metrics.queueTotals;
  metrics.gauge("switchboard_queue_rows", "Entries in all device queues (committed)", () => totals.rows);
  metrics.gauge("switchboard_queue_bytes", "Payload bytes in all device queues (committed)", () => totals.bytes);
  metrics.gauge(
    "switchboard_event_loop_lag_seconds",
    "Worst event-loop lag of the last minute (a probe every eventLoopProbeMs)",
    () => lag.windowMaxMs() / 1000,
  );
  metrics.gauge(
    "switchboard_config_last_reload_successful",
    "1 unless the last SIGHUP reload failed (the old config and code still run)",
    () => metrics.lastReloadSuccessful,
  );
  metrics.gauge(
    "switchboard_resident_memory_bytes",
    "Resident set size of the process",
    () => process.memoryUsage().rss,
  );
  metrics.gauge("switchboard_heap_used_bytes", "JavaScript heap in use", () => process.memoryUsage().heapUsed);
}
