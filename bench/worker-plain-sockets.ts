// Plain sockets for the density baseline: connected to the bare server from the worker's source address, never
// written to or read from. What they cost the bare server is the runtime's floor per socket. For the WebSocket floor
// each socket sends the upgrade request and waits for the 101 (handshake only), then stays idle.

import type { Socket, TCPSocketConnectOptions } from "bun";
import { readHandshake, upgradeRequest } from "./websocket-client-frames.ts";
import type { PlainReply } from "./worker-protocol.ts";
import type { RunProgress } from "./worker-runs.ts";
import { nowMs } from "./worker-sessions.ts";

/** A socket waiting for the server's answer to its upgrade; undefined once open (or for raw TCP). */
interface Upgrading {
  received: Uint8Array;
  settle(error: string | null): void;
}

type PlainSocket = Socket<Upgrading | undefined>;

const upgradeTimeoutMs = 15_000;

export class PlainSockets {
  private readonly sockets = new Set<PlainSocket>();
  private readonly handlers = {
    data(socket: PlainSocket, chunk: Buffer) {
      const upgrading = socket.data;
      if (upgrading === undefined) return;
      const received = new Uint8Array(upgrading.received.length + chunk.length);
      received.set(upgrading.received, 0);
      received.set(chunk, upgrading.received.length);
      upgrading.received = received;
      const result = readHandshake(received);
      if (result.status === "more") return;
      socket.data = undefined;
      upgrading.settle(result.status === "open" ? null : result.reason);
    },
    close: (socket: PlainSocket) => {
      this.sockets.delete(socket);
      const upgrading = socket.data;
      socket.data = undefined;
      upgrading?.settle("closed");
    },
    error() {},
    connectError() {},
  };

  constructor(private readonly sourceAddress: () => { localAddress?: string; localPort?: number }) {}

  get open(): number {
    return this.sockets.size;
  }

  /** Sends the upgrade request on `socket` and waits (bounded) for the server's 101. */
  private upgrade(socket: PlainSocket, host: string, port: number, path: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.data = undefined;
        reject(new Error("wsUpgradeTimeout"));
      }, upgradeTimeoutMs);
      socket.data = {
        received: new Uint8Array(0),
        settle(error) {
          clearTimeout(timer);
          if (error === null) resolve();
          else reject(new Error(error));
        },
      };
      socket.write(upgradeRequest(host, port, path));
    });
  }

  async connect(
    progress: RunProgress,
    command: {
      host: string;
      port: number;
      count: number;
      concurrency: number;
      deadlineMs: number;
      wsPath: string | null;
    },
  ): Promise<PlainReply> {
    const startedAtMs = nowMs();
    const deadline = startedAtMs + command.deadlineMs;
    let lastOpenAtMs = startedAtMs;
    let open = 0;
    let failed = 0;
    let started = 0;
    progress.start();
    const one = async () => {
      while (started < command.count && nowMs() < deadline) {
        started++;
        let socket: PlainSocket | null = null;
        try {
          const options = {
            hostname: command.host,
            port: command.port,
            data: undefined,
            socket: this.handlers,
            ...this.sourceAddress(),
          } as TCPSocketConnectOptions<Upgrading | undefined>;
          socket = await Bun.connect(options);
          if (command.wsPath !== null) await this.upgrade(socket, command.host, command.port, command.wsPath);
          this.sockets.add(socket);
          open++;
          lastOpenAtMs = nowMs();
        } catch {
          socket?.terminate();
          failed++;
          progress.failed++;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, command.concurrency) }, one));
    failed += command.count - started;
    progress.stop();
    return { startedAtMs, lastOpenAtMs, open, failed };
  }

  /** Closes every socket: gracefully, or with a reset when the worker quits. */
  close(abort: boolean): number {
    const closed = this.sockets.size;
    for (const socket of [...this.sockets]) {
      if (abort) socket.terminate();
      else socket.end();
    }
    if (abort) this.sockets.clear();
    return closed;
  }
}
