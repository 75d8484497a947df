// Composes a running server from its config: storage, codec, directory, router, delivery, handlers, listeners,
// the timer wheel, the retention sweeper and the admin HTTP listener. `stop` is the graceful path (SIGTERM) and
// `reload` the SIGHUP path: new handler code and reloadable config, with every connection kept.

import { ErrorCode, FrameCodec } from "../protocol/index.ts";
import { openSqliteStorage, type Storage } from "../storage/index.ts";
import type { AccountRequests } from "./account-requests.ts";
import { createAdminApi, writeAdminToken } from "./admin-api.ts";
import { type AdminHttp, listenAdmin } from "./admin-http.ts";
import type { Auth } from "./auth.ts";
import { zlibCompressor } from "./compression-zlib.ts";
import { type Config, databasePath, mergeReload } from "./config.ts";
import type { ConnectionHandler } from "./connection.ts";
import type { ServerContext } from "./context.ts";
import { type DataDirectoryLock, lockDataDirectory, prepareDataDirectory } from "./data-directory.ts";
import { Delivery } from "./delivery.ts";
import { Directory } from "./directory.ts";
import { EventLoopLag } from "./event-loop-lag.ts";
import { LastSeenRecorder } from "./last-seen.ts";
import { createLogger, type Logger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { RetentionSweeper } from "./retention-sweeper.ts";
import { LocalRouter } from "./router-local.ts";
import { serverNames } from "./server-names.ts";
import { SessionIo } from "./session-io.ts";
import { SessionTable } from "./session-table.ts";
import { asDataDirectoryError, asListenError, type ListenerName } from "./start-errors.ts";
import { listenTcp, type TcpListeners } from "./tcp-listener.ts";
import { listenWebSocket, type WsListener } from "./ws-listener.ts";
import { versionInfo } from "./version.ts";

export interface RunningServer {
  readonly port: number;
  /** The admin HTTP port, or 0 when disabled. */
  readonly adminPort: number;
  /** The WebSocket port, or 0 when disabled. */
  readonly wsPort: number;
  readonly context: ServerContext;
  /** The handler of the current code generation (a reload replaces it). */
  readonly connections: ConnectionHandler;
  readonly delivery: Delivery;
  readonly sweeper: RetentionSweeper;
  /** How many times the handler code was loaded (1 at start, +1 per reload). */
  readonly generation: number;
  /**
   * Graceful stop: stop accepting, commit what is pending, goaway (jittered retry-after) to every session, wait for
   * the sockets to close (at most `timeoutMs`), commit again, close the store. Idempotent.
   */
  stop(options?: { timeoutMs?: number }): Promise<void>;
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
  /** What a drain asked for through the admin API does; default: the graceful stop. */
  readonly requestStop?: () => void;
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
  const limits = config.limits;
  let storage = options.storage;
  // Held from before the database opens until after it closes: one server per data directory (data-directory.ts).
  let lock: DataDirectoryLock | null = null;
  if (storage === undefined) {
    try {
      prepareDataDirectory(config.dataDir);
      lock = lockDataDirectory(config.dataDir);
      storage = await openSqliteStorage({ path: databasePath(config), synchronous: config.synchronous });
    } catch (error) {
      lock?.release();
      // A path the user may not write, a file where the directory should be: one line and exit 2 (start-errors.ts).
      throw asDataDirectoryError(config.dataDir, error);
    }
  }
  const metrics = new Metrics();
  // node:zlib inflates a small frame ~10x faster than fflate here (bench/micro-codec.ts); the bytes are the same.
  const codec = new FrameCodec({ limits, compressor: zlibCompressor });
  const io = new SessionIo(codec, limits, metrics);
  const now = options.now ?? Date.now;
  const base = {
    config,
    limits,
    codec,
    storage,
    directory: new Directory(storage, limits.directoryAccountsMax),
    router: new LocalRouter(),
    io,
    log: options.log ?? createLogger(config.logLevel),
    metrics,
    now,
  };
  // The recorder reads limits and log through the context (both reloadable), so it gets the finished object.
  const context: ServerContext = Object.assign(base, { lastSeen: new LastSeenRecorder(base) });
  const delivery = new Delivery(context);
  const table = new SessionTable(limits.timerTickMs, now);
  let generation = 1;
  const build = (modules: HandlerModules): ConnectionHandler => {
    const auth = new modules.Auth(context, delivery);
    const requests = new modules.AccountRequests(context, delivery);
    return new modules.ConnectionHandler(context, delivery, auth, requests, table);
  };
  let connections = build(await importHandlers(generation));
  const sweeper = new RetentionSweeper(context, (devices) => delivery.resyncCounters(devices));
  const lag = new EventLoopLag();
  registerGauges(metrics, table, delivery, storage, lag);

  // A port already in use fails the start: close what was opened before it, so a caller can retry cleanly.
  let listeners: TcpListeners | null = null;
  let webSocket: WsListener | null = null;
  let admin: AdminHttp | null = null;
  // Which listener is binding, for the one-line error when a bind fails.
  let binding: [ListenerName, string, number] = ["tcp", config.host, config.port];
  try {
    listeners = listenTcp({ host: config.host, port: config.port, listeners: config.listeners }, connections);
    binding = ["websocket", config.wsHost, config.wsPort];
    if (config.wsPort !== 0) webSocket = listenWebSocket(config, connections);
    binding = ["admin", config.adminHost, config.adminPort];
    if (config.adminPort !== 0) {
      // The operator API's token goes into the data directory this server owns (kept in memory only for a store
      // passed in by a test, whose directory may not exist).
      const api = createAdminApi({
        context,
        table,
        delivery,
        token: options.storage === undefined ? writeAdminToken(config.dataDir) : crypto.randomUUID(),
        listenHost: config.adminHost,
        drain: () => (options.requestStop ?? (() => void stop()))(),
      });
      admin = listenAdmin(
        { host: config.adminHost, port: config.adminPort, names: serverNames(config) },
        { metrics: () => metrics.renderFresh(), ready: () => !table.draining, api },
      );
    }
  } catch (error) {
    listeners?.stop();
    webSocket?.stop();
    admin?.stop();
    if (options.storage === undefined) await storage.close();
    lock?.release();
    throw asListenError(...binding, error);
  }
  const tcp: TcpListeners = listeners;
  table.wheel.start();
  sweeper.start();
  context.lastSeen.start();
  lag.start();
  context.log.notice("server_started", {
    version: versionInfo().version,
    host: config.host,
    port: tcp.port,
    adminPort: admin?.port ?? 0,
    wsPort: webSocket?.port ?? 0,
    listeners: config.listeners,
    dataDir: config.dataDir,
    synchronous: config.synchronous,
    registration: config.registration,
  });

  let stopping: Promise<void> | null = null;
  const stop = (stopOptions: { timeoutMs?: number } = {}): Promise<void> => {
    stopping ??= (async () => {
      const timeoutMs = stopOptions.timeoutMs ?? stopTimeoutMsDefault;
      table.draining = true;
      tcp.stop();
      webSocket?.stop();
      sweeper.stop();
      await delivery.commit.idle();
      for (const session of [...table.sessions]) {
        const retryAfterMs = table.retryAfterMs(context.limits.goawayRetryAfterMsMax);
        io.goaway(session, ErrorCode.shuttingDown, retryAfterMs, "server shutting down");
      }
      const deadline = Date.now() + timeoutMs;
      while (table.sessions.size > 0 && Date.now() < deadline) await Bun.sleep(10);
      await delivery.commit.idle();
      context.lastSeen.stop();
      await context.lastSeen.flush();
      table.wheel.stop();
      lag.stop();
      admin?.stop();
      if (options.storage === undefined) await storage.close();
      lock?.release();
      context.log.notice("server_stopped", { sessionsLeft: table.sessions.size });
    })();
    return stopping;
  };

  const reload = async (nextConfig: Config = context.config) => {
    const merged = mergeReload(context.config, nextConfig);
    try {
      const modules = await importHandlers(generation + 1);
      generation++;
      context.config = merged.config;
      context.limits = merged.config.limits;
      io.limits = merged.config.limits;
      if (merged.applied.includes("logLevel") && options.log === undefined)
        context.log = createLogger(merged.config.logLevel);
      connections = build(modules);
      tcp.reload(connections);
      webSocket?.reload(connections);
      metrics.reloads.inc({ result: "ok" });
      context.log.info("reloaded", { generation, applied: merged.applied, needRestart: merged.ignored });
    } catch (error) {
      // The old code keeps running: a reload that cannot load must not take the server down.
      metrics.reloads.inc({ result: "failed" });
      context.log.error("reload_failed", { error: String(error) });
      throw error;
    }
    return { generation, applied: merged.applied, ignored: merged.ignored };
  };

  return {
    port: tcp.port,
    adminPort: admin?.port ?? 0,
    wsPort: webSocket?.port ?? 0,
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

function registerGauges(
  metrics: Metrics,
  table: SessionTable,
  delivery: Delivery,
  storage: Storage,
  lag: EventLoopLag,
): void {
  const stateNames = ["preamble", "authenticating", "ready", "closed"] as const;
  metrics.gauge("switchboard_sessions", "Open sessions by state", () => {
    const counts = [0, 0, 0, 0];
    for (const session of table.sessions) counts[session.state]!++;
    return stateNames.map((name, index) => [{ state: name }, counts[index]!] as [Record<string, string>, number]);
  });
  metrics.gauge("switchboard_device_states", "Devices with delivery state in memory", () => delivery.deviceStates);
  let queueRows = 0;
  let queueBytes = 0;
  metrics.refreshBeforeRender(async () => {
    const totals = await storage.queues.totals();
    queueRows = totals.rows;
    queueBytes = totals.bytes;
  });
  metrics.gauge("switchboard_queue_rows", "Entries in all device queues (committed)", () => queueRows);
  metrics.gauge("switchboard_queue_bytes", "Payload bytes in all device queues (committed)", () => queueBytes);
  metrics.gauge(
    "switchboard_event_loop_lag_seconds",
    "Worst event-loop lag since the previous scrape",
    () => lag.takeMax() / 1000,
  );
  metrics.gauge(
    "switchboard_resident_memory_bytes",
    "Resident set size of the process",
    () => process.memoryUsage().rss,
  );
  metrics.gauge("switchboard_heap_used_bytes", "JavaScript heap in use", () => process.memoryUsage().heapUsed);
}
