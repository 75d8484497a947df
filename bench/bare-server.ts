#!/usr/bin/env bun
// The runtime's floor for the density baseline: a bare Bun.listen server that accepts plain sockets, reads nothing
// of use and answers nothing; or, with --ws, a bare Bun.serve that upgrades /ws to WebSocket (no per-message deflate,
// no pings, empty handlers) and holds the sockets idle. Run as its own process (so its RSS is its own), it prints
// {"event":"listening","port":N} and runs until its stdin closes or it gets SIGTERM. `startBareServer` is the
// parent's side; with --shared-port N several of them share one port (SO_REUSEPORT), as a supervisor's workers do
// (`startBareServerGroup`, the million scenario's floor).

import type { Subprocess } from "bun";
import { trackChild } from "./child-processes.ts";
import { processPssBytes, processRssBytes } from "./proc-stats.ts";

const startTimeoutMs = 10_000;

export interface BareServer {
  readonly port: number;
  readonly pid: number;
  rssBytes(): number | null;
  stop(): Promise<void>;
}

/** The path the WebSocket floor upgrades (the server's default). */
export const bareWebSocketPath = "/ws";

export async function startBareServer(
  mode: "tcp" | "ws" = "tcp",
  sharedPort: number | null = null,
): Promise<BareServer> {
  const flags = mode === "ws" ? ["--ws"] : sharedPort === null ? [] : ["--shared-port", String(sharedPort)];
  const child: Subprocess<"pipe", "pipe", "inherit"> = Bun.spawn(
    [process.execPath, new URL(import.meta.url).pathname, ...flags],
    { stdin: "pipe", stdout: "pipe", stderr: "inherit" },
  );
  trackChild(child);
  const reader = child.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + startTimeoutMs;
  while (!text.includes("\n")) {
    const read = await Promise.race([reader.read(), Bun.sleep(Math.max(0, deadline - Date.now())).then(() => null)]);
    if (read === null || read.done) {
      child.kill("SIGKILL");
      throw new Error("bare server did not start");
    }
    text += decoder.decode(read.value, { stream: true });
  }
  reader.releaseLock();
  const { port } = JSON.parse(text.slice(0, text.indexOf("\n"))) as { port: number };
  return {
    port,
    pid: child.pid,
    rssBytes: () => processRssBytes(child.pid),
    async stop() {
      child.kill("SIGTERM");
      const exited = await Promise.race([child.exited, Bun.sleep(5_000).then(() => null)]);
      if (exited === null) {
        child.kill("SIGKILL");
        await child.exited;
      }
    },
  };
}

/** Bare Bun.listen processes sharing one port (SO_REUSEPORT), as the workers of `switchboard start --workers N` do. */
export interface BareServerGroup {
  readonly port: number;
  readonly servers: readonly BareServer[];
  /** PSS summed over the processes (the shared Bun binary counts once), or null when one is gone. */
  pssBytes(): Promise<number | null>;
  stop(): Promise<void>;
}

export async function startBareServerGroup(count: number, port: number): Promise<BareServerGroup> {
  const servers: BareServer[] = [];
  try {
    // One after the other: a process must be listening before the next shares its port.
    for (let index = 0; index < count; index++) servers.push(await startBareServer("tcp", port));
  } catch (error) {
    await Promise.all(servers.map((server) => server.stop()));
    throw error;
  }
  return {
    port,
    servers,
    async pssBytes() {
      let total = 0;
      for (const server of servers) {
        const pss = await processPssBytes(server.pid);
        if (pss === null) return null;
        total += pss;
      }
      return total;
    },
    stop: async () => {
      await Promise.all(servers.map((server) => server.stop()));
    },
  };
}

/** The WebSocket floor: as the server's listener minus the session (ws-listener.ts), with empty handlers. */
function serveWebSocket(): { port: number; stop(): void } {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request, bunServer) {
      if (new URL(request.url).pathname === bareWebSocketPath && bunServer.upgrade(request, { data: undefined })) {
        return undefined;
      }
      return new Response("not found\n", { status: 404 });
    },
    websocket: {
      perMessageDeflate: false,
      sendPings: false,
      idleTimeout: 960,
      open() {},
      message() {},
      close() {},
    },
  });
  return { port: server.port ?? 0, stop: () => void server.stop(true) };
}

if (import.meta.main && process.argv.includes("--ws")) {
  const listener = serveWebSocket();
  process.stdout.write(`${JSON.stringify({ event: "listening", port: listener.port })}\n`);
  const stop = () => {
    listener.stop();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  void (async () => {
    for await (const _ of Bun.stdin.stream()) {
      // Nothing is expected on stdin.
    }
    stop();
  })();
} else if (import.meta.main) {
  let open = 0;
  const shared = process.argv.indexOf("--shared-port");
  const port = shared > 0 ? Number(process.argv[shared + 1]) : 0;
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port,
    // Several bare processes on one port, as a supervisor's workers: reusePort is missing from bun-types' TCP options.
    ...({ reusePort: shared > 0 } as object),
    data: undefined,
    socket: {
      open() {
        open++;
      },
      data() {},
      close() {
        open--;
      },
      error() {},
    },
  });
  process.stdout.write(`${JSON.stringify({ event: "listening", port: listener.port })}\n`);
  const stop = () => {
    void open;
    listener.stop(true);
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  // The parent died or closed our stdin: leave too.
  void (async () => {
    for await (const _ of Bun.stdin.stream()) {
      // Nothing is expected on stdin.
    }
    stop();
  })();
}
