// Plain sockets for the density baseline: connected to the bare server from the worker's source address, never
// written to or read from. What they cost the bare server is the runtime's floor per socket.

import type { Socket, TCPSocketConnectOptions } from "bun";
import type { PlainReply } from "./worker-protocol.ts";
import type { RunProgress } from "./worker-runs.ts";
import { nowMs } from "./worker-sessions.ts";

export class PlainSockets {
  private readonly sockets = new Set<Socket<undefined>>();
  private readonly handlers = {
    data() {},
    close: (socket: Socket<undefined>) => {
      this.sockets.delete(socket);
    },
    error() {},
    connectError() {},
  };

  constructor(private readonly sourceAddress: () => { localAddress?: string }) {}

  get open(): number {
    return this.sockets.size;
  }

  async connect(
    progress: RunProgress,
    command: { host: string; port: number; count: number; concurrency: number; deadlineMs: number },
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
        try {
          const options = {
            hostname: command.host,
            port: command.port,
            data: undefined,
            socket: this.handlers,
            ...this.sourceAddress(),
          } as TCPSocketConnectOptions<undefined>;
          this.sockets.add(await Bun.connect(options));
          open++;
          lastOpenAtMs = nowMs();
        } catch {
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
