// Composes a running server from its config: storage, codec, directory, router, delivery, handlers, listeners,
// the timer wheel and the retention sweeper. `stop` is the graceful path used by SIGTERM and by tests.

import { mkdirSync } from "node:fs";
import { ErrorCode, FrameCodec } from "../protocol/index.ts";
import { openSqliteStorage, type Storage } from "../storage/index.ts";
import { AccountRequests } from "./account-requests.ts";
import { Auth } from "./auth.ts";
import { type Config, databasePath } from "./config.ts";
import { ConnectionHandler } from "./connection.ts";
import type { ServerContext } from "./context.ts";
import { Delivery } from "./delivery.ts";
import { Directory } from "./directory.ts";
import { createLogger, type Logger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { RetentionSweeper } from "./retention-sweeper.ts";
import { LocalRouter } from "./router-local.ts";
import { SessionIo } from "./session-io.ts";
import { listenTcp, type TcpListeners } from "./tcp-listener.ts";

export interface RunningServer {
  readonly port: number;
  readonly context: ServerContext;
  readonly connections: ConnectionHandler;
  readonly delivery: Delivery;
  readonly sweeper: RetentionSweeper;
  /**
   * Graceful stop: stop accepting, goaway (jittered retry-after) to every session, commit what is pending, close
   * sockets and the store. Resolves when done; bounded by `timeoutMs`.
   */
  stop(options?: { timeoutMs?: number }): Promise<void>;
}

export interface StartOptions {
  readonly log?: Logger;
  readonly now?: () => number;
  /** An already open store (tests); the server then leaves closing it to the caller. */
  readonly storage?: Storage;
}

/** Default bound for a graceful stop: sockets get this long to take their goaway before they are closed anyway. */
export const stopTimeoutMsDefault = 10_000;

export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const log = options.log ?? createLogger(config.logLevel);
  const limits = config.limits;
  let storage = options.storage;
  if (storage === undefined) {
    mkdirSync(config.dataDir, { recursive: true });
    storage = await openSqliteStorage({ path: databasePath(config), synchronous: config.synchronous });
  }
  const metrics = new Metrics();
  const codec = new FrameCodec({ limits });
  const io = new SessionIo(codec, limits, metrics);
  const context: ServerContext = {
    config,
    limits,
    codec,
    storage,
    directory: new Directory(storage, limits.directoryAccountsMax),
    router: new LocalRouter(),
    io,
    log,
    metrics,
    now: options.now ?? Date.now,
  };
  const delivery = new Delivery(context);
  const auth = new Auth(context, delivery);
  const requests = new AccountRequests(context, delivery);
  const connections = new ConnectionHandler(context, delivery, auth, requests);
  const sweeper = new RetentionSweeper(context, (devices) => delivery.resyncCounters(devices));
  metrics.gauge("switchboard_sessions", "Open sessions", () => connections.count);
  metrics.gauge("switchboard_device_states", "Devices with delivery state in memory", () => delivery.deviceStates);

  const listeners: TcpListeners = listenTcp(
    { host: config.host, port: config.port, listeners: config.listeners },
    connections,
  );
  connections.wheel.start();
  sweeper.start();
  log.info("server_started", {
    host: config.host,
    port: listeners.port,
    listeners: config.listeners,
    dataDir: config.dataDir,
    synchronous: config.synchronous,
    registration: config.registration,
  });

  let stopping: Promise<void> | null = null;
  const stop = (stopOptions: { timeoutMs?: number } = {}): Promise<void> => {
    stopping ??= (async () => {
      const timeoutMs = stopOptions.timeoutMs ?? stopTimeoutMsDefault;
      listeners.stop();
      sweeper.stop();
      connections.draining = true;
      connections.drainRetryAfterMs = () => Math.floor(Math.random() * limits.goawayRetryAfterMsMax);
      await delivery.commit.idle();
      for (const session of [...connections.all()]) {
        io.goaway(session, ErrorCode.shuttingDown, connections.drainRetryAfterMs(), "server shutting down");
      }
      const deadline = Date.now() + timeoutMs;
      while (connections.count > 0 && Date.now() < deadline) await Bun.sleep(10);
      await delivery.commit.idle();
      connections.wheel.stop();
      if (options.storage === undefined) await storage.close();
      log.info("server_stopped", { sessionsLeft: connections.count });
    })();
    return stopping;
  };

  return { port: listeners.port, context, connections, delivery, sweeper, stop };
}
